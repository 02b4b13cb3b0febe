"""Whole-document tasks, measured: the extractive summary's time against document length and
its coverage, and compare's recall and precision on known edits of a public text.

Documents are cut from a public book in the corpus (War and Peace, ../shared/corpus/office)
into pages of about 3,000 characters, one chunk each, as indexing stores them; the chunk
vectors are hashed bags of words (the summary's cost does not depend on their values; give
--real-vectors to embed them with the bundled all-MiniLM, which takes minutes). Nothing
here is read from a file at summary time, as in the app. Prints JSON; --out writes it too.

    python benchmarks/document_tasks.py --out benchmarks/results/document_tasks.json

With the real store (--parts abstracts,long_pdf; minutes, for the indexing): public documents
that carry their own abstract are indexed into a temporary data folder by the real Engine
(real reader, chunker and the bundled embedder), the chunks that hold the abstract are left
out, and the extractive summary of the rest is scored against the abstract by ROUGE-1/2/L F1,
beside the lead baseline (the first N sentences of the same chunks, N the summary's
length). ROUGE is written here (the `rouge-score` package is not installed): the standard
n-gram and longest-common-subsequence F1 over lower-cased alphanumeric tokens, no stemming,
ROUGE-L over the whole summary as one sequence (rouge-score's `rougeL`). The corpus' one
paper with an Abstract is a LaTeX sample whose body is Lorem Ipsum; the two SQuAD articles
stand in with Wikipedia's lead paragraph, which its style guide makes an overview of the
article. long_pdf times the extractive summary of the corpus' 117-page PDF from the stored
chunks (reading them and choosing the sentences; median of --repeats).

model_summary (the model runs: minutes to hours on a CPU) indexes the first --model-pages
pages of the book with the real Engine and times the short model summary with each of
--models (the bundled SmolLM2 and the evaluation model by default): the estimate shown before
the run, the parts, the map time, the first token of the final step, how many claims the
check supported, and asking again (the cache). --model-rouge adds ROUGE of the model's
bullets against the SQuAD articles' lead paragraphs, the lead left out. Each row is written
to --out as soon as it is measured.

Edits for compare (seeded): sentences deleted, sentences inserted (taken from elsewhere in
the book), numbers or names changed in sentences, one paragraph moved. An edit is found
when compare reports it in the right list with the right page on each side.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from rag.answer.evidence import split_sentences  # noqa: E402
from rag.documents import extractive  # noqa: E402
from rag.documents.compare import Side, _key as normal, compare_sides  # noqa: E402  (sentences as compare matches them)
from rag.documents.sentences import document_sentences, source  # noqa: E402
from rag.index.catalog import ChunkRow  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT.parent / "shared" / "corpus" / "office" / "book-war-and-peace-1225p.txt"
PAGE_CHARS = 3000


def paragraphs(text: str) -> list[list[str]]:
    """The book as paragraphs of sentences (the unit the edits work on)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        block = " ".join(block.split())
        if len(block) < 40:
            continue
        out.append([block[a:b] for a, b in split_sentences(block)])
    return out


def render(paras: list[list[str]], path: str) -> tuple[list[ChunkRow], dict[int, int]]:
    """Pages of whole paragraphs, one chunk per page; returns chunks and each paragraph's page."""
    chunks, page, text, at, where = [], 1, "", 0, {}
    for i, para in enumerate(paras):
        block = " ".join(para)
        if text and len(text) + len(block) > PAGE_CHARS:
            chunks.append(ChunkRow(f"{path}-{page}", path, "bench", text, page, page, at, at + len(text)))
            at += len(text) + 2
            page, text = page + 1, ""
        text = f"{text}\n\n{block}" if text else block
        where[i] = page
    if text:
        chunks.append(ChunkRow(f"{path}-{page}", path, "bench", text, page, page, at, at + len(text)))
    return chunks, where


