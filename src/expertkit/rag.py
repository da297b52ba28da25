"""Question → answer with verified citations.

Retrieve (hybrid), number the passages [1]..[k] in the prompt, fit them to the model's window by
tokens (best first), generate with the model's own chat template, then check the answer:
every [n] must name a passage that was in the prompt (others are removed and reported), each
citation gets the passage sentence that supports it, and each answer sentence is checked against
the passages it cites, so an unsupported sentence stands out.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from expertkit.errors import QuestionError
from expertkit.index.base import Filters
from expertkit.index.keywords import fold_greek, has_greek, is_greek_stop_word
from expertkit.language import NOT_FOUND as NOT_FOUND_IN
from expertkit.language import language_of, say
from expertkit.models.embedder import Embedder
from expertkit.models.generator import Generator, Messages
from expertkit.retrieve import Retriever
from expertkit.schema import SearchHit
from expertkit.terms import Quantity, Term, key_terms, meets, nearest, number_value, quantities, unmet

NOT_FOUND = NOT_FOUND_IN["en"]  # and NOT_FOUND_IN["el"] for a Greek question (language.py)

# The answer comes first and its citation follows; the worked example shows both cases. It sits in the
# system message, a prefix shared by every question, so llama-server's prompt cache computes it once.
SYSTEM_PROMPT = f"""You answer questions using only the numbered passages you are given.
Write the answer first, in one or two short sentences, using the exact values from the passages. \
Put the number of the passage it comes from after it, in square brackets, like [2].
The passages may use other words than the question: read them carefully, tables and lists included.
Only if no passage contains the answer, reply exactly: {NOT_FOUND}

