"""The installed llama.cpp runs on any x86-64 CPU with AVX2 (or any arm64 CPU).

A build made with -march=native turns on the kernels of the build machine's CPU. Some VMs
advertise AMX that their OS does not enable: that build then dies on the first prompt of
more than a few tokens. These tests would have failed on such a build.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import llama_cpp


def test_the_library_was_built_without_machine_specific_kernels():
    info = llama_cpp.llama_print_system_info().decode()
    assert "CPU :" in info
    for feature in ("AMX", "AVX512", "AVX_VNNI"):
        assert feature not in info, f"{feature} kernels were compiled in: {info}"
    if platform.machine() in ("x86_64", "AMD64"):
        assert "AVX2 = 1" in info and "FMA = 1" in info  # the portable baseline is still fast


def test_a_64_token_prompt_decodes_in_a_child_process():
    # In a child: on a bad build the fault would otherwise take the test run down.
    code = textwrap.dedent("""
        from rag.llm.bundled import default_model_path
        from rag.llm.llama import InProcessModel

        model = InProcessModel(default_model_path(), n_ctx=512)
        messages = [{"role": "user", "content": " ".join(["word"] * 64) + " Say hello."}]
        assert model.prompt_tokens(messages) >= 64
        text = "".join(model.stream(messages, 16))
        assert model.last_stats.generated_tokens > 0, text
        print("decoded", model.last_stats.prompt_tokens, model.last_stats.generated_tokens)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.startswith("decoded")
