"""Answer generation speed: Enclave's lean stream vs llama-cpp-python's streaming chat.

Runs N short grounded prompts (built by rag.answer.prompting from a few made-up sources) through
both paths of one loaded model, side by side, and prints JSON with medians:

* time to first token (s), with an empty KV cache for both paths (cold), and for the lean
  path also with the cache left from the previous question (warm: the system prompt is
  reused, as in a conversation),
* decode speed (tokens/s after the first token),
* lean / reference ratios, and whether both paths produced the same text (greedy),
* `process_boundary`: the same lean loop in this process and in the model host process
  (what the window and the CLI use), prompt by prompt, alternating which goes first,
* `remote_endpoint` (unless --no-remote): the model host against the same model served by
  llama-cpp-python's OpenAI-compatible server on 127.0.0.1, through Enclave's remote client.

Usage:
    python benchmarks/generation_speed.py [--model PATH] [-n 5] [--max-tokens 128]
                                          [--gpu-layers N] [--threads N] [--out FILE]
                                          [--only-processes] [--no-remote]

Measures, never passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.llm.bundled import default_model_path  # noqa: E402
from rag.llm.llama import InProcessModel as Generator  # noqa: E402
from rag.answer.prompting import build_prompt  # noqa: E402
from rag.types import Hit  # noqa: E402

SOURCES = [
    (
        "handbook.pdf",
        4,
        "Employees receive 25 days of paid vacation per calendar year. Up to 5 unused days "
        "may be carried over to the next year, but they must be taken before March 31. "
        "Vacation requests are approved by the team lead in the HR portal.",
    ),
    (
        "handbook.pdf",
        7,
        "The office in Bergen opens at 7:30 and closes at 18:00 on weekdays. Visitors sign "
        "in at the reception on the ground floor and wear a badge at all times.",
    ),
    (
        "expenses.docx",
        None,
        "Travel expenses are reimbursed within 30 days after the receipt is uploaded. "
        "Train travel is preferred for trips under 500 km. Hotel costs above 1,500 NOK per "
        "night need written approval from the department head.",
    ),
    (
        "security.md",
        None,
        "Laptops must use full-disk encryption. Passwords are at least 14 characters long "
        "and are never reused. Lost devices are reported to the IT desk within one hour.",
    ),
]

QUESTIONS = [
    "How many vacation days do employees get, and can they carry days over?",
    "When does the Bergen office open and close?",
    "How fast are travel expenses reimbursed, and when is train travel preferred?",
    "What are the rules for laptop security and lost devices?",
    "Who approves hotel costs above the limit, and what is the limit?",
    "How long must passwords be?",
    "What must visitors do at the Bergen office?",
]


def hits() -> list[Hit]:
    return [
        Hit(chunk_id=f"c{i}", path=f"/docs/{name}", page=page, text=text, score=1.0 - i / 10)
        for i, (name, page, text) in enumerate(SOURCES)
    ]


def run_once(stream):
    """Consume one stream; return (ttft, total time, time of first piece, end, text)."""
    start = time.perf_counter()
    first = None
    pieces = []
    for piece in stream:
        if first is None:
            first = time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    return start, first if first is not None else end, end, "".join(pieces)


# The calls that do the model's work per token: decoding, and reading the logits (which
# waits for the GPU) or sampling from them.
NATIVE = ("llama_decode", "llama_sampler_sample", "llama_get_logits_ith")


class NativeTimer:
    """Times the calls that do the model's work per token (NATIVE) wherever they are
    called from, so that the rest of the wall time per token is the Python loop's own
    overhead."""

    def __init__(self):
        import llama_cpp

        self.modules = [sys.modules["llama_cpp"], sys.modules["llama_cpp.llama_cpp"]]
        self.originals = {
            name: getattr(llama_cpp, name) for name in NATIVE
        }
        self.native_s = 0.0

    def __enter__(self):
        clock = time.perf_counter

        def timed(function):
            def call(*args):
                start = clock()
                result = function(*args)
                self.native_s += clock() - start
                return result

            return call

        for name, function in self.originals.items():
            for module in self.modules:
                setattr(module, name, timed(function))
        return self

    def __exit__(self, *exc):
        for name, function in self.originals.items():
            for module in self.modules:
                setattr(module, name, function)


def python_overhead(generator: Generator, prompt, max_tokens: int, reference: bool) -> dict:
    """Per-token time outside llama.cpp's decode and sample calls, after the first token."""
    generator.reset_cache()
    with NativeTimer() as timer:
        stream = (
            generator.stream_chat_completion(prompt.messages, max_tokens=max_tokens)
            if reference
            else generator.stream(prompt.messages, max_tokens=max_tokens)
        )
        first = None
        text = []
        for piece in stream:
            if first is None:
                first = time.perf_counter()
                native_at_first = timer.native_s
            text.append(piece)
        end = time.perf_counter()
    if reference:  # the same greedy text as the lean path; count its tokens
        tokens = len(generator.tokenize("".join(text)))
    else:
        tokens = generator.last_stats.generated_tokens
    steps = max(tokens - 1, 1)
    wall = end - first
    native = timer.native_s - native_at_first
    return {
        "tokens": tokens,
        "wall_ms_per_token": round(wall / steps * 1e3, 3),
        "native_ms_per_token": round(native / steps * 1e3, 3),
        "python_overhead_us_per_token": round((wall - native) / steps * 1e6, 1),
    }


