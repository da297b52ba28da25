"""Hybrid retrieval: BM25 (FTS5) and dense results fused by reciprocal rank fusion, then an optional rerank."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from expertkit.config import SearchSettings
from expertkit.errors import ConfigError
from expertkit.index.base import Filters, Index
from expertkit.models.embedder import Embedder
from expertkit.schema import SearchHit

MODES = ("hybrid", "bm25", "dense")


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant."""

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2 from a local folder."""

    def __init__(self, model: str) -> None:
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model, device="cpu")

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        return [float(s) for s in self.model.predict([(query, p) for p in passages], show_progress_bar=False)]


def rrf(rankings: Sequence[Sequence[str]], weights: Sequence[float], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion (Cormack et al. 2009): score = Σ weight / (k + rank), ranks from 1."""
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda kv: -kv[1])


class Retriever:
    """Configuration in __init__; queries flow through ``search``."""

    def __init__(
        self, index: Index, embedder: Embedder, settings: SearchSettings | None = None, reranker: Reranker | None = None
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings or SearchSettings()
        if reranker is None and self.settings.reranker:
            reranker = CrossEncoderReranker(self.settings.reranker)
        self.reranker = reranker
        self.last_timings: dict[str, float] = {}
        # one search at a time: a server answers from several threads, and an index connection (SQLite's,
        # psycopg's) is one transaction at a time; a search takes milliseconds, generation seconds
        self._lock = threading.Lock()

    def search(
        self,
        query: str,
        k: int | None = None,
        mode: str | None = None,
        filters: Filters | None = None,
        vector: np.ndarray | None = None,
    ) -> list[SearchHit]:
        """The top ``k`` chunks for ``query``. ``vector`` skips embedding the query (for batched evaluation)."""
        with self._lock:
            return self._search(query, k, mode, filters, vector)

    def _search(
        self, query: str, k: int | None, mode: str | None, filters: Filters | None, vector: np.ndarray | None
    ) -> list[SearchHit]:
        s = self.settings
        k = k or s.k
        mode = mode or s.mode
        if mode not in MODES:
            raise ConfigError(f"search mode {mode!r}: use one of {', '.join(MODES)}")
        depth = max(s.candidates, k)
        if mode != "bm25" and vector is None:
            self.embedder.model  # noqa: B018 - load before timing: the timings describe search, not start-up
        t0 = time.perf_counter()
        lists: dict[str, list[tuple[str, float]]] = {}
        if mode in ("bm25", "hybrid"):
            lists["bm25"] = self.index.search_bm25(query, depth, filters)
        t1 = time.perf_counter()
        if mode in ("dense", "hybrid"):
            if vector is None:
                vector = self.embedder.encode([query])[0]
            lists["dense"] = self.index.search_dense(vector, depth, filters)
        t2 = time.perf_counter()
        if mode == "hybrid":
            fused = rrf(
                [[c for c, _ in lists["bm25"]], [c for c, _ in lists["dense"]]],
                [s.bm25_weight, s.dense_weight],
                s.rrf_k,
            )
        else:
            fused = lists[mode]
        per_list = {name: dict(items) for name, items in lists.items()}
        top = fused[: max(k, s.rerank_top) if self.reranker else k]
        chunks = {c.chunk_id: c for c in self.index.get_chunks([cid for cid, _ in top])}
        hits = []
        for cid, score in top:
            if cid in chunks:
                detail = {name: scores[cid] for name, scores in per_list.items() if cid in scores}
                hits.append(SearchHit(chunks[cid], score, detail))
        if self.reranker and hits:
            rerank = self.reranker.score(query, [h.chunk.embed_text() for h in hits])
            for hit, r in zip(hits, rerank, strict=True):
                hit.scores["rerank"] = r
                hit.score = r
            hits.sort(key=lambda h: -h.score)
        self.last_timings = {
            "bm25_ms": (t1 - t0) * 1e3,
            "dense_ms": (t2 - t1) * 1e3,
            "total_ms": (time.perf_counter() - t0) * 1e3,
        }
        return hits[:k]
