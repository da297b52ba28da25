"""Search latency p50/p95 at 10k, 100k and 1M chunks, including the query embedding.

Chunks are synthetic (Zipf-distributed words over a 30k vocabulary, random unit vectors) so that
scale is cheap to build; the query is embedded by the real embedder every time. Above
index.ann_threshold (default 200k) unfiltered dense search goes through the usearch HNSW graph; its
build time is printed apart. Each size is built once and cached under benchmarks/out/.

Run: .venv/bin/python benchmarks/search_latency.py [--sizes 10000 100000 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from expertkit.config import SearchSettings
from expertkit.index.base import SourceRecord
from expertkit.index.sqlite import SQLiteIndex
from expertkit.models.embedder import Embedder
from expertkit.retrieve import Retriever
from expertkit.schema import Chunk

OUT = Path(__file__).parent / "out"
DIM = 384
VOCAB = 30_000
PER_SOURCE = 2_000


def words(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.minimum(rng.zipf(1.2, n), VOCAB) - 1


def build(size: int) -> Path:
    path = OUT / f"synthetic-{size}.db"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(size)
    vocab = [f"w{i}" for i in range(VOCAB)]
    index = SQLiteIndex(path.with_suffix(".tmp.db"), cache_dir=OUT / f"cache-{size}")
    index.bind_embedder("all-minilm-l6-v2", DIM)
    t = time.perf_counter()
    for s in range(0, size, PER_SOURCE):
        n = min(PER_SOURCE, size - s)
        ids = words(rng, n * 60).reshape(n, 60)
        chunks = [
            Chunk(" ".join(vocab[w] for w in row), f"/synthetic/{s}.txt", i, 0, 0, "txt", chunk_id=f"s{s}:{i}")
            for i, row in enumerate(ids)
        ]
        vec = rng.standard_normal((n, DIM), dtype=np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        index.write_source(SourceRecord(f"/synthetic/{s}.txt", f"h{s}", "txt"), chunks, vec)
    index.close()
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path.with_suffix(".tmp.db")) + suffix)
        if src.exists():
            src.rename(str(path) + suffix)
    print(f"built {size:,} chunks in {time.perf_counter() - t:.0f}s")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--ann-threshold",
        type=int,
        default=200_000,
        help="above this many chunks dense search uses HNSW (its one-off build is slow on 2 cores)",
    )
    args = ap.parse_args()
    embedder = Embedder()
    embedder.encode(["warm up"])
    rng = np.random.default_rng(7)
    results = []
    for size in args.sizes:
        index = SQLiteIndex(build(size), cache_dir=OUT / f"cache-{size}", ann_threshold=args.ann_threshold)
        retriever = Retriever(index, embedder, SearchSettings())
        t = time.perf_counter()
        retriever.search("w10 w200", k=10, mode="dense")  # load (or build) the dense caches once
        warm = time.perf_counter() - t
        queries = [" ".join(f"w{w}" for w in rng.integers(20, 3000, 4)) for _ in range(args.queries)]
        for mode in ("hybrid", "bm25", "dense"):
            times = []
            for q in queries:
                t = time.perf_counter()
                retriever.search(q, k=10, mode=mode)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            row = {
                "chunks": size,
                "mode": mode,
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[int(0.95 * len(times)) - 1], 1),
                "dense": "hnsw" if size > index.ann_threshold else "exact",
                "cache_load_s": round(warm, 1),
            }
            results.append(row)
            print(json.dumps(row))
        index.close()
    print(f"\n{'chunks':>10} {'mode':<7} {'p50 ms':>8} {'p95 ms':>8}  dense")
    for r in results:
        print(f"{r['chunks']:>10,} {r['mode']:<7} {r['p50_ms']:>8} {r['p95_ms']:>8}  {r['dense']}")


if __name__ == "__main__":
    main()
