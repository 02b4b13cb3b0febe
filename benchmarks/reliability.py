"""Reliability figures: index folders through `enclave-cli`, kill it with SIGKILL at random
moments, resume, and check the index each time.

Prints JSON: files tried, outcome counts, failures grouped by reason, kills survived,
whether `verify` found the index consistent after each kill, and whether the final chunk
count equals an uninterrupted run's. Nothing here passes or fails.

    python benchmarks/reliability.py ../shared/corpus --kills 3 --out benchmarks/results/reliability.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 15  # a CLI run's start: Python, torch and the embedding model


def cli(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ENCLAVE_DATA_DIR=str(data), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=env)


def chunks(data: Path) -> int:
    return sum(d["chunks"] for d in json.loads(cli(data, "docs", "--json").stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", default=[str(ROOT.parent / "shared" / "corpus")])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--out")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        reference = Path(tmp) / "reference"
        started = time.monotonic()
        proc = cli(reference, "index", *args.folders, "--json")
        duration = time.monotonic() - started
        report = json.loads(proc.stdout)
        expected = chunks(reference)

        data = Path(tmp) / "killed"
        kills = []
        for _ in range(args.kills):
            env = dict(os.environ, ENCLAVE_DATA_DIR=str(data), PYTHONPATH=str(ROOT))
            child = subprocess.Popen([sys.executable, "-m", "rag.cli", "index", *args.folders, "--json"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Each run resumes the last one's work, so the kills share the uninterrupted
            # run's duration: every run is still busy when its kill lands (after the
            # seconds it spends starting up and loading the model).
            at = STARTUP_S + rng.uniform(0.2, 1.0) * duration / (args.kills + 1)
            time.sleep(at)
            killed = child.poll() is None
            if killed:
                child.send_signal(signal.SIGKILL)
            child.wait()
            verify = json.loads(cli(data, "verify", "--json").stdout)
            kills.append({"at_s": round(at, 1), "killed": killed, "consistent_after": verify["consistent"],
                          "recovered": verify["recovered"]})
        final = json.loads(cli(data, "index", *args.folders, "--json").stdout)
        final_verify = json.loads(cli(data, "verify", "--json").stdout)

    reasons = collections.Counter(_reason_kind(f["reason"]) for f in report["failed"])
    result = {
        "folders": args.folders,
        "files_tried": report["indexed"] + report["unchanged"] + len(report["skipped"]) + len(report["failed"]),
        "indexed": report["indexed"],
        "skipped": len(report["skipped"]),
        "failed": len(report["failed"]),
        "failed_by_reason": dict(reasons),
        "skipped_by_reason": dict(collections.Counter(_reason_kind(f["reason"]) for f in report["skipped"])),
        "failed_files": {f["path"]: f["reason"] for f in report["failed"]},
        "skipped_files": {f["path"]: f["reason"] for f in report["skipped"]},
        "uninterrupted_s": round(duration, 1),
        "chunks_uninterrupted": expected,
        "kills": kills,
        "kills_survived": sum(k["killed"] and k["consistent_after"] for k in kills),
        "final_consistent": final_verify["consistent"],
        "final_chunks_equal": final_verify["collections"][0]["vectors"] == expected if final_verify["collections"] else False,
    }
    result["chunks_after_kills_and_resume"] = final_verify["collections"][0]["vectors"] if final_verify["collections"] else 0
    result["final_run_indexed"] = final["indexed"]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


def _reason_kind(reason: str) -> str:
    for key in ("password required", "took longer", "needed more", "decompression bomb", "not a valid PDF",
                "not a text file", "not a valid Word", "crashed"):
        if key in reason:
            return key
    return reason.split(":")[0][:60]


if __name__ == "__main__":
    main()
