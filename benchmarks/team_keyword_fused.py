"""A member's team keyword and fused search at 10k and 100k chunks, the keyword query before
and after it moved into enclave_keyword_search (migration 6: the GIN index serves a member, and
the chunks holding the most of the question's words are ranked, not every match; issue 22).

Loads each collection by COPY (SQuAD sentences, 3 to 6 per chunk, random unit vectors; the
dimension trigger is off during the load and the collection's HNSW index is built once
after it), then alternates before and after for each of the 40 questions, as a member (own
role, TLS, row-level security): keyword (TeamIndex.keyword_search), fused (the engine's
Retriever: vector + keyword, RRF, chunk rows, cosine fill-in, question vector given); the
top-20 overlap of the two keyword lists; EXPLAIN (ANALYZE, BUFFERS) for the first question
(see explain()).

    .venv/bin/python benchmarks/team_keyword_fused.py --sizes 10000,100000
    # or against a running server, reusing collections that already hold enough chunks:
    .venv/bin/python benchmarks/team_keyword_fused.py --admin-dsn ... --member-dsn ... \
        --collections 10000=kw10000,100000=bench

Nothing here passes or fails on time.
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

import numpy as np  # noqa: E402

from team_index import CHUNKS_PER_DOC, K, load, squad_text, summary  # noqa: E402

DIM = 384

# TeamIndex.keyword_search before this change: every chunk matching any word is ranked.
BEFORE = """WITH q AS (SELECT websearch_to_tsquery('english', %s) AS q),
    candidates AS MATERIALIZED (
        SELECT c.id, c.tsv
        FROM enclave_chunks c JOIN enclave_documents d ON d.id = c.document_id, q
        WHERE c.collection = %s AND d.state = 'indexed' AND c.tsv @@ q.q
        ORDER BY ts_rank(c.tsv, q.q) DESC, c.id LIMIT %s)
