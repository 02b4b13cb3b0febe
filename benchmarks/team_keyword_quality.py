"""Answer quality and latency of a member's team search, keyword query before and after
enclave_keyword_search (migration 6), with real embeddings (issue 22).

The collection: every paragraph of the SQuAD 2.0 dev articles in shared/eval (87 paragraphs,
Normans and Computational complexity theory) as one chunk each, with its real vector from the
bundled embedder, plus distractor chunks up to --sizes total. Distractors come only from other
real documents (shared/corpus/office: War and Peace, an 872-page handbook, a 10-K filing,
an article on Norwich City), so no gold paragraph's text is ever in a distractor (the eval
file holds only the two articles whose questions are asked; none is left over to build
distractors from). First come contiguous passages of those documents (about SQuAD's paragraph
length, real vectors), then chunks of 3 to 6 sentences drawn from them at random, whose vector
is the normalised mean of their sentences' real vectors plus noise (embedding 100k chunks is
not affordable on two cores).

Every answerable question (293) is asked as a member (own role, TLS, row-level security),
the keyword variants alternating per question (order rotated). For each: the engine's fused
path once the question is embedded (Retriever.candidates + Retriever.finish with K = 5, the
engine's default top_k and the evidence's K; each method proposes 20), timed in parts: vector
query, keyword query, chunk rows, cosine fill-in. Quality: the gold paragraph's rank in the
keyword list (recall@1/5/20, MRR), in the vector list, and in the fused ranking (hit@1,
hit@5 = what the engine hands on, MRR). Paired differences against "before" with a bootstrap
95% interval.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/team_keyword_quality.py --sizes 10000,100000

Nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from team_index import SHARED, SQUAD, load, summary  # noqa: E402
from team_keyword_fused import before_search  # noqa: E402

from rag.index.team import MIGRATIONS  # noqa: E402

K = 5  # the engine's default top_k, and evidence.EVIDENCE_K
DISTRACTOR_FILES = ["book-war-and-peace-1225p.txt", "handbook-872p.docx", "example-10k.html", "norwich-city.txt"]
CHUNKS_PER_DOC = 20
POOL = 12000  # sentences embedded for the drawn distractors
CACHE = Path(os.environ.get("ENCLAVE_BENCH_CACHE", Path(tempfile.gettempdir()) / "enclave-kwquality-cache"))

# Keyword variants measured beside "before" (the client query, BEFORE) and "after"
# (TeamIndex.keyword_search: the database's function, this checkout's latest migration). Each is created by the owner as a SECURITY DEFINER
# function of the same signature as enclave_keyword_search and called the same way.
_HEAD = """CREATE FUNCTION FUNCNAME(c TEXT, stages tsquery[], ranked tsquery, k INTEGER)
    RETURNS TABLE(chunk_id TEXT, score REAL)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    DECLARE stage tsquery; chosen tsquery; found INTEGER;
    BEGIN
        IF k IS NULL OR k < 1 OR k > 1000 OR ranked IS NULL OR c IS NULL OR c NOT IN (SELECT enclave_readable()) THEN
            RETURN;
        END IF;
