"""The measured path's questions: written from the documents' facts and held out by fact and by paraphrase,
plus unanswerable ones about things the documents never name."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from expertkit.errors import ExpertkitError

_CODE = re.compile(r"\b[A-Z]{1,5}-?\d{2,6}[A-Z]?\b")
_NAME = re.compile(r"(?<=[a-z,] )[A-Z][a-z]{3,}\b")  # a capitalised word inside a sentence: a name
_SOURCE_LEAD = re.compile(r"^(?:According to (?:the )?[^,?]+,\s*|[^:?]{0,80}:\s*)")
_INVENTED = ("Quorlby", "Vaskelund", "Threnmoor", "Ostravel", "Kindrith", "Pellowan", "Marrask", "Elvedon")
MODEL_SHARE = 0.15  # the model writes questions for at most this share of the budget; later facts get templates


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class QuestionSet:
    """The questions every route is asked, and the training data they were held out of."""

    questions: list[dict]  # held-out paraphrases of trained facts, and facts never trained on
    unanswerable: list[dict]
    facts: int  # facts the questions were written from
    qa_path: Path  # the QA training data

    @property
    def asked(self) -> list[dict]:
        return self.questions + self.unanswerable

    def describe(self, advise_settings) -> str:
        """The method line: what was asked, and when an answer counts as right."""
        a = advise_settings
        n_para = sum(q["split"] == "paraphrase" for q in self.questions)
        return (
            f"{self.facts} facts from the documents (a sample of at most advise.max_facts = {a.max_facts}), each "
            f"asked up to {a.questions_per_fact} ways. Accuracy: {n_para} held-out paraphrases of trained facts. "
            f"Also asked: {len(self.questions) - n_para} questions about facts never trained on, and "
            f"{len(self.unanswerable)} about things the documents never name. An answer is right when it states "
            "the fact's value."
        )


def write_question_set(
    index,
    qa_path: Path,
    paraphraser,
    advise_settings,
    budget_minutes: float,
    on_start: Callable[[int], None] | None = None,
    on_fact: Callable[[], None] | None = None,
) -> QuestionSet:
    """Write the QA training data to ``qa_path`` with its held-out questions beside it, and pick from those
    the questions to ask."""
    from expertkit.tune.synth import heldout_path_for, synth_qa

    a = advise_settings
    report = synth_qa(
        index,
        qa_path,
        generator=paraphraser,
        questions=a.questions_per_fact,
        model_questions_=a.model_questions if paraphraser else 0,
        holdout=a.holdout,
        holdout_facts=a.holdout_facts,
        text_ratio=0.25,
        rephrasings=0,
        seed=a.seed,
        max_facts=a.max_facts,
        model_until=time.monotonic() + MODEL_SHARE * budget_minutes * 60,
        on_fact=on_fact,
        on_start=on_start,
    )
    heldout = read_jsonl(heldout_path_for(qa_path))
    if not heldout:
        raise ExpertkitError("no question was held out: the documents state too few facts to measure on")
    questions = pick_questions(heldout, a.questions, a.seed)
    return QuestionSet(questions, unanswerable_questions(heldout, a.unanswerable, a.seed), report.facts, qa_path)


def pick_questions(heldout: list[dict], n: int, seed: int = 0) -> list[dict]:
    """``n`` held-out paraphrases of trained facts (what a deployed adapter, trained on every fact, is asked;
    the accuracy) and a quarter as many about facts never trained on (what no adapter can know, reported
    beside it)."""
    rng = random.Random(seed)
    split = {k: [r for r in heldout if r["meta"].get("split") == k] for k in ("paraphrase", "fact")}
    picked = rng.sample(split["paraphrase"], min(n, len(split["paraphrase"])))
    picked += rng.sample(split["fact"], min(max(n // 4, 1), len(split["fact"])))
    return [
        {"question": r["meta"]["question"], "expect": r["meta"]["expect"], "split": r["meta"]["split"]} for r in picked
    ]


def unanswerable_questions(heldout: list[dict], n: int, seed: int = 0) -> list[dict]:
    """Questions shaped like the held-out ones but about a product, part, place or person the documents never
    name: the right answer is "not found". A code in the question gets other digits (NP-4472 → NP-9031);
    without a code, a name is swapped for an invented one."""
    rng = random.Random(seed)
    text = " ".join(row["meta"]["question"] + " " + " ".join(row["meta"].get("expect", [])) for row in heldout)
    known_codes, known_words = set(_CODE.findall(text)), set(re.findall(r"\w+", text.lower()))
    out, seen = [], set()
    for row in sorted(heldout, key=lambda r: r["meta"]["question"]):
        if row["meta"].get("expect") in (["yes"], ["no"]):
            continue
        question = _unanswerable_variant(row["meta"]["question"], known_codes, known_words, rng)
        if question and question not in seen:
            seen.add(question)
            out.append({"question": question, "unanswerable": True})
    rng.shuffle(out)
    return out[:n]


def _unanswerable_variant(q: str, known_codes: set[str], known_words: set[str], rng: random.Random) -> str | None:
    """``q`` about a code or name the documents never use, or None where no such swap is found."""
    lead = _SOURCE_LEAD.match(q)  # "According to the NV-400 Service Manual, …" names the source, not the subject
    at = lead.end() if lead else 0
    if m := _CODE.search(q, at):
        code = m.group(0)
        for _ in range(20):
            fake = re.sub(r"\d", lambda _: str(rng.randrange(10)), code)
            if fake not in known_codes:
                return q[: m.start()] + fake + q[m.end() :]
    elif m := _NAME.search(q, at):
        invented = [w for w in _INVENTED if w.lower() not in known_words]
        if invented:
            return q[: m.start()] + rng.choice(invented) + q[m.end() :]
    return None