def loop_only(generator: Generator, prompt, replay: list[int], max_tokens: int, reference: bool):
    """Per-token cost of the Python loop alone: llama_decode and llama_sampler_sample are
    replaced by stand-ins that return at once (the sampler replays `replay`), so what is
    left is the work each path does around the model for every token. On a fast GPU this
    cost adds to llama.cpp's own time per token."""
    import llama_cpp

    import ctypes

    modules = [sys.modules["llama_cpp"], sys.modules["llama_cpp.llama_cpp"]]
    originals = {n: getattr(llama_cpp, n) for n in NATIVE}
    tokens = iter(replay * (4 * max_tokens // max(len(replay), 1) + 2))
    logits = (ctypes.c_float * generator._n_vocab)()
    pointer = ctypes.cast(logits, ctypes.POINTER(ctypes.c_float))
    last = [0]

    def fake_logits(ctx, idx):  # the next replayed token gets the highest logit
        token = next(tokens)
        logits[last[0]], logits[token], last[0] = 0.0, 1.0, token
        return pointer

    fakes = {
        "llama_decode": lambda ctx, batch: 0,
        "llama_sampler_sample": lambda sampler, ctx, idx: next(tokens),
        "llama_get_logits_ith": fake_logits,
    }
    generator.reset_cache()
    try:
        for module in modules:
            for name, fake in fakes.items():
                setattr(module, name, fake)
        stream = (
            generator.stream_chat_completion(prompt.messages, max_tokens=max_tokens)
            if reference
            else generator.stream(prompt.messages, max_tokens=max_tokens)
        )
        start = time.perf_counter()
        for _ in stream:
            pass
        elapsed = time.perf_counter() - start
    finally:
        for module in modules:
            for name, function in originals.items():
                setattr(module, name, function)
        generator.reset_cache()
    return round(elapsed / max_tokens * 1e6, 1)


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: SmolLM2)")
    parser.add_argument("-n", "--runs", type=int, default=5, help="prompts to run (default 5)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--gpu-layers", type=int, default=None, help="default: all if a GPU")
    parser.add_argument("--threads", type=int, default=None, help="default: llama-cpp-python's")
    parser.add_argument("--sampler", choices=("argmax", "llama"), default="argmax",
                        help="greedy token choice: numpy argmax (Enclave's) or llama.cpp's sampler")
    parser.add_argument("--flash-attn", choices=("auto", "on", "off"), default="auto",
                        help="auto: on when layers run on a GPU (Enclave's default)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--only-processes", action="store_true",
                        help="only the in-process / model host / remote comparison")
    parser.add_argument("--no-remote", action="store_true", help="skip the OpenAI-compatible server")
    args = parser.parse_args(argv)

    model = args.model or default_model_path()
    Generator.greedy_argmax = args.sampler == "argmax"
    generator = Generator(
        model, n_ctx=args.n_ctx, gpu_layers=args.gpu_layers, n_threads=args.threads,
        flash_attn={"auto": None, "on": True, "off": False}[args.flash_attn],
    )
    load_start = time.perf_counter()
    generator.warm_up()
    load_s = time.perf_counter() - load_start

    prompts = []
    for i in range(args.runs):
        question = QUESTIONS[i % len(QUESTIONS)]
        prompt = build_prompt(
            question,
            hits(),
            [],
            generator.prompt_tokens,
            generator.context_size,
            answer_tokens=args.max_tokens,
        )
        prompts.append(prompt)

    if args.only_processes:
        result = {"model": str(model), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                  "runs": args.runs, "max_tokens": args.max_tokens,
                  **compare_processes(generator, prompts, args)}
        return _emit(result, args, generator)

    # Warm-up pass (first-call costs: allocations, GPU kernels), not measured.
    list(generator.stream(prompts[0].messages, max_tokens=8))
    list(generator.stream_chat_completion(prompts[0].messages, max_tokens=8))

    rows = []
    for prompt in prompts:
        # Lean path, cold cache.
        generator.reset_cache()
        s, f, e, lean_text = run_once(generator.stream(prompt.messages, max_tokens=args.max_tokens))
        n_lean = generator.last_stats.generated_tokens
        lean_ttft, lean_rate = f - s, (n_lean - 1) / (e - f) if e > f and n_lean > 1 else None

        # llama-cpp-python's create_chat_completion(stream=True), cold cache.
        reference = generator.stream_chat_completion(prompt.messages, max_tokens=args.max_tokens)
        s, f, e, ref_text = run_once(reference)
        same = ref_text.strip() == lean_text.strip()
        # Same greedy text means the same tokens; otherwise count the reference's tokens.
        n_ref = n_lean if same else len(generator.tokenize(ref_text)) + 1
        ref_ttft, ref_rate = f - s, (n_ref - 1) / (e - f) if e > f and n_ref > 1 else None
        rows.append(
            {
                "prompt_tokens": prompt.prompt_tokens,
                "generated_tokens": n_lean,
                "lean_ttft_s": lean_ttft,
                "lean_tokens_per_s": lean_rate,
                "reference_ttft_s": ref_ttft,
                "reference_tokens_per_s": ref_rate,
                "same_text": same,
            }
        )

    # Lean path, warm: questions one after another, the cache keeps the shared prefix.
    warm_ttft, warm_reused = [], []
    generator.reset_cache()
    list(generator.stream(prompts[-1].messages, max_tokens=4))
    for prompt in prompts:
        stream = generator.stream(prompt.messages, max_tokens=args.max_tokens)
        s, f, e, _ = run_once(stream)
        warm_ttft.append(f - s)
        warm_reused.append(generator.last_stats.reused_tokens)

    # Where the time per token goes: llama.cpp's work vs the Python loop around it.
    overhead = {
        "lean": python_overhead(generator, prompts[0], args.max_tokens, reference=False),
        "create_chat_completion_stream": python_overhead(
            generator, prompts[0], args.max_tokens, reference=True
        ),
    }
    generator.reset_cache()
    answer = "".join(generator.stream(prompts[0].messages, max_tokens=args.max_tokens))
    replay = [t for t in generator.tokenize(answer) if t not in generator._stop_ids] or [28]
    loop_cost = {}
    for max_tokens in (128, 384):
        lean_us = loop_only(generator, prompts[0], replay, max_tokens, reference=False)
        ref_us = loop_only(generator, prompts[0], replay, max_tokens, reference=True)
        loop_cost[f"{max_tokens}_tokens"] = {
            "lean_us_per_token": lean_us,
            "create_chat_completion_stream_us_per_token": ref_us,
            "ratio": round(ref_us / lean_us, 1) if lean_us else None,
        }
    overhead["loop_only_native_calls_stubbed"] = loop_cost
    for entry in (overhead["lean"], overhead["create_chat_completion_stream"]):
        us = entry["python_overhead_us_per_token"]
        # The most tokens/s the loop allows if llama.cpp's own work took no time.
        entry["python_ceiling_tokens_per_s"] = round(1e6 / us) if us > 0 else None

    lean_rate = median(r["lean_tokens_per_s"] for r in rows)
    ref_rate = median(r["reference_tokens_per_s"] for r in rows)
    lean_ttft = median(r["lean_ttft_s"] for r in rows)
    ref_ttft = median(r["reference_ttft_s"] for r in rows)
    result = {
        "model": str(model),
        "model_file_mb": round(model.stat().st_size / 1e6, 1),
        "gpu_layers": generator.info["gpu_layers"],
        "n_ctx": generator.context_size,
        "threads": args.threads,
        "flash_attn": args.flash_attn,
        "sampler": args.sampler,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "runs": args.runs,
        "max_tokens": args.max_tokens,
        "load_s": round(load_s, 3),
        "median_prompt_tokens": median(r["prompt_tokens"] for r in rows),
        "median_generated_tokens": median(r["generated_tokens"] for r in rows),
        "lean": {
            "ttft_cold_s": lean_ttft,
            "ttft_warm_s": median(warm_ttft),
            "median_reused_prompt_tokens_warm": median(warm_reused),
            "decode_tokens_per_s": lean_rate,
        },
        "create_chat_completion_stream": {
            "ttft_cold_s": ref_ttft,
            "decode_tokens_per_s": ref_rate,
        },
        "ratio_decode_lean_over_reference": round(lean_rate / ref_rate, 3)
        if lean_rate and ref_rate
        else None,
        "ratio_ttft_cold_reference_over_lean": round(ref_ttft / lean_ttft, 3)
        if lean_ttft and ref_ttft
        else None,
        "same_text_all_runs": all(r["same_text"] for r in rows),
        "per_token_breakdown": overhead,
        "per_run": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
        ],
    }
    result.update(compare_processes(generator, prompts, args))
    return _emit(result, args, generator)