def hashed_vectors(chunks: list[ChunkRow], dim: int = 384) -> dict[str, np.ndarray]:
    out = {}
    for c in chunks:
        v = np.zeros(dim, dtype=np.float32)
        for w in re.findall(r"\w+", c.text.lower()):
            v[hash(w) % dim] += 1.0
        out[c.id] = v / (np.linalg.norm(v) or 1.0)
    return out


def real_vectors(chunks: list[ChunkRow]) -> dict[str, np.ndarray]:
    from rag.config import default_embedding_model
    from rag.embedding import SentenceEmbedder

    embedder = SentenceEmbedder(default_embedding_model())
    return dict(zip([c.id for c in chunks], embedder.embed([c.text for c in chunks])))


def summary_figures(paras, pages_list, real: bool, repeats: int) -> list[dict]:
    rows = []
    for pages in pages_list:
        chunks, _ = render(paras, f"book-{pages}")
        chunks = chunks[:pages]
        vectors = real_vectors(chunks) if real else hashed_vectors(chunks)
        for length in ("short", "long"):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                chosen = extractive.choose(chunks, document_sentences(chunks), vectors, length)
                times.append((time.perf_counter() - t0) * 1000)
            cited_pages = {chunks[s.chunk].page_start for s in chosen}
            rows.append({"pages": len(chunks), "length": length, "sentences": len(chosen),
                         "ms_median": round(statistics.median(times), 1), "ms_max": round(max(times), 1),
                         "tenths_covered": extractive.coverage(chunks, chosen),
                         "pages_cited_share": round(len(cited_pages) / len(chunks), 3),
                         "cited_in_order": [s.at for s in chosen] == sorted(s.at for s in chosen)})
    return rows


def _plain(s: str) -> bool:
    return s.endswith(".") and not re.search("[\"'\u201c\u201d]|\\.\\.", s)