"""
_RANK = """
        RETURN QUERY
            WITH candidates AS MATERIALIZED (
                SELECT x.id, x.tsv FROM enclave_chunks x JOIN enclave_documents d ON d.id = x.document_id
                WHERE x.collection = c AND d.state = 'indexed' AND x.tsv @@ chosen
                ORDER BY ts_rank(x.tsv, ranked) DESC, x.id LIMIT greatest(1000, 20 * k))
            SELECT candidates.id, ts_rank_cd(candidates.tsv, ranked) FROM candidates ORDER BY 2 DESC, 1 LIMIT k;
    END $$"""
_STAGES = """
        FOREACH stage IN ARRAY stages LOOP
            CONTINUE WHEN stage IS NULL;
            chosen := stage;
            SELECT count(*) INTO found FROM (
                SELECT 1 FROM enclave_chunks x JOIN enclave_documents d ON d.id = x.document_id
                WHERE x.collection = c AND d.state = 'indexed' AND x.tsv @@ stage LIMIT k) enough;
            EXIT WHEN found >= k;
        END LOOP;
        IF chosen IS NULL THEN RETURN; END IF;"""
_LEAN_STAGES = """
        FOREACH stage IN ARRAY stages LOOP
            CONTINUE WHEN stage IS NULL;
            chosen := stage;
            SELECT count(*) INTO found FROM (
                SELECT 1 FROM enclave_chunks x WHERE x.collection = c AND x.tsv @@ stage
                AND (SELECT d.state FROM enclave_documents d WHERE d.id = x.document_id) = 'indexed' LIMIT k) enough;
            EXIT WHEN found >= k;
        END LOOP;
        IF chosen IS NULL THEN RETURN; END IF;"""


def _nb(body: str) -> str:
    return body.replace("x.collection = c", "(x.collection = c) IS TRUE")


def _lean_rank(top: int) -> str:
    return f"""
        RETURN QUERY
            WITH candidates AS MATERIALIZED (
                SELECT m.id FROM (
                    SELECT x.id, x.document_id, ts_rank(x.tsv, ranked) AS r FROM enclave_chunks x
                    WHERE x.collection = c AND x.tsv @@ chosen ORDER BY r DESC, x.id OFFSET 0) m
                WHERE (SELECT d.state FROM enclave_documents d WHERE d.id = m.document_id) = 'indexed'
                LIMIT greatest({top}, k))
            SELECT x.id, ts_rank_cd(x.tsv, ranked) FROM candidates JOIN enclave_chunks x ON x.id = candidates.id
            ORDER BY 2 DESC, 1 LIMIT k;
    END $$"""


VARIANTS: dict[str, str] = {
    # The query before migration 6, unchanged (every chunk holding any word ranked), but with
    # the owner's rights so the GIN index serves it: quality equal to before by construction.
    "definer_or": _HEAD + "        chosen := ranked;" + _RANK,
    # The stages of migration 6, but the first that matches at least WIDE chunks (not k) is
    # ranked: more candidates for ts_rank and ts_rank_cd to order.
    **{f"wide{wide}": _HEAD + f"""
        FOREACH stage IN ARRAY stages LOOP
            CONTINUE WHEN stage IS NULL;
            chosen := stage;
            SELECT count(*) INTO found FROM (
                SELECT 1 FROM enclave_chunks x JOIN enclave_documents d ON d.id = x.document_id
                WHERE x.collection = c AND d.state = 'indexed' AND x.tsv @@ stage LIMIT {wide}) enough;
            EXIT WHEN found >= {wide};
        END LOOP;
        IF chosen IS NULL THEN RETURN; END IF;""" + _RANK for wide in (100, 300, 1000)},
    # Migration 6 with ts_rank_cd over only the best `top` by ts_rank (issue 22, a).
    **{f"cd{top}": _HEAD + _STAGES + _RANK.replace("greatest(1000, 20 * k)", f"greatest({top}, k)")
       for top in (50, 100, 200)},
    # Migration 6 ranked by ts_rank alone, no ts_rank_cd pass.
    "nocd": _HEAD + _STAGES + """
        RETURN QUERY
            SELECT x.id, ts_rank(x.tsv, ranked) FROM enclave_chunks x JOIN enclave_documents d ON d.id = x.document_id
            WHERE x.collection = c AND d.state = 'indexed' AND x.tsv @@ chosen
            ORDER BY 2 DESC, 1 LIMIT k;
    END $$""",
    # The document's state looked up per chunk by its key, after the ranking and only until
    # enough are found, instead of a hash join that reads every document of the table for
    # each count and for the ranking (3 ms at 100k chunks even when 36 chunks match).
    **{f"lean{top}": _HEAD + _LEAN_STAGES + _lean_rank(top) for top in (100, 200, 1000)},
    # As lean, and the collection tested on each matching chunk rather than through its
    # index: ANDing the word bitmap with the collection's (every chunk of a 100k collection,
    # 8 ms to read) cost more than the few chunks of other collections it keeps out.
    **{f"nb{top}": _HEAD + _nb(_LEAN_STAGES) + _nb(_lean_rank(top)) for top in (100, 1000)},
    "nbnocd": _HEAD + _nb(_LEAN_STAGES) + """
        RETURN QUERY
            SELECT m.id, m.r FROM (
                SELECT x.id, x.document_id, ts_rank(x.tsv, ranked) AS r FROM enclave_chunks x
                WHERE (x.collection = c) IS TRUE AND x.tsv @@ chosen ORDER BY r DESC, x.id OFFSET 0) m
            WHERE (SELECT d.state FROM enclave_documents d WHERE d.id = m.document_id) = 'indexed'
            LIMIT k;
    END $$""",
    # As nbnocd, but each stage's ranking is its count: a stage with fewer than k matches
    # ranks those few (no dearer than counting them), the first with k is returned, so the
    # chosen stage's matches are read once instead of twice.
    "nbstep": _HEAD.replace("found INTEGER;", "found INTEGER; ids TEXT[]; scores REAL[];") + """
        FOREACH stage IN ARRAY stages LOOP
            CONTINUE WHEN stage IS NULL;
            SELECT array_agg(m.id ORDER BY m.r DESC, m.id), array_agg(m.r ORDER BY m.r DESC, m.id)
                INTO ids, scores FROM (
                SELECT m.id, m.r FROM (
                    SELECT x.id, x.document_id, ts_rank(x.tsv, ranked) AS r FROM enclave_chunks x
                    WHERE (x.collection = c) IS TRUE AND x.tsv @@ stage ORDER BY r DESC, x.id OFFSET 0) m
                WHERE (SELECT d.state FROM enclave_documents d WHERE d.id = m.document_id) = 'indexed'
                LIMIT k) m;
            EXIT WHEN cardinality(ids) >= k;
        END LOOP;
        RETURN QUERY SELECT u.id, u.r FROM unnest(ids, scores) WITH ORDINALITY u(id, r, n) ORDER BY u.n;
    END $$""",
}
# nbstep with the collection tested plainly (the planner may use its index where the
# collection is a small part of the table), with plpgsql's cached plans or planned anew
# with each call's values.
VARIANTS["step"] = VARIANTS["nbstep"].replace("(x.collection = c) IS TRUE", "x.collection = c")
VARIANTS["stepcustom"] = VARIANTS["step"].replace("SET search_path", "SET plan_cache_mode = force_custom_plan SET search_path")
# Migration 6 itself, to compare once the database has a later one ("after" is the engine's).
VARIANTS["m6"] = MIGRATIONS[5].split("REVOKE")[0].replace("CREATE FUNCTION enclave_keyword_search",
                                                          "CREATE FUNCTION FUNCNAME")


def _sentences(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", text)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", text) if 30 <= len(s.strip()) <= 400]


def squad():
    data = json.loads(SQUAD.read_text())["data"]
    paragraphs, questions = [], []
    for article in data:
        for p, para in enumerate(article["paragraphs"]):
            cid = hashlib.sha1(f"gold:{article['title']}:{p}".encode()).hexdigest()
            paragraphs.append((article["title"], cid, para["context"]))
            for qa in para["qas"]:
                if not qa.get("is_impossible"):
                    questions.append((qa["question"].strip(), cid))
    seen, unique = set(), []
    for q, cid in questions:
        if q not in seen:
            seen.add(q)
            unique.append((q, cid))
    return paragraphs, unique


def distractor_text(total: int, seed: int):
    """Every contiguous passage (shuffled), the sentence pool, and the pool indexes of the drawn
    chunks that bring the passages up to `total`."""
    from rag.ingest.loaders import load as load_file

    passages, pool = [], []
    for name in DISTRACTOR_FILES:
        doc = load_file(SHARED / "corpus" / "office" / name)
        sents = _sentences(" ".join(p.text for p in doc.pages))
        pool += sents
        cur: list[str] = []
        for s in sents:
            cur.append(s)
            if sum(len(x.split()) for x in cur) >= 110:
                passages.append(" ".join(cur))
                cur = []
    rng = np.random.default_rng(seed)
    rng.shuffle(passages)
    pool = sorted(set(pool))
    rng.shuffle(pool)
    pool = pool[:POOL]
    drawn = []
    for _ in range(total - min(total, len(passages))):
        drawn.append(list(rng.choice(len(pool), size=int(rng.integers(3, 7)), replace=False)))
    return passages, pool, drawn


def embed_cached(embedder, texts: list[str], tag: str) -> np.ndarray:
    CACHE.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(("\x00".join(texts) + embedder.name).encode()).hexdigest()[:16]
    path = CACHE / f"{tag}-{key}.npy"
    if path.exists():
        return np.load(path)
    t = time.perf_counter()
    vecs = np.asarray(embedder.embed(texts), dtype=np.float32)
    print(f"embedded {len(texts)} {tag} in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    np.save(path, vecs)
    return vecs


def fill(admin, name: str, gold, dtexts, dvecs, model: str) -> dict:
    """COPY the gold paragraphs and the distractors into a new collection; returns the
    seconds each step took."""
    from rag.index import team as team_db

    t = time.perf_counter()
    docs = []  # (path, [(chunk id, text, vector)])
    for title in dict.fromkeys(g[0] for g in gold):
        # chunk ids are unique across collections: each collection's copy of a paragraph has its own
        docs.append((f"/squad/{title}.txt", [(f"{name}-{cid}", text, vec) for tt, cid, text, vec in gold
                                             if tt == title]))
    for d in range(0, len(dtexts), CHUNKS_PER_DOC):
        docs.append((f"/distract/doc{d // CHUNKS_PER_DOC:06d}.txt",
                     [(hashlib.sha1(f"{name}:d:{i}".encode()).hexdigest(), dtexts[i], dvecs[i])
                      for i in range(d, min(d + CHUNKS_PER_DOC, len(dtexts)))]))
    admin.execute("ALTER TABLE enclave_chunks DISABLE TRIGGER enclave_chunks_check")
    with admin.transaction():
        with admin.cursor() as cur:
            with cur.copy("COPY enclave_documents (collection, path, content_hash, size, mtime_ns, kind, pages, "
                          "state, chunks) FROM STDIN") as cp:
                for path, chunks in docs:
                    cp.write_row((name, path, hashlib.sha256(path.encode()).hexdigest(), 1000, 0, "txt", 1,
                                  "indexed", len(chunks)))
        ids = dict(admin.execute("SELECT path, id FROM enclave_documents WHERE collection = %s", (name,)).fetchall())
        with admin.cursor() as cur:
            with cur.copy("COPY enclave_chunks (id, document_id, collection, idx, text, page_start, page_end, "
                          "char_start, char_end, tokens, embedding) FROM STDIN") as cp:
                for path, chunks in docs:
                    for i, (cid, text, vec) in enumerate(chunks):
                        cp.write_row((cid, ids[path], name, i, text, 1, 1, 0, len(text), int(len(text.split()) * 1.3),
                                      team_db.vector_text(vec)))
    admin.execute("ALTER TABLE enclave_chunks ENABLE TRIGGER enclave_chunks_check")
    copied = time.perf_counter()
    # The graph must fit in memory while it is built, or pgvector goes on far slower on disk:
    # 1M vectors of 384 floats are 1.5 GB before their neighbour lists.
    admin.execute(f"SET maintenance_work_mem = '{1 if len(dvecs) < 300_000 else 6}GB'")
    # Recording the dimension builds the collection's HNSW index once, over every row.
    admin.execute("UPDATE enclave_collections SET embed_model = %s, embed_dim = %s WHERE name = %s",
                  (model, int(dvecs.shape[1]), name))
    indexed = time.perf_counter()
    admin.execute("VACUUM ANALYZE enclave_chunks")
    admin.execute("VACUUM ANALYZE enclave_documents")
    end = time.perf_counter()
    return {"copy_s": round(copied - t, 1), "hnsw_build_s": round(indexed - copied, 1),
            "vacuum_analyze_s": round(end - indexed, 1), "total_s": round(end - t, 1)}


def variant_search(team, function: str):
    from rag.index.query import query_words
    from rag.index.team import keyword_stages

    def keyword_search(collection, query, k):
        words = query_words(query)
        if not words:
            return []
        rows = team._read(
            f"SELECT chunk_id, score FROM {function}(%s, "
            "ARRAY(SELECT websearch_to_tsquery('english', s) FROM unnest(%s::text[]) WITH ORDINALITY u(s, n) "
            "ORDER BY n), websearch_to_tsquery('english', %s), %s)",
            (collection.removeprefix("team:"), keyword_stages(words), " or ".join(words), k)).fetchall()
        return [(r[0], float(r[1])) for r in rows]
    return keyword_search


def create_variants(admin, role: str, names) -> None:
    for name in names:
        if name in VARIANTS:
            admin.execute(f"DROP FUNCTION IF EXISTS bench_kw_{name}(TEXT, tsquery[], tsquery, INTEGER)")
            admin.execute(VARIANTS[name].replace("FUNCNAME", f"bench_kw_{name}"))
            admin.execute(f"GRANT EXECUTE ON FUNCTION bench_kw_{name}(TEXT, tsquery[], tsquery, INTEGER) TO {role}")


def rank_of(gold: str, ids) -> int | None:
    for r, i in enumerate(ids, start=1):
        if i == gold:
            return r
    return None


def quality(ranks, cutoffs) -> dict:
    n = len(ranks)
    out = {f"at_{c}": round(sum(1 for r in ranks if r is not None and r <= c) / n, 4) for c in cutoffs}
    out["mrr"] = round(sum(1 / r for r in ranks if r is not None) / n, 4)
    return out


def paired(base, other, cutoff, seed=1) -> dict:
    """other - base in points of hit@cutoff, bootstrap 95% interval, and the discordant pairs."""
    a = np.array([r is not None and r <= cutoff for r in base], dtype=float)
    b = np.array([r is not None and r <= cutoff for r in other], dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(4000, len(a)))
    diffs = (b[idx] - a[idx]).mean(axis=1) * 100
    return {"diff_points": round(float((b - a).mean() * 100), 2),
            "ci95_points": [round(float(np.percentile(diffs, 2.5)), 2), round(float(np.percentile(diffs, 97.5)), 2)],
            "only_base_hit": int(((a == 1) & (b == 0)).sum()), "only_other_hit": int(((a == 0) & (b == 1)).sum())}


def measure(team, name: str, questions, qvecs, ways: dict, warmup: int) -> dict:
    from rag.answer.retrieval import CANDIDATES, Retriever, _rrf

    collection = "team:" + name
    times = {w: {p: [] for p in ("vector", "keyword", "rows", "fill", "fused")} for w in ways}
    ranks = {w: {"keyword": [], "vector": [], "fused": []} for w in ways}
    original = {m: getattr(team, m) for m in ("vector_search", "keyword_search", "chunks_by_id", "vectors")}
    clock: dict[str, float] = {}

    def timed(method, part):
        def call(*a, **kw):
            t = time.perf_counter()
            try:
                return method(*a, **kw)
            finally:
                clock[part] = clock.get(part, 0.0) + (time.perf_counter() - t) * 1000
        return call

    names = list(ways)
    items = [(questions[i % len(questions)], qvecs[i % len(questions)], i < warmup)
             for i in range(warmup)] + [(q, v, False) for q, v in zip(questions, qvecs)]
    for n, ((q, gold), v, warm) in enumerate(items):
        gold = f"{name}-{gold}"
        order = names[n % len(names):] + names[:n % len(names)]
        for way in order:
            team.keyword_search = ways[way]
            team.vector_search = original["vector_search"]
            for method, part in (("vector_search", "vector"), ("keyword_search", "keyword"),
                                 ("chunks_by_id", "rows"), ("vectors", "fill")):
                setattr(team, method, timed(getattr(team, method), part))
            clock.clear()
            try:
                retriever = Retriever(team, None)
                t = time.perf_counter()
                vh, kh = retriever.candidates(q, collection, K, v)
                hits = retriever.finish(collection, v, vh, kh, K)
                fused_ms = (time.perf_counter() - t) * 1000
            finally:
                for m, f in original.items():
                    setattr(team, m, f)
            if warm:
                continue
            scores = _rrf((vh, kh))
            fused = sorted(scores, key=lambda c: (-scores[c], c))
            assert [h.chunk_id for h in hits] == fused[:K]
            ranks[way]["keyword"].append(rank_of(gold, [i for i, _ in kh]))
            ranks[way]["vector"].append(rank_of(gold, [i for i, _ in vh]))
            ranks[way]["fused"].append(rank_of(gold, fused))
            times[way]["fused"].append(fused_ms)
            for part in ("vector", "keyword", "rows", "fill"):
                times[way][part].append(clock.get(part, 0.0))
    out: dict = {"questions": len(questions), "candidates_per_method": CANDIDATES * K, "K": K}
    for w in ways:
        out[w] = {"keyword_recall": quality(ranks[w]["keyword"], (1, 5, 20)),
                  "vector_recall": quality(ranks[w]["vector"], (1, 5, 20)),
                  "fused_hit": quality(ranks[w]["fused"], (1, K)),
                  "latency": {p: summary(ms) for p, ms in times[w].items()}}
    for w in ways:
        for base in (b for b in ("before", "after") if b in ways and b != w):
            out[w][f"vs_{base}"] = {
                "fused_hit_at_5": paired(ranks[base]["fused"], ranks[w]["fused"], K),
                "fused_hit_at_1": paired(ranks[base]["fused"], ranks[w]["fused"], 1),
                "keyword_recall_at_20": paired(ranks[base]["keyword"], ranks[w]["keyword"], 20),
                "keyword_recall_at_5": paired(ranks[base]["keyword"], ranks[w]["keyword"], 5),
                "fused_p50_ratio": round(out[w]["latency"]["fused"]["p50_ms"]
                                         / out[base]["latency"]["fused"]["p50_ms"], 3)}
    return out


def profile(team, name: str, questions, qvecs, warmup: int) -> dict:
    """Where the fused search's time goes at this size, statement by statement (the engine's
    path with the "after" keyword query), and other shapes of the same search, all
    interleaved per question: the two queries one after the other on one connection (the
    engine's path before its keyword half got a connection of its own), and one statement
    (vector, keyword, chunk rows and the cosines in one round trip). (Runs before the engine
    ran the two queries concurrently also timed them on two connections written out here,
    "two_connections" in their JSON; the engine's path is that shape now.)"""
    from psycopg import sql

    from rag.answer.retrieval import CANDIDATES, Retriever, _rrf
    from rag.index.query import query_words
    from rag.index.team import keyword_stages, vector_text

    collection, n = "team:" + name, CANDIDATES * K
    dim = int(team.collection(collection)["embed_dim"])
    vec_sql = sql.SQL("SELECT id, (embedding::vector({dim})) <=> %s::vector({dim}) AS d FROM enclave_chunks "
                      "WHERE collection = {name} AND embedding IS NOT NULL "
                      "ORDER BY (embedding::vector({dim})) <=> %s::vector({dim}) LIMIT {k}").format(
        dim=sql.Literal(dim), name=sql.Literal(name), k=sql.Literal(n))
    kw_sql = ("SELECT chunk_id, score FROM enclave_keyword_search(%s, ARRAY(SELECT websearch_to_tsquery('english', s) "
              "FROM unnest(%s::text[]) WITH ORDINALITY u(s, n) ORDER BY n), websearch_to_tsquery('english', %s), %s)")
    one_sql = sql.SQL("""WITH q AS (SELECT %(v)s::vector({dim}) AS v),
        vh AS (SELECT id, (embedding::vector({dim})) <=> (SELECT v FROM q) AS d FROM enclave_chunks
               WHERE collection = {name} AND embedding IS NOT NULL
               ORDER BY (embedding::vector({dim})) <=> (SELECT v FROM q) LIMIT {k}),
        kh AS (SELECT chunk_id AS id, score FROM enclave_keyword_search({name}, ARRAY(SELECT websearch_to_tsquery(
               'english', s) FROM unnest(%(stages)s::text[]) WITH ORDINALITY u(s, n) ORDER BY n),
               websearch_to_tsquery('english', %(ranked)s), {k})),
        ids AS (SELECT id FROM vh UNION SELECT id FROM kh)
        SELECT c.id, vh.d, kh.score, d.path, d.collection, c.text, c.page_start, c.page_end, c.char_start,
               c.char_end, c.unit, 1 - ((c.embedding::vector({dim})) <=> (SELECT v FROM q))
        FROM ids JOIN enclave_chunks c ON c.id = ids.id JOIN enclave_documents d ON d.id = c.document_id
        LEFT JOIN vh ON vh.id = c.id LEFT JOIN kh ON kh.id = c.id""").format(
        dim=sql.Literal(dim), name=sql.Literal(name), k=sql.Literal(n))
    db = team.db
    parts = {p: [] for p in ("select_1", "collection_lookup", "vector", "keyword", "rows", "fill",
                             "engine", "sequential", "one_statement")}
    same = []

    def ms(f):
        t = time.perf_counter()
        out = f()
        return (time.perf_counter() - t) * 1000, out

    def engine(q, v):
        r = Retriever(team, None)
        vh, kh = r.candidates(q, collection, K, v)
        return [h.chunk_id for h in r.finish(collection, v, vh, kh, K)]

    def sequential(q, v):  # the engine's path until the keyword half got its own connection
        r = Retriever(team, None)
        vh = team.vector_search(collection, v, n)
        kh = team.keyword_search(collection, q, n)
        return [h.chunk_id for h in r.finish(collection, v, vh, kh, K)]

    def one(q, v):
        words = query_words(q)
        rows = db.execute(one_sql, {"v": vector_text(v), "stages": keyword_stages(words),
                                    "ranked": " or ".join(words)}).fetchall()
        vh = sorted(((r[0], 1 - r[1]) for r in rows if r[1] is not None), key=lambda h: -h[1])
        kh = sorted(((r[0], r[2]) for r in rows if r[2] is not None), key=lambda h: (-h[1], h[0]))
        scores = _rrf((vh, kh))
        return sorted(scores, key=lambda c: (-scores[c], c))[:K]

    ways = {"engine": engine, "sequential": sequential, "one_statement": one}
    items = [(questions[i][0], qvecs[i], True) for i in range(warmup)] + [
        (q, v, False) for (q, _), v in zip(questions, qvecs)]
    for i, (q, v, warm) in enumerate(items):
        words = query_words(q)
        text = vector_text(v)
        got = {}
        timings = {
            "select_1": ms(lambda: db.execute("SELECT 1").fetchall())[0],
            "collection_lookup": ms(lambda: team.collection(collection))[0],
            "vector": ms(lambda: db.execute(vec_sql, (text, text)).fetchall()),
            "keyword": ms(lambda: db.execute(kw_sql, (name, keyword_stages(words), " or ".join(words), n)).fetchall()),
        }
        ids = list(dict.fromkeys([r[0] for r in timings["vector"][1]] + [r[0] for r in timings["keyword"][1]]))
        timings["vector"], timings["keyword"] = timings["vector"][0], timings["keyword"][0]
        timings["rows"] = ms(lambda: team.chunks_by_id(ids))[0]
        timings["fill"] = ms(lambda: team.vectors(collection, ids[:5]))[0]  # five chunks' vectors, as a fill-in
        names = list(ways)
        for w in names[i % len(names):] + names[:i % len(names)]:
            timings[w], got[w] = ms(lambda: ways[w](q, v))
        if warm:
            continue
        for p, t in timings.items():
            parts[p].append(t)
        same.append(all(got[w] == got["engine"] for w in ways))
    out = {p: summary(t) for p, t in parts.items()}
    out["same_top5_as_engine"] = round(sum(same) / len(same), 3)
    plans = {}
    q, v = questions[0][0], qvecs[0]
    words, text = query_words(q), vector_text(v)
    for label, stmt, params in (("vector", vec_sql, (text, text)),
                                ("keyword", kw_sql, (name, keyword_stages(words), " or ".join(words), n))):
        plan = db.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + (stmt if isinstance(stmt, sql.Composed)
                          else sql.SQL(stmt)), params).fetchone()[0][0]
        plans[label] = {"planning_ms": plan["Planning Time"], "execution_ms": plan["Execution Time"]}
    out["explain_first_question"] = plans
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--ways", default="before,after", help="before, after and names in VARIANTS")
    parser.add_argument("--questions", type=int, default=0, help="ask only the first N (0: all)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--profile", action="store_true", help="also profile the fused search at the largest size")
    parser.add_argument("--keep", default="", help="a folder: leave servers and database running, and write there "
                        "how to reuse them (servers.json; `python -m tests.servers stop FOLDER` stops them)")
    parser.add_argument("--reuse", default="", help="a --keep folder: reuse its servers, database and collections")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "team_keyword_quality.json"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    way_names = args.ways.split(",")

    from rag.config import TeamSettings, default_embedding_model
    from rag.embedding import SentenceEmbedder
    from rag.index import team as team_db
    from team_index import setup_team
    from tests.servers import start_team_servers

    started = time.time()
    result: dict = {"cpu_count": os.cpu_count(), "load_avg_start": load(),
                    "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "sizes": []}
    embedder = SentenceEmbedder(default_embedding_model())
    embedder.warm_up()
    paragraphs, questions = squad()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(questions))
    questions = [questions[i] for i in order]
    if args.questions:
        questions = questions[:args.questions]
    gvecs = embed_cached(embedder, [p[2] for p in paragraphs], "gold")
    gold = [(t, cid, text, v) for (t, cid, text), v in zip(paragraphs, gvecs)]
    qvecs, qms = [], []
    for q, _ in questions:  # one at a time, as a search embeds its question
        t = time.perf_counter()
        qvecs.append(np.asarray(embedder.embed([q])[0], dtype=np.float32))
        qms.append((time.perf_counter() - t) * 1000)
    passages, pool, drawn = distractor_text(max(sizes) - len(gold), args.seed)
    pvecs = embed_cached(embedder, passages, "passages")  # all of them: one cache for every size
    passages, pvecs = passages[:max(sizes) - len(gold)], pvecs[:max(sizes) - len(gold)]
    svecs = embed_cached(embedder, pool, "pool")
    noise = rng.normal(0, 0.2 / np.sqrt(svecs.shape[1]), size=(len(drawn), svecs.shape[1])).astype(np.float32)
    dvecs = np.concatenate([pvecs, np.stack([svecs[p].mean(axis=0) for p in drawn]) + noise]) if drawn else pvecs
    dvecs /= np.linalg.norm(dvecs, axis=1, keepdims=True)
    dtexts = passages + [" ".join(pool[i] for i in p) for p in drawn]
    result["data"] = {
        "gold": f"{len(gold)} SQuAD 2.0 dev paragraphs ({SQUAD.name}), one chunk each, real vectors",
        "questions": f"{len(questions)} answerable questions (distinct texts), each with its paragraph as gold",
        "distractors": f"{len(passages)} contiguous ~110-word passages of {', '.join(DISTRACTOR_FILES)} "
                       f"(shared/corpus/office), real vectors; the rest 3-6 sentences drawn from {len(pool)} of "
                       "their sentences, vector = normalised mean of the sentences' real vectors + noise 0.2",
        "embedder": embedder.name, "query_embed_ms": summary(qms),
    }
    tmp = Path(tempfile.mkdtemp(prefix="enclave-kwquality-"))
    kept = json.loads((Path(args.reuse) / "servers.json").read_text()) if args.reuse else None
    if kept:
        from tests.servers import TeamServers

        servers = TeamServers(Path(kept["ENCLAVE_TEST_SERVERS_DIR"]), int(kept["ENCLAVE_TEST_PG_PORT"]),
                              int(kept["ENCLAVE_TEST_TLS_PORT"]), int(kept["ENCLAVE_TEST_CERT_PORT"]),
                              Path(kept["ENCLAVE_TEST_CA_FILE"]))
    else:
        servers = start_team_servers((Path(args.keep) if args.keep else tmp) / "servers", replica=False)
    try:
        dbname, role, password = (kept["dbname"], kept["role"], kept["password"]) if kept else setup_team(servers)
        if args.keep:
            (Path(args.keep) / "servers.json").write_text(json.dumps({
                "pids": [p.pid for p in servers.processes], **servers.env(), "dbname": dbname, "role": role,
                "password": password}))
        admin = team_db.connect_catalog(servers.dsn(dbname=dbname))
        result["schema"] = team_db.migrate(admin)  # a reused database gets this checkout's function
        create_variants(admin, role, way_names)
        result["setup"] = ("PostgreSQL 18 + pgvector behind HAProxy TLS (tests/servers.py), the member's own role "
                           "under row-level security; ways alternate per question, order rotated")
        result["ways"] = way_names
        for size in sizes:
            name = f"qual{size}"
            if admin.execute("SELECT count(*) FROM enclave_chunks WHERE collection = %s", (name,)).fetchone()[0] == size:
                loading = {"total_s": 0.0, "reused": True}
            else:
                team_db.create_collection(admin, name)
                team_db.grant(admin, name, role)
                loading = fill(admin, name, gold, dtexts[:size - len(gold)], dvecs[:size - len(gold)], embedder.name)
            member = TeamSettings(postgres_dsn=servers.dsn(role, password, dbname), ca_file=str(servers.ca_file))
            team = team_db.open_team_index(member)
            ways = {}
            for w in (w for w in way_names if w != "none"):
                ways[w] = (before_search(team) if w == "before" else team.keyword_search if w == "after"
                           else variant_search(team, f"bench_kw_{w}"))
            entry = {"chunks": size, "load_s": loading["total_s"], "loading": loading, "load_avg_before": load()}
            if way_names != ["none"]:
                entry.update(measure(team, name, questions, qvecs, ways, args.warmup))
            entry["load_avg_after"] = load()
            if args.profile and size == sizes[-1]:
                entry["profile"] = profile(team, name, questions, qvecs, args.warmup)
                entry["profile"]["load_avg_after"] = load()
            team.close()
            result["sizes"].append(entry)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            print(json.dumps(entry), file=sys.stderr, flush=True)
        admin.close()
    finally:
        if not (args.keep or kept):
            servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_avg_end"] = load()
    result["total_s"] = round(time.time() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
