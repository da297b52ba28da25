"""SQLite and PostgreSQL + pgvector side by side, in one run: retrieval quality on a BEIR set, and search
latency on synthetic indexes of growing size.

Quality: the BEIR corpus is ingested once into SQLite, copied into Postgres with its vectors (`index
copy`: nothing re-embedded), and both are scored by nDCG@10 in bm25, dense and hybrid mode.

Latency: the synthetic indexes of benchmarks/search_latency.py (Zipf words, clustered vectors) are
copied into Postgres (COPY-like load first, then one HNSW build, both timed); then the same queries run
against both backends, interleaved query by query so that machine noise hits both alike. Query
embedding is included. Reported: p50 and p95 per mode, plus a dense search filtered by access group.

The Postgres server is the embedded one (`expertkit db start`'s), started here under benchmarks/out/.

Run: .venv/bin/python benchmarks/index_backends.py [--beir ../shared/data/scifact] [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from expertkit.config import SearchSettings
from expertkit.evaluate.beir import load_beir
from expertkit.evaluate.retrieval import evaluate_retrieval
from expertkit.index.base import Filters
from expertkit.index.copy import copy_index
from expertkit.index.pgserver import PgServer
from expertkit.index.pgvector import PostgresIndex
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.retrieve import Retriever

OUT = Path(__file__).parent / "out"


def server() -> PgServer:
    base = Path(tempfile.gettempdir()) / "expertkit-bench-pg"  # the server's user must be able to enter it
    base.mkdir(mode=0o755, exist_ok=True)
    base.chmod(0o755)
    pg = PgServer(base / "data")
    pg.start()
    return pg


def quality(beir: Path, dsn: str, embedder: Embedder) -> list[dict]:
    data = load_beir(beir)
    sqlite_path = OUT / f"{beir.name}-quality.db"
    OUT.mkdir(parents=True, exist_ok=True)
    lite = SQLiteIndex(sqlite_path, cache_dir=OUT / f"cache-{beir.name}")
    Ingestor(lite, embedder).sync([data.corpus])  # incremental: a second run reads nothing
    t = time.perf_counter()
    schema = f"q_{beir.name.replace('-', '_')}"
    PostgresIndex(dsn, schema=schema).drop()  # a fresh copy, timed
    pg = PostgresIndex(dsn, schema=schema)
    report = copy_index(lite, pg)
    print(f"copied {report.chunks} chunks into postgres in {time.perf_counter() - t:.1f}s ({report.skipped} skipped)")
    rows = []
    for mode in ("bm25", "dense", "hybrid"):
        row = {"set": beir.name, "mode": mode}
        for name, index in (("sqlite", lite), ("postgres", pg)):
            scores = evaluate_retrieval(Retriever(index, embedder, SearchSettings(reranker="")), data, mode)
            row[name] = round(scores.ndcg10, 4)
        row["difference"] = round(row["postgres"] - row["sqlite"], 4)
        print(json.dumps(row))
        rows.append(row)
    lite.close()
    pg.close()
    return rows


def latency(size: int, dsn: str, embedder: Embedder, queries: int) -> list[dict]:
    from search_latency import build

    lite = SQLiteIndex(build(size), cache_dir=OUT / f"cache-{size}", ann_threshold=10**9)
    pg = PostgresIndex(dsn, schema=f"lat_{size}")
    if pg.stats().chunks != lite.stats().chunks:
        # access groups for the filtered case: every other source in g1 (idempotent on the cached database)
        lite.db.execute(
            "INSERT OR IGNORE INTO source_groups SELECT id, CASE WHEN id % 2 THEN 'g1' ELSE 'g2' END FROM sources"
        )
        pg.drop()
        pg = PostgresIndex(dsn, schema=f"lat_{size}")
        t = time.perf_counter()
        copy_index(lite, pg)  # loads first, then builds the HNSW graph once
        build_s = pg.ann_build_seconds
        loaded = time.perf_counter() - t - build_s
        print(f"{size:,}: postgres load {loaded:.1f}s, HNSW build {build_s:.1f}s")
    else:
        loaded = build_s = None
    rng = np.random.default_rng(7)
    texts = [" ".join(f"w{w}" for w in rng.integers(20, 3000, 4)) for _ in range(queries)]
    backends = {
        "sqlite": Retriever(lite, embedder, SearchSettings(reranker="")),  # fusion: the backends, not the reranker
        "postgres": Retriever(pg, embedder, SearchSettings(reranker="")),
    }
    for r in backends.values():  # load caches (SQLite's matrix) and warm Postgres's buffers
        for q in texts[:5]:
            r.search(q, k=10, mode="hybrid")
    cases = [("hybrid", None), ("bm25", None), ("dense", None), ("dense", Filters(groups=("g1",)))]
    rows = []
    for mode, filters in cases:
        times: dict[str, list[float]] = {name: [] for name in backends}
        for q in texts:
            for name, retriever in backends.items():  # interleaved: noise falls on both
                t = time.perf_counter()
                retriever.search(q, k=10, mode=mode, filters=filters)
                times[name].append((time.perf_counter() - t) * 1000)
        row = {"chunks": size, "mode": mode + (" +group filter" if filters else "")}
        for name, ts in times.items():
            ts.sort()
            row[f"{name}_p50_ms"] = round(statistics.median(ts), 1)
            row[f"{name}_p95_ms"] = round(ts[int(0.95 * len(ts)) - 1], 1)
        if loaded is not None:
            row["pg_load_s"], row["pg_hnsw_build_s"] = round(loaded, 1), round(build_s, 1)
        print(json.dumps(row))
        rows.append(row)
    lite.close()
    pg.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beir", type=Path, nargs="*", default=[Path(__file__).parents[2] / "shared/data/scifact"])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    pg = server()
    dsn = pg.status().dsn
    embedder = Embedder()
    embedder.encode(["warm up"])
    results = {"quality": [], "latency": []}
    try:
        for beir in args.beir:
            results["quality"] += quality(beir, dsn, embedder)
        for size in args.sizes:
            results["latency"] += latency(size, dsn, embedder, args.queries)
    finally:
        pg.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "index_backends.json").write_text(json.dumps(results, indent=2))
    print(f"\n{'set':<12} {'mode':<7} {'sqlite':>8} {'postgres':>9}")
    for r in results["quality"]:
        print(f"{r['set']:<12} {r['mode']:<7} {r['sqlite']:>8} {r['postgres']:>9}")
    print(f"\n{'chunks':>9} {'mode':<20} {'sqlite p50':>10} {'p95':>7} {'postgres p50':>12} {'p95':>7}")
    for r in results["latency"]:
        print(
            f"{r['chunks']:>9,} {r['mode']:<20} {r['sqlite_p50_ms']:>10} {r['sqlite_p95_ms']:>7}"
            f" {r['postgres_p50_ms']:>12} {r['postgres_p95_ms']:>7}"
        )


if __name__ == "__main__":
    main()
