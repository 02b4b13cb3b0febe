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


def test_kills_at_random_moments_leave_a_consistent_index_that_resumes(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for rel in FILES:
        shutil.copy(require(CORPUS / rel), folder)

    reference = tmp_path / "reference"
    started = time.monotonic()
    assert _run(reference, "index", str(folder), "--json").returncode == 0
    duration = time.monotonic() - started
    expected = _chunks(reference)
    assert expected > 100

    data = tmp_path / "data"
    rng = random.Random(20261122)
    kills = 0
    for _ in range(3):
        cmd, env = _cli(data, "index", str(folder), "--json")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Early in the run: each resumed run has less left to do than the one before.
        time.sleep(rng.uniform(0.3, 0.55) * duration)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(60)
        check = _run(data, "verify", "--json")
        report = json.loads(check.stdout)
        assert check.returncode == 0 and report["consistent"], report
    assert kills >= 2, f"the kills must land while indexing runs (a whole run took {duration:.1f} s)"

    final = _run(data, "index", str(folder), "--json")
    assert final.returncode == 0, final.stderr
    assert _chunks(data) == expected
    report = json.loads(_run(data, "verify", "--json").stdout)
    assert report["consistent"] and report["collections"][0]["vectors"] == expected
