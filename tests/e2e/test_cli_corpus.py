"""The CLI contract end to end: real files, the real embedding model, a real Chroma store.

The corpus is indexed once per module through `enclave-cli` in a subprocess, exactly as a
user would run it; the tests then read the reports and the catalog.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.engine import Engine
from tests.conftest import CORPUS, require

PDF = CORPUS / "pdf"
STATES = {"indexed", "skipped", "failed"}


def cli(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, ENCLAVE_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=env, timeout=1800
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"enclave-cli {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def as_json(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def pdf_index(tmp_path_factory):
    """The PDF corpus indexed twice (the second time must be free), plus a password file."""
    require(PDF)
    data = tmp_path_factory.mktemp("pdf-data")
    first = as_json(cli("index", str(PDF), "--json", data_dir=data))
    second = as_json(cli("index", str(PDF), "--json", data_dir=data))
    return data, first, second


def ground_truth() -> dict[str, dict]:
    entries = json.loads((PDF / "files.json").read_text())["data"]
    return {str((PDF / e["path"]).resolve()): e for e in entries if (PDF / e["path"]).exists()}


def test_every_pdf_records_its_true_page_count(pdf_index):
    data, first, _ = pdf_index
    docs = {d["path"]: d for d in as_json(cli("docs", "--json", data_dir=data))}
    truth = ground_truth()
    assert len(truth) >= 30
    for path, entry in truth.items():
        assert docs[path]["pages"] == entry["pages"], path
        if entry["encrypted"]:
            assert docs[path]["state"] == "failed" and docs[path]["reason"].startswith("password required")
        else:
            assert docs[path]["state"] in {"indexed", "skipped"}, (path, docs[path])
    assert first["indexed"] >= 25
    assert [f["path"] for f in first["failed"]] == [p for p, e in truth.items() if e["encrypted"]]


def test_a_second_run_embeds_nothing(pdf_index):
    _, first, second = pdf_index
    assert second["chunks_added"] == 0 and second["indexed"] == 0
    assert second["unchanged"] == first["indexed"]
    assert second["stages"]["embed"] == 0


def test_the_encrypted_pdf_indexes_with_its_password(pdf_index, tmp_path):
    data, _, _ = pdf_index
    secret = tmp_path / "passwords.txt"
    secret.write_text("wrong-one\nopenpassword\n")
    target = PDF / "005-libreoffice-writer-password"
    report = as_json(cli("index", str(target), "--password-file", str(secret), "--json", data_dir=data))
    assert report["indexed"] == 1 and not report["failed"]
    docs = {d["path"]: d for d in as_json(cli("docs", "--json", data_dir=data))}
    doc = docs[str(next(target.glob("*.pdf")).resolve())]
    assert doc["state"] == "indexed" and doc["chunks"] >= 1


def test_search_for_a_phrase_finds_its_file_and_page(pdf_index):
    data, _, _ = pdf_index
    # From page 3 of the 4-page pdflatex sample, and from the two-column paper.
    from rag.ingest.loaders import load

    for rel, page in [("004-pdflatex-4-pages/pdflatex-4-pages.pdf", 3), ("026-latex-multicolumn/multicolumn.pdf", 2)]:
        document = load(PDF / rel)
        text = document.pages[page - 1].text
        words = text.split()
        phrase = " ".join(words[len(words) // 2 : len(words) // 2 + 12])
        hits = as_json(cli("search", phrase, "-k", "3", "--json", data_dir=data))
        assert hits, phrase
        assert hits[0]["path"] == str((PDF / rel).resolve()) and hits[0]["page"] == page, (phrase, hits[0])
        assert set(hits[0]) == {"path", "page", "unit", "chunk_id", "text", "score", "rank", "relevance"}
        assert hits[0]["unit"] is None  # a PDF page is cited by its page alone


def test_editing_and_deleting_files_updates_the_index(tmp_path, real_embedder):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ["001-trivial/minimal-document.pdf", "004-pdflatex-4-pages/pdflatex-4-pages.pdf"]:
        shutil.copy(require(PDF / name), folder)
    (folder / "memo.txt").write_text("The aardvark budget for 2027 is forty-two thousand crowns.\n")
    engine = Engine(tmp_path / "data", embedder=real_embedder)
    first = engine.index_all([folder])
    assert first.indexed == 3
    assert engine.search("aardvark budget")[0].path.endswith("memo.txt")

    (folder / "memo.txt").write_text("The okapi budget for 2027 is seven crowns.\n")
    changed = engine.index_all([folder])
    assert (changed.indexed, changed.unchanged) == (1, 2)
    assert changed.chunks_removed >= 1
    assert not [h for h in engine.search("aardvark", k=10) if "aardvark" in h.text]

    (folder / "memo.txt").unlink()
    gone = engine.index_all([folder])
    assert gone.removed_documents == 1
    assert not [h for h in engine.search("okapi budget", k=10) if "okapi" in h.text]
    assert len(engine.documents()) == 2
    engine.close()

    removed = cli("remove", str(folder / "minimal-document.pdf"), "--json", data_dir=tmp_path / "data")
    assert as_json(removed)["removed"] == [str((folder / "minimal-document.pdf").resolve())]
    assert len(as_json(cli("docs", "--json", data_dir=tmp_path / "data"))) == 1


# The two largest office files (a 3.2 MB novel, an 872-page handbook) add 6,000 chunks and
# minutes of embedding; their loading is covered in tests/rag/test_loaders.py and the whole
# folder by benchmarks/index_speed.py.
BIG = shutil.ignore_patterns("book-war-and-peace-1225p.txt", "handbook-872p.docx")


@pytest.mark.slow
@pytest.mark.parametrize("group", ["pdf-encrypted", "office"])
def test_every_file_of_a_group_ends_in_one_state(group, tmp_path, real_embedder):
    folder = tmp_path / group
    shutil.copytree(require(CORPUS / group), folder, ignore=BIG)
    engine = Engine(tmp_path / "data", embedder=real_embedder)
    report = engine.index_all([folder]).to_json()
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    accounted = report["indexed"] + report["unchanged"] + len(report["skipped"]) + len(report["failed"])
    assert accounted == len(files)
    docs = [d.to_json() for d in engine.documents()]
    assert len(docs) == len(files) and {d["state"] for d in docs} <= STATES
    for d in docs:
        if d["state"] != "indexed":
            assert d["reason"], d
    if group == "pdf-encrypted":
        failed = {Path(f["path"]).name for f in report["failed"]}
        assert failed and all(n.endswith(("user-password.pdf", "both-passwords.pdf", "256.pdf", "encrypted-file.pdf")) for n in failed)
        assert "unencrypted.pdf" not in failed and "r2-empty-password.pdf" not in failed
    else:
        from rag.ingest.loaders import registry

        # No file of a format the registry lists is turned away as unsupported.
        unsupported = [f for f in report["skipped"] if f["reason"].startswith("unsupported file type")]
        assert all(Path(f["path"]).suffix.lower() not in registry.SUPPORTED_SUFFIXES for f in unsupported)
        by_suffix: dict[str, list] = {}
        for d in docs:
            by_suffix.setdefault(Path(d["path"]).suffix.lower(), []).append(d)
        for suffix in (".pptx", ".odt", ".epub", ".csv", ".rst"):  # office/ has no .eml (eml/ holds a .txt)
            indexed = [d for d in by_suffix[suffix] if d["state"] == "indexed" and d["chunks"] > 0]
            assert indexed, suffix
            for d in by_suffix[suffix]:  # two decks hold nothing but a picture
                assert d in indexed or d["reason"].startswith("no text found"), d
        names = {Path(d["path"]).name: d for d in docs}
        assert names["fake-power-point-malformed.pptx"]["state"] == "indexed"  # a placeholder without a position
        assert report["indexed"] >= 80


def test_usage_and_environment_errors_exit_non_zero_with_one_line(tmp_path):
    proc = cli("index", str(tmp_path / "missing"), data_dir=tmp_path / "d", check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "No such file" in proc.stderr
    proc = cli("search", "x", "-k", "0", data_dir=tmp_path / "d", check=False)
    assert proc.returncode == 2
    # --data-dir and --json are accepted after the subcommand as well as before it.
    proc = cli("--json", "docs", "--data-dir", str(tmp_path / "other"), data_dir=tmp_path / "d")
    assert json.loads(proc.stdout) == [] and (tmp_path / "other" / "catalog.sqlite3").exists()
