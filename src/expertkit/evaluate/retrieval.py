"""`eval retrieval`: nDCG@10, recall@10/100 and MRR@10 of a workspace's retriever on a BEIR split.

Chunks are scored by the retriever and each corpus document takes the best score of its chunks
(record id = the corpus ``_id``), the usual way to evaluate a chunked index on document judgements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from expertkit.evaluate.beir import BeirSet
from expertkit.evaluate.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from expertkit.retrieve import Retriever


@dataclass
class RetrievalScores:
    mode: str
    queries: int
    ndcg10: float
    recall10: float
    recall100: float
    mrr10: float
    per_query: dict[str, float]  # nDCG@10 per query, for error analysis
    recall_curve: dict[int, float] = field(default_factory=dict)  # recall@k for k in CURVE_K

    def to_json(self) -> dict:
        return {
            "ndcg@10": round(self.ndcg10, 4),
            "recall@10": round(self.recall10, 4),
            "recall@100": round(self.recall100, 4),
            "mrr@10": round(self.mrr10, 4),
            "queries": self.queries,
            "mode": self.mode,
            "recall_curve": {str(k): round(v, 4) for k, v in self.recall_curve.items()},
        }


CURVE_K = (1, 2, 3, 5, 10, 20, 30, 50, 100)


def rank_documents(retriever: Retriever, query: str, mode: str, depth: int = 100, vector=None) -> list[str]:
    """Corpus ids ranked by their best chunk; asks for more chunks until ``depth`` distinct documents."""
    k = depth * 2
    while True:
        hits = retriever.search(query, k=k, mode=mode, vector=vector)
        ranked = list(dict.fromkeys(h.chunk.record_id or h.chunk.source for h in hits))
        if len(ranked) >= depth or len(hits) < k:
            return ranked[:depth]
        k *= 2


def evaluate_retrieval(
    retriever: Retriever, data: BeirSet, mode: str = "hybrid", on_query: Callable[[], None] | None = None
) -> RetrievalScores:
    ids = list(data.queries)
    vectors = (
        retriever.embedder.encode([data.queries[q] for q in ids], role="query") if mode != "bm25" else [None] * len(ids)
    )
    totals = {"n": 0.0, "r10": 0.0, "r100": 0.0, "m": 0.0}
    curve = dict.fromkeys(CURVE_K, 0.0)
    per_query = {}
    saved = retriever.settings.candidates
    retriever.settings.candidates = max(saved, 200)  # recall@100 needs deep lists from both retrievers
    try:
        for qid, vec in zip(ids, vectors, strict=True):
            ranked = rank_documents(retriever, data.queries[qid], mode, 100, vec)
            rel = data.qrels[qid]
            per_query[qid] = ndcg_at_k(ranked, rel, 10)
            totals["n"] += per_query[qid]
            totals["r10"] += recall_at_k(ranked, rel, 10)
            totals["r100"] += recall_at_k(ranked, rel, 100)
            totals["m"] += mrr_at_k(ranked, rel, 10)
            for k in CURVE_K:
                curve[k] += recall_at_k(ranked, rel, k)
            if on_query:
                on_query()
    finally:
        retriever.settings.candidates = saved
    n = max(len(ids), 1)
    return RetrievalScores(
        mode,
        len(ids),
        totals["n"] / n,
        totals["r10"] / n,
        totals["r100"] / n,
        totals["m"] / n,
        per_query,
        {k: v / n for k, v in curve.items()},
    )
