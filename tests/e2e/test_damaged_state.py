"""Damaged data folders are found at start-up without crashing us, and rebuilt only on request."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rag import health
from rag.engine import Engine


def _cli(data, *args, stdin=None):
    env = dict(os.environ, ENCLAVE_DATA_DIR=str(data))
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, timeout=600)


def test_a_corrupt_store_is_detected_in_a_child_and_rebuilt_only_when_asked(tmp_path, real_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The ferry to Skye leaves at nine.\n")
    (docs / "b.md").write_text("# Lighthouse\n\nThe lighthouse keeper logs the weather hourly.\n")
    data = tmp_path / "data"
    engine = Engine(data, embedder=real_embedder)
    assert engine.index_all([docs]).indexed == 2
    engine.close()
    assert health.check(data) == {"settings": None, "catalog": None, "store": None}

    sqlite = data / "vectors" / "chroma.sqlite3"
    raw = bytearray(sqlite.read_bytes())
    raw[100:4096] = os.urandom(3996)  # the header survives, the first page is garbage
    sqlite.write_bytes(bytes(raw))
    problem = health.probe_store(data)
    assert problem and "damaged" in problem

    refused = _cli(data, "doctor", "--rebuild", stdin="n\n")
    assert refused.returncode == 1 and "Nothing was changed" in refused.stderr
    assert (data / "vectors").exists() and not list(data.glob("vectors.damaged-*"))

    rebuilt = _cli(data, "doctor", "--rebuild", "--yes", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["rebuilt"]["indexed"] == 2
    assert len(list(data.glob("vectors.damaged-*"))) == 1  # moved aside, not deleted
    hits = json.loads(_cli(data, "search", "ferry to Skye", "--json").stdout)
    assert hits[0]["path"].endswith("a.txt")
    assert json.loads(_cli(data, "verify", "--json").stdout)["consistent"]


def test_a_corrupt_catalog_or_settings_file_is_reported_not_fatal(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.toml").write_text("top_k = [unclosed\n")
    (data / "catalog.sqlite3").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    problems = health.check(data)
    assert "settings" in problems["settings"] and "damaged" in problems["catalog"]
    proc = _cli(data, "doctor")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "catalog" in proc.stdout and "settings" in proc.stdout
    assert (data / "catalog.sqlite3").exists()  # nothing deleted
