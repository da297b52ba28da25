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


def beir_set(name: str, embedder: Embedder, context: bool) -> dict:
    data = load_beir(DATA / name)
    with tempfile.TemporaryDirectory() as tmp:
        index, seconds, chunks = _index(Path(tmp), embedder, data.corpus, context)
        retriever = Retriever(index, embedder, SearchSettings())
        out = {"ingest_s": round(seconds, 1), "chunks": chunks, "queries": len(data.queries)}
        for mode in MODES:
            s = evaluate_retrieval(retriever, data, mode)
            out[mode] = {"ndcg@10": round(s.ndcg10, 4), "recall@10": round(s.recall10, 4)}
        index.close()
    return out


def pdf_set(embedder: Embedder, context: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "pdfs"
        questions = build(corpus)
        index, seconds, chunks = _index(Path(tmp), embedder, corpus, context)
        retriever = Retriever(index, embedder, SearchSettings())
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
        for context in (False, True):
            label = "headers" if context else "no headers"
            console.print(f"[bold]{name}[/bold], {label} …")
            results[name][label] = pdf_set(embedder, context) if name == "pdfs" else beir_set(name, embedder, context)
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