def edit(paras: list[list[str]], donors: list[str], rng: random.Random, n: int):
    """A second version by known edits; returns it and the truth."""
    new = [list(p) for p in paras]
    truth = {"removed": [], "added": [], "changed": [], "moved": []}
    # Plain narrative sentences: an edit inside a quoted speech moves its quote marks onto a
    # neighbour, which is then changed too and would blur the truth.
    eligible = [(i, j) for i, p in enumerate(new) for j, s in enumerate(p)
                if len(s.split()) >= 6 and _plain(s) and (j == 0 or _plain(p[j - 1]))
                and (j == len(p) - 1 or _plain(p[j + 1]))]
    picks = rng.sample(eligible, min(len(eligible), 3 * n))
    deletes, changes, inserts = picks[:n], picks[n:2 * n], picks[2 * n:3 * n]
    for i, j in changes:
        s = new[i][j]
        numbers = re.findall(r"\b\d+\b", s)
        if numbers:
            changed = s.replace(numbers[0], str(int(numbers[0]) + 7), 1)
        else:
            names = re.findall(r"(?<=\s)[A-Z][a-z]{3,}", s)
            changed = s.replace(names[0], "Smirnov", 1) if names else s.replace(" the ", " a ", 1)
        if changed == s:
            changed = s.replace(" and ", " or ", 1) if " and " in s else "Then " + s[0].lower() + s[1:]
        truth["changed"].append((i, s, changed))
        new[i][j] = changed
    for i, j in deletes:
        truth["removed"].append((i, new[i][j]))
        new[i][j] = None
    for k, (i, j) in enumerate(inserts):
        donor = donors[k % len(donors)]
        truth["added"].append((i, donor))
        new[i].insert(j, donor)
    new = [[s for s in p if s is not None] for p in new]
    # One paragraph moved: from a third of the way in to two thirds.
    src = len(new) // 3
    moved = new.pop(src)
    new.insert(2 * len(new) // 3, moved)
    truth["moved"] = [(src, s) for s in moved if not any(s == t[2] for t in truth["changed"])
                      and not any(s == t[1] for t in truth["added"])]
    return [p for p in new if p], truth


def compare_figures(paras, donors, page_counts, rng) -> list[dict]:
    rows = []
    for pages in page_counts:
        _, where_all = render(paras, "x")
        base = [p for i, p in enumerate(paras) if where_all[i] <= pages]
        n = max(2, pages // 5)
        new, truth = edit(base, donors, rng, n)
        chunks_a, page_a = render(base, "a")
        chunks_b, _ = render(new, "b")
        a = Side("a", chunks_a, hashed_vectors(chunks_a))
        b = Side("b", chunks_b, hashed_vectors(chunks_b))
        t0 = time.perf_counter()
        result = compare_sides(a, b)
        ms = (time.perf_counter() - t0) * 1000
        page_b_of = {normal(s.text): b.chunks[s.chunk].page_start for s in b.sentences}
        found = 0
        correct_reports = 0
        removed = {normal(r["text"]): r["source"]["page"] for r in result.removed}
        added = {normal(r["text"]): r["source"]["page"] for r in result.added}
        changed = {(normal(c["before"]["text"]), normal(c["after"]["text"])): (c["before"]["source"]["page"],
                                                                            c["after"]["source"]["page"])
                   for c in result.changed}
        moved = {normal(m["before"]["text"]) for m in result.moved}
        truth_keys = set()
        for i, s in truth["removed"]:
            key = normal(s)
            truth_keys.add(("r", key))
            found += removed.get(key) == page_a[i]
        for i, s in truth["added"]:
            key = normal(s)
            truth_keys.add(("a", key))
            found += key in added and added[key] == page_b_of.get(key)
        for i, s, c in truth["changed"]:
            key = (normal(s), normal(c))
            truth_keys.add(("c", key))
            found += key in changed and changed[key] == (page_a[i], page_b_of.get(normal(c)))
        for i, s in truth["moved"]:
            truth_keys.add(("m", normal(s)))
            found += normal(s) in moved
        reports = ([("r", k) for k in removed] + [("a", k) for k in added] + [("c", k) for k in changed]
                   + [("m", k) for k in moved])
        correct_reports = sum(r in truth_keys for r in reports)
        total = sum(len(v) for v in truth.values())
        rows.append({"pages": len(chunks_a), "edits": total, "reported": len(reports),
                     "recall": round(found / total, 3) if total else None,
                     "precision": round(correct_reports / len(reports), 3) if reports else None,
                     "compare_ms": round(ms, 1), "mode": result.mode})
    return rows


# --- ROUGE against a document's own abstract, on the real store --------------------------------

SQUAD = ROOT.parent / "shared" / "eval" / "squad2-dev-public.json"
MULTICOLUMN = ROOT.parent / "shared" / "corpus" / "pdf" / "026-latex-multicolumn" / "multicolumn.pdf"
LONG_PDF = ROOT.parent / "shared" / "corpus" / "pdf" / "009-pdflatex-geotopo" / "GeoTopo-komprimiert.pdf"


def tokens(text: str) -> list[str]:
    """rouge-score's default tokenizer: lower case, runs of [a-z0-9], no stemming."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _f1(overlap: int, candidate: int, reference: int) -> float:
    if not overlap:
        return 0.0
    p, r = overlap / candidate, overlap / reference
    return 2 * p * r / (p + r)


def rouge_n(candidate: list[str], reference: list[str], n: int) -> float:
    from collections import Counter

    c = Counter(tuple(candidate[i:i + n]) for i in range(len(candidate) - n + 1))
    r = Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
    return _f1(sum((c & r).values()), sum(c.values()), sum(r.values()))


def rouge_l(candidate: list[str], reference: list[str]) -> float:
    """F1 of the longest common subsequence (one row of the dynamic programme at a time)."""
    prev = [0] * (len(reference) + 1)
    for a in candidate:
        row = [0]
        for j, b in enumerate(reference):
            row.append(prev[j] + 1 if a == b else max(prev[j + 1], row[j]))
        prev = row
    return _f1(prev[-1], len(candidate), len(reference))


def rouge(candidate: str, reference: str) -> dict:
    c, r = tokens(candidate), tokens(reference)
    return {"rouge1": round(rouge_n(c, r, 1), 3), "rouge2": round(rouge_n(c, r, 2), 3),
            "rougeL": round(rouge_l(c, r), 3)}


def _document_text(chunks: list[ChunkRow]) -> str:
    """The text indexing read, rebuilt from the chunks' offsets (chunks overlap)."""
    buf = [" "] * max(c.char_end for c in chunks)
    for c in chunks:
        buf[c.char_start:c.char_start + len(c.text)] = c.text
    return "".join(buf)


def abstract_cases(folder: Path) -> list[dict]:
    """Each document with where its abstract starts and where the body after it starts."""
    cases = [{"path": MULTICOLUMN, "kind": "paper's Abstract (Lorem Ipsum body)",
              "start": "Abstract", "body": "Lorem ipsum dolor"}]
    for article in json.loads(SQUAD.read_text(encoding="utf-8"))["data"]:
        path = folder / f"{article['title']}.txt"
        contexts = [p["context"] for p in article["paragraphs"]]
        path.write_text("\n\n".join(contexts) + "\n", encoding="utf-8")
        cases.append({"path": path, "kind": "Wikipedia lead paragraph (stand-in)",
                      "start": contexts[0][:30], "body": contexts[1][:30]})
    return cases


def abstract_row(engine, case: dict) -> dict:
    from rag.documents.summary import extractive_summary

    index, doc = engine.find_document(case["path"])
    chunks = index.document_chunks(doc)
    vectors = index.vectors(doc.collection, [c.id for c in chunks])
    text = _document_text(chunks)
    start = text.index(case["start"])
    body = text.index(case["body"], start)
    abstract = " ".join(text[start + (len("Abstract") if case["start"] == "Abstract" else 0):body].split())
    # Left out: every chunk that holds any of the abstract (and the title matter before it).
    rest = [c for c in chunks if c.char_start >= body]
    summaries = {}
    for length in ("short", "long"):
        chosen = extractive_summary(doc, rest, vectors, length).extractive
        n = len(chosen)
        # The first chunk kept may open mid-sentence (chunks overlap): the lead starts after that.
        sentences = document_sentences(rest)
        if sentences and not sentences[0].text[:1].isupper():
            sentences = sentences[1:]
        lead = [s.text for s in sentences[:n]]
        summaries[length] = {"sentences": n,
                             "extractive": rouge(" ".join(i["text"] for i in chosen), abstract),
                             "lead": rouge(" ".join(lead), abstract)}
    return {"document": Path(case["path"]).name, "abstract": case["kind"], "abstract_words": len(abstract.split()),
            "pages": max(c.page_end or 0 for c in chunks) or None, "chunks": len(chunks),
            "chunks_left_out": len(chunks) - len(rest), **summaries}


def long_pdf_row(engine, repeats: int) -> dict:
    rows = {}
    for length in ("short", "long"):
        read, choose_ms, wall = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            first = next(iter(engine.summarize(LONG_PDF, length, use_model=False)))
            wall.append((time.perf_counter() - t0) * 1000)
            read.append(first.timings["read_ms"])
            choose_ms.append(first.timings["extractive_ms"])
        rows[length] = {"sentences": len(first.extractive), "coverage_tenths": round(first.coverage, 2),
                        "pages_cited": len({i["source"].get("page") for i in first.extractive}),
                        "read_ms_median": round(statistics.median(read), 1),
                        "extractive_ms_median": round(statistics.median(choose_ms), 1),
                        "total_ms_median": round(statistics.median(wall), 1), "total_ms_max": round(max(wall), 1),
                        "total_ms_first": round(wall[0], 1)}
    index, doc = engine.find_document(LONG_PDF)
    return {"document": LONG_PDF.name, "pages": max(c.page_end or 0 for c in index.document_chunks(doc)),
            "chunks": len(index.document_chunks(doc)), "runs": repeats, **rows}


def store_figures(parts: set[str], repeats: int) -> dict:
    import tempfile

    from rag.engine import Engine

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Path(tmp) / "data")
        try:
            if "abstracts" in parts:
                cases = abstract_cases(Path(tmp))
                t0 = time.perf_counter()
                engine.index_all([c["path"] for c in cases])
                out["abstracts_index_s"] = round(time.perf_counter() - t0, 1)
                out["abstracts"] = [abstract_row(engine, c) for c in cases]
                out["rouge"] = ("written in this benchmark: n-gram and LCS F1, lower-cased [a-z0-9]+ tokens, "
                                "no stemming; ROUGE-L over the whole summary")
            if "long_pdf" in parts:
                t0 = time.perf_counter()
                engine.index_all([LONG_PDF])
                out["long_pdf_index_s"] = round(time.perf_counter() - t0, 1)
                out["long_pdf"] = long_pdf_row(engine, repeats)
        finally:
            engine.close()
    return out


EVAL_MODEL = Path.home() / ".cache" / "enclave" / "eval-model" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def _model_path(name: str) -> Path:
    if name == "bundled":
        from rag.config import default_llm_model

        return default_llm_model()
    if name == "eval":
        return EVAL_MODEL
    return Path(name).expanduser()


def _book_document(paras: list[list[str]], pages: int, folder: Path) -> Path:
    """The first `pages` pages (of PAGE_CHARS) of the book as a text file, for the real Engine."""
    chunks, _ = render(paras, "book")
    path = folder / f"war-and-peace-{pages}p.txt"
    path.write_text("\n\n".join(c.text for c in chunks[:pages]) + "\n", encoding="utf-8")
    return path


def _model_run(events) -> dict:
    """Runs a summarize (or summarize_with_model) generator: the first estimate it showed, and
    the final Summary's (or ModelSummary's) figures."""
    from rag.documents.mapreduce import ModelSummary, PartProgress

    t0 = time.perf_counter()
    estimate, result = None, None
    for event in events:
        if isinstance(event, PartProgress):
            estimate = event.estimate_s if estimate is None else estimate
        elif not isinstance(event, str):
            result = event
    wall = time.perf_counter() - t0
    if isinstance(result, ModelSummary):
        text, model, cached = result.text, result.timings, False
    else:
        text, model, cached = result.summary, result.timings.get("model", {}), result.cached
    claims = result.claims
    return {"wall_s": round(wall, 1), "estimate_first_s": None if estimate is None else round(estimate, 1),
            "parts": model.get("parts"), "reduce_levels": model.get("reduce_levels", 0),
            "map_s": round(model["map_ms"] / 1000, 1) if "map_ms" in model else None,
            "first_token_s": round(model.get("first_token_ms", 0) / 1000, 1),
            "bullets": len([x for x in (text or "").splitlines() if x.strip()]),
            "claims": len(claims), "claims_supported": sum(1 for c in claims if c.get("supported")),
            "sources_cited": len(result.sources), "cached": cached, "summary": text}


def model_figures(paras, model_names: list[str], pages_list: list[int], rouge_cases: bool) -> list[dict]:
    """The model's map-reduce summary with the real Engine and model host: its time against
    length, and (rouge_cases) ROUGE of its bullets against the SQuAD articles' lead paragraphs,
    the lead left out as for the extract. Each row is written as soon as it is measured."""
    import tempfile

    from rag.documents.mapreduce import summarize_with_model
    from rag.engine import Engine

    rows = []
    for name in model_names:
        path = _model_path(name)
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(Path(tmp) / "data")
            try:
                engine.use_model(path)
                t0 = time.perf_counter()
                engine.load_model()
                load_s = round(time.perf_counter() - t0, 1)
                docs = [_book_document(paras, pages, Path(tmp)) for pages in pages_list]
                engine.index_all(docs)
                for pages, doc in zip(pages_list, docs):
                    row = {"model": path.name, "load_s": load_s, "context": engine.chat_model.context_size,
                           "document": doc.name, "pages": pages, "chars": len(doc.read_text())}
                    row.update(_model_run(engine.summarize(doc, "short")))
                    t0 = time.perf_counter()
                    again = _model_run(engine.summarize(doc, "short"))
                    row["cached_again_s"] = round(time.perf_counter() - t0, 2) if again["cached"] else None
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "summary"}), file=sys.stderr, flush=True)
                    yield row
                if rouge_cases:
                    cases = [c for c in abstract_cases(Path(tmp)) if c["path"] != MULTICOLUMN]
                    engine.index_all([c["path"] for c in cases])
                    for case in cases:
                        index, doc = engine.find_document(case["path"])
                        chunks = index.document_chunks(doc)
                        text = _document_text(chunks)
                        start = text.index(case["start"])
                        body = text.index(case["body"], start)
                        abstract = " ".join(text[start:body].split())
                        rest = [c for c in chunks if c.char_start >= body]

                        run = _model_run(summarize_with_model(rest, engine.chat_model, engine.embedder.embed, "short"))
                        plain = re.sub(r"\[[\d,\s]+\]", "", run["summary"] or "")
                        row = {"model": path.name, "document": Path(case["path"]).name, "abstract": case["kind"],
                               "chunks": len(rest), **run, "rouge": rouge(plain, abstract)}
                        print(json.dumps({k: v for k, v in row.items() if k != "summary"}), file=sys.stderr,
                              flush=True)
                        yield row
            finally:
                engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--book", default=str(BOOK))
    parser.add_argument("--pages", default="10,30,100,200,300")
    parser.add_argument("--compare-pages", default="5,20,100")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--real-vectors", action="store_true")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--parts", default="extractive,compare",
                        help="any of extractive,compare,abstracts,long_pdf,model_summary (the last three index with the "
                             "real Engine; model_summary runs the model: minutes)")
    parser.add_argument("--out", help="JSON file; the parts run replace their keys in it, the others stay")
    parser.add_argument("--models", default="bundled,eval",
                        help="model_summary: 'bundled' (SmolLM2), 'eval' (the evaluation model) or GGUF paths")
    parser.add_argument("--model-pages", default="10,30")
    parser.add_argument("--model-rouge", action="store_true", help="model_summary: ROUGE against the lead paragraphs too")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    text = Path(args.book).read_text(encoding="utf-8", errors="replace")
    paras = paragraphs(text[len(text) // 10:])  # past the front matter
    donors = [s for p in paragraphs(text[: len(text) // 20]) for s in p if len(s.split()) >= 8 and _plain(s)][:200]
    rng = random.Random(args.seed)
    result = {"cpus": os.cpu_count()}
    if parts & {"extractive", "compare"}:
        result["book"] = Path(args.book).name
        result["vectors"] = ("all-MiniLM-L6-v2" if args.real_vectors
                             else "hashed bag of words (cost does not depend on them)")
    if "extractive" in parts:
        result["extractive"] = summary_figures(paras, [int(p) for p in args.pages.split(",")], args.real_vectors,
                                               args.repeats)
    if "compare" in parts:
        result["compare"] = compare_figures(paras, donors, [int(p) for p in args.compare_pages.split(",")], rng)
    if parts & {"abstracts", "long_pdf"}:
        result.update(store_figures(parts, args.repeats))
    if "model_summary" in parts:
        key = "model_summary"
        rows = []
        for row in model_figures(paras, args.models.split(","), [int(p) for p in args.model_pages.split(",")],
                                 args.model_rouge):
            rows.append(row)
            if args.out:  # kept as measured: a run stopped for time keeps what it has
                path = Path(args.out)
                old = json.loads(path.read_text()) if path.exists() else {}
                kept = [r for r in old.get(key, []) if r["model"] not in {x["model"] for x in rows}]
                path.write_text(json.dumps({**old, key: kept + rows}, indent=2) + "\n")
                result[key] = kept + rows
            else:
                result[key] = rows
    # The machine is shared: the load at the end of the run says how far to trust the times.
    book = bool(parts & {"extractive", "compare"})
    load = [round(x, 2) for x in os.getloadavg()]
    if book or parts & {"abstracts", "long_pdf"}:
        result["load_average" if book else "load_average_store"] = load
    if "model_summary" in parts:
        result["load_average_model"] = load
    out = json.dumps(result, indent=2)
    print(out)
    if args.out:
        path = Path(args.out)
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
