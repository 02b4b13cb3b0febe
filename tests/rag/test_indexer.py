"""The indexer's incremental contract, on a real Chroma store and catalog with a fake embedder."""

from __future__ import annotations

import os

import pytest

from rag.engine import Engine
from rag.errors import EnclaveError
from tests.fakes import HashEmbedder


class CountingEmbedder(HashEmbedder):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.embedded = 0

    def embed(self, texts):
        self.embedded += len(texts)
        return super().embed(texts)


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"note{i}.txt").write_text(f"Note number {i} mentions the codeword zebra{i} twice: zebra{i}.\n")
    (docs / "sub").mkdir()
    (docs / "sub" / "deep.md").write_text("# Deep\n\nThe deep file talks about quasars and pulsars.\n")
    (docs / ".hidden.txt").write_text("never indexed")
    return docs


@pytest.fixture
def engine(data_dir):
    e = Engine(data_dir, embedder=CountingEmbedder())
    yield e
    e.close()


def _consistent(engine: Engine, collection="default"):
    store_name = engine.catalog.collection(collection)["store_name"]
    ids = set(engine.store.all_ids(store_name))
    catalog_ids = {r[0] for r in engine.catalog.db.execute("SELECT id FROM chunks")}
    fts = engine.catalog.db.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0]
    assert ids == catalog_ids
    assert fts == len(catalog_ids)
    assert not engine.catalog.pending_deletes()


def test_second_run_embeds_nothing_and_reports_every_file_unchanged(engine, folder):
    first = engine.index_all([folder])
    assert first.indexed == 6 and first.unchanged == 0 and first.chunks_added >= 6
    assert not first.failed and not first.skipped
    embedded = engine.embedder.embedded
    second = engine.index_all([folder])
    assert second.indexed == 0 and second.unchanged == 6 and second.chunks_added == 0
    assert engine.embedder.embedded == embedded
    _consistent(engine)


def test_touching_a_file_without_changing_it_costs_a_hash_not_an_embedding(engine, folder):
    engine.index_all([folder])
    embedded = engine.embedder.embedded
    os.utime(folder / "note1.txt", ns=(1, 1))
    report = engine.index_all([folder])
    assert report.unchanged == 6 and engine.embedder.embedded == embedded


def test_a_changed_file_alone_is_reindexed_and_its_old_text_is_gone(engine, folder):
    engine.index_all([folder])
    assert engine.search("zebra3", k=1)[0].path.endswith("note3.txt")
    (folder / "note3.txt").write_text("Note three now speaks only of giraffes.\n")
    report = engine.index_all([folder])
    assert report.indexed == 1 and report.unchanged == 5 and report.chunks_removed >= 1
    assert not [h for h in engine.search("zebra3", k=10) if "zebra3" in h.text]
    assert engine.search("giraffes", k=1)[0].path.endswith("note3.txt")
    _consistent(engine)


def test_a_deleted_file_loses_its_chunks_everywhere(engine, folder):
    engine.index_all([folder])
    (folder / "sub" / "deep.md").unlink()
    report = engine.index_all([folder])
    assert report.removed_documents == 1 and report.chunks_removed >= 1
    assert all("quasars" not in h.text for h in engine.search("quasars pulsars", k=10))
    assert not [d for d in engine.documents() if d.path.endswith("deep.md")]
    _consistent(engine)


def test_remove_forgets_a_document(engine, folder):
    engine.index_all([folder])
    removed = engine.remove([folder / "note0.txt"])
    assert removed == [str((folder / "note0.txt").resolve())]
    assert all("zebra0" not in h.text for h in engine.search("zebra0", k=10))
    _consistent(engine)


def test_bad_files_are_reported_and_the_batch_goes_on(engine, folder):
    (folder / "broken.pdf").write_bytes(b"this is not a pdf at all")
    (folder / "slides.pptx").write_bytes(b"PK\x03\x04")
    (folder / "slides.key").write_bytes(b"PK\x03\x04")
    (folder / "empty.txt").write_text("")
    report = engine.index_all([folder])
    assert report.indexed == 6
    failed = {os.path.basename(f["path"]): f["reason"] for f in report.failed}
    skipped = {os.path.basename(f["path"]): f["reason"] for f in report.skipped}
    assert set(failed) == {"broken.pdf", "slides.pptx"} and "PDF" in failed["broken.pdf"]
    assert "PowerPoint" in failed["slides.pptx"]
    assert set(skipped) == {"slides.key", "empty.txt"}
    assert ".key" in skipped["slides.key"]
    states = {os.path.basename(d.path): d.state for d in engine.documents()}
    assert states["broken.pdf"] == "failed" and states["note0.txt"] == "indexed"


def test_a_different_embedding_model_rebuilds_instead_of_mixing_vectors(engine, folder, data_dir):
    engine.index_all([folder])
    engine.close()
    other = Engine(data_dir, embedder=CountingEmbedder(name="another-model", dim=32))
    with pytest.raises(EnclaveError, match="another-model|indexed with"):
        other.search("zebra1")
    report = other.index_all([folder / "note1.txt"])  # any run on the collection rebuilds all of it
    assert report.indexed == 6 and other.embedder.embedded >= 6
    row = other.catalog.collection("default")
    assert (row["embed_model"], row["embed_dim"]) == ("another-model", 32)
    assert other.search("zebra1", k=1)[0].path.endswith("note1.txt")
    _consistent(other)
    other.close()


