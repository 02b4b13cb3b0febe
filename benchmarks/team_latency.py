"""Search latency of a local collection against the same documents in a team collection,
and of a team collection while several members search it at once.

Starts PostgreSQL with pgvector behind its TLS terminator on 127.0.0.1 (tests/servers.py), or
uses those named by the ENCLAVE_TEST_* variables; indexes a folder once into a local
collection and once into team:bench with the bundled embedding model; then times, medians
and 95th percentiles over the questions:

- search_ms: Engine.search (embedding the question included), local and team;
- retrieve_ms: the same with the question's vector computed beforehand (what the servers
  and the network cost), local and team;
- concurrent: N member processes (each its own role and connection) searching team:bench
  at once with precomputed vectors: per-search latency and searches per second in all.

Nothing passes or fails on time.

    python benchmarks/team_latency.py ../shared/corpus/pdf --members 8 --out benchmarks/results/team_latency.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUESTIONS = [
    "What is the capital of Denmark?", "Who are the crazy ones?", "how many pages does the document have",
    "alphabet letters sample text", "population of Austria", "forms and fields in a PDF",
    "annotations on the page", "Arabic text", "an image inside the document", "document outline and chapters",
    "metadata of the file", "a table with two columns", "the title of the paper", "licence terms",
    "attachment in a PDF", "grayscale image",
]


def _percentiles(values: list[float]) -> dict:
    values = sorted(values)
    return {"p50": round(statistics.median(values), 2),
            "p95": round(values[min(len(values) - 1, int(len(values) * 0.95))], 2), "n": len(values)}


def _time(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _member(args) -> tuple[list[float], float]:
    """One member: connect and warm up, wait for the common start, search; (times, end)."""
    team_settings, vectors, repeat, k, start_at = args
    from rag.index.team import open_team_index
    from rag.answer.retrieval import Retriever

    index = open_team_index(team_settings)
    retriever = Retriever(index, None)
    times = []
    try:
        question, vector = vectors[0]
        retriever.finish("team:bench", vector, *retriever.candidates(question, "team:bench", k, vector), k)
        time.sleep(max(0.0, start_at - time.time()))
        for _ in range(repeat):
            for question, vector in vectors:
                t = time.perf_counter()
                v, kw = retriever.candidates(question, "team:bench", k, vector)
                retriever.finish("team:bench", vector, v, kw, k)
                times.append((time.perf_counter() - t) * 1000)
        end = time.time()
    finally:
        index.close()
    return times, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default=str(ROOT.parent / "shared" / "corpus" / "pdf"))
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the questions")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import secrets

    from psycopg import sql

    from rag.config import Settings, TeamSettings
    from rag.embedding import SentenceEmbedder
    from rag.engine import Engine
    from rag.config import default_embedding_model
    from rag.index import team as team_db
    from tests.servers import TeamServers, start_team_servers

    os.environ["HF_HUB_OFFLINE"] = "1"
    servers = TeamServers.from_env()
    started = servers is None
    if started:
        servers = start_team_servers(Path(tempfile.mkdtemp(prefix="enclave-bench-")))
    suffix = secrets.token_hex(4)
    dbname = f"enclave_bench_{suffix}"
    root = team_db.connect_catalog(servers.dsn())
    root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    roles = {}
    for n in range(max(1, args.members)):
        role, password = f"member{n}_{suffix}", secrets.token_hex(8)
        root.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        roles[role] = password
    admin = team_db.connect_catalog(servers.dsn(dbname=dbname))
    team_db.migrate(admin)
    team_db.create_collection(admin, "bench")
    for role in roles:
        team_db.grant(admin, "bench", role, write=True)
    admin.close()

    def team_for(role: str) -> TeamSettings:
        return TeamSettings(postgres_dsn=servers.dsn(role, roles[role], dbname), ca_file=str(servers.ca_file))

    first = next(iter(roles))
    embedder = SentenceEmbedder(default_embedding_model())
    embedder.warm_up()
    report: dict = {"machine": platform.platform(), "cpus": os.cpu_count(), "folder": args.folder,
                    "members": args.members, "k": args.k, "questions": len(QUESTIONS), "repeat": args.repeat}
    try:
        with tempfile.TemporaryDirectory() as data:
            engine = Engine(data, settings=Settings(team=team_for(first)), embedder=embedder)
            t = time.perf_counter()
            local = engine.index_all([args.folder], collection="bench")
            report["index_local_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            shared = engine.index_all([args.folder], collection="team:bench")
            report["index_team_s"] = round(time.perf_counter() - t, 2)
            report["chunks"] = {"local": engine.local.count_chunks("bench"),
                                "team": engine.team.count_chunks("team:bench")}
            report["indexed"] = {"local": local.indexed, "team": shared.indexed}
            for name in ("bench", "team:bench"):  # warm both paths once
                engine.search(QUESTIONS[0], name, args.k)
            where = {"local": "bench", "team": "team:bench"}
            # Interleaved, question by question, so a change in the machine's load hits both alike.
            searched: dict[str, list[float]] = {label: [] for label in where}
            for _ in range(args.repeat):
                for q in QUESTIONS:
                    for label, name in where.items():
                        searched[label] += _time(lambda: engine.search(q, name, args.k), 1)
            report["search_ms"] = {label: _percentiles(times) for label, times in searched.items()}
            vectors = [(q, embedder.embed([q])[0]) for q in QUESTIONS]
            from rag.answer.retrieval import Retriever

            retrievers = {label: Retriever(engine._index_for(name), embedder) for label, name in where.items()}
            retrieved: dict[str, list[float]] = {label: [] for label in where}
            for _ in range(args.repeat):
                for q, v in vectors:
                    for label, name in where.items():
                        r = retrievers[label]
                        t = time.perf_counter()
                        r.finish(name, v, *r.candidates(q, name, args.k, v), args.k)
                        retrieved[label].append((time.perf_counter() - t) * 1000)
            report["retrieve_ms"] = {label: _percentiles(times) for label, times in retrieved.items()}
            engine.close()

        concurrent = {}
        for members in sorted({1, args.members}):
            start_at = time.time() + 30 + 5 * members  # after every member has started and warmed up
            jobs = [(team_for(role), vectors, args.repeat, args.k, start_at) for role in list(roles)[:members]]
            with multiprocessing.get_context("spawn").Pool(members) as pool:
                results = pool.map(_member, jobs)
            wall = max(end for _, end in results) - start_at
            times = [ms for r, _ in results for ms in r]
            concurrent[str(members)] = {**_percentiles(times), "searches_per_s": round(len(times) / wall, 1)}
        report["concurrent_retrieve_ms"] = concurrent
    finally:
        root.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        for role in roles:
            root.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        root.close()
        if started:
            servers.stop()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
