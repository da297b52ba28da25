"""The four routes the measured path runs side by side (base, RAG, fine-tuned, RAG + fine-tuned): asking every
question through one route, and what it scored."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.advise.grading import is_correct, wilson

ROUTES = ("base", "rag", "fine_tuned", "rag_fine_tuned")
ROUTE_NAMES = {"base": "base", "rag": "RAG", "fine_tuned": "fine-tuned", "rag_fine_tuned": "RAG + fine-tuned"}


@dataclass
class RouteResult:
    route: str
    n: int = 0
    correct: int = 0
    unseen_n: int = 0  # questions about facts held out of training whole
    unseen_correct: int = 0
    not_found_asked: int = 0  # unanswerable questions asked
    not_found_right: int = 0  # ... answered "not found"
    citations_printed: int = 0
    citations_invalid: int = 0
    groundedness: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    train_seconds: float | None = None
    train_steps: int | None = None
    planned_steps: int | None = None
    peak_rss_mb: float | None = None
    stale_share: float | None = None
    items: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_json(self) -> dict:
        lo, hi = wilson(self.correct, self.n)
        printed = self.citations_printed + self.citations_invalid
        r4 = lambda v: None if v is None else round(v, 4)  # noqa: E731
        return {
            "accuracy": round(self.accuracy, 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "n": self.n,
            "correct": self.correct,
            "latency_s": round(statistics.median(self.latencies), 3) if self.latencies else None,
            "unseen_facts": r4(self.unseen_correct / self.unseen_n if self.unseen_n else None),
            "unseen_n": self.unseen_n,
            "not_found": r4(self.not_found_right / self.not_found_asked if self.not_found_asked else None),
            "unanswerable": self.not_found_asked,
            "citation_validity": r4(self.citations_printed / printed if printed else None),
            "groundedness": r4(statistics.mean(self.groundedness) if self.groundedness else None),
            "train_seconds": r4(self.train_seconds),
            "train_steps": self.train_steps,
            "planned_steps": self.planned_steps,
            "peak_rss_mb": None if self.peak_rss_mb is None else round(self.peak_rss_mb),
            "stale_share": r4(self.stale_share),
        }

    def score(self, row: dict, answer, seconds: float, use_rag: bool) -> None:
        """Count one answer to one question: right or wrong, its citations and groundedness with RAG."""
        self.latencies.append(seconds)
        if row.get("unanswerable"):
            right = not answer.found
            self.not_found_asked += 1
            self.not_found_right += right
        else:
            right = is_correct(answer.answer, row["question"], row["expect"])
            if row.get("split") == "fact":
                self.unseen_n += 1
                self.unseen_correct += right
            else:
                self.n += 1
                self.correct += right
        if use_rag:
            self.citations_printed += len(answer.citations)
            self.citations_invalid += len(answer.invalid_citations)
            if answer.found and answer.groundedness is not None:
                self.groundedness.append(answer.groundedness)
        self.items.append(
            {
                "question": row["question"],
                "expect": row.get("expect"),
                "answer": answer.answer[:300],
                "right": bool(right),
                "split": row.get("split") or "unanswerable",
                "seconds": round(seconds, 2),
            }
        )


def run_route(rag, route: str, questions: list[dict], use_rag: bool, on_item: Callable[[], None] | None = None):
    """Ask every question through one route and score it; as many at once as the runtime has slots."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(row: dict):
        started = time.perf_counter()
        answer = rag.ask(row["question"], rag=use_rag)
        return answer, time.perf_counter() - started

    result = RouteResult(route)
    workers = max(1, rag.generator.parallel)
    with ThreadPoolExecutor(workers) as pool:
        for row, (answer, seconds) in zip(questions, pool.map(ask, questions), strict=True):
            result.score(row, answer, seconds, use_rag)
            if on_item:
                on_item()
    return result


@dataclass
class RouteAsker:
    """What every route is asked with: the same settings, retriever and questions; only the adapter and
    whether retrieval is used differ between routes."""

    settings: object  # the workspace's Settings
    generate: object  # its generate settings, with the base model and a short answer
    retriever: object
    asked: list[dict]
    progress: object  # a MeasureProgress

    def ask(self, key: str, adapter: Path | None, use_rag: bool) -> RouteResult:
        from expertkit.models.generator import make_generator
        from expertkit.rag import RAG as RagPipeline

        self.progress.stage(f"asking: {ROUTE_NAMES[key]}", len(self.asked))
        generator = make_generator(self.generate, adapter=adapter)
        rag_settings = self.settings.rag
        try:
            pipeline = RagPipeline(
                self.retriever,
                generator,
                k=rag_settings.k,
                min_relevance=rag_settings.min_relevance,
                support_threshold=rag_settings.support_threshold,
                max_new_tokens=self.generate.max_new_tokens,
                temperature=0.0,
            )
            return run_route(pipeline, key, self.asked, use_rag, self.progress.advance)
        finally:
            generator.close()
