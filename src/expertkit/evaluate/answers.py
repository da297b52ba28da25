"""`eval answers`: answer quality of a route on questions with gold answers (BEIR folder + answers.jsonl).

Per question: ROUGE-L F1 and SQuAD-style token F1 against the gold answer, the share of printed
citations that point into a gold section (the qrels), whether every printed [n] was a passage in
the prompt, latency and tokens/s. A seeded sample keeps CPU runs short and comparable.
"""

from __future__ import annotations

import random
import re
import statistics
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from expertkit.evaluate.beir import BeirSet
from expertkit.rag import RAG


def normalise_tokens(text: str) -> list[str]:
    """Lower-case, drop punctuation and articles, split on whitespace (the SQuAD normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalise_tokens(prediction), normalise_tokens(gold)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, gold: str) -> float:
    """ROUGE-L F1 over normalised tokens (longest common subsequence)."""
    a, b = normalise_tokens(prediction), normalise_tokens(gold)
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


@dataclass
class AnswerScores:
    route: str
    questions: int
    rouge_l: float
    token_f1: float
    found: float  # share answered (not "not found")
    cited: float  # share of answers with at least one citation
    cited_by_model: float  # share of answers where the model itself cited (not attributed or quoted by expertkit)
    citations_in_gold: float | None  # share of printed citations that point into a gold section
    citations_valid: float | None  # share of printed citation numbers that were passages in the prompt
    latency_ms_p50: float
    tokens_per_s: float
    items: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "items"}
        return out


def sample_questions(data: BeirSet, limit: int | None, seed: int = 0) -> list[str]:
    ids = sorted(q for q in data.queries if q in data.answers)
    if limit and limit < len(ids):
        ids = sorted(random.Random(seed).sample(ids, limit))
    return ids


def evaluate_answers(
    rag: RAG,
    data: BeirSet,
    question_ids: list[str],
    use_rag: bool = True,
    route: str = "",
    on_item: Callable[[], None] | None = None,
) -> AnswerScores:
    items = []
    for qid in question_ids:
        started = time.perf_counter()
        answer = rag.ask(data.queries[qid], rag=use_rag)
        latency = (time.perf_counter() - started) * 1e3
        gold_docs = {d for d, g in data.qrels.get(qid, {}).items() if g > 0}
        printed = list(answer.citations)
        items.append(
            {
                "id": qid,
                "question": data.queries[qid],
                "answer": answer.answer,
                "gold": data.answers[qid],
                "rouge_l": rouge_l(answer.answer, data.answers[qid]),
                "token_f1": token_f1(answer.answer, data.answers[qid]),
                "found": answer.found,
                "citations": len(printed),
                "model_citations": sum(not c.attributed for c in printed),
                "citations_in_gold": sum(c.record_id in gold_docs for c in printed),
                "invalid_citations": len(answer.invalid_citations),
                "latency_ms": latency,
                "tokens_per_s": answer.timings.get("tokens_per_s", 0.0),
            }
        )
        if on_item:
            on_item()
    n = max(len(items), 1)
    printed_total = sum(i["citations"] for i in items)
    raw_total = printed_total + sum(i["invalid_citations"] for i in items)
    speeds = [i["tokens_per_s"] for i in items if i["tokens_per_s"] > 0]
    return AnswerScores(
        route=route or ("rag" if use_rag else "base"),
        questions=len(items),
        rouge_l=sum(i["rouge_l"] for i in items) / n,
        token_f1=sum(i["token_f1"] for i in items) / n,
        found=sum(i["found"] for i in items) / n,
        cited=sum(i["citations"] > 0 for i in items) / n,
        cited_by_model=sum(i["model_citations"] > 0 for i in items) / n,
        citations_in_gold=(sum(i["citations_in_gold"] for i in items) / printed_total) if printed_total else None,
        citations_valid=(printed_total / raw_total) if raw_total else None,
        latency_ms_p50=statistics.median(i["latency_ms"] for i in items) if items else 0.0,
        tokens_per_s=statistics.median(speeds) if speeds else 0.0,
        items=items,
    )
