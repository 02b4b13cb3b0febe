"""`enclave-cli ask` when the model host dies mid-answer: a plain message, exit 1, no traceback;
and the next `ask` answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

LEAVE_POLICY = (
    "Annual leave policy. Every employee receives 28 days of paid annual leave per year, "
    "including public holidays. Up to five unused days may be carried over into the next year "
    "with the written approval of a line manager. Requests for leave longer than two weeks must "
    "be made at least one month in advance.\n"
)
QUESTION = "How many days of paid annual leave do employees get?"
# A question the small model answers at length (its whole 384-token budget), so a signal sent
# once the answer streams lands while the model is still generating.
STORY = (
    "The lighthouse keeper of Skerry Point. For forty years Tomas Brennan kept the light on Skerry "
    "Point, a rock two miles off the coast. Every evening he climbed the one hundred and twelve steps "
    "to light the lamp, wound the clockwork that turned the lens, and wrote the weather in his log. In "
    "the winter of 1952 a storm cut the island off for six weeks; Tomas rationed his flour, burned "
    "driftwood, and never once let the light go out. Ships passing the point would dip their flags to "
    "him. When the light was automated in 1978, Tomas rowed ashore for the last time and the harbour "
    "turned out to meet him.\n"
)
LONG_QUESTION = "Tell the whole story of the lighthouse keeper of Skerry Point in detail."


def children_named(pid: int, needle: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and needle in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def indexed(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave-policy.txt").write_text(LEAVE_POLICY)
    (docs / "lighthouse.txt").write_text(STORY)
    env = dict(os.environ, ENCLAVE_DATA_DIR=str(tmp_path / "data"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "index", str(docs)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return env


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
def test_cli_reports_a_model_crash_and_the_next_question_works(indexed, sig):
    cli = subprocess.Popen([sys.executable, "-m", "rag.cli", "ask", LONG_QUESTION], env=indexed,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The quote comes first (a line and a blank line, before the model reads its prompt);
        # the model's own first piece after it means the answer is streaming.
        quote = cli.stdout.readline()
        assert quote.startswith("\u201c".encode()), quote + cli.stderr.read()
        assert cli.stdout.readline().strip() == b""
        first = cli.stdout.read(1)
        assert first, cli.stderr.read().decode()
        hosts = children_named(cli.pid, "rag.llm.host")
        assert len(hosts) == 1
        # Freeze the host first so the answer cannot finish before the signal lands.
        os.kill(hosts[0], signal.SIGSTOP)
        os.kill(hosts[0], sig)
        os.kill(hosts[0], signal.SIGCONT)
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    err = err.decode()
    assert cli.returncode == 1, err
    assert (f"enclave-cli: The model stopped unexpectedly while answering (signal {int(sig)}). "
            "Enclave restarted it; ask again.") in err
    assert "Traceback" not in err
    assert f"signal {int(sig)} ({sig.name})" in err  # the log line, with the host's last output

    again = subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTION, "--json"], env=indexed,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert '"refused": false' in again.stdout


def test_the_cli_process_never_loads_llama_cpp(indexed):
    code = ("import sys, json; from rag.engine import Engine; e = Engine(); "
            "info = e.load_model(); print(json.dumps(['llama_cpp' in sys.modules, info['where']])); e.close()")
    proc = subprocess.run([sys.executable, "-c", code], env=indexed, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '[false, "this machine"]'