def test_collections_are_separate(engine, folder):
    engine.index_all([folder / "note1.txt"], collection="work")
    engine.index_all([folder / "note2.txt"], collection="home")
    assert [h.path for h in engine.search("zebra1", "home", k=5) if "zebra1" in h.text] == []
    assert engine.search("zebra1", "work", k=1)[0].path.endswith("note1.txt")
    assert engine.collections() == ["home", "work"]


def test_missing_path_is_an_error_before_anything_happens(engine, tmp_path):
    with pytest.raises(EnclaveError, match="No such file"):
        engine.index_all([tmp_path / "nope"])


def test_collections_can_be_renamed_and_deleted_with_their_vectors(engine, folder):
    engine.index_all([folder], collection="work")
    store_name = engine.catalog.collection("work")["store_name"]
    engine.rename_collection("work", "projects")
    assert engine.collections() == ["projects"]
    assert engine.search("zebra2", "projects", k=1)[0].path.endswith("note2.txt")
    with pytest.raises(EnclaveError, match="already exists"):
        engine.create_collection("projects")
    assert engine.delete_collection("projects") == 6
    assert engine.collections() == [] and engine.documents() == []
    assert engine.catalog.db.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0] == 0
    assert store_name not in [c.name for c in engine.store.client.list_collections()]


def test_document_text_matches_chunk_offsets(engine, folder):
    engine.index_all([folder])
    hit = engine.search("quasars", k=1)[0]
    text = engine.document_text(hit.path)
    assert text[hit.char_start : hit.char_end] == hit.text


def test_the_welcome_guide_is_indexed_once(engine):
    report = engine.ensure_welcome()
    assert report is not None and report.indexed >= 1 and not report.failed
    assert "Welcome" in engine.collections()
    assert engine.ensure_welcome() is None


def test_a_second_writer_is_refused_with_the_holder_named_and_readers_still_work(engine, folder, data_dir):
    from rag.errors import IndexLocked

    engine.index_all([folder])
    other = Engine(data_dir, embedder=CountingEmbedder())
    with pytest.raises(IndexLocked, match=f"in use by process {os.getpid()}"):
        other.index_all([folder])
    assert other.search("zebra4", k=1)[0].path.endswith("note4.txt")  # reading needs no lock
    engine.close()
    assert other.index_all([folder]).unchanged == 6  # the lock went with its holder
    other.close()


def test_cli_reports_locked_and_damaged_indexes_in_one_line(engine, folder, data_dir, tmp_path):
    import subprocess
    import sys

    engine.index_all([folder])  # this process now holds the writer lock
    env = dict(os.environ, ENCLAVE_DATA_DIR=str(data_dir))
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "remove", str(folder / "note1.txt")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "in use by process" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "catalog.sqlite3").write_bytes(b"this is not a database" * 100)
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "docs", "--data-dir", str(damaged)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "damaged" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_verify_finds_and_repairs_missing_orphan_and_fts_damage(engine, folder):
    engine.index_all([folder])
    assert engine.verify()["consistent"]
    store_name = engine.catalog.collection("default")["store_name"]
    some = sorted(engine.store.all_ids(store_name))[:2]
    engine.store.delete(store_name, some)  # vectors lost
    engine.store.add(store_name, ["stray-1"], engine.embedder.embed(["stray"]), [{"path": "/nowhere"}])
    engine.catalog.db.execute("DELETE FROM chunks_fts_data WHERE id > 10")  # FTS damaged
    report = engine.verify()
    entry = report["collections"][0]
    assert not report["consistent"] and (entry["missing_vectors"], entry["orphan_vectors"]) == (2, 1)
    assert not report["fts_consistent"]
    repaired = engine.verify(repair=True)
    assert repaired["consistent"] and repaired["fts_consistent"]
    assert engine.verify()["consistent"]
    assert engine.search("zebra1", k=1)[0].path.endswith("note1.txt")


def test_vectors_written_before_an_interrupted_commit_are_taken_back(engine, folder):
    engine.index_all([folder])
    store_name = engine.catalog.collection("default")["store_name"]
    # What a kill between the Chroma write and the catalog commit leaves behind:
    with engine.catalog.transaction():
        engine.catalog.journal_adds(store_name, ["new-0", "new-1"])
    engine.store.add(store_name, ["new-0", "new-1"], engine.embedder.embed(["a", "b"]), [{"path": "x"}] * 2)
    report = engine.verify()
    assert report["recovered"]["vectors_taken_back"] == 2 and report["consistent"]
    assert "new-0" not in engine.store.all_ids(store_name)


def test_every_hit_carries_its_cosine_even_when_only_bm25_found_it(engine, folder):
    engine.index_all([folder])
    hits = engine.search("zebra3", k=5)
    assert hits and all(h.vector_score is not None for h in hits)
    assert all(-1.0 <= h.vector_score <= 1.0 for h in hits)
