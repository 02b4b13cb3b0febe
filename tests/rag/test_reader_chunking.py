"""Reader processes chunk with the embedding model's own tokenizer, and get the same chunks."""

import os

import pytest

from rag.ingest.chunking import ChunkPlan, Chunker, FileTokenizer
from rag.ingest.parsing import ParseLimits, ParsePool
from rag.types import PageText

TEXTS = [
    "Plain ASCII words, numbers 1,234.5 and punctuation; (brackets) [too].",
    "Café naïve façade — Ærøskøbing, Straße, 東京 and emoji 😀 mixed with CamelCaseWords.",
    "   leading and trailing spaces   ",
    "",
    "x" * 3000,  # one very long word: many word pieces
]


@pytest.fixture(scope="module")
def tokenizer_file(real_embedder):
    plan = ChunkPlan.for_model(real_embedder.model_path, 200, 40)
    assert plan is not None, "the bundled model ships a tokenizer.json"
    return plan.tokenizer_file


def test_file_tokenizer_counts_and_offsets_match_the_embedder(real_embedder, tokenizer_file):
    tok = FileTokenizer(tokenizer_file)
    assert tok.count(TEXTS) == real_embedder.count(TEXTS)
    for text in TEXTS:
        assert tok.offsets(text) == real_embedder.offsets(text)


def test_no_plan_without_a_tokenizer_file(tmp_path):
    assert ChunkPlan.for_model(tmp_path, 200, 40) is None
    assert ChunkPlan.for_model(None, 200, 40) is None


def test_reader_chunks_equal_chunks_made_here(real_embedder, tokenizer_file, tmp_path):
    paragraph = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(400))
    path = tmp_path / "long.md"
    path.write_text("# Title\n\n" + paragraph + "\n\nA closing paragraph.\n", encoding="utf-8")
    plan = ChunkPlan(tokenizer_file, 120, 20)
    with ParsePool() as pool:
        [(key, document, chunked)] = list(pool.map([("k", str(path), [], plan, "pre")]))
    assert key == "k" and chunked is not None
    chunks, seconds = chunked
    here = Chunker(real_embedder, 120, 20).chunk(document.pages, "pre")
    assert len(chunks) > 5 and seconds >= 0
    assert chunks == here
    assert all(c.tokens <= 120 for c in chunks)


def test_without_a_plan_readers_do_not_chunk(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello there\n", encoding="utf-8")
    with ParsePool() as pool:
        [(_, document, chunked)] = list(pool.map([("k", str(path), [])]))
    assert chunked is None and document.pages[0].text.startswith("hello")


def test_a_broken_tokenizer_fails_the_file_not_the_batch(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json", encoding="utf-8")
    good = tmp_path / "a.txt"
    good.write_text("some words\n", encoding="utf-8")
    plan = ChunkPlan(str(bad), 50, 5)
    with ParsePool() as pool:
        results = {key: (doc, chunked) for key, doc, chunked in pool.map(
            [("bad", str(good), [], plan, "p"), ("plain", str(good), [])])}
    assert "could not be read" in str(results["bad"][0])
    assert results["plain"][1] is None and results["plain"][0].pages


def test_the_reading_limit_does_not_cut_off_chunking_a_big_document(tokenizer_file, tmp_path, monkeypatch):
    # Read in milliseconds, chunked in about 4 s here: the 2 s limit is for reading only.
    import rag.ingest.parsing

    monkeypatch.setattr(rag.ingest.parsing, "CHUNK_TIME_FACTOR", 1000)
    path = tmp_path / "big.txt"
    paragraph = " ".join(f"Line {i} of a long and perfectly ordinary report." for i in range(40))
    path.write_text("\n\n".join(paragraph for _ in range(800)), encoding="utf-8")
    plan = ChunkPlan(tokenizer_file, 200, 40)
    with ParsePool(ParseLimits(seconds=2.0)) as pool:
        [(_, document, chunked)] = list(pool.map([("k", str(path), [], plan, "big")]))
    assert chunked is not None, document
    assert len(chunked[0]) > 500


def test_a_reader_that_hangs_while_chunking_is_stopped_with_its_own_reason(tmp_path, monkeypatch):
    import rag.ingest.parsing

    monkeypatch.setattr(rag.ingest.parsing, "CHUNK_TIME_FACTOR", 2)
    path = tmp_path / "a.txt"
    path.write_text("words\n", encoding="utf-8")
    # A tokenizer file that never finishes loading: a FIFO nobody writes to.
    fifo = tmp_path / "tokenizer.json"
    os.mkfifo(fifo)
    plan = ChunkPlan(str(fifo), 50, 5)
    with ParsePool(ParseLimits(seconds=3.0)) as pool:
        [(_, error, chunked)] = list(pool.map([("k", str(path), [], plan, "p")]))
    assert chunked is None
    assert "took longer than 6 s to cut into chunks" in str(error)