def _emit(result: dict, args, generator) -> dict:
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    generator.close()
    return result


def _timed(model, prompt, max_tokens: int) -> dict:
    start, first, end, text = run_once(model.stream(prompt.messages, max_tokens=max_tokens))
    n = model.last_stats.generated_tokens
    return {"ttft_s": first - start, "tokens": n, "text": text,
            "tokens_per_s": (n - 1) / (end - first) if end > first and n > 1 else None}


def _side_by_side(a, b, prompts, max_tokens: int) -> dict:
    """Each prompt through both models (warm caches), alternating which goes first."""
    for model in (a, b):  # first-call costs, not measured
        list(model.stream(prompts[0].messages, max_tokens=8))
    runs = {"a": [], "b": []}
    for i, prompt in enumerate(prompts):
        order = (("a", a), ("b", b)) if i % 2 == 0 else (("b", b), ("a", a))
        for name, model in order:
            runs[name].append(_timed(model, prompt, max_tokens))
    same = all(x["text"].strip() == y["text"].strip() for x, y in zip(runs["a"], runs["b"]))
    summary = {}
    for name in ("a", "b"):
        summary[name] = {"decode_tokens_per_s": median(r["tokens_per_s"] for r in runs[name]),
                         "first_token_s": median(r["ttft_s"] for r in runs[name]),
                         "tokens_per_s_each_run": [round(r["tokens_per_s"] or 0, 2) for r in runs[name]]}
    ratio = (summary["b"]["decode_tokens_per_s"] / summary["a"]["decode_tokens_per_s"]
             if summary["a"]["decode_tokens_per_s"] and summary["b"]["decode_tokens_per_s"] else None)
    return {"a": summary["a"], "b": summary["b"], "decode_ratio_b_over_a": round(ratio, 4) if ratio else None,
            "same_text_all_runs": same}


