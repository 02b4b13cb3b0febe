"""Whole-document tasks (rag/documents/): summaries and comparisons on a real store with the
real embedder. The map-reduce's control flow (parts, Stop, the cache) runs on a fake model
that cites its first source, so it is exact and quick; one test runs the bundled model."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rag.documents.compare import normal
from rag.documents.intent import document_intent, match_document
from rag.documents.mapreduce import PartProgress, plan_groups
from rag.documents.sentences import join_hyphenated
from rag.documents.summary import Summary
from rag.engine import Engine
from rag.errors import EnclaveError
from rag.llm.base import StreamStats
from tests.conftest import CORPUS, ROOT, require

PDF4 = CORPUS / "pdf" / "004-pdflatex-4-pages" / "pdflatex-4-pages.pdf"
SHEET = CORPUS / "formats" / "stanley-cups.xlsx"
SCAN = CORPUS / "scanned" / "ocr_test.pdf"

TOPICS = ["harbour", "orchard", "glacier", "railway", "library", "vineyard", "lighthouse", "quarry",
          "meadow", "foundry", "monastery", "canal"]


def long_text(parts: int = 12) -> str:
    """A report of distinct sections, each with its own topic words."""
    out = []
    for n, topic in enumerate(TOPICS[:parts]):
        out.append(f"Section {n + 1}: the {topic}\n\n"
                   f"The {topic} was built in {1800 + 7 * n} by the town council. "
                   f"Visitors to the {topic} counted {120 + n} in the first spring. "
                   f"The {topic} needs repairs costing {30 + n} thousand euros every decade. "
                   f"Local schools take pupils to the {topic} to learn its history.")
    return "\n\n".join(out) + "\n"


class FakeModel:
    """Stands in for the chat model: a bullet per step, the first sentence of its first
    source or note, cited [1]. Records every prompt; `context` sets the context size."""

    def __init__(self, context: int = 700):
        self.context = context
        self.prompts: list[list[dict]] = []
        self.last_stats = StreamStats()
        self.info = {"where": "fake", "path": "/fake/model.gguf"}
        self.loaded = True

    @property
    def context_size(self) -> int:
        return self.context

    def prepare(self):
        pass

    def warm_up(self):
        pass

    def close(self):
        pass

    def prompt_tokens(self, messages):
        return sum(len(re.findall(r"\w+|[^\w\s]", m["content"])) for m in messages)

    def stream(self, messages, max_tokens, temperature=0.0, should_stop=None, refuse_at=None):
        self.prompts.append(messages)
        body = re.search(r"<(?:source|note|difference)[^>]*>\n(.*?)\n</", messages[-1]["content"], re.S).group(1)
        body = body.split("B says:")[-1]  # a difference: what the new version says
        first = re.split(r"(?<=[.!?])\s", " ".join(body.split()))[0]
        for piece in (f"- {first}", " [1]\n"):
            if should_stop and should_stop():
                return
            yield piece


@pytest.fixture(scope="module")
def engine(tmp_path_factory, real_embedder):
    report = tmp_path_factory.mktemp("files")
    (report / "report.txt").write_text(long_text())
    (report / "empty.txt").write_text("")
    e = Engine(tmp_path_factory.mktemp("data"), embedder=real_embedder)
    paths = [require(PDF4), require(SHEET), report / "report.txt", report / "empty.txt"]
    e.index_all(paths)
    e.files = report  # where the test's own documents are
    yield e
    e.close()


def run(generator):
    events = list(generator)
    return events, events[-1]


# --- the extractive summary ------------------------------------------------------------------


def test_a_pdf_is_summarized_verbatim_in_order_with_every_page_range_represented(engine):
    events, result = run(engine.summarize(PDF4, use_model=False))
    assert isinstance(result, Summary) and result.final and result.summary is None
    items = result.extractive
    assert len(items) >= 3
    chunks = {c.id: c for c in engine.local.document_chunks(engine.local.document("default", str(PDF4)))}
    for item in items:
        src = item["source"]
        chunk = chunks[src["chunk_id"]]
        # Verbatim: the sentence is where the citation says, in the stored chunk.
        assert join_hyphenated(chunk.text[src["support"]["start"]:src["support"]["end"]]) == item["text"]
        assert src["support"]["text"] == chunk.text[src["support"]["start"]:src["support"]["end"]]
        assert src["path"] == str(PDF4) and src["page"] in (1, 2, 3, 4)
    starts = [chunks[i["source"]["chunk_id"]].char_start + i["source"]["support"]["start"] for i in items]
    assert starts == sorted(starts)  # document order
    pages = {i["source"]["page"] for i in items}
    assert len(pages) >= 3, pages  # the whole document, not its opening
    assert result.coverage >= 0.5
    assert len({normal(i["text"]) for i in items}) == len(items)


def test_a_long_summary_has_more_lines_than_a_short_one_and_no_repeats(engine):
    _, short = run(engine.summarize(engine.files / "report.txt", "short", use_model=False))
    _, long = run(engine.summarize(engine.files / "report.txt", "long", use_model=False))
    assert len(long.extractive) > len(short.extractive)
    topics = {t for i in long.extractive for t in TOPICS if t in i["text"]}
    # Sections across the whole report, its opening, middle and end.
    assert len(topics) >= 5 and topics & set(TOPICS[:4]) and topics & set(TOPICS[4:8]) and topics & set(TOPICS[8:])
    texts = [i["text"] for i in long.extractive]
    assert len(set(texts)) == len(texts)


HYPHENATED = ("The annual docu-\nment was signed by the whole com-\nmittee in May.\n"
              "The Anglo-\nSaxon archive keeps a copy of every single page.\n"
              "Each of the COVID-\n19 wards reported to the board every week.\n"
              "The board met 12 times in the year and kept minutes of each meeting.\n")


def test_quotes_join_a_word_a_line_break_hyphenated_and_keep_real_hyphens(engine, tmp_path):
    a, b = tmp_path / "minutes-a.txt", tmp_path / "minutes-b.txt"
    a.write_text(HYPHENATED)
    # The same text without the line breaks (as a DOCX revision has it), one number changed.
    b.write_text(HYPHENATED.replace("-\n", "-").replace("docu-ment", "document").replace("com-mittee", "committee")
                 .replace("met 12 times", "met 14 times"))
    engine.index_all([a, b])
    _, result = run(engine.summarize(a, "long", use_model=False))
    quoted = " ".join(i["text"] for i in result.extractive)
    assert "The annual document was signed by the whole committee in May." in quoted
    assert "The Anglo-Saxon archive" in quoted and "COVID-19 wards" in quoted
    assert "-\n" not in quoted
    for item in result.extractive:  # the viewer still finds the verbatim text in its chunk
        support = item["source"]["support"]
        assert item["source"]["text"][support["start"]:support["end"]] == support["text"]
    _, compared = run(engine.compare(a, b, use_model=False))
    # A word broken at a line end is the same word: only the number changed.
    assert not compared.added and not compared.removed and len(compared.changed) == 1
    change = compared.changed[0]
    assert "12 times" in change["before"]["text"] and "14 times" in change["after"]["text"]
    _, reverse = run(engine.compare(b, a, use_model=False))
    assert [c["after"]["text"] for c in reverse.changed] == [change["before"]["text"]]


def test_a_spreadsheet_summary_cites_its_rows(engine):
    _, result = run(engine.summarize(SHEET, use_model=False))
    assert result.extractive
    for item in result.extractive:
        assert re.search(r"sheet '.+', rows? \d+", item["source"]["unit"]), item["source"]
        assert "|" in item["text"]
    assert not any(i["text"].startswith("Team | Location") for i in result.extractive)  # the header says nothing


def test_a_scanned_pdf_is_summarized_from_its_ocr_text(engine):
    engine.index_all([require(SCAN)])
    _, result = run(engine.summarize(SCAN, use_model=False))
    assert result.extractive and result.extractive[0]["source"]["page"] == 1
    assert "Docling bundles PDF document conversion" in " ".join(result.extractive[0]["text"].split())


# --- what cannot be summarized ---------------------------------------------------------------


def test_documents_that_cannot_be_summarized_say_why(engine, tmp_path):
    with pytest.raises(EnclaveError, match="no text|holds no text"):
        engine.summarize(engine.files / "empty.txt")
    stray = tmp_path / "never.txt"
    stray.write_text("Never indexed.")
    with pytest.raises(EnclaveError, match="not indexed"):
        engine.summarize(stray, use_model=False)
    with pytest.raises(EnclaveError, match="No such file"):
        engine.summarize(tmp_path / "nowhere.pdf", use_model=False)
    with pytest.raises(EnclaveError, match="short or long"):
        engine.summarize(PDF4, "medium", use_model=False)


def test_a_document_still_indexing_is_not_summarized(engine, tmp_path):
    path = tmp_path / "busy.txt"
    path.write_text("Being read right now.")
    engine.local.record_outcome("default", str(path.resolve()), state="stale", reason=None, content_hash=None,
                                size=None, mtime_ns=None, pages=None)
    with pytest.raises(EnclaveError, match="still being indexed"):
        engine.summarize(path, use_model=False)


def test_a_removed_document_is_gone_and_a_deleted_file_is_summarized_as_indexed(engine, tmp_path):
    path = tmp_path / "memo.txt"
    path.write_text("The memo says the office moves to the harbour in May. Every team packs its own boxes.")
    engine.index_all([path])
    path.unlink()  # the file is gone, its index remains: summarized as it was, and said so
    _, result = run(engine.summarize(path, use_model=False))
    assert "harbour" in result.extractive[0]["text"]
    assert any("no longer on disk" in w for w in result.warnings)
    engine.remove([path])
    with pytest.raises(EnclaveError, match="no indexed document|not indexed"):
        engine.summarize(path, use_model=False)


# --- the model summary: map-reduce, Stop, cache ------------------------------------------------


def test_a_document_larger_than_the_context_is_mapped_and_reduced_with_cited_checked_bullets(engine, tmp_path):
    engine._chat_model = fake = FakeModel(context=700)
    try:
        events, result = run(engine.summarize(engine.files / "report.txt"))
    finally:
        engine._chat_model = None
    progress = [e for e in events if isinstance(e, PartProgress)]
    maps = [p for p in progress if p.stage == "map"]
    assert len(maps) >= 3 and maps[0].message == f"reading part 1 of {len(maps)}"
    assert maps[0].estimate_s and maps[0].estimate_s > 0  # shown before the long run
    assert [p.part for p in maps] == list(range(1, len(maps) + 1))
    for prompt in fake.prompts:  # every step fits the model's context
        assert fake.prompt_tokens(prompt) <= fake.context_size
    assert isinstance(events[0], Summary) and not events[0].final  # the extract comes first
    assert result.summary and result.sources
    doc = engine.local.document("default", str((engine.files / "report.txt").resolve()))
    ids = {c.id for c in engine.local.document_chunks(doc)}
    assert {s["chunk_id"] for s in result.sources} <= ids
    assert result.claims and all(c["supported"] for c in result.claims)
    assert result.to_json()["supported"] is True


class TimedModel(FakeModel):
    """Reads prompts at 5,000 tokens/s and writes 500 tokens/s, twenty times the pace a
    model that has not run yet is assumed to have, always max_tokens of them; says so in
    last_stats, as a real one does."""

    def stream(self, messages, max_tokens, temperature=0.0, should_stop=None, refuse_at=None):
        import time

        prompt = self.prompt_tokens(messages)
        time.sleep(prompt / 5000)
        pieces = list(super().stream(messages, max_tokens, temperature, should_stop, refuse_at))
        words = " ".join(pieces).split(" ")
        for n, word in enumerate(words + [""] * (max_tokens - len(words))):
            if n:
                time.sleep(1 / 500)
            yield word + " " if word else ""
        self.last_stats = StreamStats(prompt_tokens=prompt, generated_tokens=max(max_tokens, len(words)),
                                      finish="length")


def test_the_estimate_before_a_map_reduce_starts_from_the_model_measured_pace(engine):
    """The first estimate is a guess for a model that never ran; once it has, the next
    estimate is its measured pace (a fixed guess was ten times too low on a busy CPU)."""
    import time

    from rag.documents.mapreduce import summarize_with_model
    from rag.llm.pace import pace_of

    model = TimedModel(context=700)
    index, doc = engine.find_document(engine.files / "report.txt")
    chunks = index.document_chunks(doc)

    def first_estimate():
        started = time.perf_counter()
        events = list(summarize_with_model(chunks, model, None))
        maps = [e for e in events if isinstance(e, PartProgress) and e.stage == "map"]
        return maps[0].estimate_s, time.perf_counter() - started, len(maps)

    guessed, took, parts = first_estimate()
    assert parts >= 3 and pace_of(model).measured
    measured, took_again, _ = first_estimate()
    assert measured < guessed / 4, (guessed, measured, took)
    assert took_again / 3 < measured < took_again * 3, (measured, took_again)


def test_stop_in_the_middle_of_a_map_reduce_ends_it_and_caches_nothing(engine):
    engine._chat_model = fake = FakeModel(context=700)
    try:
        stop = {"now": False}
        events = []
        for event in engine.summarize(engine.files / "report.txt", "long", should_stop=lambda: stop["now"]):
            events.append(event)
            if isinstance(event, PartProgress) and event.part == 2:
                stop["now"] = True
        result = events[-1]
        assert result.stopped and result.summary is None and result.extractive
        assert len(fake.prompts) <= 2
        assert not any(isinstance(e, PartProgress) and e.part == 3 for e in events)
        stop["now"] = False  # asked again: not a cached half-summary, a whole one
        _, again = run(engine.summarize(engine.files / "report.txt", "long"))
        assert not again.cached and again.summary
    finally:
        engine._chat_model = None


def test_the_summary_is_cached_until_the_file_changes(engine, tmp_path):
    path = tmp_path / "policy.txt"
    path.write_text(long_text(4))
    engine.index_all([path])
    engine._chat_model = fake = FakeModel(context=2048)
    try:
        _, first = run(engine.summarize(path))
        calls = len(fake.prompts)
        _, second = run(engine.summarize(path))
        assert second.cached and second.summary == first.summary and len(fake.prompts) == calls
        _, other = run(engine.summarize(path, "long"))  # another length: another summary
        assert not other.cached
        path.write_text(long_text(4).replace("town council", "river authority"))
        engine.index_all([path])
        calls = len(fake.prompts)
        _, changed = run(engine.summarize(path))
        assert not changed.cached and len(fake.prompts) > calls
        assert "river authority" in changed.summary
        engine.remove([path])  # forgetting the document forgets its summaries
        assert not list(engine.summaries_dir.glob(f"{changed_hash(engine, path)}*"))
    finally:
        engine._chat_model = None


def changed_hash(engine, path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_note_tags_a_small_model_copies_from_its_prompt_are_not_in_the_summary():
    from rag.documents.mapreduce import _cite_chunks
    from rag.index.catalog import ChunkRow

    chunks = {f"c{i}": ChunkRow(f"c{i}", "/d/a.txt", "default", f"The general met Kutuzov {i}.", 1, 1, 0, 9)
              for i in (1, 2)}
    text = '<note id="11">\nThe general in command of the rearguard met Kutuzov. [1, 2]\n</note>\n\n<note id="12">\n' \
           'The general rode to the bridge. [2]\n</note>'
    out, sources = _cite_chunks(text, [["c1"], ["c2"]], ["a", "b"], chunks)
    assert "<" not in out and out.splitlines()[0] == "The general in command of the rearguard met Kutuzov. [1, 2]"
    assert [s["chunk_id"] for s in sources] == ["c1", "c2"]


def test_groups_are_consecutive_and_within_budget():
    assert plan_groups([5, 5, 5, 5], 10) == [[0, 1], [2, 3]]
    assert plan_groups([30, 5], 10) == [[0], [1]]  # too big alone: its own group
    assert plan_groups([], 10) == []


# --- compare ---------------------------------------------------------------------------------


def test_two_identical_files_are_the_same(engine, tmp_path):
    a, b = tmp_path / "copy-a.txt", tmp_path / "copy-b.txt"
    a.write_text(long_text(3))
    shutil.copy(a, b)
    engine.index_all([a, b])
    events, result = run(engine.compare(a, b, use_model=False))
    assert result.same and not (result.added or result.removed or result.changed)
    assert result.to_json()["same"] is True


def test_edits_between_two_versions_are_found_and_cited_in_both(engine, tmp_path):
    old = long_text(6)
    new = (old.replace("Visitors to the glacier counted 122 in the first spring. ", "")  # removed
              .replace("built in 1821", "built in 1823")  # a number changed
              .replace("Local schools take pupils to the orchard to learn its history.",
                       "Local schools take pupils to the orchard to learn its history. "
                       "A new cafe opened beside the orchard in the summer."))  # added
    a, b = tmp_path / "v1.txt", tmp_path / "v2.md"  # across formats
    a.write_text(old)
    b.write_text(new)
    engine.index_all([a, b])
    _, result = run(engine.compare(a, b, use_model=False))
    data = result.to_json()
    assert not data["same"] and data["mode"] == "versions"
    assert [r["text"] for r in data["removed"]] == ["Visitors to the glacier counted 122 in the first spring."]
    assert [x["text"] for x in data["added"]] == ["A new cafe opened beside the orchard in the summer."]
    assert len(data["changed"]) == 1
    change = data["changed"][0]
    assert "1821" in change["before"]["text"] and "1823" in change["after"]["text"]
    assert change["before"]["source"]["path"] == str(a.resolve())
    assert change["after"]["source"]["path"] == str(b.resolve())
    assert data["removed"][0]["source"]["path"] == str(a.resolve())
    assert data["added"][0]["source"]["path"] == str(b.resolve())


POLICY_PDF = [
    ["Travel policy",
     "Employees book their travel through the company portal at least 14 days before",
     "departure. The daily allowance for meals is 60 euros in every country. Hotel costs are reim-",
     "bursed up to 150 euros a night with a receipt. Taxis are allowed only when no train or bus",
     "runs."],
    ["Flights longer than six hours may be booked in business class. Every trip needs the",
     "written approval of the team lead. Unused tickets must be cancelled within two working days."],
]
POLICY_DOCX = [
    "Travel policy",
    "Employees book their travel through the company portal at least 14 days before departure. The daily "
    "allowance for meals is 75 euros in every country. Hotel costs are reimbursed up to 150 euros a night with "
    "a receipt.",
    "Flights longer than six hours may be booked in business class. Every trip needs the written approval of "
    "the team lead. Rental cars need the approval of the finance office. Unused tickets must be cancelled within "
    "two working days.",
]


def test_a_pdf_and_its_docx_revision_are_compared_across_formats(engine, tmp_path):
    import docx

    from tests.fakes import text_pdf

    pdf, revision = tmp_path / "travel-2024.pdf", tmp_path / "travel-2025.docx"
    text_pdf(pdf, POLICY_PDF)  # lines broken where the page's width ended them, one word hyphenated
    document = docx.Document()
    for paragraph in POLICY_DOCX:  # the same text as flowing paragraphs, with three edits
        document.add_paragraph(paragraph)
    document.save(revision)
    engine.index_all([pdf, revision])
    _, result = run(engine.compare(pdf, revision, use_model=False))
    data = result.to_json()
    assert data["mode"] == "versions" and not data["same"] and not data["moved"]
    flat = lambda item: " ".join(item["text"].split())  # noqa: E731
    # Only the edits: the PDF's line breaks and its hyphenated "reim-/bursed" are no change.
    assert [flat(r) for r in data["removed"]] == ["Taxis are allowed only when no train or bus runs."]
    assert [flat(a) for a in data["added"]] == ["Rental cars need the approval of the finance office."]
    assert len(data["changed"]) == 1
    change = data["changed"][0]
    assert "60 euros" in change["before"]["text"] and "75 euros" in change["after"]["text"]
    # Cited in both: the PDF by its page, the DOCX by its own path.
    assert change["before"]["source"]["path"] == str(pdf.resolve()) and change["before"]["source"]["page"] == 1
    assert change["after"]["source"]["path"] == str(revision.resolve())
    assert data["removed"][0]["source"]["path"] == str(pdf.resolve()) and data["removed"][0]["source"]["page"] == 1
    assert data["added"][0]["source"]["path"] == str(revision.resolve())
    for item in (change["before"], data["removed"][0]):  # the viewer finds each in its chunk
        support = item["source"]["support"]
        assert item["source"]["text"][support["start"]:support["end"]] == support["text"]


SECTION = ["The {t} was built in {n} by the town council.", "Visitors to the {t} counted {m} in the first spring.",
           "The {t} needs repairs costing {k} thousand euros every decade."]


def _sectioned(path: str, topics: list[str], shift: int, vectors: dict[str, np.ndarray]):
    """One chunk per section (its vector the topic's), every number moved by `shift`."""
    from rag.index.catalog import ChunkRow

    chunks, at = [], 0
    for i, t in enumerate(topics):
        text = " ".join(x.format(t=t, n=1800 + i + shift, m=120 + i + shift, k=30 + i + shift) for x in SECTION)
        chunks.append(ChunkRow(f"{path}-{i}", path, "default", text, i + 1, i + 1, at, at + len(text)))
        at += len(text) + 2
    return chunks, {c.id: vectors[t] for c, t in zip(chunks, topics)}


def test_two_texts_that_are_not_versions_are_aligned_section_by_section_by_their_vectors():
    from rag.documents.compare import Side, compare_sides

    rng = np.random.default_rng(24)
    topics = ["harbour", "orchard", "glacier", "railway", "canal"]
    vectors = {t: rng.normal(size=64).astype(np.float32) for t in topics}
    a_chunks, a_vectors = _sectioned("/d/a.txt", ["harbour", "orchard", "glacier", "railway"], 0, vectors)
    # B: no orchard, a canal at the end, and every number changed, so no sentence is common.
    b_chunks, b_vectors = _sectioned("/d/b.txt", ["harbour", "glacier", "railway", "canal"], 10, vectors)
    result = compare_sides(Side("/d/a.txt", a_chunks, a_vectors), Side("/d/b.txt", b_chunks, b_vectors))
    assert result.mode == "sections"
    # Sentence by sentence, the orchard's lines read like the glacier's (one template): a diff
    # of the whole texts pairs them as edits. Aligned by meaning, the orchard section is
    # removed whole, the canal added whole, and each pair stays within its own section.
    assert len(result.removed) == 3 and all("orchard" in r["text"] for r in result.removed)
    assert len(result.added) == 3 and all("canal" in a["text"] for a in result.added)
    assert len(result.changed) == 9
    for change in result.changed:
        topic = next(t for t in topics if t in change["before"]["text"])
        assert topic in change["after"]["text"]
        assert change["before"]["source"]["chunk_id"] == f"/d/a.txt-{['harbour', 'orchard', 'glacier', 'railway'].index(topic)}"
        assert change["after"]["source"]["chunk_id"] == f"/d/b.txt-{['harbour', 'glacier', 'railway', 'canal'].index(topic)}"


def test_the_overview_cites_the_differences(engine, tmp_path):
    a, b = tmp_path / "o1.txt", tmp_path / "o2.txt"
    a.write_text(long_text(2))
    b.write_text(long_text(2).replace("120 in", "150 in"))
    engine.index_all([a, b])
    engine._chat_model = FakeModel(context=2048)
    try:
        events, result = run(engine.compare(a, b))
    finally:
        engine._chat_model = None
    assert result.final and result.overview and "150" in result.overview
    assert result.sources and {s["path"] for s in result.sources[0]["sides"]} == {str(a.resolve()), str(b.resolve())}
    assert result.claims and result.claims[0]["supported"]


# --- the intent rule -------------------------------------------------------------------------

NAMES = ["/d/zen.pdf", "/d/travel-policy-2024.pdf", "/d/travel-policy-2025.docx", "/d/handbook.md"]


@pytest.mark.parametrize("message, task, targets", [
    ("summarize zen.pdf", "summarize", ("/d/zen.pdf",)),
    ("Please summarise the handbook.", "summarize", ("/d/handbook.md",)),
    ("give me a summary of zen", "summarize", ("/d/zen.pdf",)),
    ("what changed between travel-policy-2024.pdf and travel-policy-2025.docx?", "compare",
     ("/d/travel-policy-2024.pdf", "/d/travel-policy-2025.docx")),
    ("compare travel-policy-2024 and travel-policy-2025", "compare",
     ("/d/travel-policy-2024.pdf", "/d/travel-policy-2025.docx")),
    ("What are the differences between zen.pdf and handbook.md", "compare", ("/d/zen.pdf", "/d/handbook.md")),
])
def test_whole_document_requests_are_recognised(message, task, targets):
    intent = document_intent(message, NAMES)
    assert intent is not None and intent.task == task and intent.targets == targets


@pytest.mark.parametrize("message", [
    "summarize the causes of the war",  # no such document: a question
    "What does zen.pdf say about beauty?",
    "compare zen.pdf and zen.pdf",
    "how do I compare two numbers?",
])
def test_ordinary_questions_are_not_taken_for_tasks(message):
    assert document_intent(message, NAMES) is None


def test_without_a_list_of_documents_only_file_names_are_taken():
    assert document_intent("summarize report.pdf").targets == ("report.pdf",)
    assert document_intent("summarize the war") is None
    assert document_intent("give me a detailed summary of zen.pdf", NAMES).length == "long"
    assert match_document("travel policy", NAMES) is None  # two fit: ambiguous, not guessed


# --- the CLI -----------------------------------------------------------------------------------


def _cli(*args, data):
    env = {**os.environ, "ENCLAVE_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_cli_summarize_and_compare_keep_their_json_contract(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(long_text(3))
    b.write_text(long_text(3).replace("120 in", "121 in"))
    data = tmp_path / "data"
    assert _cli("index", str(a), str(b), data=data).returncode == 0
    out = _cli("summarize", str(a), "--extractive-only", "--json", data=data)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert {"document", "extractive", "summary", "claims", "timings"} <= set(got)
    assert got["extractive"] and {"path", "page", "unit", "chunk_id"} <= set(got["extractive"][0]["source"])
    out = _cli("compare", str(a), str(b), "--no-overview", "--json", data=data)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert {"a", "b", "same", "added", "removed", "changed", "overview", "timings"} <= set(got)
    assert got["same"] is False and len(got["changed"]) == 1
    assert {"text", "source"} <= set(got["changed"][0]["before"])
    missing = _cli("summarize", str(tmp_path / "c.txt"), "--extractive-only", data=data)
    assert missing.returncode == 1 and "No such file" in missing.stderr


@pytest.mark.slow
def test_the_bundled_model_summarizes_a_small_document_with_cited_checked_bullets(tmp_path, real_embedder):
    path = tmp_path / "trip.txt"
    path.write_text("The team trip goes to Lisbon in June. The flight leaves on 3 June at 9:00. "
                    "Everyone gets a daily allowance of 60 euros. The hotel is near the river.\n")
    e = Engine(tmp_path / "data", embedder=real_embedder)
    try:
        e.index_all([path])
        events, result = run(e.summarize(path))
        assert result.summary and not result.stopped
        assert isinstance(result.claims, list)
        assert all(s["path"] == str(path.resolve()) for s in result.sources)
        _, again = run(e.summarize(path))
        assert again.cached and again.summary == result.summary
    finally:
        e.close()


# --- in the conversation -----------------------------------------------------------------------


class _Job:
    def should_stop(self):
        return False


def test_a_chat_message_asking_for_a_summary_or_a_comparison_gets_one_shaped_as_an_answer(engine, tmp_path):
    from desktop import jobs
    from rag.answer import verdict

    a, b = tmp_path / "rules-2024.txt", tmp_path / "rules-2025.txt"
    a.write_text(long_text(3))
    b.write_text(long_text(3).replace("121 in", "140 in"))
    engine.index_all([a, b])
    engine._chat_model = FakeModel(context=2048)
    try:
        *_, done = jobs._ask("summarize rules-2024.txt", "default", None, engine, _Job())
        data = done["answer"]
        # Every [n] of the message is one of its sources, and each quoted line is in its source.
        cited = {int(n) for n in re.findall(r"\[(\d+)\]", data["answer"])}
        assert cited and cited <= {s["n"] for s in data["sources"]}
        quoted = [s for s in data["sources"] if s["support"]]
        assert quoted and all(s["text"][s["support"]["start"]:s["support"]["end"]] == s["support"]["text"]
                              for s in quoted)
        assert verdict.supported(data) is True  # the model's bullets were checked
        *_, done = jobs._ask("what changed between rules-2024.txt and rules-2025.txt?", "default", None, engine,
                             _Job())
        data = done["answer"]
        # The change as a table row, before | after, the differing number in bold on each side.
        assert "| Before, in rules-2024.txt | After, in rules-2025.txt |" in data["answer"]
        assert re.search(r"^\| .*\*\*121\*\*.* \[\d+\] \| .*\*\*140\*\*.* \[\d+\] \|$", data["answer"], re.M)
        assert {s["path"] for s in data["sources"]} == {str(a.resolve()), str(b.resolve())}
        *_, plain = jobs._ask("what does the harbour cost?", "default", None, engine, _Job())
        assert "| Before, in" not in plain["answer"]["answer"]  # an ordinary question is answered as before
    finally:
        engine._chat_model = None


def test_a_changed_pair_is_two_table_cells_with_the_differing_words_in_bold():
    from rag.documents.chat import marked_pair

    before, after = marked_pair("Team | Boston | 12 wins [3] *", "Team | Boston | 14 wins [3] *")
    # A sheet's "|" is no column, "[3]" no citation, "*" no emphasis: each kept as text.
    assert before == "Team \\| Boston \\| **12** wins \\[3\\] \\*"
    assert after == "Team \\| Boston \\| **14** wins \\[3\\] \\*"


def test_the_librarys_summarize_and_compare_actions_ask_what_the_intent_rule_recognises():
    # The window's context menu sends these messages; the rule must route them, full paths included.
    names = ["/home/ann/Policies and rules/travel 2024.pdf", "/home/ann/travel 2025.docx"]
    assert document_intent(f"summarize {names[0]}", names).targets == (names[0],)
    assert document_intent(f"compare {names[0]} and {names[1]}", names).targets == tuple(names)


def test_the_benchmarks_rouge_counts_as_the_standard_does():
    # benchmarks/document_tasks.py writes ROUGE itself (rouge-score is not installed); these are
    # the figures rouge-score gives for the same pairs (no stemmer).
    import importlib.util

    spec = importlib.util.spec_from_file_location("document_tasks", ROOT / "benchmarks" / "document_tasks.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    reference = "The cat sat on the mat."
    assert bench.rouge("the cat lay on the mat", reference) == {"rouge1": 0.833, "rouge2": 0.6, "rougeL": 0.833}
    # The same words in another order: all unigrams, 4 of 5 bigrams, a common subsequence of 3.
    assert bench.rouge("On the mat, the cat sat", reference) == {"rouge1": 1.0, "rouge2": 0.8, "rougeL": 0.5}
    assert bench.rouge("", reference) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
