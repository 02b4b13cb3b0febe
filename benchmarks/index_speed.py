"""Indexing throughput on real documents, split by stage, against the embedding floor.

Prints JSON (and writes it with --out): files/s, pages/s, chunks/s for a cold index of the
given folders, seconds per stage, the time the embedding model alone needs for the same
chunks (measured right after, same process, same batch size), their ratio, and the cost per
file of re-indexing the unchanged folders. Nothing here passes or fails on time.

    python benchmarks/index_speed.py ../shared/corpus/pdf ../shared/corpus/office --out benchmarks/results/index.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.engine import Engine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", default=[str(ROOT.parent / "shared" / "corpus" / "pdf")])
    parser.add_argument("--repeats", type=int, default=3, help="embedding-only and re-index repeats")
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(tmp)
        t0 = time.perf_counter()
        engine.warm_up()
        load_s = time.perf_counter() - t0
        report = engine.index_all(args.folders)
        texts = [r[0] for r in engine.catalog.db.execute("SELECT text FROM chunks")]

        embed_only = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            engine.embedder.embed(texts)
            embed_only.append(time.perf_counter() - t)
        embed_floor = statistics.median(embed_only)

        reindex = []
        for _ in range(args.repeats):
            again = engine.index_all(args.folders)
            reindex.append(again.seconds)
        files = report.indexed + len(report.skipped) + len(report.failed)

        result = {
            "folders": args.folders,
            "cpu_count": os.cpu_count(),
            "model_load_s": round(load_s, 3),
            "files": files,
            "indexed": report.indexed,
            "skipped": len(report.skipped),
            "failed": len(report.failed),
            "pages": report.pages,
            "chunks": report.chunks_added,
            "index_s": round(report.seconds, 3),
            "files_per_s": round(files / report.seconds, 2),
            "pages_per_s": round(report.pages / report.seconds, 2),
            "chunks_per_s": round(report.chunks_added / report.seconds, 2),
            "stages_s": {k: round(v, 3) for k, v in report.stages.items()},
            "embed_only_s_median": round(embed_floor, 3),
            "embed_only_chunks_per_s": round(len(texts) / embed_floor, 2),
            "ratio_total_to_embed_only": round(report.seconds / embed_floor, 3),
            "reindex_unchanged_s_median": round(statistics.median(reindex), 4),
            "reindex_ms_per_file": round(1000 * statistics.median(reindex) / max(files, 1), 3),
        }
        engine.close()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