Example.
Passages:
[1] (price-list.csv, row 4)
item: Filter cartridge FC-20; price_usd: 14.90
[2] (manual.pdf, page 3, Maintenance)
Replace the FC-20 cartridge every 500 operating hours.
Question: How often must the FC-20 cartridge be changed?
Answer: Every 500 operating hours [2]."""

# Measured on the sample corpus (benchmarks/answer_quality.py's own sets were kept out of this choice):
# repeating the not-found rule here and a not-found example above made Qwen2.5-Coder-1.5B refuse
# answerable questions (2 of 12 paraphrased questions; 0 without them).
ANSWER_INSTRUCTION = "Answer in one or two sentences with the exact values, then cite the passage number like [2]."

# A question in Greek gets the English instructions and worked example, told to answer in the question's language.
# Measured on the Greek development set (benchmarks/greek_prompts.py on dev-el, examples/corpus-el's questions):
# Qwen2.5-Coder-1.5B follows English instructions far better than the same prompt translated into Greek, which it
# echoed ("Απάντηση: <the question>" over and over): 26 of 38 answers right against 10 of 19, and 10 of 19 with a
# Greek worked example under English instructions.
SYSTEM_PROMPT_EL = SYSTEM_PROMPT.replace(
    "Write the answer first,", "Write the answer first, in the language of the question,"
)
ANSWER_INSTRUCTION_EL = (
    "Answer in Greek, in one or two sentences with the exact values, then cite the passage number like [2]."
)
_PROMPTS = {  # language → (system prompt, "Passages:", "Question:", closing instruction)
    "en": (SYSTEM_PROMPT, "Passages:", "Question:", ANSWER_INSTRUCTION),
    "el": (SYSTEM_PROMPT_EL, "Passages:", "Question:", ANSWER_INSTRUCTION_EL),
}

# [1] [1, 2] [1;2] [1-3] [Passage 1] [passages 1 and 2] [Source 2]
_CITATION = re.compile(
    r"\[\s*(?:(?:passages?|sources?)\s*:?\s*)?"
    r"(\d+(?:\s*(?:[,;&\-–]|,?\s*and)\s*(?:(?:passages?|sources?)\s*)?\d+)*)\s*\]",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=[A-Z0-9\u0386-\u038f\u0391-\u03a9\"'(\[“«])|\n+")
_LEADING_CITATIONS = re.compile(r"^\s*(?:\[[^\]]*\d[^\]]*\]\s*)+")
_WORD = re.compile(r"[^\W_]+")  # price_eur → price, eur
_STOP_WORDS = (
    "the and for are was were with that this from what which who whom how its has have had but you your per can "
    "will into than then there their they been being does did any all our out when where why"
)
_STOP = frozenset(_STOP_WORDS.split())  # "not" is kept: it changes what a sentence claims
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# "This information is found in passage [1]." and the like: a pointer, not a claim
_POINTER_STEMS = "information info found passage source document according see given stated provided mentioned answer"
_POINTER_WORDS = frozenset(_POINTER_STEMS.split())  # stems, as _words makes them
# a model declining in its own words ("The passages do not mention ...", "I don't know")
_REFUSAL = re.compile(
    r"\bnot (?:found|mentioned|specified|stated|given|provided|contain|say|include)|\bdo(?:es)? not (?:mention|"
    r"contain|say|specify|state|include|provide)|\bno (?:information|mention|data)\b|\bdon'?t know\b|\bcannot "
    r"(?:find|answer|determine)\b|\bunable to (?:find|answer|determine)\b"
    # and in Greek: "δεν αναφέρεται", "δεν βρέθηκε", "δεν υπάρχει πληροφορία", "δεν γνωρίζω"
    r"|δεν\s+(?:βρ[εέ]θηκε|αναφ[εέ]ρ|περι[εέ]χ|υπ[αά]ρχ|γνωρ[ιί]ζ|προκ[υύ]πτ|δ[ιί]νετ|διευκριν)",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^\s*(answer|a|απάντηση|απαντηση)\s*:\s*", re.IGNORECASE)
_QUESTION_LABEL = re.compile(r"^\s*(?:question|q|ερώτηση|ερωτηση)\s*:\s*", re.IGNORECASE)


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
    return _tidy(_CITATION.sub("", text))


def is_not_found(text: str) -> bool:
    """The model's (or expertkit's) "not found", in any language expertkit speaks."""
    bare = _CITATION.sub("", text).strip().strip(".").strip().lower()
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
    """The RAG prompt, in the question's language. Fine-tuning data (RAFT) uses this same function, so training
    sees what answering sees."""
    system, passages_label, question_label, instruction = _PROMPTS[language_of(question)]
    context = "\n\n".join(f"{passage_header(i, h)}\n{h.chunk.text}" for i, h in enumerate(passages, start=1))
    # the instruction is repeated last: small models follow the end of the prompt best
    user = f"{passages_label}\n\n{context}\n\n{question_label} {question}\n{instruction}" if passages else question
    return [{"role": "system", "content": system}, *(history or []), {"role": "user", "content": user}]


def bare_messages(question: str, history: Messages | None = None) -> Messages:
    return [*(history or []), {"role": "user", "content": question}]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def _words(text: str) -> set[str]:
    """Content words, lightly stemmed (costs → cost; Greek: αντλίες → αντλ, as keyword search folds them), for
    overlap between answers and passages."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if has_greek(w):
            if not is_greek_stop_word(w):
                out.add(fold_greek(w))
        elif (len(w) > 2 or w.isdigit()) and w not in _STOP:
            out.add(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def _overlap(words: set[str], other: set[str]) -> float:
    """Share of ``words`` found in ``other``; words with digits (68, NP-4472) weigh double: they carry the fact."""
    weight = {w: 2.0 if any(ch.isdigit() for ch in w) else 1.0 for w in words}
    return sum(weight[w] for w in words & other) / (sum(weight.values()) or 1.0)


def _identifiers(text: str) -> set[str]:
    """Words with digits (NV-999 → nv, 999; M20 → m20): what a question pins its answer to."""
    return {w for w in _words(text) if any(ch.isdigit() for ch in w)}


_NEGATION = frozenset({"not", "never", "without", "cannot", "nor", "δεν", "μην", "μη", "όχι", "ούτε", "χωρίς"})
_PASSAGE_REF = re.compile(r"\b(?:passages?|sources?)\s+\d+(?:\s*(?:,|and)\s*\d+)*", re.IGNORECASE)


class RAG:
    """Configuration in __init__ (retriever, generator, thresholds); questions flow through ``ask``."""

    def __init__(
        self,
        retriever: Retriever,
        generator: Generator | None,
        k: int = 3,
        min_relevance: float | None = None,
        support_threshold: float | None = None,
        max_new_tokens: int = 160,
        temperature: float = 0.0,
        min_rerank: float = -9.0,
        key_terms: bool = True,
    ) -> None:
        self.retriever = retriever
        self.generator = generator
        self.k = k
        # None: the embedder's own, calibrated on its cosine scale (0.3 and 0.55 for all-MiniLM-L6-v2)
        self.min_relevance = retriever.embedder.min_relevance if min_relevance is None else min_relevance
        self.min_rerank = min_rerank
        self.key_terms = key_terms
        self.support_threshold = (
            retriever.embedder.support_threshold if support_threshold is None else support_threshold
        )
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
        max_new_tokens: int | None = None,
    ) -> Answer:
        """Answer ``question``. ``retrieval_query`` (a standalone rewrite in chat) is what retrieval sees.
        ``max_new_tokens`` shortens the answer below the configured length (a client's max_tokens)."""
        question = self._check_question(question)
        timings: dict[str, float] = {}
        limit = min(max_new_tokens or self.max_new_tokens, self.max_new_tokens)
        if not rag:
            gen = self._generate(bare_messages(question, history), on_token, timings, limit)
            return Answer(
                question,
                gen.text,
                found=True,
                rag=False,
                timings=timings,
                finish_reason=gen.finish_reason,
                model_answer=gen.text,
            )
        self.embedder.model  # noqa: B018 - load first, so retrieve_ms times retrieval alone
        query = retrieval_query or question
        k = k or self.k
        terms = key_terms(query) if self.key_terms else []
        t0 = time.perf_counter()
        # with key terms, the reranker's whole head: the passages that name them may sit below the top k
        wide = self.retriever.search(
            query, k=max(k, self.retriever.settings.rerank_top) if terms else k, filters=filters
        )
        hits = wide[:k]
        timings["retrieve_ms"] = (time.perf_counter() - t0) * 1e3
        rerank = self.retriever.rerank_state(query)

        lang = language_of(question)

        def declined(reason: str, explanation: str) -> Answer:  # the model is not called: no passage given to it
            return Answer(
                question,
                NOT_FOUND_IN[lang],
                found=False,
                timings=timings,
                retrieval_query=retrieval_query,
                rerank=rerank,
                reason=reason,
                explanation=explanation,
                language=lang,
            )

        if self.relevance(query, hits) < self.min_relevance or self.rerank_relevance(hits) < self.min_rerank:
            return declined("no_relevant_passage", _no_passage(hits, lang))
        if terms:
            t1 = time.perf_counter()
            hits, missing = self._bound(terms, wide, k, filters, lang)
            timings["terms_ms"] = (time.perf_counter() - t1) * 1e3
            if missing:
                return declined("missing_term", missing)
        passages = self.fit_passages(question, hits, history) if self.generator else hits
        if not passages:
            raise QuestionError(
                "no passage fits in the model's window next to this question; shorten it, "
                "or lower ingest.chunk_tokens and re-ingest"
            )
        gen = self._generate(build_messages(question, passages, history), on_token, timings, limit)
        t1 = time.perf_counter()
        answer = self.verify(question, gen.text, passages)
        timings["verify_ms"] = (time.perf_counter() - t1) * 1e3
        answer.timings, answer.finish_reason = timings, gen.finish_reason
        answer.retrieval_query, answer.rerank, answer.language = retrieval_query, rerank, lang
        if not answer.found:
            answer.reason = "not_stated"
            answer.explanation = say(lang, "not_stated", where=_places(passages))
        return answer

    def _bound(self, terms: list[Term], wide: list[SearchHit], k: int, filters: Filters | None, lang: str = "en"):
        """The passages an answer may come from: the best ``k`` that name every code and quantity the question
        does (and no explanation); or none, and what is missing. Names (looser: spelled and capitalised many
        ways) need only be somewhere in the documents the caller may read."""
        hard = [t for t in terms if t.kind != "name"]
        for name in (t for t in terms if t.kind == "name"):
            if not any(meets(name, _full_text(h)) for h in wide) and not self._naming([name], filters):
                return [], say(lang, "missing", what=str(name))
        if not hard:
            return wide[:k], ""
        bound = [h for h in wide if not unmet(hard, _full_text(h))] or self._naming(hard, filters)
        if bound:
            return bound[:k], ""
        # nothing names them all: say which the documents lack, or that they never come together
        seen = [_full_text(h) for h in wide]
        absent = [t for t in hard if not any(meets(t, text) for text in seen) and not self._naming([t], filters)]
        if absent:
            near = [", ".join(n) for t in absent if (n := nearest(t, seen))]
            listed = say(lang, "or").join(str(t) for t in absent)
            covers = say(lang, "covers", what=say(lang, "and").join(near)) if near else ""
            return [], say(lang, "missing", what=listed) + covers
        return [], say(lang, "missing", what=say(lang, "together").join(str(t) for t in hard))

    def _naming(self, terms: list[Term], filters: Filters | None, depth: int = 50) -> list[SearchHit]:
        """Passages the caller may read that name every one of ``terms``, found by keyword search on them."""
        ids = [cid for cid, _ in self.retriever.index.search_bm25(" ".join(str(t) for t in terms), depth, filters)]
        chunks = self.retriever.index.get_chunks(ids)
        order = {cid: i for i, cid in enumerate(ids)}
        found = [c for c in chunks if not unmet(terms, _full_text(SearchHit(c, 0.0, {})))]
        return [SearchHit(c, 0.0, {"bm25": 0.0}) for c in sorted(found, key=lambda c: order[c.chunk_id])]

    def relevance(self, query: str, hits: list[SearchHit]) -> float:
        """The best dense cosine between the query and the hits, whatever the search mode: BM25-only
        hits carry no dense score, so theirs is computed here (k small texts, a few ms). A chunk with a
        document header is also scored without it: a file name or title dilutes a short passage's
        vector, and the threshold was calibrated on passages alone (the better of the two counts)."""
        if not hits:
            return 0.0
        known = [h.scores["dense"] for h in hits if "dense" in h.scores]
        texts = [h.chunk.embed_text() for h in hits if "dense" not in h.scores]
        texts += [h.chunk.embed_text(context=False) for h in hits if h.chunk.context]
        if texts:
            vectors = self.embedder.encode([query, *texts], role=["query"] + ["passage"] * len(texts))
            known += [float(v) for v in vectors[1:] @ vectors[0]]
        return max(known)

    def rerank_relevance(self, hits: list[SearchHit]) -> float:
        """The best score the shipped cross-encoder gave the hits (its logit; rag.min_rerank was calibrated on
        it); +inf where it did not judge them (no reranker or another one, or a question it does not read), so
        that the gate is the cosine's alone, as without it."""
        if not getattr(self.retriever.reranker, "shipped", False):
            return math.inf
        return max((h.scores["rerank"] for h in hits if "rerank" in h.scores), default=math.inf)

    def _generate(self, messages: Messages, on_token, timings: dict[str, float], max_new_tokens: int):
        if self.generator is None:
            raise QuestionError("no generator configured")
        gen = self.generator.generate(messages, max_new_tokens, self.temperature, on_token)
        timings.update(
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            generate_ms=gen.seconds * 1e3,
            tokens_per_s=gen.tokens_per_second,
        )
        if gen.first_token_s is not None:
            timings["first_token_ms"] = gen.first_token_s * 1e3
        return gen

    # -- verification ---------------------------------------------------------------------------------

    def verify(self, question: str, text: str, passages: list[SearchHit]) -> Answer:
        """Make every claim traceable, whatever the model did with citations.

        1. Citation numbers in any common form are read; numbers that were not passages are removed.
        2. Each sentence is checked against the passages (embedding and word overlap; its numbers must
           appear in the passage). It keeps the model's citations that support it; a sentence without a
           supporting citation is attributed to the passage that supports it best (marked attributed);
           one that no passage supports is flagged unsupported.
        3. An answer that is empty, only citation numbers, or wholly unsupported becomes a quote of the
           passage sentence that best answers the question (``extractive``).
        """
        raw = text
        not_found = NOT_FOUND_IN[language_of(question)]
        invalid: list[int] = []
        claims = self._claims(_LABEL.sub("", text.strip()), len(passages), invalid, question)
        said = [c for c, _ in claims if c]
        if said and all(is_not_found(c) for c in said):
            return Answer(question, not_found, False, retrieved=passages, invalid_citations=invalid, model_answer=raw)
        pointed = sorted({n for _, cited in claims for n in cited})
        # "Not found. But [1] says ..." keeps the rest; a bare "[1]" leaves no claim, only a pointer
        claims = [(c, n) for c, n in claims if c and not is_not_found(c)]
        support = _Support(self.embedder, [c for c, _ in claims], passages, question, self.support_threshold)
        kept: list[tuple[int, list[int], bool]] = []  # claim index, its passages, attributed
        unsupported: list[str] = []
        for i, (sentence, cited) in enumerate(claims):
            good = [n for n in cited if support.score(i, n) >= self.support_threshold]
            if good:
                kept.append((i, good, False))
                continue
            best = support.best_passage(i)
            if best is not None and support.score(i, best) >= self.support_threshold:
                kept.append((i, [best], True))
            else:
                unsupported.append(sentence)
        if not kept:
            if _REFUSAL.search(raw) or any(nf.rstrip(".").lower() in raw.lower() for nf in NOT_FOUND_IN.values()):
                # the model declined in its own words and stated nothing the passages support
                return Answer(
                    question, not_found, False, retrieved=passages, invalid_citations=invalid, model_answer=raw
                )
            return self._quote(question, passages, support, pointed, raw, invalid, unsupported)
        citations: dict[int, Citation] = {}
        parts = []
        for i, numbers, attributed in kept:
            parts.append(_with_citations(claims[i][0], numbers))
            for n in numbers:
                if n not in citations:
                    citations[n] = _citation(n, passages[n - 1], support.quote(i, n), attributed)
        answer_text = " ".join(parts)
        if unsupported:  # shown, flagged: the reader decides, nothing is silently dropped
            answer_text += " " + " ".join(unsupported)
        total = len(kept) + len(unsupported)
        return Answer(
            question,
            answer_text,
            True,
            citations=sorted(citations.values(), key=lambda c: c.number),
            unsupported=unsupported,
            invalid_citations=invalid,
            groundedness=len(kept) / total,
            retrieved=passages,
            model_answer=raw,
        )

    def _claims(
        self, text: str, n_passages: int, invalid: list[int], question: str = ""
    ) -> list[tuple[str, list[int]]]:
        """Sentences with the valid passage numbers each cites. A sentence that only points at a
        passage ("This is found in passage [1].") gives its numbers to the sentence before it, and so does one
        that only repeats the question (a small model's "Question: …? Answer: …" echo)."""
        claims: list[tuple[str, list[int]]] = []
        pending: list[int] = []
        for sentence in split_sentences(text):
            sentence = _LABEL.sub("", sentence)  # "…? Answer: 68 N·m [1]." after an echoed question
            head, colon, tail = sentence.partition(":")
            if colon and tail.strip() and _echoes(head, question):  # "What torque …: [1] It is 68 N·m."
                sentence = tail.strip()
            lead = _LEADING_CITATIONS.match(sentence)
            if lead and claims:  # "… 500 hours. [2] The next claim": [2] closes the sentence before it
                moved = [n for g in _CITATION.findall(lead.group(0)) for n in parse_citation(g)]
                claims[-1][1].extend(n for n in moved if 1 <= n <= n_passages and n not in claims[-1][1])
                invalid.extend(n for n in moved if not 1 <= n <= n_passages)
                sentence = sentence[lead.end() :]
            numbers = [n for g in _CITATION.findall(sentence) for n in parse_citation(g)]
            valid = [n for n in dict.fromkeys(numbers) if 1 <= n <= n_passages]
            invalid.extend(n for n in numbers if not 1 <= n <= n_passages)
            bare = _CITATION.sub("", sentence).strip(" .,;:")
            pointer = not numbers_in(bare) and not (_words(bare) - _POINTER_WORDS)
            echo = _echoes(_CITATION.sub("", sentence).strip(" .,:"), question)  # its ";" kept: a Greek question
            if not _words(bare) or echo or (pointer and not is_not_found(bare)):
                if claims:
                    claims[-1][1].extend(n for n in valid if n not in claims[-1][1])
                else:
                    pending.extend(valid)
                continue
            claims.append((_tidy(_CITATION.sub("", sentence)), list(dict.fromkeys(pending + valid))))
            pending = []
        if pending:  # only citation numbers, no words: the quote fallback looks in those passages first
            claims.append(("", pending))
        return claims

    def _quote(self, question, passages, support, preferred, raw, invalid, unsupported) -> Answer:
        """The extractive fallback: the passage sentence that best answers the question, quoted."""
        # None also when the question names a part, code or value (M20, NV-999) that no passage has
        n, sentence = support.best_for_question(preferred)
        if sentence is None:
            not_found = NOT_FOUND_IN[language_of(question)]
            return Answer(question, not_found, False, retrieved=passages, invalid_citations=invalid, model_answer=raw)
        return Answer(
            question,
            f"“{sentence}” [{n}]",
            True,
            citations=[_citation(n, passages[n - 1], sentence, True)],
            unsupported=unsupported,
            invalid_citations=invalid,
            groundedness=1.0,
            retrieved=passages,
            extractive=True,
            model_answer=raw,
        )


