"""The support check: every claim of an answer traced to the passages it came from.

``check_answer`` reads the answer's sentences and the passage numbers each cites (``_claims``: pointers such
as "This is found in passage [1]." and echoes of the question are not claims), scores each sentence against
each passage (``_Support``: cosine or word share, zero where a number, a unit or a negation disagrees), keeps
the citations that hold, attributes or flags the rest, and falls back to quoting the passages (``_quote``).
"""

from __future__ import annotations

import math
import re

import numpy as np

from expertkit.answer import (
    CITATION,
    WORD,
    Answer,
    Citation,
    content_words,
    is_not_found,
    numbers_in,
    parse_citation,
    passage_header,
    split_sentences,
    tidy,
)
from expertkit.language import NOT_FOUND as NOT_FOUND_IN
from expertkit.language import language_of
from expertkit.models.embedder import Embedder
from expertkit.schema import SearchHit
from expertkit.terms import Quantity, quantities

_LEADING_CITATIONS = re.compile(r"^\s*(?:\[[^\]]*\d[^\]]*\]\s*)+")
# "This information is found in passage [1]." and the like: a pointer, not a claim
_POINTER_STEMS = "information info found passage source document according see given stated provided mentioned answer"
_POINTER_WORDS = frozenset(_POINTER_STEMS.split())  # stems, as content_words makes them
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
_NEGATION = frozenset({"not", "never", "without", "cannot", "nor", "δεν", "μην", "μη", "όχι", "ούτε", "χωρίς"})
_PASSAGE_REF = re.compile(r"\b(?:passages?|sources?)\s+\d+(?:\s*(?:,|and)\s*\d+)*", re.IGNORECASE)


