"""HNSW recall against exact search at several hnsw.ef_search values (issue 22), on the 100k
collection that benchmarks/team_keyword_quality.py --keep FOLDER left: its 293 SQuAD
questions as the member, exact = the same query with index scans off (a sequential scan),
p50 of the HNSW query with the values interleaved per question.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/team_ef_recall.py FOLDER [OUT.json]

Nothing here passes or fails.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

EFS = [100, 64, 40, 32]


def main() -> None:
    from rag.config import default_embedding_model
    from rag.embedding import SentenceEmbedder
    from rag.index import team as team_db
    from team_keyword_quality import squad
    from tests.servers import TeamServers

    kept = json.loads((Path(sys.argv[1]) / "servers.json").read_text())
    servers = TeamServers(Path(kept["ENCLAVE_TEST_SERVERS_DIR"]), int(kept["ENCLAVE_TEST_PG_PORT"]),
                          int(kept["ENCLAVE_TEST_TLS_PORT"]), int(kept["ENCLAVE_TEST_CERT_PORT"]),
                          Path(kept["ENCLAVE_TEST_CA_FILE"]))
    member = team_db.connect_catalog(servers.dsn(kept["role"], kept["password"], kept["dbname"]),
                                     str(servers.ca_file))
    _, questions = squad()
    embedder = SentenceEmbedder(default_embedding_model())
    embedder.warm_up()
    vecs = np.asarray(embedder.embed([q for q, _ in questions]), dtype=np.float32)
    dim = member.execute("SELECT embed_dim FROM enclave_collections WHERE name = 'qual100000'").fetchone()[0]
    query = (f"SELECT id FROM enclave_chunks WHERE collection = 'qual100000' AND embedding IS NOT NULL "
             f"ORDER BY (embedding::vector({dim})) <=> %s::vector({dim}) LIMIT 20")
    times = {ef: [] for ef in EFS}
    r10 = {ef: [] for ef in EFS}
    r20 = {ef: [] for ef in EFS}
    for i, v in enumerate(vecs):
        text = team_db.vector_text(v)
        member.execute("SET enable_indexscan = off")
        exact = [r[0] for r in member.execute(query, (text,)).fetchall()]
        member.execute("SET enable_indexscan = on")
        for ef in EFS[i % len(EFS):] + EFS[:i % len(EFS)]:
            member.execute(f"SET hnsw.ef_search = {ef}")
            t = time.perf_counter()
            got = [r[0] for r in member.execute(query, (text,)).fetchall()]
            times[ef].append((time.perf_counter() - t) * 1000)
            r10[ef].append(len(set(got[:10]) & set(exact[:10])) / 10)
            r20[ef].append(len(set(got) & set(exact)) / 20)
    out = {ef: {"p50_ms": round(statistics.median(times[ef]), 2), "recall_at_10": round(statistics.fmean(r10[ef]), 4),
                "recall_at_20": round(statistics.fmean(r20[ef]), 4)} for ef in EFS}
    print(json.dumps(out))
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
