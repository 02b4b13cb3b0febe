"""A member's team keyword query under row-level security, before and after migration 2.

Starts a throwaway PostgreSQL (tests/servers.py), applies migration 1, loads N synthetic
chunks built from real English sentences (the licence texts in /usr/share/common-licenses
and this repository's Markdown) into a granted collection and an ungranted one, then times
the keyword query as a member (granted through a group role) and as the owner, on migration
1's policies and on migration 2's, for the ranking before (ts_rank_cd over every match), the
one TeamIndex.keyword_search now uses, and two rejected ones; top-20 overlap with the
ts_rank_cd order says how much relevance each gives up. --plans prints EXPLAIN ANALYZE.

    .venv/bin/python benchmarks/team_keyword.py [--chunks 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import servers  # noqa: E402

from rag.index import team as team_db  # noqa: E402
from rag.index.query import query_words  # noqa: E402

QUESTIONS = [
    "What does the licence say about distributing modified copies of the program?",
    "How are the team collection's chunks and vectors kept consistent when a writer dies?",
    "Who may grant permission to use the software without warranty?",
]

RANKERS = {
    "ts_rank_cd (before)": """SELECT c.id, ts_rank_cd(c.tsv, q) AS score
       FROM enclave_chunks c JOIN enclave_documents d ON d.id = c.document_id,
            websearch_to_tsquery('english', %(q)s) q
       WHERE c.collection = %(c)s AND d.state = 'indexed' AND c.tsv @@ q
       ORDER BY score DESC, c.id LIMIT %(k)s""",
    "ts_rank only": """SELECT c.id, ts_rank(c.tsv, q) AS score
       FROM enclave_chunks c JOIN enclave_documents d ON d.id = c.document_id,
            websearch_to_tsquery('english', %(q)s) q
       WHERE c.collection = %(c)s AND d.state = 'indexed' AND c.tsv @@ q
       ORDER BY score DESC, c.id LIMIT %(k)s""",
    "ts_rank top 1000, then ts_rank_cd (after)": """WITH q AS (SELECT websearch_to_tsquery('english', %(q)s) q),
       cand AS MATERIALIZED (
           SELECT c.id, c.tsv FROM enclave_chunks c JOIN enclave_documents d ON d.id = c.document_id, q
           WHERE c.collection = %(c)s AND d.state = 'indexed' AND c.tsv @@ q.q
           ORDER BY ts_rank(c.tsv, q.q) DESC, c.id LIMIT greatest(1000, 20 * %(k)s))
       SELECT cand.id, ts_rank_cd(cand.tsv, q.q) AS score FROM cand, q
       ORDER BY score DESC, cand.id LIMIT %(k)s""",
    "first 2000 matches, ts_rank (rejected)": """WITH q AS (SELECT websearch_to_tsquery('english', %(q)s) q),
       cand AS MATERIALIZED (SELECT c.id, c.document_id, c.tsv FROM enclave_chunks c, q
                             WHERE c.collection = %(c)s AND c.tsv @@ q.q LIMIT 2000)
       SELECT cand.id, ts_rank(cand.tsv, q.q) AS score
       FROM cand JOIN enclave_documents d ON d.id = cand.document_id, q
       WHERE d.state = 'indexed'
       ORDER BY score DESC, cand.id LIMIT %(k)s""",
}


def sentences() -> list[str]:
    texts = []
    for folder, pattern in ((Path("/usr/share/common-licenses"), "*"), (ROOT, "**/*.md")):
        for path in folder.glob(pattern):
            if path.is_file() and ".venv" not in path.parts:
                try:
                    texts.append(path.read_text(errors="ignore"))
                except OSError:
                    pass
    out = [s.strip() for t in texts for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", t))]
    return [s for s in out if 30 <= len(s) <= 400]


def load(admin, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    pool = sentences()
    for name in ("bench", "other"):
        team_db.create_collection(admin, name)
    with admin.transaction():
        for collection, count in (("bench", n), ("other", n // 4)):
            docs = max(1, count // 20)
            ids = [admin.execute("INSERT INTO enclave_documents(collection, path, state) VALUES (%s, %s, 'indexed') "
                                 "RETURNING id", (collection, f"/docs/{collection}/{i}.txt")).fetchone()[0]
                   for i in range(docs)]
            with admin.cursor() as cur:
                rows = []
                for i in range(count):
                    text = " ".join(rng.choice(pool) for _ in range(rng.randint(3, 8)))
                    rows.append((f"{collection}-{i}", ids[i % docs], collection, i // docs, text, 0, len(text),
                                 len(text) // 4))
                with cur.copy("COPY enclave_chunks(id, document_id, collection, idx, text, char_start, char_end, "
                              "tokens) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
    admin.execute("ANALYZE")


def cd_scores(db, question: str, ids: list[str]) -> list[float]:
    scores = dict(db.execute("SELECT id, ts_rank_cd(tsv, websearch_to_tsquery('english', %s)) FROM enclave_chunks "
                             "WHERE id = ANY(%s)", (" or ".join(query_words(question)), ids)).fetchall())
    return [float(scores[i]) for i in ids]


def timed(db, sql: str, params: dict, runs: int) -> tuple[float, str]:
    times, plan = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        db.execute(sql, params).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    plan = "\n".join(r[0] for r in db.execute("EXPLAIN ANALYZE " + sql, params))
    return statistics.median(times), plan


def measure(label, admin, member, runs, rankers, k=20, show_plan=False) -> dict:
    out = {}
    baseline = None
    for name, sql in rankers.items():
        tops = [[r[0] for r in member.execute(sql, {"q": " or ".join(query_words(q)), "c": "bench", "k": k})]
                for q in QUESTIONS]
        if baseline is None:
            baseline = tops
        overlap = statistics.mean(len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(tops, baseline))
        first = statistics.mean(a[:1] == b[:1] for a, b in zip(tops, baseline))
        # Ids differ among chunks that tie (synthetic chunks share sentences): compare the
        # ts_rank_cd each result list earns, first place and the whole top-k, too.
        cd = [cd_scores(member, q, ids) for q, ids in zip(QUESTIONS, tops)]
        cd0 = [cd_scores(member, q, ids) for q, ids in zip(QUESTIONS, baseline)]
        best = statistics.mean(a[0] / b[0] if b and b[0] else 1.0 for a, b in zip(cd, cd0))
        mass = statistics.mean(sum(a) / sum(b) if sum(b) else 1.0 for a, b in zip(cd, cd0))
        out[f"{name} / top-{k} overlap with ts_rank_cd"] = round(overlap, 2)
        out[f"{name} / first result's ts_rank_cd vs best"] = round(best, 3)
        out[f"{name} / top-{k} ts_rank_cd sum vs best"] = round(mass, 3)
        print(f"{label:14} {name:42} top-{k} ids overlap {overlap:.2f}, same first {first:.2f}; "
              f"ts_rank_cd of first {best:.3f}, of top-{k} {mass:.3f} (of the ts_rank_cd order's)")
    for name, sql in rankers.items():
        for who, db in (("member", member), ("owner", admin)):
            ms = []
            for question in QUESTIONS:
                params = {"q": " or ".join(query_words(question)), "c": "bench", "k": k}
                m, plan = timed(db, sql, params, runs)
                ms.append(m)
                if show_plan and who == "member" and question is QUESTIONS[0]:
                    print(f"--- {label} / {name} / {who}\n{plan}")
            out[f"{name} / {who}"] = round(statistics.mean(ms), 1)
            print(f"{label:14} {name:42} {who:7} {statistics.mean(ms):8.1f} ms (mean of per-question medians)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plans", action="store_true")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="enclave-kw-", dir="/tmp"))
    os.chmod(folder, 0o755)
    port = servers.free_port()
    (folder / "certs").mkdir()
    certs = servers.make_certificates(folder / "certs")
    servers.start_postgres(folder, certs, port)
    dsn = (f"host=127.0.0.1 port={port} dbname=postgres user=enclave_admin password={servers.ADMIN_PASSWORD} "
           f"sslmode=verify-full sslrootcert={certs['ca']}")
    try:
        admin = team_db.connect_catalog(dsn)
        with admin.transaction():
            admin.execute("CREATE TABLE enclave_schema (version INTEGER PRIMARY KEY, "
                          "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            admin.execute(team_db.MIGRATIONS[0])
            admin.execute("INSERT INTO enclave_schema(version) VALUES (1)")
        admin.execute("CREATE ROLE readers NOLOGIN")
        admin.execute("CREATE ROLE alice LOGIN PASSWORD 'alice-secret'")
        admin.execute("GRANT readers TO alice")
        t0 = time.perf_counter()
        load(admin, args.chunks)
        team_db.grant(admin, "bench", "readers")
        print(f"loaded {args.chunks} + {args.chunks // 4} chunks in {time.perf_counter() - t0:.0f} s; "
              f"load average {os.getloadavg()}")
        member = team_db.connect_catalog(dsn.replace("user=enclave_admin", "user=alice")
                                         .replace(f"password={servers.ADMIN_PASSWORD}", "password=alice-secret"))
        rankers = dict(RANKERS)
        results = {"chunks": args.chunks, "load_average": os.getloadavg()}
        results["migration 1"] = measure("migration 1", admin, member, args.runs, rankers, show_plan=args.plans)
        with admin.transaction():
            admin.execute(team_db.MIGRATIONS[1])
        admin.execute("ANALYZE")
        results["migration 2"] = measure("migration 2", admin, member, args.runs, rankers, show_plan=args.plans)
        print(json.dumps(results, indent=1))
        if args.out:
            args.out.write_text(json.dumps(results, indent=1) + "\n")
        member.close()
        admin.close()
    finally:
        servers.TeamServers(folder, port, 0, 0, certs["ca"]).stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
