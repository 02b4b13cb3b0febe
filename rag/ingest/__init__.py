"""Ingest: a file becomes chunks in an index.

file -> `parsing` (a reader process per file: `loaders` read the format into page texts,
`chunking` cuts them into token-sized chunks) -> `indexer` (embeds the chunks, writes them
through the `Index` seam, reports every file as indexed, unchanged, skipped or failed).
Nothing here answers questions or loads the answering model.
"""
