"""What the int8 ONNX embedder costs in retrieval quality, and what it gains in speed, against bf16 and fp32.

For each shared set (../shared/data/scifact, ../shared/data/emanual-tv) and each embed.dtype, the corpus is
ingested into a fresh SQLite index with the default settings and its test questions are scored (nDCG@10 and
recall@10 by document, hybrid, BM25 and dense). Ingest seconds are one run each, on the same machine, in
the same process; the bare encode rate (SciFact abstracts a second, median of 3 interleaved rounds, the same
texts for every dtype) is the speed figure to compare. bf16 is timed but not scored: its retrieval figures
are those of benchmarks/context_headers.py (the default was bf16 when that ran).

Run: .venv/bin/python benchmarks/embed_int8.py [--sets scifact emanual-tv] [--dtypes int8 fp32]
Writes benchmarks/results/embed_int8.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from context_headers import DATA, ROOT, beir_set  # noqa: E402

from expertkit.models.embedder import Embedder  # noqa: E402


def encode_rate(embedder: Embedder, texts: list[str], rounds: int = 3) -> float:
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        embedder.encode(texts)
        rates.append(len(texts) / (time.perf_counter() - t))
    return round(statistics.median(rates), 1)


def sample_texts(n: int = 1000) -> list[str]:
    texts = []
    with (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            texts.append(f"{record['title']}\n\n{record['text']}")
            if len(texts) == n:
                break
    return texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["scifact", "emanual-tv"])
    ap.add_argument("--dtypes", nargs="+", default=["int8", "fp32"], help="scored on the sets")
    ap.add_argument(
        "--speed-dtypes", nargs="+", default=["fp32", "bf16", "int8"], help="timed; the first is the reference"
    )
    ap.add_argument("--texts", type=int, default=300, help="SciFact abstracts encoded for the speed figure")
    args = ap.parse_args()
    out = ROOT / "benchmarks" / "results" / "embed_int8.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    texts = sample_texts(args.texts)
    embedders = {dtype: Embedder(dtype=dtype) for dtype in dict.fromkeys(args.speed_dtypes + args.dtypes)}
    vectors = {dtype: embedders[dtype].encode(texts) for dtype in args.speed_dtypes}  # also warms each up
    rates: dict[str, list[float]] = {dtype: [] for dtype in args.speed_dtypes}
    for _ in range(3):  # interleaved rounds: the machine's load falls on every dtype alike
        for dtype in args.speed_dtypes:
            rates[dtype].append(encode_rate(embedders[dtype], texts, rounds=1))
    reference = args.speed_dtypes[0]
    speed = {}
    for dtype in args.speed_dtypes:
        cosine = np.sum(vectors[dtype] * vectors[reference], axis=1)
        speed[dtype] = {
            "texts_per_s": round(statistics.median(rates[dtype]), 1),
            f"x_{reference}": round(statistics.median(rates[dtype]) / statistics.median(rates[reference]), 2),
            f"cosine_to_{reference}_min": round(float(cosine.min()), 4),
            f"cosine_to_{reference}_mean": round(float(cosine.mean()), 4),
        }
        print(dtype, speed[dtype], flush=True)
    results["encode"] = speed
    for name in args.sets:
        for dtype in args.dtypes:
            embedder = embedders[dtype]
            row = beir_set(name, embedder, context=True)
            results.setdefault(name, {})[dtype] = row
            print(name, dtype, json.dumps(row), flush=True)
            out.write_text(json.dumps(results, indent=2) + "\n")
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
