"""Hybrid retrieval: BM25 (FTS5) and dense results fused by reciprocal rank fusion, then an optional rerank."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from expertkit.config import SearchSettings
from expertkit.errors import ConfigError, GeneratorError
from expertkit.index.base import Filters, Index
from expertkit.models.embedder import Embedder
from expertkit.schema import SearchHit

MODES = ("hybrid", "bm25", "dense")
log = logging.getLogger(__name__)


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


class TokenScorer(Protocol):
    """A generator that can report its first reply token's log-probabilities (LlamaCppGenerator)."""

    parallel: int

    def next_token_logprobs(self, messages: list[dict], top: int = 20) -> dict[str, float]: ...


_JUDGE = (
    "You judge search results. Given a question and a passage, answer yes if the passage contains the answer "
    "to the question or the facts needed for it, otherwise no. Reply with one word: yes or no."
)


class LLMReranker:
    """Relevance from the local LLM: for each passage, log P(yes) − log P(no) of its one-word verdict on
    whether the passage answers the question (as RankGPT's and Qwen3-Reranker's pointwise yes/no scoring
    does, on whatever model llama-server runs). No cross-encoder ships offline; this needs none.

    Passages are judged in fusion order, ``parallel`` at a time (llama-server's slots), until ``budget_ms``
    is spent: those judged are reordered among themselves at the top, the rest keep their order below them.
    """

    def __init__(self, scorer: TokenScorer, budget_ms: float = 5000.0, max_chars: int = 1500) -> None:
        self.scorer = scorer
        self.budget_ms = budget_ms
        self.max_chars = max_chars  # a passage is cut here (about 350 tokens): the prompt bounds the latency
        self.last_judged = 0

    def messages(self, query: str, passage: str) -> list[dict]:
        """The prompt one passage is judged with."""
        return [
            {"role": "system", "content": _JUDGE},
            {"role": "user", "content": f"Question: {query}\n\nPassage:\n{passage[: self.max_chars]}\n\n"
             "Does the passage answer the question? Reply yes or no."},
        ]  # fmt: skip

    def _judge(self, query: str, passage: str) -> float:
        probs = self.scorer.next_token_logprobs(self.messages(query, passage))
        floor = min(probs.values(), default=0.0) - 1.0  # a verdict not among the top tokens: below all of them
        yes = [lp for tok, lp in probs.items() if tok.strip().lower() == "yes"]
        no = [lp for tok, lp in probs.items() if tok.strip().lower() == "no"]
        return float(np.logaddexp.reduce(yes) if yes else floor) - float(np.logaddexp.reduce(no) if no else floor)

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        from concurrent.futures import ThreadPoolExecutor

        deadline = time.perf_counter() + self.budget_ms / 1e3
        scores: list[float] = []
        width = max(1, getattr(self.scorer, "parallel", 1))
        with ThreadPoolExecutor(width) as pool:
            for i in range(0, len(passages), width):
                if scores and time.perf_counter() >= deadline:
                    break
                try:
                    scores += pool.map(lambda p: self._judge(query, p), passages[i : i + width])
                except GeneratorError as exc:  # a passage too long for a slot, a server error: fusion order
                    log.warning("llm rerank stopped after %d passages: %s", len(scores), exc)
                    break
        self.last_judged = len(scores)
        lowest = min(scores, default=0.0)
        # not reached in time: below every judged passage, in fusion order (the sort is stable)
        return scores + [lowest - 1000.0] * (len(passages) - len(scores))


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
        if reranker is None and self.settings.reranker == "llm":
            raise ConfigError(
                "search.reranker = 'llm' judges passages with the generator: build the retriever with "
                "Workspace.retriever(generator=...) or pass reranker=LLMReranker(generator)"
            )
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
            hits = self._search(query, k, mode, filters, vector)
        # outside the lock: an LLM rerank takes seconds, and other searches need not wait for it
        if self.reranker and hits:
            t = time.perf_counter()
            rerank = self.reranker.score(query, [h.chunk.embed_text() for h in hits])
            for hit, r in zip(hits, rerank, strict=True):
                hit.scores["rerank"] = r
                hit.score = r
            hits.sort(key=lambda h: -h.score)
            self.last_timings = {**self.last_timings, "rerank_ms": (time.perf_counter() - t) * 1e3}
        return hits[: k or self.settings.k]

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
        self.last_timings = {
            "bm25_ms": (t1 - t0) * 1e3,
            "dense_ms": (t2 - t1) * 1e3,
            "total_ms": (time.perf_counter() - t0) * 1e3,
        }
        return hits  # the top max(k, rerank_top) when a reranker follows, else the top k
