"""The shipped cross-encoder (search.reranker = "ms-marco-minilm-l12-int8") against hybrid fusion alone.

Quality, on the same questions for both:
- SciFact and E-Manual (../shared/data, BEIR test splits; a fixed sample of ``--queries`` questions each, seed 7,
  the harness of benchmarks/rerank_llm.py): each question's top 50 fused passages are scored once by the
  cross-encoder, and for rerank_top k = 20, 30, 50 the first k are reordered by that score (the rest keep fusion
  order). nDCG@10 by document, and the paired difference at each k with its 95% bootstrap interval.
- The multi-document PDF set (benchmarks/multidoc_pdfs.py, 120 questions): the gold page (document and page)
  and the gold document in the top 5, and the gold page first.

Latency, side by side in one process: for ``--latency-queries`` questions of each set, the full search
(embedding, BM25, dense, fusion) without a reranker and with the cross-encoder at k = 20, 30, 50, in turn,
``--runs`` times; per question the median of the runs, then the median over the questions. Absolute times
depend on the machine and its load: the ratio to the search without rerank is the figure to compare.

Run: .venv/bin/python benchmarks/rerank.py [--sets scifact emanual-tv pdfs] [--queries 60]
Writes benchmarks/results/rerank.json, set by set (sets not run this time keep their figures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from expertkit.config import SearchSettings
from expertkit.evaluate.metrics import ndcg_at_k
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.retrieve import CrossEncoderReranker, Retriever

sys.path.insert(0, str(Path(__file__).parent))
from context_headers import paired_difference  # noqa: E402
from multidoc_pdfs import build  # noqa: E402
from rerank_llm import documents, fused_candidates, reranked  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "ms-marco-minilm-l12-int8"
TOPS = (20, 30, 50)
DEPTH = max(TOPS)


def latency(retriever: Retriever, reranker: CrossEncoderReranker, questions: list[str], runs: int) -> dict:
    """Median ms per question of the whole search, without rerank and with it at each k, run in turn."""
    index, embedder = retriever.index, retriever.embedder
    setups = {"none": retriever} | {
        f"k={k}": Retriever(index, embedder, SearchSettings(candidates=100, rerank_top=k), reranker=reranker)
        for k in TOPS
    }
    times: dict[str, dict[str, list[float]]] = {name: {q: [] for q in questions} for name in setups}
    rerank_ms: dict[str, dict[str, list[float]]] = {name: {q: [] for q in questions} for name in setups}
    for run in range(runs):
        for q in questions:
            names = list(setups)
            names = names[run % len(names) :] + names[: run % len(names)]  # no setup always goes first
            for name in names:
                t = time.perf_counter()
                setups[name].search(q, k=10)
                times[name][q].append((time.perf_counter() - t) * 1e3)
                rerank_ms[name][q].append(setups[name].last_timings.get("rerank_ms", 0.0))

    def median_of_medians(per_q: dict[str, list[float]]) -> float:
        return float(np.median([np.median(v) for v in per_q.values()]))

    base = median_of_medians(times["none"])
    out = {"questions": len(questions), "runs": runs, "search_ms": round(base, 1)}
    for name in setups:
        if name != "none":
            total = median_of_medians(times[name])
            out[name] = {
                "search_ms": round(total, 1),
                "rerank_ms": round(median_of_medians(rerank_ms[name]), 1),
                "x_search": round(total / base, 1),
            }
    return out


def beir_set(name: str, embedder: Embedder, reranker: CrossEncoderReranker, args, console: Console) -> dict:
    data, qids, fused, retriever = fused_candidates(name, args.queries, embedder, DEPTH)
    per_k: dict[str, dict[str, float]] = {"fusion": {}} | {f"k={k}": {} for k in TOPS}
    t = time.perf_counter()
    pairs = 0
    for i, q in enumerate(qids, start=1):
        hits = fused[q]
        scores = reranker.score(data.queries[q], [h.chunk.embed_text() for h in hits])
        pairs += len(hits)
        per_k["fusion"][q] = ndcg_at_k(documents(hits), data.qrels[q], 10)
        for k in TOPS:
            per_k[f"k={k}"][q] = ndcg_at_k(documents(reranked(hits, scores, min(k, len(hits)))), data.qrels[q], 10)
        if i % 10 == 0:
            console.print(f"  {name}: {i}/{len(qids)} questions scored")
    out: dict = {
        "queries": len(qids),
        "of": len(data.queries),
        "scored_pairs_per_s": round(pairs / (time.perf_counter() - t), 1),
    }
    out |= {label: {"ndcg@10": round(statistics.mean(v.values()), 4)} for label, v in per_k.items()}
    for k in TOPS:
        out[f"paired k={k} - fusion"] = paired_difference(per_k["fusion"], per_k[f"k={k}"])
    out["latency"] = latency(retriever, reranker, [data.queries[q] for q in qids[: args.latency_queries]], args.runs)
    retriever.index.close()
    return out


def pdf_set(embedder: Embedder, reranker: CrossEncoderReranker, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "pdfs"
        questions = build(corpus)
        index = SQLiteIndex(Path(tmp) / "index.db", cache_dir=Path(tmp) / "cache")
        Ingestor(index, embedder).sync([corpus])
        retriever = Retriever(index, embedder, SearchSettings(candidates=100, reranker=""))
        found: dict[str, dict[str, int]] = {
            label: {"page@5": 0, "document@5": 0, "page@1": 0} for label in ("fusion", *(f"k={k}" for k in TOPS))
        }
        for q in questions:
            hits = retriever.search(q.text, k=DEPTH)
            scores = reranker.score(q.text, [h.chunk.embed_text() for h in hits])
            orders = {"fusion": hits} | {f"k={k}": reranked(hits, scores, min(k, len(hits))) for k in TOPS}
            for label, order in orders.items():
                top = order[:5]
                found[label]["document@5"] += any(Path(h.chunk.source).name == q.file for h in top)
                found[label]["page@5"] += any(
                    Path(h.chunk.source).name == q.file and h.chunk.page == q.page for h in top
                )
                found[label]["page@1"] += Path(top[0].chunk.source).name == q.file and top[0].chunk.page == q.page
        out: dict = {"queries": len(questions), "chunks": index.stats().chunks}
        out |= {label: {m: round(n / len(questions), 4) for m, n in f.items()} for label, f in found.items()}
        out["latency"] = latency(retriever, reranker, [q.text for q in questions[: args.latency_queries]], args.runs)
        index.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["pdfs", "emanual-tv", "scifact"])
    ap.add_argument("--queries", type=int, default=60, help="questions sampled from each shared set")
    ap.add_argument("--latency-queries", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    console = Console()
    embedder = Embedder()
    embedder.encode(["warm up"])
    reranker = CrossEncoderReranker(MODEL)
    reranker.score("warm up", ["a passage"])
    out = ROOT / "benchmarks" / "results" / "rerank.json"
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    results.update({"model": MODEL, "depth": DEPTH, "sets": results.get("sets", {})})
    for name in args.sets:
        console.print(f"[bold]{name}[/bold] …")
        results["sets"][name] = (
            pdf_set(embedder, reranker, args) if name == "pdfs" else beir_set(name, embedder, reranker, args, console)
        )
        out.write_text(json.dumps(results, indent=2) + "\n")  # set by set: a long run keeps what it finished
    table = Table(title=f"{MODEL} rerank of the top k fused passages, against fusion alone")
    for col in ("set", "metric", "fusion", *(f"k={k}" for k in TOPS)):
        table.add_column(col)
    for name, r in results["sets"].items():
        for metric in r["fusion"]:
            table.add_row(name, metric, *(f"{r[label][metric]:.3f}" for label in ("fusion", *(f"k={k}" for k in TOPS))))
        lat = r["latency"]
        table.add_row(
            name,
            "search ms (× no rerank)",
            f"{lat['search_ms']:.0f}",
            *(f"{lat[f'k={k}']['search_ms']:.0f} (×{lat[f'k={k}']['x_search']})" for k in TOPS),
        )
    console.print(table)
    console.print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