def _echoes(sentence: str, question: str) -> bool:
    """Whether an answer sentence only asks or repeats the question: it ends in a question mark (Greek writes
    ";"), starts with a "Question:" label, or says nothing the question did not (no other word, number or
    negation). A question is not a claim."""
    if _QUESTION_LABEL.match(sentence) or sentence.endswith(("?", "\u037e")):
        return True
    if sentence.endswith(";") and language_of(sentence) == "el":
        return True
    if not question:
        return False
    sentence = sentence.rstrip(" :")
    words = _words(sentence)
    negation = _NEGATION & set(_WORD.findall(sentence.lower()))
    return (
        len(words) >= 2
        and words <= _words(question)
        and numbers_in(sentence) <= numbers_in(question)
        and negation <= set(_WORD.findall(question.lower()))
    )


def _unit_clash(claimed: list[tuple[str, Quantity]], held: list[Quantity]) -> bool:
    """Whether the passage has a number the sentence states only with other units: "24 χρόνια" against a passage
    whose 24 is "24 μήνες". A bare number in the passage (a table cell) clashes with nothing."""
    for _, q in claimed:
        same = [p for p in held if p.value == q.value]
        if same and all(p.unit != q.unit for p in same):
            return True
    return False


def _full_text(hit: SearchHit) -> str:
    """What a passage names: its text, headings and document line, and its file name and record."""
    return f"{passage_header(0, hit)}\n{hit.chunk.embed_text()}"


