"""An answer with its citations, and the reading of text that answering and checking answers share.

``Answer`` and ``Citation`` are what ``RAG.ask`` returns. The helpers read an answer's text: its citation marks
([1], [1-3], [passage 2]), its sentences, its numbers as values and its content words; and ``passage_header``
names a passage the way the prompt numbers it, so the support check reads the same header the model saw.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from expertkit.index.keywords import fold_greek, has_greek, is_greek_stop_word
from expertkit.language import NOT_FOUND as NOT_FOUND_IN
from expertkit.schema import SearchHit
from expertkit.terms import number_value

# [1] [1, 2] [1;2] [1-3] [Passage 1] [passages 1 and 2] [Source 2]
CITATION = re.compile(
    r"\[\s*(?:(?:passages?|sources?)\s*:?\s*)?"
    r"(\d+(?:\s*(?:[,;&\-–]|,?\s*and)\s*(?:(?:passages?|sources?)\s*)?\d+)*)\s*\]",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9\u0386-\u038f\u0391-\u03a9\"'(\[“«])|\n+")
WORD = re.compile(r"[^\W_]+")  # a word: price_eur → price, eur
_STOP_WORDS = (
    "the and for are was were with that this from what which who whom how its has have had but you your per can "
    "will into than then there their they been being does did any all our out when where why"
)
_STOP = frozenset(_STOP_WORDS.split())  # "not" is kept: it changes what a sentence claims
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def parse_citation(group: str) -> list[int]:
    """The passage numbers in one bracket: "1, 2", "1-3", "passage 1 and passage 2"."""
    numbers: list[int] = []
    for part in re.split(r"\s*(?:[,;&]|\band\b)\s*", re.sub(r"(?i)passages?|sources?", "", group)):
        lo, dash, hi = part.strip().partition("-") if "-" in part else part.strip().partition("–")
        if dash and lo.strip().isdigit() and hi.strip().isdigit() and 0 <= int(hi) - int(lo) < 20:
            numbers += range(int(lo), int(hi) + 1)
        elif part.strip().isdigit():
            numbers.append(int(part))
    return numbers


def numbers_in(text: str) -> set[float]:
    """Numbers as values: 8,000 and 8000 match, 318 and 318.00 match, and so do 412,50 and 412.50 or 1.250,00
    and 1250 (terms.number_value); in Greek text 2.395 is 2395, as Greek groups thousands."""
    greek = has_greek(text)
    return {v for raw in _NUMBER.findall(text) if (v := number_value(raw, greek)) is not None}


def strip_citations(text: str) -> str:
    return tidy(CITATION.sub("", text))


def is_not_found(text: str) -> bool:
    """The model's (or expertkit's) "not found", in any language expertkit speaks."""
    bare = CITATION.sub("", text).strip().strip(".").strip().lower()
    return any(bare == said.rstrip(".").lower() for said in NOT_FOUND_IN.values())


@dataclass
class Citation:
    number: int
    chunk_id: str
    source: str
    page: int | None
    section: str | None
    record_id: str | None
    quote: str  # the passage sentence that best supports the answer
    attributed: bool = False  # True when expertkit, not the model, chose this passage for a sentence


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
    extractive: bool = False  # the answer quotes the passages: the model's own was empty or unsupported
    model_answer: str = ""  # what the model wrote, before verification
    retrieval_query: str | None = None  # what retrieval searched for, when not the question (a chat follow-up)
    # what retrieval did about reranking (Retriever.rerank_state): the reranker's name, "skipped: language" (a
    # question the English cross-encoder does not read: fusion order and the cosine gate alone), "off: <why>"
    rerank: str = ""
    # why the answer is "not found": "no_relevant_passage" (the gates: nothing close enough to the question),
    # "missing_term" (no passage names a code, quantity or name the question asks about), "not_stated" (the
    # passages were given to the model, which found no answer in them); "" when found
    reason: str = ""
    explanation: str = ""  # the same for people: what was missing, and what the documents cover instead
    language: str = "en"  # the question's (language.py): the answer, the not-found message and why are in it

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "found": self.found,
            "rag": self.rag,
            "extractive": self.extractive,
            "model_answer": self.model_answer,
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
            "rerank": self.rerank or None,
            "reason": self.reason or None,
            "explanation": self.explanation or None,
            "language": self.language,
        }


def passage_header(n: int, hit: SearchHit) -> str:
    """How the prompt names passage ``n``: "[n] (file, page, record, section)"."""
    c = hit.chunk
    where = c.source.rsplit("/", 1)[-1]
    if c.page is not None:
        where += f", page {c.page}"
    if c.record_id is not None:
        where += f", {c.record_id}"
    if c.section:
        where += f", {c.heading}"
    return f"[{n}] ({where})"


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def content_words(text: str) -> set[str]:
    """Content words, lightly stemmed (costs → cost; Greek: αντλίες → αντλ, as keyword search folds them), for
    overlap between answers and passages."""
    out = set()
    for w in WORD.findall(text.lower()):
        if has_greek(w):
            if not is_greek_stop_word(w):
                out.add(fold_greek(w))
        elif (len(w) > 2 or w.isdigit()) and w not in _STOP:
            out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def tidy(sentence: str) -> str:
    """No space before punctuation, no run of spaces: what is left where citation marks were taken out."""
    sentence = re.sub(r"\s+([.,;:!?])", r"\1", sentence)
    return re.sub(r"\s{2,}", " ", sentence).strip()
