"""How long a cold `enclave-cli ask` waits before the model reads the prompt.

Indexes one small document into a temporary data folder, then runs `enclave-cli ask --json`
in fresh processes and reports, medians over the runs:

- process_to_prompt_ms: from the process's start until the model is handed the prompt;
- retrieve_ms, first_token_ms (from the question), total_ms;

and, each step in a fresh process of its own, where the time before the prompt goes: importing
the engine, embedding the question with numpy (today's path) and with sentence-transformers
(the path before: torch and transformers are imported first), importing Chroma, opening the
store, searching. Side by side in one run; nothing passes or fails on time.

    python benchmarks/cold_start.py [-n 5] [--out benchmarks/results/cold_start.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How did Tomas keep the light burning during the storm of 1952?"
DOCUMENT = (
    "The lighthouse keeper of Skerry Point. For forty years Tomas Brennan kept the light on Skerry "
    "Point, a rock two miles off the coast. Every evening he climbed the one hundred and twelve steps "
    "to light the lamp, wound the clockwork that turned the lens, and wrote the weather in his log. In "
    "the winter of 1952 a storm cut the island off for six weeks; Tomas rationed his flour, burned "
    "driftwood, and never once let the light go out.\n"
)

STEP = """
import time, sys
t = time.perf_counter()
{code}
print(round((time.perf_counter() - t) * 1000, 1))
"""
STEPS = {
    "import_engine_ms": "import rag.engine",
    "embed_question_numpy_ms": ("from rag.config import default_embedding_model\n"
                                "from rag.embedding import SentenceEmbedder\n"
                                "SentenceEmbedder(default_embedding_model()).embed(['{q}'])"),
    "embed_question_sentence_transformers_ms": ("from rag.config import default_embedding_model\n"
                                                "from rag.embedding import SentenceEmbedder\n"
                                                "e = SentenceEmbedder(default_embedding_model()); e.warm_up(); e.embed(['{q}'])"),
    "import_chroma_ms": "import chromadb",
    "open_store_and_search_ms": ("from rag.engine import Engine\n"
                                 "import chromadb\n"
                                 "e = Engine('{data}'); t = time.perf_counter(); e.search('{q}')"),
}


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 1) if values else None


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="enclave-cold-") as tmp:
        docs, data = Path(tmp) / "docs", Path(tmp) / "data"
        docs.mkdir()
        (docs / "lighthouse.txt").write_text(DOCUMENT)
        env["ENCLAVE_DATA_DIR"] = str(data)
        subprocess.run([sys.executable, "-m", "rag.cli", "index", str(docs)], env=env, check=True,
                       capture_output=True)
        runs, steps = [], {name: [] for name in STEPS}
        for _ in range(args.runs):
            proc = subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTION, "-k", "3", "--json"],
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            runs.append(json.loads(proc.stdout)["timings"])
            for name, code in STEPS.items():
                script = STEP.format(code=code.format(q=QUESTION, data=data))
                out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
                steps[name].append(float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None)
    result = {
        "benchmark": "cold_start",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "runs": args.runs,
        "process_to_prompt_ms": median(r.get("process_to_prompt_ms") for r in runs),
        "process_to_prompt_ms_each": [r.get("process_to_prompt_ms") for r in runs],
        "retrieve_ms": median(r["retrieve_ms"] for r in runs),
        "prompt_ms": median(r.get("prompt_ms") for r in runs),
        "first_token_ms": median(r["first_token_ms"] for r in runs),
        "prompt_tokens": median(r.get("prompt_tokens") for r in runs),
        "total_ms": median(r["total_ms"] for r in runs),
        "steps_each_in_a_fresh_process_ms": {name: median(values) for name, values in steps.items()},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
