"""Retrieval with and without contextual chunk headers (ingest.context_headers), side by side.

Each set is ingested twice into fresh SQLite indexes with the same embedder, once per setting, and
scored the same way:
- ../shared/data/scifact (BEIR test split, 300 claims) and ../shared/data/emanual-tv (684 questions):
  nDCG@10 and recall@10 by document, for hybrid, BM25 and dense search;
- a multi-document PDF set (benchmarks/multidoc_pdfs.py: 12 companies' annual reports and 12 product
  manuals, 120 questions that name the company or product, passages that do not): the gold document
  in the top 5 and the gold page (document and page) in the top 5, per mode.

Run: .venv/bin/python benchmarks/context_headers.py [--sets scifact emanual-tv pdfs]
Writes benchmarks/results/context_headers.json, set by set (sets not run this time keep their figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from expertkit.config import SearchSettings
from expertkit.evaluate.beir import load_beir
from expertkit.evaluate.retrieval import evaluate_retrieval
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.retrieve import Retriever

sys.path.insert(0, str(Path(__file__).parent))
from multidoc_pdfs import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODES = ("hybrid", "bm25", "dense")


def _index(folder: Path, embedder: Embedder, corpus: Path, context: bool) -> tuple[SQLiteIndex, float, int]:
    index = SQLiteIndex(folder / "index.db", cache_dir=folder / "cache")
    t = time.perf_counter()
    report = Ingestor(index, embedder, context_headers=context).sync([corpus])
    return index, time.perf_counter() - t, sum(r.chunks for r in report.results)


def beir_set(name: str, embedder: Embedder, context: bool, per_query: dict | None = None) -> dict:
    """Ingest and score one shared set; ``per_query`` (if given) receives hybrid nDCG@10 by query id."""
    data = load_beir(DATA / name)
    with tempfile.TemporaryDirectory() as tmp:
        index, seconds, chunks = _index(Path(tmp), embedder, data.corpus, context)
        retriever = Retriever(index, embedder, SearchSettings(reranker=""))  # fusion alone
        out = {"ingest_s": round(seconds, 1), "chunks": chunks, "queries": len(data.queries)}
        for mode in MODES:
            s = evaluate_retrieval(retriever, data, mode)
            out[mode] = {"ndcg@10": round(s.ndcg10, 4), "recall@10": round(s.recall10, 4)}
            if mode == "hybrid" and per_query is not None:
                per_query.update(s.per_query)
        index.close()
    return out


def pdf_set(embedder: Embedder, context: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "pdfs"
        questions = build(corpus)
        index, seconds, chunks = _index(Path(tmp), embedder, corpus, context)
        retriever = Retriever(index, embedder, SearchSettings(reranker=""))
        vectors = embedder.encode([q.text for q in questions])
        out = {"ingest_s": round(seconds, 1), "chunks": chunks, "queries": len(questions)}
        for mode in MODES:
            doc = page = 0
            for q, v in zip(questions, vectors, strict=True):
                hits = retriever.search(q.text, k=5, mode=mode, vector=v)
                doc += any(Path(h.chunk.source).name == q.file for h in hits)
                page += any(Path(h.chunk.source).name == q.file and h.chunk.page == q.page for h in hits)
            out[mode] = {"document@5": round(doc / len(questions), 4), "page@5": round(page / len(questions), 4)}
        index.close()
    return out


def paired_difference(before: dict[str, float], after: dict[str, float], draws: int = 10_000) -> dict:
    """Mean per-query difference (after − before) with a 95% bootstrap interval over the queries, and how many
    queries got better and worse: whether a change in the mean is more than the noise of this many questions."""
    ids = sorted(before)
    diff = np.array([after[q] - before[q] for q in ids])
    means = np.random.default_rng(0).choice(diff, size=(draws, len(diff))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "mean": round(float(diff.mean()), 4),
        "ci95": [round(float(low), 4), round(float(high), 4)],
        "better": int((diff > 1e-9).sum()),
        "worse": int((diff < -1e-9).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["pdfs", "emanual-tv", "scifact"])
    args = ap.parse_args()
    embedder = Embedder()
    embedder.encode(["warm up"])
    out = ROOT / "benchmarks" / "results" / "context_headers.json"
    results: dict[str, dict] = json.loads(out.read_text()) if out.exists() else {}
    console = Console()
    for name in args.sets:
        results[name] = {}
        scores: dict[str, dict] = {}
        for context in (False, True):
            label = "headers" if context else "no headers"
            console.print(f"[bold]{name}[/bold], {label} …")
            scores[label] = {}
            results[name][label] = (
                pdf_set(embedder, context) if name == "pdfs" else beir_set(name, embedder, context, scores[label])
            )
        if name != "pdfs":
            results[name]["hybrid ndcg@10 paired"] = paired_difference(scores["no headers"], scores["headers"])
            console.print(f"  hybrid nDCG@10, headers − none, paired: {results[name]['hybrid ndcg@10 paired']}")
        out.write_text(json.dumps(results, indent=2) + "\n")  # set by set: a long run keeps what it finished
    table = Table(title="Contextual chunk headers: retrieval, same embedder, same run")
    for col in ("set", "metric", "mode", "no headers", "headers", "Δ"):
        table.add_column(col)
    for name, by in results.items():
        for mode in MODES:
            for metric, value in by["no headers"][mode].items():
                after = by["headers"][mode][metric]
                table.add_row(name, metric, mode, f"{value:.3f}", f"{after:.3f}", f"{after - value:+.3f}")
    console.print(table)
    console.print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
