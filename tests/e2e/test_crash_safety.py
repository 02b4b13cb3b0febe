"""SIGKILL during indexing, at several random moments: the index stays consistent and resumes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from tests.conftest import CORPUS, require

FILES = [
    "pdf/026-latex-multicolumn/multicolumn.pdf",
    "pdf/004-pdflatex-4-pages/pdflatex-4-pages.pdf",
    "pdf/021-pdfa/crazyones-pdfa.pdf",
    "office/norwich-city.txt",
    "office/example-10k-1p.html",
    "office/fake-doc-emphasized-text.docx",
]


def _cli(data, *args):
    env = dict(os.environ, ENCLAVE_DATA_DIR=str(data))
    return [sys.executable, "-m", "rag.cli", *args], env


def _run(data, *args) -> subprocess.CompletedProcess:
    cmd, env = _cli(data, *args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _chunks(data) -> int:
    return sum(d["chunks"] for d in json.loads(_run(data, "docs", "--json").stdout))


def _cpu_s(pid: int) -> float | None:
    """CPU seconds a process has used so far (user + system), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_watching_cpu(data, *args) -> float:
    """Run the CLI to the end; return the CPU seconds its own process used."""
    cmd, env = _cli(data, *args)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    used = 0.0
    while proc.poll() is None:
        used = max(used, _cpu_s(proc.pid) or 0.0)
        time.sleep(0.02)
    assert proc.returncode == 0
    return used


def test_kills_at_random_moments_leave_a_consistent_index_that_resumes(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for rel in FILES:
        shutil.copy(require(CORPUS / rel), folder)

    reference = tmp_path / "reference"
    work = _run_watching_cpu(reference, "index", str(folder), "--json")
    expected = _chunks(reference)
    assert expected > 100

    data = tmp_path / "data"
    rng = random.Random(20261122)
    kills = 0
    for _ in range(3):
        cmd, env = _cli(data, "index", str(folder), "--json")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The kill lands on work done, not on a clock (the machine's load varies): once the run
        # has used a random share of the CPU time a whole run needs. Vectors are committed in
        # batches, so a killed run may leave its work half written, never half committed.
        target = rng.uniform(0.25, 0.6) * work
        while proc.poll() is None and (_cpu_s(proc.pid) or 0.0) < target:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(60)
        check = _run(data, "verify", "--json")
        report = json.loads(check.stdout)
        assert check.returncode == 0 and report["consistent"], report
    assert kills >= 2, f"the kills must land while indexing runs (a whole run used {work:.1f} s of CPU)"

    final = _run(data, "index", str(folder), "--json")
    assert final.returncode == 0, final.stderr
    assert _chunks(data) == expected
    report = json.loads(_run(data, "verify", "--json").stdout)
    assert report["consistent"] and report["collections"][0]["vectors"] == expected
