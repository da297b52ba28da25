"""What the opt-in multilingual embedder costs in encode speed: multilingual-e5-small against all-MiniLM-L6-v2.

Both run as int8 ONNX graphs on onnxruntime (embed.dtype auto), on the same SciFact abstracts (title and text,
as passages: e5 gets its "passage: " prefix), in the same process: texts a second, the median of 3 interleaved
rounds after a warm-up. Each model cuts a text at its own limit (MiniLM 256 tokens, e5 512), so the tokens it
reads are counted too. Retrieval quality is not scored here.

Run: .venv/bin/python benchmarks/embed_multilingual.py [--texts 200] [--models all-minilm-l6-v2 multilingual-e5-small]
Writes benchmarks/results/embed_multilingual.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from embed_int8 import sample_texts  # noqa: E402

from expertkit.models.embedder import Embedder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=200, help="SciFact abstracts encoded")
    ap.add_argument("--models", nargs="+", default=["all-minilm-l6-v2", "multilingual-e5-small"])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    texts = sample_texts(args.texts)
    embedders = {name: Embedder(name, dtype="int8") for name in args.models}
    tokens = {}
    for name, embedder in embedders.items():
        embedder.encode(texts)  # warm-up (and the graph built, where it is not yet)
        prefix = embedder.prefixes.get("passage", "")
        ids = embedder.tokenizer([prefix + t for t in texts], truncation=True, max_length=embedder.max_tokens)
        tokens[name] = sum(len(i) for i in ids["input_ids"])
    seconds: dict[str, list[float]] = {name: [] for name in args.models}
    for _ in range(args.rounds):  # interleaved: the machine's load falls on every model alike
        for name, embedder in embedders.items():
            t = time.perf_counter()
            embedder.encode(texts)
            seconds[name].append(time.perf_counter() - t)
    reference = args.models[0]
    rows = {}
    for name in args.models:
        median = statistics.median(seconds[name])
        rows[name] = {
            "texts_per_s": round(len(texts) / median, 1),
            "tokens_per_s": round(tokens[name] / median),
            "tokens_per_text": round(tokens[name] / len(texts), 1),
            "max_tokens": embedders[name].max_tokens,
            "seconds": [round(s, 2) for s in seconds[name]],
            f"x_{reference}": round(statistics.median(seconds[reference]) / median, 3),
        }
        print(name, json.dumps(rows[name]), flush=True)
    out = ROOT / "benchmarks" / "results" / "embed_multilingual.json"
    result = {
        "texts": len(texts),
        "set": "scifact corpus.jsonl, first abstracts (title + text)",
        "rounds": args.rounds,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "dtype": "int8 (onnxruntime)",
        "models": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