SELECT candidates.id, ts_rank_cd(candidates.tsv, q.q) AS score FROM candidates, q
ORDER BY score DESC, candidates.id LIMIT %s"""


def before_search(team):
    from rag.index.query import query_words

    def keyword_search(collection, query, k):
        words = query_words(query)
        if not words:
            return []
        rows = team._read(BEFORE, (" or ".join(words), collection.removeprefix("team:"), max(1000, 20 * k), k))
        return [(r[0], float(r[1])) for r in rows]
    return keyword_search


def fill(admin, name: str, size: int, sentences, seed: int) -> float:
    """COPY `size` chunks into a new collection `name`; returns seconds."""
    from rag.index import team as team_db

    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    have = admin.execute("SELECT count(*) FROM enclave_chunks WHERE collection = %s", (name,)).fetchone()[0]
    if have >= size:
        return 0.0
    admin.execute("ALTER TABLE enclave_chunks DISABLE TRIGGER enclave_chunks_check")  # checked below instead
    with admin.transaction():
        with admin.cursor() as cur:
            with cur.copy("COPY enclave_documents (collection, path, content_hash, size, mtime_ns, kind, pages, "
                          "state, chunks) FROM STDIN") as cp:
                for d in range(size // CHUNKS_PER_DOC):
                    cp.write_row((name, f"/bench/{name}/doc{d:06d}.txt", hashlib.sha256(f"{name}{d}".encode())
                                  .hexdigest(), 1000, 0, "txt", 5, "indexed", CHUNKS_PER_DOC))
        ids = [r[0] for r in admin.execute("SELECT id FROM enclave_documents WHERE collection = %s ORDER BY path",
                                           (name,))]
        with admin.cursor() as cur:
            with cur.copy("COPY enclave_chunks (id, document_id, collection, idx, text, page_start, page_end, "
                          "char_start, char_end, tokens, embedding) FROM STDIN") as cp:
                for d, doc in enumerate(ids):
                    for i in range(CHUNKS_PER_DOC):
                        picks = rng.choice(len(sentences), size=int(rng.integers(3, 7)), replace=False)
                        text = " ".join(sentences[p] for p in picks)
                        v = rng.normal(size=DIM).astype(np.float32)
                        cp.write_row((hashlib.sha1(f"{name}:{d}:{i}".encode()).hexdigest(), doc, name, i, text,
                                      1, 1, 0, len(text), 100, team_db.vector_text(v / np.linalg.norm(v))))
    admin.execute("ALTER TABLE enclave_chunks ENABLE TRIGGER enclave_chunks_check")
    # Recording the dimension builds the collection's HNSW index once, over every row.
    admin.execute("UPDATE enclave_collections SET embed_model = 'random', embed_dim = %s WHERE name = %s",
                  (DIM, name))
    admin.execute("VACUUM ANALYZE enclave_chunks")
    admin.execute("VACUUM ANALYZE enclave_documents")
    return time.perf_counter() - t


def measure(team, name: str, questions, qvecs, warmup: int = 3) -> dict:
    from rag.answer.retrieval import CANDIDATES, Retriever

    after = team.keyword_search
    ways = {"before": before_search(team), "after": after}
    out = {w: {"keyword": [], "fused": []} for w in ways}
    overlap = []
    for n, (q, v) in enumerate(zip(questions, qvecs)):
        lists = {}
        for way in (("before", "after") if n % 2 == 0 else ("after", "before")):
            team.keyword_search = ways[way]
            try:
                t = time.perf_counter()
                lists[way] = [i for i, _ in team.keyword_search("team:" + name, q, CANDIDATES * K)]
                keyword_ms = (time.perf_counter() - t) * 1000
                retriever = Retriever(team, None)
                t = time.perf_counter()
                vh, kh = retriever.candidates(q, "team:" + name, K, v)
                retriever.finish("team:" + name, v, vh, kh, K)
                fused_ms = (time.perf_counter() - t) * 1000
            finally:
                team.keyword_search = after
            if n >= warmup:
                out[way]["keyword"].append(keyword_ms)
                out[way]["fused"].append(fused_ms)
        if n >= warmup:
            b, a = lists["before"], lists["after"]
            overlap.append(len(set(b) & set(a)) / max(1, len(b)))
    result = {w: {m: summary(ms) for m, ms in modes.items()} for w, modes in out.items()}
    result["keyword_top20_overlap_after_vs_before"] = round(float(np.mean(overlap)), 3)
    result["keyword_top20_overlap_min"] = round(float(min(overlap)), 3)
    return result


STRICT = """SELECT c.id FROM enclave_chunks c JOIN enclave_documents d ON d.id = c.document_id
WHERE c.collection = %s AND d.state = 'indexed' AND c.tsv @@ websearch_to_tsquery('english', %s)"""


def explain(team, admin, name: str, question: str) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS): the before query as the member; the question's words all in
    one chunk as the member (row-level security) and as the owner (none), which shows whether
    the GIN index serves it; the after function as the member."""
    from rag.index import team as team_db
    from rag.index.query import query_words

    words = query_words(question)
    everything = " ".join(words)
    runs = {"before_member": (team.db, BEFORE, (" or ".join(words), name, 1000, 20)),
            "all_words_member": (team.db, STRICT, (name, everything)),
            "all_words_owner": (admin, STRICT, (name, everything)),
            "after_member": (team.db, "SELECT * FROM enclave_keyword_search(%s, ARRAY(SELECT websearch_to_tsquery("
                             "'english', s) FROM unnest(%s::text[]) WITH ORDINALITY u(s, n) ORDER BY n), "
                             "websearch_to_tsquery('english', %s), 20)",
                             (name, team_db.keyword_stages(words), " or ".join(words)))}
    plans = {way: [r[0] for r in db.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()]
             for way, (db, sql, params) in runs.items()}
    return {"question": question, "plans": plans}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--admin-dsn", default="")
    parser.add_argument("--member-dsn", default="")
    parser.add_argument("--collections", default="", help="SIZE=NAME,...: collections to reuse")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "team_keyword_fused.json"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    names = {int(s): n for s, n in (p.split("=") for p in args.collections.split(",") if p)}

    from rag.config import TeamSettings
    from rag.index import team as team_db

    started = time.time()
    result: dict = {"cpu_count": os.cpu_count(), "load_avg_start": load(),
                    "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                    "setup": "PostgreSQL 18.4 + pgvector 0.8.5 behind HAProxy TLS, member role under row-level "
                             "security; before/after alternate per question; vector search as in TeamIndex",
                    "sizes": []}
    sentences, questions = squad_text(3000, args.queries + 3, args.seed)
    rng = np.random.default_rng(args.seed)
    qvecs = [v / np.linalg.norm(v) for v in rng.normal(size=(len(questions), DIM)).astype(np.float32)]
    servers, tmp = None, None
    if args.admin_dsn:
        admin_dsn, member_dsn = args.admin_dsn, args.member_dsn
    else:
        from team_index import setup_team
        from tests.servers import start_team_servers

        tmp = Path(tempfile.mkdtemp(prefix="enclave-kwfused-"))
        servers = start_team_servers(tmp / "servers", replica=False)
        dbname, role, password = setup_team(servers)
        admin_dsn, member_dsn = servers.dsn(dbname=dbname), servers.dsn(role, password, dbname)
    try:
        admin = team_db.connect_catalog(admin_dsn)
        role = re.search(r"user=(\S+)", member_dsn).group(1)
        for size in sizes:
            name = names.get(size, f"kw{size}")
            team_db.create_collection(admin, name)
            team_db.grant(admin, name, role)
            load_s = fill(admin, name, size, sentences, args.seed + size)
            team = team_db.open_team_index(TeamSettings(postgres_dsn=member_dsn))
            entry = {"chunks": size, "collection": name, "load_s": round(load_s, 1), "load_avg_before": load(),
                     **measure(team, name, questions, qvecs), "load_avg_after": load(),
                     "explain": explain(team, admin, name, questions[3])}
            team.close()
            result["sizes"].append(entry)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            print(json.dumps({k: v for k, v in entry.items() if k != "explain"}), file=sys.stderr, flush=True)
        admin.close()
    finally:
        if servers is not None:
            servers.stop()
            shutil.rmtree(servers.folder, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
    result["load_avg_end"] = load()
    result["total_s"] = round(time.time() - started, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
