"""Question → answer with verified citations.

Retrieve (hybrid), number the passages [1]..[k] in the prompt, fit them to the model's window by
tokens (best first), generate with the model's own chat template, then check the answer:
every [n] must name a passage that was in the prompt (others are removed and reported), each
citation gets the passage sentence that supports it, and each answer sentence is checked against
the passages it cites, so an unsupported sentence stands out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from expertkit.errors import QuestionError
from expertkit.index.base import Filters
from expertkit.models.embedder import Embedder
from expertkit.models.generator import Generator, Messages
from expertkit.retrieve import Retriever
from expertkit.schema import SearchHit

NOT_FOUND = "Not found in the documents."

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages you are given. "
    "Cite every fact with the number of its passage in square brackets, like [1]. "
    f"If the passages do not contain the answer, reply exactly: {NOT_FOUND}"
)

ANSWER_INSTRUCTION = "Answer using the passages, and cite the passage number in square brackets, like [1]."

_CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n+")
_WORD = re.compile(r"\w+")


@dataclass
class Citation:
    number: int
    chunk_id: str
    source: str
    page: int | None
    section: str | None
    record_id: str | None
    quote: str  # the passage sentence that best supports the answer


@dataclass
class Answer:
    question: str
    answer: str
    found: bool
    citations: list[Citation] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    invalid_citations: list[int] = field(default_factory=list)  # numbers removed: not passages in the prompt
    groundedness: float | None = None  # share of answer sentences supported by their cited passages
    retrieved: list[SearchHit] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    finish_reason: str = "stop"
    rag: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "found": self.found,
            "rag": self.rag,
            "citations": [asdict(c) for c in self.citations],
            "unsupported": self.unsupported,
            "invalid_citations": self.invalid_citations,
            "groundedness": None if self.groundedness is None else round(self.groundedness, 3),
            "retrieved": [
                {
                    "chunk_id": h.chunk.chunk_id,
                    "score": round(h.score, 6),
                    "source": h.chunk.source,
                    "page": h.chunk.page,
                    "section": h.chunk.heading or None,
                }
                for h in self.retrieved
            ],
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
            "finish_reason": self.finish_reason,
        }


def passage_header(n: int, hit: SearchHit) -> str:
    c = hit.chunk
    where = c.source.rsplit("/", 1)[-1]
    if c.page is not None:
        where += f", page {c.page}"
    if c.record_id is not None:
        where += f", {c.record_id}"
    if c.section:
        where += f", {c.heading}"
    return f"[{n}] ({where})"


def build_messages(question: str, passages: list[SearchHit], history: Messages | None = None) -> Messages:
    """The RAG prompt. Fine-tuning data (RAFT) uses this same function, so training sees what answering sees."""
    context = "\n\n".join(f"{passage_header(i, h)}\n{h.chunk.text}" for i, h in enumerate(passages, start=1))
    # the instruction is repeated last: small models follow the end of the prompt best
    user = f"Passages:\n\n{context}\n\nQuestion: {question}\n{ANSWER_INSTRUCTION}" if passages else question
    return [{"role": "system", "content": SYSTEM_PROMPT}, *(history or []), {"role": "user", "content": user}]


def bare_messages(question: str, history: Messages | None = None) -> Messages:
    return [*(history or []), {"role": "user", "content": question}]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 or w.isdigit()}


class RAG:
    """Configuration in __init__ (retriever, generator, thresholds); questions flow through ``ask``."""

    def __init__(
        self,
        retriever: Retriever,
        generator: Generator | None,
        k: int = 3,
        min_relevance: float = 0.3,
        support_threshold: float = 0.55,
        max_new_tokens: int = 160,
        temperature: float = 0.0,
    ) -> None:
        self.retriever = retriever
        self.generator = generator
        self.k = k
        self.min_relevance = min_relevance
        self.support_threshold = support_threshold
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    @property
    def embedder(self) -> Embedder:
        return self.retriever.embedder

    def _check_question(self, question: str) -> str:
        question = question.strip()
        if not question:
            raise QuestionError('the question is empty: ask something, e.g. expertkit ask "What is the warranty?"')
        if self.generator is not None:
            budget = self.generator.context_window - self.max_new_tokens
            n = self.generator.count_tokens(bare_messages(question))
            if n > budget:
                raise QuestionError(
                    f"the question is {n} tokens; {self.generator.name} has room for {budget} "
                    f"({self.generator.context_window} window − {self.max_new_tokens} for the answer). "
                    "Shorten it, or lower generate.max_new_tokens"
                )
        return question

    def fit_passages(self, question: str, hits: list[SearchHit], history: Messages | None = None) -> list[SearchHit]:
        """The highest-ranked passages whose prompt fits the window, leaving room for the answer."""
        assert self.generator is not None
        budget = self.generator.context_window - self.max_new_tokens
        kept: list[SearchHit] = []
        for hit in hits:
            if self.generator.count_tokens(build_messages(question, [*kept, hit], history)) <= budget:
                kept.append(hit)
        return kept

    def ask(
        self,
        question: str,
        filters: Filters | None = None,
        rag: bool = True,
        k: int | None = None,
        history: Messages | None = None,
        retrieval_query: str | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer ``question``. ``retrieval_query`` (a standalone rewrite in chat) is what retrieval sees."""
        question = self._check_question(question)
        timings: dict[str, float] = {}
        if not rag:
            gen = self._generate(bare_messages(question, history), on_token, timings)
            return Answer(question, gen.text, found=True, rag=False, timings=timings, finish_reason=gen.finish_reason)
        self.embedder.model  # noqa: B018 - load first, so retrieve_ms times retrieval alone
        t0 = time.perf_counter()
        hits = self.retriever.search(retrieval_query or question, k=k or self.k, filters=filters)
        timings["retrieve_ms"] = (time.perf_counter() - t0) * 1e3
        relevance = max((h.scores.get("dense", 0.0) for h in hits), default=0.0)
        if relevance < self.min_relevance:
            # the model is not called, so no passage was given to it
            return Answer(question, NOT_FOUND, found=False, timings=timings)
        passages = self.fit_passages(question, hits, history) if self.generator else hits
        if not passages:
            raise QuestionError(
                "no passage fits in the model's window next to this question; shorten it, "
                "or lower ingest.chunk_tokens and re-ingest"
            )
        gen = self._generate(build_messages(question, passages, history), on_token, timings)
        answer = self.verify(question, gen.text, passages)
        answer.timings, answer.finish_reason = timings, gen.finish_reason
        return answer

    def _generate(self, messages: Messages, on_token, timings: dict[str, float]):
        if self.generator is None:
            raise QuestionError("no generator configured")
        gen = self.generator.generate(messages, self.max_new_tokens, self.temperature, on_token)
        timings.update(
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            generate_ms=gen.seconds * 1e3,
            tokens_per_s=gen.tokens_per_second,
        )
        return gen

    # -- verification ---------------------------------------------------------------------------------

    def verify(self, question: str, text: str, passages: list[SearchHit]) -> Answer:
        """Check citations against the prompt's passages and each sentence against what it cites."""
        invalid: list[int] = []

        def keep_valid(match: re.Match) -> str:
            numbers = [int(n) for n in re.split(r"\s*[,;]\s*", match.group(1))]
            good = [n for n in numbers if 1 <= n <= len(passages)]
            invalid.extend(n for n in numbers if n not in good)
            return "".join(f"[{n}]" for n in good)

        cleaned = _CITATION.sub(keep_valid, text).strip()
        if cleaned.rstrip(".").lower() == NOT_FOUND.rstrip(".").lower() or NOT_FOUND.lower() in cleaned.lower():
            return Answer(question, cleaned, found=False, retrieved=passages, invalid_citations=invalid)
        sentences = split_sentences(cleaned)
        cited_by = [
            sorted({int(n) for g in _CITATION.findall(s) for n in re.split(r"\s*[,;]\s*", g)}) for s in sentences
        ]
        all_cited = sorted({n for c in cited_by for n in c})
        if not all_cited:
            return Answer(
                question,
                cleaned,
                found=True,
                retrieved=passages,
                unsupported=sentences,
                invalid_citations=invalid,
                groundedness=0.0,
            )
        passage_sentences = {n: split_sentences(passages[n - 1].chunk.text) for n in all_cited}
        flat = [(n, s) for n in all_cited for s in passage_sentences[n]]
        plain = [_CITATION.sub("", s).strip() for s in sentences]
        vectors = self.embedder.encode(plain + [s for _, s in flat])
        ans_vec, pas_vec = vectors[: len(plain)], vectors[len(plain) :]
        sims = ans_vec @ pas_vec.T  # answer sentence × passage sentence
        unsupported = []
        best_quote: dict[int, tuple[float, str]] = {}
        for i, (sentence, cites) in enumerate(zip(plain, cited_by, strict=True)):
            scope = cites or all_cited  # an uncited sentence is checked against what the answer cites elsewhere
            cols = [j for j, (n, _) in enumerate(flat) if n in scope]
            lexical = [len(_words(sentence) & _words(flat[j][1])) / max(len(_words(sentence)), 1) for j in cols]
            scores = [max(float(sims[i, j]), lex) for j, lex in zip(cols, lexical, strict=True)]
            best = int(np.argmax(scores)) if scores else -1
            if not scores or scores[best] < self.support_threshold:
                unsupported.append(sentences[i])
            for j, score in zip(cols, scores, strict=True):
                n, text_j = flat[j]
                if n in cites and score > best_quote.get(n, (-1.0, ""))[0]:
                    best_quote[n] = (score, text_j)
        citations = []
        for n in all_cited:
            c = passages[n - 1].chunk
            quote = best_quote.get(n, (0.0, passage_sentences[n][0] if passage_sentences[n] else c.text))[1]
            citations.append(Citation(n, c.chunk_id, c.source, c.page, c.heading or None, c.record_id, quote))
        grounded = 1.0 - len(unsupported) / max(len(sentences), 1)
        return Answer(
            question,
            cleaned,
            found=True,
            citations=citations,
            unsupported=unsupported,
            invalid_citations=invalid,
            groundedness=grounded,
            retrieved=passages,
        )
