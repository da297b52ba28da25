"""Question → answer with verified citations.

Retrieve (hybrid), number the passages [1]..[k] in the prompt, fit them to the model's window by
tokens (best first), generate with the model's own chat template, then check the answer
(answer_check.py): every [n] must name a passage that was in the prompt (others are removed and
reported), each citation gets the passage sentence that supports it, and each answer sentence is
checked against the passages it cites, so an unsupported sentence stands out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from expertkit.answer import Answer, passage_header
from expertkit.answer_check import check_answer
from expertkit.errors import QuestionError
from expertkit.index.base import Filters
from expertkit.language import NOT_FOUND as NOT_FOUND_IN
from expertkit.language import language_of, say
from expertkit.models.embedder import Embedder
from expertkit.models.generator import Generator, Messages
from expertkit.retrieve import Retriever
from expertkit.schema import SearchHit
from expertkit.terms import Term, key_terms, meets, nearest, unmet

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
        reranker = self.retriever.reranker
        if reranker is None or not reranker.shipped:
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

    def verify(self, question: str, text: str, passages: list[SearchHit]) -> Answer:
        """Make every claim traceable, whatever the model did with citations (answer_check.check_answer)."""
        return check_answer(question, text, passages, self.embedder, self.support_threshold)


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
