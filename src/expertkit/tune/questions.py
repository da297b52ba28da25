"""Each fact asked many ways: model-free templates from several angles, and questions the local model writes.

A model learns a fact it can state afterwards when it has seen the fact asked in many different words, so
every fact gets ``QUESTIONS`` questions (synth.py tells why), each answered by the fact's statement: template
questions (the value given the entity, the entity given the value, yes/no with the true and with a wrong
value) and, with a model, its own questions, which bring the synonyms and word orders templates cannot.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from expertkit.answer import content_words
from expertkit.errors import DataError
from expertkit.language import language_of
from expertkit.schema import Chunk
from expertkit.tune.facts import Fact

QUESTIONS = 12  # questions per fact, templates and model together
MODEL_QUESTIONS = 5  # of which written by the local model, when there is one


@dataclass
class QA:
    question: str
    answer: str
    chunk: Chunk
    kind: str  # record | fact (the fact's kind)
    angle: str = "value"  # value | entity | yes | no | model
    fact_id: str = ""
    expect: tuple[str, ...] = ()  # a right answer contains one of these (for scoring held-out questions)


def _lc(text: str) -> str:
    """Lower-case the first letter unless the word is an identifier or an acronym (NV-400, PTC)."""
    first = text.split(" ", 1)[0]
    if len(first) > 1 and (first[1].isupper() or any(ch.isdigit() for ch in first)):
        return text
    return text[:1].lower() + text[1:]


_RECORD_TEMPLATES = (
    "What is the {a} of {e}?",
    "What's the {a} for {e}?",
    "Tell me the {a} of {e}.",
    "{e}: what is its {a}?",
    "Which {a} does {e} have?",
    "Could you give me the {a} of {e}?",
    "I need the {a} for {e}, what is it?",
    "In the {w}, what {a} is listed for {e}?",
    "Do you know the {a} of {e}?",
    "Looking up {e}, what is the {a}?",
)
_PROSE_TEMPLATES = (
    "{c}",
    "According to the {w}, {lc}",
    "{w}: {c}",
    "Can you tell me {lc}",
    "Quick question: {lc}",
    "Do you know {lc}",
    "I'd like to check something: {lc}",
    "Please answer from the {w}: {lc}",
    "Remind me, {lc}",
    "One more thing: {lc}",
)

# the same angles in Greek, worded so that no article has to agree with an attribute or a name of unknown gender
_RECORD_TEMPLATES_EL = (
    "Τι {a} έχει {e};",
    "{e}: {a};",
    "Πείτε μου: {a} για {e}.",
    "Για {e}, τι {a} ισχύει;",
    "Ποιο είναι το στοιχείο «{a}» για {e};",
    "Μπορείτε να μου πείτε {a} για {e};",
    "Χρειάζομαι {a} για {e}. Τι ισχύει;",
    "Σύμφωνα με το έγγραφο «{w}», τι {a} έχει {e};",
    "Ξέρετε τι {a} έχει {e};",
    "Ψάχνω {e}: τι {a} έχει;",
)
_PROSE_TEMPLATES_EL = (
    "{c}",
    "Σύμφωνα με το έγγραφο «{w}», {lc}",
    "{w}: {c}",
    "Μπορείτε να μου πείτε: {lc}",
    "Γρήγορη ερώτηση: {lc}",
    "Ξέρετε; {c}",
    "Θέλω να ελέγξω κάτι: {lc}",
    "Απαντήστε από το έγγραφο «{w}»: {lc}",
    "Θυμίστε μου: {lc}",
    "Κάτι ακόμα: {lc}",
)
# per language: record and prose templates; "is it true that" (a yes/no question), yes, no; which row has it
_ASK = {
    "en": (_RECORD_TEMPLATES, _PROSE_TEMPLATES, "Is it true that {s}?", "Yes", "No", "Which {k} has a {a} of {v}?"),
    "el": (
        _RECORD_TEMPLATES_EL,
        _PROSE_TEMPLATES_EL,
        "Ισχύει ότι {s};",
        "Ναι",
        "Όχι",
        "Ποιο στοιχείο «{k}» έχει {a} {v};",
    ),
}


def _wrong(value: str, others: list[str], rng: random.Random) -> str:
    """A plausible wrong value: another row's value, else the number changed."""
    if others:
        return rng.choice(others)
    m = re.search(r"\d+(?:\.\d+)?", value)
    if not m:
        return ""
    n = float(m.group(0))
    changed = n * rng.choice((2, 3)) if n else 5
    text = f"{changed:g}" if "." in m.group(0) else str(int(changed))
    return value[: m.start()] + text + value[m.end() :]


