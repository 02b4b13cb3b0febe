"""The fit estimate against the real peak RSS of loading a model and reading a prompt.

    python benchmarks/fit_vs_rss.py [GGUF ...] [--context 4096] [--json OUT]

Default: the bundled model. Each model is loaded on the CPU in a child process (so one
model's pages never count towards another's), the way the model host loads it, then reads a
512-token prompt (a whole batch: llama.cpp's compute buffers are touched as by a question);
the child's peak RSS (getrusage ru_maxrss) is compared with `rag.models.fit.memory_needed`.
Measures only; nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import resource, sys, llama_cpp
path, n_ctx = sys.argv[1], int(sys.argv[2])
model = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_gpu_layers=0, verbose=False)
tokens = model.tokenize(b"The quick brown fox jumps over the lazy dog. " * 60)[:512]
model.eval(tokens)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def measure(path: Path, n_ctx: int) -> dict:
    from rag.llm.gguf import check_gguf
    from rag.models.fit import detect_machine, geometry_from_gguf, memory_needed

    geometry = geometry_from_gguf(check_gguf(path))
    need, kv, ctx = memory_needed(geometry, n_ctx, repacks=detect_machine().repacks)  # loaded on the CPU
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(ctx)], capture_output=True, text=True,
                         check=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    peak = int(out.stdout.split()[-1])
    return {"model": path.name, "context": ctx, "weights_bytes": geometry.weights, "kv_cache_bytes": kv,
            "repacked_bytes": geometry.repackable, "estimate_bytes": need, "peak_rss_bytes": peak, "error": round((need - peak) / peak, 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*")
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--json")
    args = parser.parse_args()
    if not args.models:
        from rag.llm.bundled import default_model_path

        args.models = [str(default_model_path())]
    rows = [measure(Path(m), args.context) for m in args.models]
    for r in rows:
        print(f"{r['model']}: estimate {r['estimate_bytes'] / 1e6:.0f} MB, peak RSS {r['peak_rss_bytes'] / 1e6:.0f} MB "
              f"({r['error']:+.1%}) at {r['context']:,} tokens")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