def _places(hits: list[SearchHit]) -> str:
    places = dict.fromkeys(passage_header(0, h).removeprefix("[0] (").removesuffix(")") for h in hits)
    return "; ".join(list(places)[:3])


def _no_passage(hits: list[SearchHit], lang: str = "en") -> str:
    if not hits:
        return say(lang, "empty")
    return say(lang, "far", where=_places(hits[:1]))


def _tidy(sentence: str) -> str:
    sentence = re.sub(r"\s+([.,;:!?])", r"\1", sentence)
    return re.sub(r"\s{2,}", " ", sentence).strip()


def _with_citations(sentence: str, numbers: list[int]) -> str:
    marks = "".join(f"[{n}]" for n in numbers)
    body, end = (sentence[:-1], sentence[-1]) if sentence[-1:] in ".!?" else (sentence, "")
    return f"{body} {marks}{end}"


def _citation(n: int, hit: SearchHit, quote: str, attributed: bool) -> Citation:
    c = hit.chunk
    return Citation(n, c.chunk_id, c.source, c.page, c.heading or None, c.record_id, quote, attributed)


def _body_sentences(hit: SearchHit) -> list[str]:
    """A passage's sentences without its heading lines ("Maintenance"), which support nothing and make
    poor quotes; a passage that is only a heading keeps it."""
    headings = {part.strip().lower() for part in hit.chunk.section}
    sentences = split_sentences(hit.chunk.text) or [hit.chunk.text]
    body = [s for s in sentences if s.lstrip("#").strip().lower() not in headings]
    return body or sentences


