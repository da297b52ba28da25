"""The LLM yes/no reranker (search.reranker = "llm") against fusion alone: nDCG@10 and latency.

For each shared set (BEIR test split), a fixed sample of questions is searched once with hybrid fusion;
then each model, served by llama-server on this machine, judges the top ``--top`` fused passages of each
question (LLMReranker with no time budget, so every one is judged) and the passages are reordered by its
yes/no log-odds. Documents are ranked by their best passage, fused results below the judged ones keep
their order, and nDCG@10 is computed by document on the same questions for both. Latency is the rerank
time per question (the search itself is milliseconds).

The index of each set is built once (context headers on, the default) and kept under benchmarks/out/.

Run: .venv/bin/python benchmarks/rerank_llm.py [--queries 40] [--top 10]
     [--models smollm2-135m-instruct qwen2.5-coder-0.5b-instruct]
Writes benchmarks/results/rerank_llm.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from expertkit.config import SearchSettings
from expertkit.evaluate.beir import BeirSet, load_beir
from expertkit.evaluate.metrics import ndcg_at_k
from expertkit.index.sqlite import SQLiteIndex
from expertkit.ingest.sync import Ingestor
from expertkit.models.embedder import Embedder
from expertkit.models.llamacpp import LlamaCppGenerator, LlamaServer, free_port
from expertkit.models.registry import resolve
from expertkit.retrieve import LLMReranker, Retriever
from expertkit.schema import SearchHit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"


def documents(hits) -> list[str]:
    return list(dict.fromkeys(h.chunk.record_id or h.chunk.source for h in hits))


def fused_candidates(
    set_name: str, queries: int, embedder: Embedder, depth: int = 50
) -> tuple[BeirSet, list[str], dict[str, list[SearchHit]], Retriever]:
    """A fixed sample of ``queries`` questions of a shared set (seed 7), each with its top ``depth`` passages by
    hybrid fusion alone, and the fusion-only retriever (its index is built once, under benchmarks/out/)."""
    data = load_beir(DATA / set_name)
    folder = OUT / f"rerank-{set_name}"
    folder.mkdir(parents=True, exist_ok=True)
    index = SQLiteIndex(folder / "index.db", cache_dir=folder / "cache")
    Ingestor(index, embedder).sync([data.corpus])  # incremental: a second run reads nothing
    retriever = Retriever(index, embedder, SearchSettings(candidates=100, reranker=""))
    qids = sorted(data.queries)
    random.Random(7).shuffle(qids)
    qids = qids[:queries]
    return data, qids, {q: retriever.search(data.queries[q], k=depth) for q in qids}, retriever


def reranked(hits: list[SearchHit], scores: list[float], top: int) -> list[SearchHit]:
    """The first ``top`` hits ordered by ``scores`` (one per hit, at least ``top``), the rest in fusion order."""
    head = sorted(zip(scores[:top], hits[:top], strict=True), key=lambda p: -p[0])
    return [h for _, h in head] + hits[top:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=["scifact", "emanual-tv"])
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--top", type=int, default=10, help="fused passages judged per question")
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    args = ap.parse_args()
    console = Console()
    embedder = Embedder()
    results: dict = {"queries": args.queries, "top": args.top, "sets": {}}
    servers = {}
    try:
        for name in args.models:
            servers[name] = LlamaServer(resolve(name, "generator"), name, ctx_size=2048, parallel=2, port=free_port())
            servers[name].start()
        for set_name in args.sets:
            data, qids, fused, retriever = fused_candidates(set_name, args.queries, embedder)
            base = [ndcg_at_k(documents(fused[q]), data.qrels[q], 10) for q in qids]
            row = {"fusion": {"ndcg@10": round(statistics.mean(base), 4)}}
            for name, server in servers.items():
                reranker = LLMReranker(LlamaCppGenerator(server, name), budget_ms=1e9)
                scores, times = [], []
                with Progress(console=console, transient=True) as bar:
                    task = bar.add_task(f"{set_name}: {name}", total=len(qids))
                    for q in qids:
                        hits = fused[q]
                        t = time.perf_counter()
                        judged = reranker.score(data.queries[q], [h.chunk.embed_text() for h in hits[: args.top]])
                        times.append(time.perf_counter() - t)
                        order = reranked(hits, judged, args.top)
                        scores.append(ndcg_at_k(documents(order), data.qrels[q], 10))
                        bar.advance(task)
                row[name] = {
                    "ndcg@10": round(statistics.mean(scores), 4),
                    "p50_s": round(statistics.median(times), 2),
                    "p95_s": round(sorted(times)[int(0.95 * (len(times) - 1))], 2),
                    "ms_per_passage": round(1e3 * statistics.median(times) / args.top),
                }
            results["sets"][set_name] = row
            retriever.index.close()
    finally:
        for server in servers.values():
            server.stop()
    table = Table(title=f"LLM yes/no rerank of the top {args.top} fused passages, {args.queries} questions a set")
    for col in ("set", "ranking", "nDCG@10", "p50 latency", "p95 latency", "ms/passage"):
        table.add_column(col)
    for set_name, row in results["sets"].items():
        for name, r in row.items():
            table.add_row(
                set_name,
                name,
                f"{r['ndcg@10']:.3f}",
                f"{r.get('p50_s', 0):.2f} s",
                f"{r.get('p95_s', 0):.2f} s",
                str(r.get("ms_per_passage", "")),
            )
    console.print(table)
    out = ROOT / "benchmarks" / "results" / "rerank_llm.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
