"""OCR quality and speed over ../shared/corpus/scanned, against its ground truth.

Each scan is read by the same loader the reader processes use (rag.ingest.loaders.load, OCR on),
in a fresh process of its own so its peak memory is its own. Prints JSON (and writes it
with --out): per file the pages, seconds per page, the character error rate against
NAME.gt.txt where there is one (edit distance / ground-truth characters, whitespace
collapsed, Unicode NFKC), the contains-checks of scanned/README.md where there is none,
and the reader's peak resident memory; then the overall CER (all edits over all
ground-truth characters), seconds per page and the largest peak. Nothing passes or fails.

    python benchmarks/ocr_quality.py --out benchmarks/results/ocr_quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ROOT.parent / "shared" / "corpus" / "scanned"
SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}

# Phrases read by eye from the rendered pages (scanned/README.md), for files without ground truth.
CHECKS = {
    "c02-22.pdf": ["Chapter II", "We went tip-toeing along a path amongst the trees", "THEY TIP-TOED ALONG."],
    "francais.pdf": ["Portez ce vieux whisky au juge blond qui fume sur son île intérieure", "cænogénèse",
                     "capharnaüm", "œuvre"],
    "sample_with_rotation_mismatch.pdf": ["THE SLEREXE COMPANY LIMITED", "18th January, 1972", "Dear Pete,",
                                          "P.J. CROSS"],
    "MEDRPT-2024-PAT-3847_medical_report_scan.pdf": ["SEATTLE GENERAL HOSPITAL", "MEDRPT-2024-PAT-3847",
                                                     "October 28, 2024", "Jonathan Michael Harrison",
                                                     "142/88 mmHg", "ELEVATED", "Dr. Elizabeth Warren, MD",
                                                     "Page 1 of 3"],
}


def normal(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one row at a time with numpy (pages of 4,000+ characters)."""
    import numpy as np

    if not a or not b:
        return max(len(a), len(b))
    codes_b = np.array([ord(c) for c in b])
    steps = np.arange(len(b) + 1)
    previous = steps.copy()
    for i, char in enumerate(a, 1):
        row = np.empty_like(previous)
        row[0] = i
        row[1:] = np.minimum(previous[1:] + 1, previous[:-1] + (codes_b != ord(char)))
        # Insertions along the row: row[j] = min over k <= j of row[k] + (j - k).
        row = np.minimum.accumulate(row - steps) + steps
        previous = row
    return int(previous[-1])


def read_one(path: str) -> None:
    """In the child: read one file, print its pages' text and the time it took."""
    from rag.ingest.loaders import LoadContext, load
    from rag.ingest.loaders.ocr import _engine

    started = time.perf_counter()
    _engine()  # model loading is paid once per reader, not per page
    loaded = time.perf_counter() - started
    pages = []
    started = time.perf_counter()
    try:
        document = load(path, context=LoadContext(ocr=True))
        pages = [p.text for p in document.pages]
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what happened
        pages = []
        print(json.dumps({"error": str(exc)}))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"pages": pages, "seconds": seconds, "model_load_s": loaded, "peak_rss_mb": peak}))


def measure(path: Path, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ENCLAVE_OCR_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--one", str(path)], capture_output=True, text=True, env=env)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    out = lines[-1] if lines else {"pages": [], "seconds": 0.0, "model_load_s": 0.0, "peak_rss_mb": 0.0}
    result = {"file": path.name, "pages": len(out["pages"]), "seconds": round(out["seconds"], 2),
              "s_per_page": round(out["seconds"] / max(len(out["pages"]), 1), 2),
              "model_load_s": round(out["model_load_s"], 2), "peak_rss_mb": round(out["peak_rss_mb"])}
    if any("error" in line for line in lines):
        result["error"] = next(line["error"] for line in lines if "error" in line)
    truth = path.with_suffix(".gt.txt")
    if truth.exists():
        expected = truth.read_text(encoding="utf-8").split("\f")
        got = out["pages"] + [""] * (len(expected) - len(out["pages"]))
        edits = sum(edit_distance(normal(g), normal(e)) for g, e in zip(got, expected))
        chars = sum(len(normal(e)) for e in expected)
        result.update(cer=round(edits / chars, 4), edits=edits, truth_chars=chars)
    if path.name in CHECKS:
        text = normal(" ".join(out["pages"])).lower()
        found = [phrase for phrase in CHECKS[path.name] if normal(phrase).lower() in text]
        result["checks_found"] = f"{len(found)}/{len(CHECKS[path.name])}"
        result["checks_missed"] = [p for p in CHECKS[path.name] if p not in found]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default=str(SCANNED))
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (a reader's share of the cores)")
    parser.add_argument("--out")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        read_one(args.one)
        return
    files = sorted(p for p in Path(args.folder).iterdir() if p.suffix.lower() in SUFFIXES)
    results = []
    for path in files:
        results.append(measure(path, args.threads))
        print(json.dumps(results[-1], ensure_ascii=False), file=sys.stderr, flush=True)
    scored = [r for r in results if "cer" in r]
    pages = sum(r["pages"] for r in results)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "files": results,
        "overall_cer": round(sum(r["edits"] for r in scored) / max(sum(r["truth_chars"] for r in scored), 1), 4),
        "files_with_truth": len(scored),
        "pages": pages,
        "s_per_page": round(sum(r["seconds"] for r in results) / max(pages, 1), 2),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in results), default=0),
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