# the share of an answer sentence's words a passage must hold to support it: all-MiniLM-L6-v2's support threshold,
# where the word share and the cosine were calibrated as one score
LEXICAL_SUPPORT = 0.55


class _Support:
    """How well each answer sentence is supported by each passage, computed once per answer.

    score = max(cosine to the passage's best sentence, share of the sentence's words in the passage), and 0 when
    the sentence states a number the passage does not contain. The word share is put on the embedder's cosine
    scale: a share of LEXICAL_SUPPORT scores ``threshold``, whatever cosine the embedder needs (0.55 for
    all-MiniLM-L6-v2, where the two scales are one; 0.87 for multilingual-e5-small, where an inflected Greek answer
    with most of the passage's words would otherwise never pass).
    """

    def __init__(
        self,
        embedder: Embedder,
        claims: list[str],
        passages: list[SearchHit],
        question: str,
        threshold: float = LEXICAL_SUPPORT,
    ) -> None:
        self.lexical_scale = threshold / LEXICAL_SUPPORT
        self.claims = claims
        self.passages = passages
        self.question = question
        self.sentences = [_body_sentences(h) for h in passages]
        self.flat = [(n, s) for n, sents in enumerate(self.sentences, start=1) for s in sents]
        vectors = embedder.encode(
            [question, *claims, *(s for _, s in self.flat)],
            role=["query"] * (1 + len(claims)) + ["passage"] * len(self.flat),
        )
        self.q_vec, self.c_vecs, self.p_vecs = vectors[0], vectors[1 : 1 + len(claims)], vectors[1 + len(claims) :]
        self.sims = self.c_vecs @ self.p_vecs.T if claims else np.zeros((0, len(self.flat)))
        self.passage_words = [_words(h.chunk.embed_text()) for h in passages]
        # the header counts: "on page 3" is supported by a passage from page 3
        texts = [self.passage_text(n) for n in range(1, len(passages) + 1)]
        self.passage_numbers = [numbers_in(text) for text in texts]
        self.passage_negated = [bool(_NEGATION & set(_WORD.findall(h.chunk.text.lower()))) for h in passages]
        self.passage_quantities = [[q for _, q in quantities(text)] for text in texts]
        self.claim_quantities = [quantities(claim) for claim in claims]  # score() asks once per passage
        self._cache: dict[tuple[int, int], float] = {}

    def passage_text(self, n: int) -> str:
        return f"{passage_header(n, self.passages[n - 1])} {self.passages[n - 1].chunk.embed_text()}"

    def _cols(self, n: int) -> list[int]:
        return [j for j, (m, _) in enumerate(self.flat) if m == n]

    def score(self, i: int, n: int) -> float:
        if (i, n) not in self._cache:
            claim = self.claims[i]
            negated = bool(_NEGATION & set(_WORD.findall(claim.lower())))
            if not numbers_in(_PASSAGE_REF.sub("", claim)) <= self.passage_numbers[n - 1]:
                value = 0.0
            elif negated and not self.passage_negated[n - 1]:
                value = 0.0  # "X is not covered" is not what "X is covered" says
            elif _unit_clash(self.claim_quantities[i], self.passage_quantities[n - 1]):
                value = 0.0  # "24 years" is not what "24 months" says
            else:
                lexical = _overlap(_words(claim), self.passage_words[n - 1]) * self.lexical_scale
                value = max([lexical, *(float(self.sims[i, j]) for j in self._cols(n))])
            self._cache[(i, n)] = value
        return self._cache[(i, n)]

    def best_passage(self, i: int) -> int | None:
        numbers = range(1, len(self.passages) + 1)
        return max(numbers, key=lambda n: (self.score(i, n), -n)) if self.passages else None

    def quote(self, i: int, n: int) -> str:
        """The passage sentence closest to answer sentence ``i``."""
        words = _words(self.claims[i])
        best = max(
            self._cols(n),
            key=lambda j: float(self.sims[i, j]) + len(words & _words(self.flat[j][1])) / max(len(words), 1),
        )
        return self.flat[best][1]

    def best_for_question(self, preferred: list[int]) -> tuple[int, str | None]:
        """The passage sentence that best answers the question: cosine plus word overlap, where a word
        weighs by how few candidate sentences share it (the one row that says "price" beats three that
        say "seal kit") and identifiers (NP-4472) double. Only passages that contain every identifier
        the question names are candidates; a passage the model pointed at gets a nudge."""
        needed = _identifiers(self.question)
        holding = {n for n in range(1, len(self.passages) + 1) if needed <= _words(self.passage_text(n))}
        pool = [j for j, (n, _) in enumerate(self.flat) if n in holding]
        if not pool:
            return 0, None
        q_words = _words(self.question)
        words = {j: _words(self.flat[j][1]) for j in pool}
        df = {w: sum(w in ws for ws in words.values()) for w in q_words}
        weight = {
            w: (2.0 if any(ch.isdigit() for ch in w) else 1.0) * math.log(1 + len(pool) / df[w]) if df[w] else 0.0
            for w in q_words
        }
        total = sum(weight.values()) or 1.0  # over the words some candidate has: the others tell none apart
        sims = self.p_vecs @ self.q_vec

        def score(j: int) -> float:
            n = self.flat[j][0]
            lexical = sum(weight[w] for w in q_words & words[j]) / total
            return float(sims[j]) + lexical + (0.1 if n in preferred else 0.0)

        best = max(pool, key=score)
        return self.flat[best][0], self.flat[best][1]
