"""Search latency, ANN recall, build time and memory at 10k, 100k and 1M chunks (SQLite index).

Chunks are synthetic so that scale is cheap to build, but their vectors are shaped like real ones: each is
a real MiniLM embedding of a SciFact sentence (4,000 of them, ../shared/data/scifact) plus Gaussian noise
(cosine about 0.8 to it), so the index holds topical clusters as a real corpus does; uniformly random
vectors would be the worst case no real corpus looks like. The text is Zipf-distributed words over a 30k
vocabulary for BM25. A quarter of the sources are in access group "half" (with a quarter more: half of
the chunks) and one in twenty in group "few".

Per size: the time to write the index (SQLite rows + FTS5), the time ``prepare_search`` takes at the end of
the ingest (the dense cache, and above ``--ann-threshold`` the HNSW graph), the process's resident memory
after a search, then p50/p95 of 200 queries per mode: hybrid, bm25 and dense with the query embedded by the
real embedder each time, and dense filtered by the two groups. ANN recall@10 is the overlap of the graph's
top 10 with the exact top 10 for 300 real SciFact claims (embedded once), unfiltered and filtered to
"half". Each size is built once and cached under benchmarks/out/.

Run: .venv/bin/python benchmarks/search_latency.py [--sizes 10000 100000 1000000] [--queries 200]
Writes benchmarks/results/search_latency.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from expertkit.config import SearchSettings
from expertkit.index.base import Filters, SourceRecord
from expertkit.index.sqlite import SQLiteIndex
from expertkit.models.embedder import Embedder
from expertkit.retrieve import Retriever
from expertkit.schema import Chunk

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
DIM = 384
VOCAB = 30_000
PER_SOURCE = 2_000
CENTERS = 4_000
NOISE = 0.75  # norm of the noise added to a unit centre: cosine to it about 0.8


def words(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.minimum(rng.zipf(1.2, n), VOCAB) - 1


def centers(embedder: Embedder | None = None) -> np.ndarray:
    """Real MiniLM embeddings of the first sentence of 4,000 SciFact abstracts (computed once, cached)."""
    path = OUT / "scifact-centers.npy"
    if path.exists():
        return np.load(path)
    texts = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            texts.append(f"{record.get('title', '')}. {record['text'].split('. ')[0]}")
            if len(texts) == CENTERS:
                break
    vectors = (embedder or Embedder()).encode(texts)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def groups_of(source: int) -> tuple[str, ...]:
    if source % 20 == 0:
        return ("few", "half")
    return ("half",) if source % 2 else ("everyone",)


def build(size: int) -> Path:
    """The synthetic index of ``size`` chunks (cached): its path."""
    path = OUT / f"clustered-{size}.db"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(size)
    hubs = centers()
    vocab = [f"w{i}" for i in range(VOCAB)]
    tmp = path.with_suffix(".tmp.db")
    for old in OUT.glob(tmp.name + "*"):
        old.unlink()
    index = SQLiteIndex(tmp, cache_dir=OUT / f"cache-tmp-{size}", ann_threshold=10**12)
    index.bind_embedder("all-minilm-l6-v2", DIM)
    t = time.perf_counter()
    for n_source, s in enumerate(range(0, size, PER_SOURCE)):
        n = min(PER_SOURCE, size - s)
        ids = words(rng, n * 60).reshape(n, 60)
        chunks = [
            Chunk(" ".join(vocab[w] for w in row), f"/synthetic/{s}.txt", i, 0, 0, "txt", chunk_id=f"s{s}:{i}")
            for i, row in enumerate(ids)
        ]
        noise = rng.standard_normal((n, DIM), dtype=np.float32) * (NOISE / np.sqrt(DIM))
        vec = hubs[rng.integers(0, len(hubs), n)] + noise
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        record = SourceRecord(f"/synthetic/{s}.txt", f"h{s}", "txt", groups=groups_of(n_source))
        index.write_source(record, chunks, vec.astype(np.float32))
    index.close()
    seconds = time.perf_counter() - t
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(tmp) + suffix)
        if src.exists():
            src.rename(str(path) + suffix)
    (OUT / f"clustered-{size}.json").write_text(json.dumps({"write_s": round(seconds, 1)}))
    print(f"built {size:,} chunks in {seconds:.0f}s")
    return path


def percentiles(times: list[float]) -> tuple[float, float]:
    """p50 (the median) and p95 by nearest rank: the ceil(0.95 n)-th fastest time, the 190th of 200."""
    p95 = np.percentile(times, 95, method="inverted_cdf")
    return round(float(np.median(times)), 1), round(float(p95), 1)


def scifact_claims(embedder: Embedder, n: int = 300) -> np.ndarray:
    texts = []
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            texts.append(json.loads(line)["text"])
            if len(texts) == n:
                break
    return embedder.encode(texts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ann-threshold", type=int, default=50_000, help="index.ann_threshold: HNSW above it")
    args = ap.parse_args()
    embedder = Embedder()
    embedder.encode(["warm up"])
    claims = scifact_claims(embedder)
    rng = np.random.default_rng(7)
    results = []
    for size in args.sizes:
        db = build(size)
        write_s = json.loads((OUT / f"clustered-{size}.json").read_text())["write_s"]
        cache = OUT / f"cache-clustered-{size}"
        for old in cache.glob("*"):
            old.unlink()  # time the graph build as an ingest does it, from nothing
        index = SQLiteIndex(db, cache_dir=cache, ann_threshold=args.ann_threshold)
        t = time.perf_counter()
        index.prepare_search()
        prepare_s = time.perf_counter() - t
        exact = SQLiteIndex(db, cache_dir=cache, ann_threshold=10**12)
        retriever = Retriever(index, embedder, SearchSettings(reranker=""))  # search alone (the reranker: rerank.py)
        retriever.search("w10 w200", k=10)
        queries = [" ".join(f"w{w}" for w in rng.integers(20, 3000, 4)) for _ in range(args.queries)]
        row: dict = {"chunks": size, "write_s": write_s, "prepare_search_s": round(prepare_s, 1)}
        row["dense_path"] = "hnsw" if size > args.ann_threshold else "exact"
        cases = [("hybrid", "hybrid", None), ("bm25", "bm25", None), ("dense", "dense", None)]
        cases += [("dense, group half", "dense", Filters(groups=("half",)))]
        cases += [("dense, group few", "dense", Filters(groups=("few",)))]
        cases += [("hybrid, group half", "hybrid", Filters(groups=("half",)))]
        for label, mode, filters in cases:
            times = []
            for q in queries:
                t = time.perf_counter()
                retriever.search(q, k=10, mode=mode, filters=filters)
                times.append((time.perf_counter() - t) * 1000)
            row[label] = dict(zip(("p50_ms", "p95_ms"), percentiles(times), strict=True))
        for label, filters in (("recall@10", None), ("recall@10, group half", Filters(groups=("half",)))):
            overlap = []
            for vector in claims:
                got = {c for c, _ in index.search_dense(vector, 10, filters)}
                want = {c for c, _ in exact.search_dense(vector, 10, filters)}
                overlap.append(len(got & want) / 10)
            row[label] = round(float(np.mean(overlap)), 4)
        row["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        results.append(row)
        print(json.dumps(row), flush=True)
        exact.close()
        index.close()
    out = ROOT / "benchmarks" / "results" / "search_latency.json"
    measured = {r["chunks"] for r in results}
    kept = [r for r in json.loads(out.read_text()) if r["chunks"] not in measured] if out.exists() else []
    out.write_text(json.dumps(sorted(kept + results, key=lambda r: r["chunks"]), indent=2) + "\n")  # other sizes kept
    print(f"\n{'chunks':>10} {'case':<20} {'p50 ms':>8} {'p95 ms':>8}")
    for r in results:
        for key, value in r.items():
            if isinstance(value, dict):
                print(f"{r['chunks']:>10,} {key:<20} {value['p50_ms']:>8} {value['p95_ms']:>8}")
        recall = f"recall@10 {r['recall@10']} / filtered {r['recall@10, group half']}"
        print(f"{'':>10} write {r['write_s']} s, prepare_search {r['prepare_search_s']} s ({r['dense_path']}), "
              f"{recall}, max RSS {r['max_rss_mb']} MB")  # fmt: skip


if __name__ == "__main__":
    main()
