"""Ingest throughput against the bare embedder on the same texts, and re-ingest of an unchanged corpus.

Each round, in the same process and on the same chunk texts:
  bare fp32  - SentenceTransformer.encode in fp32, batched
  bare bf16  - the same in bf16 (what expertkit used to pick where the CPU has avx512_bf16)
  bare int8  - the model as an int8 ONNX graph in onnxruntime (embed.dtype auto, where the model exports)
  pipeline   - `Ingestor.sync` into a fresh index with the default embedder: read, chunk, embed, write;
               model load excluded
  re-ingest  - `Ingestor.sync` again with nothing changed
Medians of --rounds rounds are printed; ratios are what to compare across machines.

Run: .venv/bin/python benchmarks/ingest_throughput.py [--docs 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact" / "corpus.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=400, help="SciFact abstracts to ingest")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ek-bench-"))
    corpus = tmp / "corpus.jsonl"
    with DATA.open() as fh:
        corpus.write_text("".join(itertools.islice(fh, args.docs)))
    bf16, fp32, int8, default = Embedder(dtype="bf16"), Embedder(dtype="fp32"), Embedder(dtype="int8"), Embedder()
    # the exact texts the pipeline embeds: chunk once to get them
    probe = SQLiteIndex(tmp / "probe.db")
    Ingestor(probe, default).sync([corpus])
    texts = [
        c.embed_text()
        for c in probe.get_chunks([f"{cid}" for (cid,) in probe.db.execute("SELECT chunk_id FROM chunks")])
    ]
    for model in (fp32, bf16, int8):
        model.encode(texts[:64])  # warm each up
    rows: dict[str, list[float]] = {"bare fp32": [], "bare bf16": [], "bare int8": [], "pipeline": [], "re-ingest": []}
    cos = []
    for r in range(args.rounds):
        t = time.perf_counter()
        a = fp32.encode(texts)
        rows["bare fp32"].append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        b = bf16.encode(texts)
        rows["bare bf16"].append(len(texts) / (time.perf_counter() - t))
        cos.append(np.sum(a * b, axis=1))
        t = time.perf_counter()
        int8.encode(texts)
        rows["bare int8"].append(len(texts) / (time.perf_counter() - t))
        index = SQLiteIndex(tmp / f"run{r}.db")
        ingestor = Ingestor(index, default)
        report = ingestor.sync([corpus])
        rows["pipeline"].append(report.embedded / (report.seconds - report.load_seconds))
        again = ingestor.sync([corpus])
        assert again.embedded == 0
        rows["re-ingest"].append(again.seconds * 1000)
        index.close()
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{args.docs} SciFact abstracts → {len(texts)} chunks; {args.rounds} rounds; medians")
    print(f"{'bare fp32':<12}{med['bare fp32']:>10.1f} chunks/s")
    print(
        f"{'bare bf16':<12}{med['bare bf16']:>10.1f} chunks/s   ({med['bare bf16'] / med['bare fp32']:.2f}x fp32,"
        f" cosine to fp32: mean {np.mean(cos):.4f}, min {np.min(cos):.4f})"
    )
    print(f"{'bare int8':<12}{med['bare int8']:>10.1f} chunks/s   ({med['bare int8'] / med['bare fp32']:.2f}x fp32)")
    bare = med[f"bare {default.dtype}"]
    print(f"{'pipeline':<12}{med['pipeline']:>10.1f} chunks/s   ({med['pipeline'] / bare:.2f}x bare {default.dtype})")
    print(f"{'re-ingest':<12}{med['re-ingest']:>10.1f} ms for an unchanged corpus")
    print(
        json.dumps(
            {
                "chunks": len(texts),
                **{k: round(v, 2) for k, v in med.items()},
                "mean_cosine": round(float(np.mean(cos)), 4),
                "min_cosine": round(float(np.min(cos)), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