def check_answer(question: str, text: str, passages: list[SearchHit], embedder: Embedder, threshold: float) -> Answer:
    """Make every claim traceable, whatever the model did with citations; ``threshold``: the support an answer
    sentence needs (the embedder's support_threshold, on its cosine scale).

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
    claims = _claims(_LABEL.sub("", text.strip()), len(passages), invalid, question)
    said = [c for c, _ in claims if c]
    if said and all(is_not_found(c) for c in said):
        return Answer(question, not_found, False, retrieved=passages, invalid_citations=invalid, model_answer=raw)
    pointed = sorted({n for _, cited in claims for n in cited})
    # "Not found. But [1] says ..." keeps the rest; a bare "[1]" leaves no claim, only a pointer
    claims = [(c, n) for c, n in claims if c and not is_not_found(c)]
    support = _Support(embedder, [c for c, _ in claims], passages, question, threshold)
    kept: list[tuple[int, list[int], bool]] = []  # claim index, its passages, attributed
    unsupported: list[str] = []
    for i, (sentence, cited) in enumerate(claims):
        good = [n for n in cited if support.score(i, n) >= threshold]
        if good:
            kept.append((i, good, False))
            continue
        best = support.best_passage(i)
        if best is not None and support.score(i, best) >= threshold:
            kept.append((i, [best], True))
        else:
            unsupported.append(sentence)
    if not kept:
        if _REFUSAL.search(raw) or any(nf.rstrip(".").lower() in raw.lower() for nf in NOT_FOUND_IN.values()):
            # the model declined in its own words and stated nothing the passages support
            return Answer(question, not_found, False, retrieved=passages, invalid_citations=invalid, model_answer=raw)
        return _quote(question, passages, support, pointed, raw, invalid, unsupported)
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


def _claims(text: str, n_passages: int, invalid: list[int], question: str = "") -> list[tuple[str, list[int]]]:
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
            moved = [n for g in CITATION.findall(lead.group(0)) for n in parse_citation(g)]
            claims[-1][1].extend(n for n in moved if 1 <= n <= n_passages and n not in claims[-1][1])
            invalid.extend(n for n in moved if not 1 <= n <= n_passages)
            sentence = sentence[lead.end() :]
        numbers = [n for g in CITATION.findall(sentence) for n in parse_citation(g)]
        valid = [n for n in dict.fromkeys(numbers) if 1 <= n <= n_passages]
        invalid.extend(n for n in numbers if not 1 <= n <= n_passages)
        unmarked = CITATION.sub("", sentence)
        bare = unmarked.strip(" .,;:")
        words = content_words(bare)
        pointer = not numbers_in(bare) and not (words - _POINTER_WORDS)
        echo = _echoes(unmarked.strip(" .,:"), question)  # its ";" kept: a Greek question
        if not words or echo or (pointer and not is_not_found(bare)):
            if claims:
                claims[-1][1].extend(n for n in valid if n not in claims[-1][1])
            else:
                pending.extend(valid)
            continue
        claims.append((tidy(unmarked), list(dict.fromkeys(pending + valid))))
        pending = []
    if pending:  # only citation numbers, no words: the quote fallback looks in those passages first
        claims.append(("", pending))
    return claims


def _quote(question, passages, support, preferred, raw, invalid, unsupported) -> Answer:
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
    words = content_words(sentence)
    negation = _negations(sentence)
    return (
        len(words) >= 2
        and words <= content_words(question)
        and numbers_in(sentence) <= numbers_in(question)
        and negation <= _negations(question)
    )


def _unit_clash(claimed: list[tuple[str, Quantity]], held: list[Quantity]) -> bool:
    """Whether the passage has a number the sentence states only with other units: "24 χρόνια" against a passage
    whose 24 is "24 μήνες". A bare number in the passage (a table cell) clashes with nothing."""
    for _, q in claimed:
        same = [p for p in held if p.value == q.value]
        if same and all(p.unit != q.unit for p in same):
            return True
    return False


def _with_citations(sentence: str, numbers: list[int]) -> str:
    marks = "".join(f"[{n}]" for n in numbers)
    body, end = (sentence[:-1], sentence[-1]) if sentence[-1:] in ".!?" else (sentence, "")
    return f"{body} {marks}{end}"


def _citation(n: int, hit: SearchHit, quote: str, attributed: bool) -> Citation:
    c = hit.chunk
    return Citation(n, c.chunk_id, c.source, c.page, c.heading or None, c.record_id, quote, attributed)


def _body_sentences(hit: SearchHit) -> list[str]:
    """A passage's sentences without its heading lines ("Maintenance") and without a table's header and rule
    rows ("| Category | Length |", "|---|---|"): they name what the rows hold but state no value, so they
    support nothing and make poor quotes. A passage that is only such lines keeps them."""
    text = hit.chunk.text
    skip = {part.strip().lower() for part in hit.chunk.section}
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if _TABLE_RULE.fullmatch(line):
            skip.add(line.lower())
            if i > 0 and lines[i - 1].startswith("|"):
                skip.add(lines[i - 1].lower())
    sentences = split_sentences(text) or [text]
    body = [s for s in sentences if s.lstrip("#").strip().lower() not in skip]
    return body or sentences


# a Markdown table's rule row, under its header: | --- | :---: |
_TABLE_RULE = re.compile(r"\|?(\s*:?-{3,}:?\s*\|)+\s*(:?-{3,}:?\s*)?")


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
        self.passage_words = [content_words(h.chunk.embed_text()) for h in passages]
        # the header counts: "on page 3" is supported by a passage from page 3
        self.passage_texts = [f"{passage_header(n, h)} {h.chunk.embed_text()}" for n, h in enumerate(passages, 1)]
        self.passage_numbers = [numbers_in(text) for text in self.passage_texts]
        self.passage_negated = [bool(_negations(h.chunk.text)) for h in passages]
        self.passage_quantities = [[q for _, q in quantities(text)] for text in self.passage_texts]
        # what score() asks of each claim, once, not once per passage
        self.claim_quantities = [quantities(claim) for claim in claims]
        self.claim_numbers = [numbers_in(_PASSAGE_REF.sub("", claim)) for claim in claims]
        self.claim_negated = [bool(_negations(claim)) for claim in claims]
        self.claim_words = [content_words(claim) for claim in claims]
        self._cache: dict[tuple[int, int], float] = {}

    def _cols(self, n: int) -> list[int]:
        return [j for j, (m, _) in enumerate(self.flat) if m == n]

    def score(self, i: int, n: int) -> float:
        if (i, n) not in self._cache:
            if not self.claim_numbers[i] <= self.passage_numbers[n - 1]:
                value = 0.0
            elif self.claim_negated[i] and not self.passage_negated[n - 1]:
                value = 0.0  # "X is not covered" is not what "X is covered" says
            elif _unit_clash(self.claim_quantities[i], self.passage_quantities[n - 1]):
                value = 0.0  # "24 years" is not what "24 months" says
            else:
                lexical = _overlap(self.claim_words[i], self.passage_words[n - 1]) * self.lexical_scale
                value = max([lexical, *(float(self.sims[i, j]) for j in self._cols(n))])
            self._cache[(i, n)] = value
        return self._cache[(i, n)]

    def best_passage(self, i: int) -> int | None:
        numbers = range(1, len(self.passages) + 1)
        return max(numbers, key=lambda n: (self.score(i, n), -n)) if self.passages else None

    def quote(self, i: int, n: int) -> str:
        """The passage sentence closest to answer sentence ``i``."""
        words = self.claim_words[i]
        best = max(
            self._cols(n),
            key=lambda j: float(self.sims[i, j]) + len(words & content_words(self.flat[j][1])) / max(len(words), 1),
        )
        return self.flat[best][1]

    def best_for_question(self, preferred: list[int]) -> tuple[int, str | None]:
        """The passage sentence that best answers the question: cosine plus word overlap, where a word
        weighs by how few candidate sentences share it (the one row that says "price" beats three that
        say "seal kit") and identifiers (NP-4472) double. Only passages that contain every identifier
        the question names are candidates; a passage the model pointed at gets a nudge."""
        needed = _identifiers(self.question)
        holding = {n for n, text in enumerate(self.passage_texts, 1) if needed <= content_words(text)}
        pool = [j for j, (n, _) in enumerate(self.flat) if n in holding]
        if not pool:
            return 0, None
        q_words = content_words(self.question)
        words = {j: content_words(self.flat[j][1]) for j in pool}
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


def _overlap(words: set[str], other: set[str]) -> float:
    """Share of ``words`` found in ``other``; words with digits (68, NP-4472) weigh double: they carry the fact."""
    weight = {w: 2.0 if any(ch.isdigit() for ch in w) else 1.0 for w in words}
    return sum(weight[w] for w in words & other) / (sum(weight.values()) or 1.0)


def _identifiers(text: str) -> set[str]:
    """Words with digits (NV-999 → nv, 999; M20 → m20): what a question pins its answer to."""
    return {w for w in content_words(text) if any(ch.isdigit() for ch in w)}


def _negations(text: str) -> set[str]:
    """The negating words of ``text`` ("not", "δεν"): a claim and the passage that supports it agree on them."""
    return _NEGATION & set(WORD.findall(text.lower()))