def template_questions(fact: Fact, n: int, rng: random.Random) -> list[QA]:
    """Model-free questions from several angles, each answered by the fact's statement."""

    def qa(q: str, angle: str, answer: str | None = None, expect: Sequence[str] = ()) -> QA:
        return QA(q, answer or fact.statement, fact.chunk, fact.kind, angle, fact.id, tuple(expect or [fact.value]))

    out: list[QA] = []
    records, proses, true_that, yes, no, which = _ASK.get(language_of(fact.statement), _ASK["en"])
    if fact.kind == "record":
        names = fact.names or [fact.entity]
        out += [
            qa(t.format(a=fact.attribute, e=names[i % len(names)], w=fact.where), "value")
            for i, t in enumerate(records)
        ]
        if fact.unique and fact.others:  # the value names one row: ask for the row
            out.append(
                qa(
                    which.format(k=fact.key_name, a=fact.attribute, v=fact.value),
                    "entity",
                    expect=fact.names or [fact.entity],
                )
            )
    else:
        clozes = fact.clozes
        answers = fact.cloze_values or [fact.value] * len(clozes)
        out += [
            qa(
                t.format(c=clozes[i % len(clozes)], lc=_lc(clozes[i % len(clozes)]), w=fact.where),
                "value",
                expect=[answers[i % len(clozes)]],
            )
            for i, t in enumerate(proses)
        ]
    claim = fact.statement.rstrip(".")
    out.append(qa(true_that.format(s=_lc(claim)), "yes", f"{yes}. {fact.statement}", [yes.lower()]))
    wrong = _wrong(fact.value, fact.others, rng) if fact.value else ""
    # the value as a whole token: a "2" in "24 V" is not the delivery time of 2 days
    alone = re.compile(rf"(?<![\w.,]){re.escape(fact.value)}(?![\w]|[.,]\d)") if fact.value else None
    if wrong and wrong != fact.value and alone and alone.search(claim):
        false = alone.sub(lambda _: wrong, claim, count=1)
        out.append(qa(true_that.format(s=_lc(false)), "no", f"{no}. {fact.statement}", [no.lower()]))
    # keep the yes/no pair and the entity question, fill the rest with value templates in a fixed order
    special = [q for q in out if q.angle != "value"]
    value = [q for q in out if q.angle == "value"]
    return special + value[: max(n - len(special), 1)]


PARAPHRASE_PROMPT = (
    'Here is a fact from {where}:\n"{statement}"\n\n'
    "Write {n} different questions that this fact answers, the way different customers or colleagues would "
    "ask them. Use your own words: synonyms, another word order, a different angle (one may ask which thing "
    "has the value). Each question must make sense on its own and name what it is about. "
    'Reply with a JSON object: {{"questions": ["...", "..."]}}'
)
PARAPHRASE_SCHEMA = {
    "type": "object",
    "properties": {"questions": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 12}},
    "required": ["questions"],
}


def model_questions(fact: Fact, generator, n: int) -> tuple[list[QA], int]:
    """Questions the local model writes for the fact, kept only when they are about it; (kept, rejected)."""
    from expertkit.models.generator import generate_json

    greek = language_of(fact.statement) == "el"
    prompt = PARAPHRASE_PROMPT.format(where=fact.where or "a company document", statement=fact.statement, n=n + 2)
    if greek:  # the model answers in English unless told: the questions must be in the documents' language
        prompt += (
            " Write the questions in Greek, as Greek customers would ask them, ending with the Greek question mark ;"
        )
    value = generate_json(generator, [{"role": "user", "content": prompt}], PARAPHRASE_SCHEMA, 40 * (n + 2))
    if value is None:
        return [], 0
    facts_words = content_words(fact.statement)
    kept, rejected = [], 0
    for q in value["questions"]:
        q = " ".join(str(q).split())
        words = content_words(q)
        ok = (
            (q.endswith("?") or (greek and q.endswith(";")))
            and language_of(q) == ("el" if greek else "en")
            and 3 <= len(q.split()) <= 40
            and len(words & facts_words) >= 1  # about this fact
            and norm_question(q) != norm_question(fact.statement)
        )
        if ok and len(kept) < n:
            values = [fact.value, *fact.cloze_values] if fact.value else fact.cloze_values
            kept.append(QA(q, fact.statement, fact.chunk, fact.kind, "model", fact.id, tuple(dict.fromkeys(values))))
        else:
            rejected += 1
    return kept, rejected


def norm_question(q: str) -> str:
    return " ".join(re.findall(r"\w+", q.lower()))


def ask_facts(
    facts: list[Fact],
    questions: int = QUESTIONS,
    generator=None,
    model_share: int = MODEL_QUESTIONS,
    seed: int = 0,
    on_fact: Callable[[], None] | None = None,
    model_until: float | None = None,
) -> tuple[list[QA], int, int, int]:
    """Every fact asked ``questions`` ways, duplicates removed: (qas, duplicates, model kept, model rejected).
    ``model_until`` (a time.monotonic() value): after it, facts get template questions only (a time budget)."""
    if questions < 1:
        raise DataError(f"--questions {questions}: at least 1 question per fact")
    n_model = min(model_share, questions) if generator is not None else 0

    def written(fact: Fact) -> tuple[list[QA], int]:
        if not n_model or (model_until is not None and time.monotonic() > model_until):
            return [], 0
        return model_questions(fact, generator, n_model)

    workers = max(1, generator.parallel) if generator is not None else 1
    pool = ThreadPoolExecutor(workers) if n_model and workers > 1 else None
    results = pool.map(written, facts) if pool else map(written, facts)
    seen: set[str] = set()
    out, dupes, kept, rejected = [], 0, 0, 0
    try:
        for fact, (by_model, bad) in zip(facts, results, strict=True):
            kept, rejected = kept + len(by_model), rejected + bad
            rng = random.Random(f"{seed}|{fact.id}")  # the same fact gets the same questions, run after run
            items = by_model + template_questions(fact, questions - len(by_model), rng)
            for qa in items:
                key = norm_question(qa.question)
                if key in seen:
                    dupes += 1
                    continue
                seen.add(key)
                out.append(qa)
            if on_fact:
                on_fact()
    finally:
        if pool:
            pool.shutdown()
    return out, dupes, kept, rejected