def compare_processes(generator, prompts, args) -> dict:
    """The lean loop in this process vs in the model host; the host vs a remote endpoint."""
    from rag.llm.hosted import HostedModel

    hosted = HostedModel(generator.model_path, n_ctx=args.n_ctx, gpu_layers=args.gpu_layers,
                         n_threads=args.threads, flash_attn=generator.flash_attn)
    hosted.warm_up()
    out = {}
    pair = _side_by_side(generator, hosted, prompts, args.max_tokens)
    out["process_boundary"] = {"in_process": pair["a"], "model_host": pair["b"],
                               "decode_ratio_host_over_in_process": pair["decode_ratio_b_over_a"],
                               "same_text_all_runs": pair["same_text_all_runs"]}
    if not args.no_remote:
        out["remote_endpoint"] = _compare_remote(hosted, prompts, args)
    hosted.close()
    return out


def _compare_remote(hosted, prompts, args) -> dict:
    """llama-cpp-python's server on 127.0.0.1 with the same model file, through RemoteModel."""
    import socket
    import subprocess
    import tempfile

    import httpx

    from rag.llm.remote import RemoteModel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(hosted.model_path), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(args.n_ctx)]
    if args.threads:
        command += ["--n_threads", str(args.threads), "--n_threads_batch", str(args.threads)]
    if args.gpu_layers is not None:
        command += ["--n_gpu_layers", str(args.gpu_layers)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            remote = RemoteModel(f"http://127.0.0.1:{port}", n_ctx=args.n_ctx)
            pair = _side_by_side(hosted, remote, prompts, args.max_tokens)
            remote.close()
        finally:
            server.kill()
            server.wait()
    return {"model_host": pair["a"], "remote_llama_cpp_python_server": pair["b"],
            "decode_ratio_remote_over_host": pair["decode_ratio_b_over_a"],
            "same_text_all_runs": pair["same_text_all_runs"],
            "note": "the server streams through llama-cpp-python's create_chat_completion and SSE"}


if __name__ == "__main__":
    main()
