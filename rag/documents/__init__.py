"""Whole-document tasks: summarize one document, compare two, every line cited.

Both read only what indexing stored (chunk text, offsets, pages and units, and the chunk
vectors): nothing is read from the file or embedded again, so they work on a document
whose file has since moved, and an extractive summary of a 100-page document takes a
fraction of a second. The model's part (a map-reduce summary, an overview of the
differences) reuses the answer stage's prompt blocks, citations and claim check.

Submodules load on use: `rag.documents.intent` imports nothing heavy, for the window.
"""
