"""Training data made from the ingested chunks: facts asked many ways, documents as text, and RAFT examples.

A model learns a fact it can state afterwards when it has seen the fact asked in many different
words (Abonizio et al. 2025; Allen-Zhu & Li, *Physics of Language Models 3.1*): one question per fact
teaches the question, not the fact. So ``synth qa``:

1. finds the facts: every field of a table row or record, and every informative sentence of prose
   (its key value: a number with its unit, a code, or a name);
2. asks each fact many ways (``questions``, at least 10 by default): model-free templates (the value
   given the entity, the entity given the value, yes/no with the true and with a wrong value), plus
   questions written by the local model through the llama.cpp runtime (``model_questions``), which
   bring the synonyms and word orders templates cannot;
3. answers every question with the fact restated as a full sentence, so the answer carries its context;
4. removes duplicate questions, and holds out by paraphrase (some questions of every fact) and, when
   asked, by fact (whole facts), so evaluation asks questions never seen in training;
5. adds the documents themselves (and, with a model, rephrasings of them) as continued-pretraining
   text, ``text_ratio`` examples of text per example of QA.

RAFT (Zhang et al. 2024, arXiv 2403.10131): each question comes with its oracle chunk and N
distractors (the retriever's best wrong answers), in the exact prompt ``ask`` builds; a fraction
1 − P of examples leaves the oracle out. The answer restates the oracle's fact and cites it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.errors import DataError
from expertkit.language import NOT_FOUND as NOT_FOUND_IN
from expertkit.language import language_of
from expertkit.rag import _words, build_messages, numbers_in, split_sentences
from expertkit.schema import Chunk, SearchHit

_FIELD = re.compile(r"(?:^|;\s*)([^:;]{1,40}):\s*([^;]+)")
_UNITS = (
    r"N·m|Nm|mm/s|m3/h|m³/h|mm|cm|km|m|bar|kW|W|V|A|rpm|°C|°F|C|hours?|minutes?|min|seconds?|months?|days?|"
    r"weeks?|years?|percent|%|g|kg|l|litres?|liters?|drops|MB|GB|EUR|USD|GBP|euros?|pounds?|dollars?|pence|pallets?|tonnes?|t|"
    # Greek: the forms a count or an amount takes (λεπτά, 40 λεπτών; 24 μήνες, 36 μηνών; 412,50 ευρώ)
    r"ευρώ|€|λεπτά|λεπτών|ώρες|ωρών|ώρα|ημέρες|ημερών|μέρες|εργάσιμες|μήνες|μηνών|μήνα|έτη|ετών|χρόνια|χρόνων|"
    r"εβδομάδες|εβδομάδων|κιλά|τόνοι|τόνων|μέτρα|μέτρων|χλμ|λίτρα|τεμάχια|φιάλες|άτομα|ατόμων"
)
_UPPER = "A-ZΑ-ΩΆΈΉΊΌΎΏΪΫ"
_LOWER = "a-zα-ωάέήίόύώϊϋΐΰς"
_FACT = re.compile(rf"(?<![\w-])([-−]?\d+(?:[.,]\d+)*)(\s*(?:{_UNITS})(?![\w]))?")  # 1,250.00 and 1.250,00
_CODE = re.compile(
    rf"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[{_UPPER}])[{_UPPER}0-9][\w]*(?:-[\w]+)+|(?<![\w-])[{_UPPER}]{{2,}}\d+\b"
)
_NAME = re.compile(rf"(?<=[{_LOWER},;:] )[{_UPPER}][{_LOWER}]+(?: [{_UPPER}][\w-]+)*")
_CURRENCY = re.compile(r"[£$€]\s?\d+(?:[.,]\d+)*|\d+(?:[.,]\d+)*\s?(?:€|ευρώ)")
_AMOUNT = re.compile(r"[-−+]?[£$€]?\s?[\d.,:/]+\s*\S{0,6}")  # a value, not a name: "318.00", "5 days"
_TIME = re.compile(r"(?<![\d:])\d{1,2}:\d{2}(?:\s?[ap]\.?m\.?)?(?![\d:])")

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


@dataclass
class Fact:
    """One thing the documents state: the sentence that states it, and the value a question asks for."""

    statement: str  # a full sentence: every answer restates it
    chunk: Chunk
    kind: str  # record | fact
    value: str = ""  # the key value ("68 N·m", "Linz A-01"); "" when none was found
    entity: str = ""  # records: the row's name(s), e.g. "NP-4472 (Mechanical seal kit 45 mm)"
    attribute: str = ""  # records: the field, e.g. "price eur"
    key_name: str = ""  # records: the key field, e.g. "part number"
    others: list[str] = field(default_factory=list)  # records: the same field's values in other rows
    where: str = ""  # the document's title
    names: list[str] = field(default_factory=list)  # records: ways to name the row (key, label, both)
    unique: bool = False  # records: no other row has this value in this field
    clozes: list[str] = field(default_factory=list)  # prose: the statement asked for each of its values
    cloze_values: list[str] = field(default_factory=list)  # prose: the value each cloze asks for

    @property
    def id(self) -> str:
        return hashlib.blake2b(f"{self.chunk.chunk_id}|{self.statement}".encode(), digest_size=6).hexdigest()


@dataclass
class SynthReport:
    written: int
    heldout: int
    duplicates: int
    out: Path
    heldout_path: Path
    kinds: dict[str, int] = field(default_factory=dict)
    facts: int = 0
    texts: int = 0  # continued-pretraining text examples among the written ones
    model_questions: int = 0  # questions the model wrote that passed the checks
    model_rejected: int = 0


def _human(name: str) -> str:
    return re.sub(r"[_\-.]+", " ", name).strip()


def _lc(text: str) -> str:
    """Lower-case the first letter unless the word is an identifier or an acronym (NV-400, PTC)."""
    first = text.split(" ", 1)[0]
    if len(first) > 1 and (first[1].isupper() or any(ch.isdigit() for ch in first)):
        return text
    return text[:1].lower() + text[1:]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


# --- 1. facts -----------------------------------------------------------------------------------------


def record_facts(chunks: list[Chunk], where: str = "") -> list[Fact]:
    """One fact per field of every row. A row is named by its key and, where it has one, a short
    descriptive field, so a question can name the row either way."""
    rows = []
    for chunk in chunks:
        fields = [(k.strip(), v.strip()) for k, v in _FIELD.findall(chunk.text)]
        if len(fields) >= 2:
            rows.append((chunk, fields))
    column: dict[str, list[str]] = {}
    for _, fields in rows:
        for name, value in fields[1:]:
            column.setdefault(name, []).append(value)
    out = []
    for chunk, fields in rows:
        key_name, key = fields[0]
        label = next(
            (
                v
                for n, v in fields[1:]
                if not _AMOUNT.fullmatch(v) and 1 <= len(v.split()) <= 8 and column.get(n, []).count(v) == 1
            ),
            "",
        )
        entity = f"{key} ({label})" if label else key
        for name, value in fields[1:]:
            if value == label:
                continue
            attribute = _human(name)
            out.append(
                Fact(
                    statement=(
                        f"{attribute[:1].upper()}{attribute[1:]} για {entity}: {value}."
                        if language_of(f"{attribute} {entity} {value}") == "el"
                        else f"The {attribute} of {entity} is {value}."
                    ),
                    chunk=chunk,
                    kind="record",
                    value=value,
                    entity=entity,
                    attribute=attribute,
                    key_name=_human(key_name),
                    others=sorted({v for v in column[name] if v != value}),
                    where=where,
                    names=[entity, label, key] if label else [key],
                    unique=column[name].count(value) == 1,
                )
            )
    return out


def _values(sentence: str, most: int = 3) -> list[re.Match]:
    """What a question about this sentence can ask for, best first: amounts of money, numbers with a unit,
    clock times and codes; failing those, bare numbers, then names. Overlapping matches are dropped."""
    numbers = [m for m in _FACT.finditer(sentence) if m.start() > 0]
    codes = [m for m in _CODE.finditer(sentence) if m.start() > 0]
    strong = [
        *_CURRENCY.finditer(sentence),
        *(m for m in numbers if m.group(2)),
        *_TIME.finditer(sentence),
        *codes,
    ]
    ranked = strong or [*numbers, *_NAME.finditer(sentence)]
    out: list[re.Match] = []
    for m in ranked:
        if all(m.end() <= o.start() or m.start() >= o.end() for o in out):
            out.append(m)
    return out[:most]


def prose_facts(chunk: Chunk, where: str = "") -> list[Fact]:
    """Informative sentences of prose: 25–400 characters, not a question, with a value to ask for."""
    out = []
    headings = [h.strip() for h in chunk.section]
    for sentence in split_sentences(chunk.text):
        sentence = sentence.lstrip("-•*0123456789. ").strip() if re.match(r"^([-•*]|\d+\.)\s", sentence) else sentence
        for h in headings:  # a PDF chunk's first sentence carries its heading ("3 Torque values Tighten …")
            if h and sentence.startswith(h + " ") and len(sentence) > len(h) + 20:
                sentence = sentence[len(h) + 1 :]
        greek = language_of(sentence) == "el"
        asked = sentence.endswith("?") or (greek and sentence.endswith(";"))  # Greek's question mark is ";"
        if len(sentence) < 25 or len(sentence) > 400 or asked or sentence.count(":") > 2:
            continue
        if len(sentence.split()) < 6 and not sentence.endswith("."):  # a title or a list label
            continue
        if sentence.strip() in headings:
            continue
        values = _values(sentence)
        if not values:
            continue
        what, mark = ("τι", ";") if greek else ("what", "?")
        clozes = [(sentence[: m.start()] + what + sentence[m.end() :]).rstrip(" .;:") + mark for m in values]
        found = [m.group(0).strip() for m in values]
        out.append(Fact(_sentence(sentence), chunk, "fact", found[0], where=where, clozes=clozes, cloze_values=found))
    return out


def extract_facts(chunks: Iterable[Chunk], titles: dict[str, str]) -> list[Fact]:
    by_source: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_source.setdefault(chunk.source, []).append(chunk)
    facts, seen = [], set()
    for source, group in by_source.items():
        where = titles.get(source) or _human(Path(source).stem)
        records = [c for c in group if c.record_id is not None]
        found = record_facts(records, where)
        recorded = {f.chunk.chunk_id for f in found}
        for chunk in group:
            if chunk.chunk_id not in recorded:
                found += prose_facts(chunk, where)
        for f in found:
            if f.statement not in seen:  # overlapping chunks repeat sentences
                seen.add(f.statement)
                facts.append(f)
    return facts


# --- 2. questions ---------------------------------------------------------------------------------------

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
    facts_words = _words(fact.statement)
    kept, rejected = [], 0
    for q in value["questions"]:
        q = " ".join(str(q).split())
        words = _words(q)
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

    workers = max(1, int(getattr(generator, "parallel", 1) or 1))
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


# --- 3. documents as text ----------------------------------------------------------------------------

REPHRASE_PROMPT = (
    "Rewrite this passage from {where} in your own words as one short paragraph. Keep every name, code, "
    "number and unit exactly as written; add nothing.\n\nPassage:\n{text}"
)


def document_texts(
    chunks: list[Chunk], titles: dict[str, str], generator=None, rephrasings: int = 0
) -> list[tuple[str, Chunk]]:
    """Each chunk as continued-pretraining text under its title and section, plus model rephrasings that
    keep every number of the original (others are dropped)."""
    out = []
    for chunk in chunks:
        numbers = numbers_in(chunk.text)
        where = titles.get(chunk.source) or _human(Path(chunk.source).stem)
        header = " — ".join([where, *[s for s in chunk.section if s != where]])
        out.append((f"{header}\n\n{chunk.text}", chunk))
        for _ in range(rephrasings if generator is not None else 0):
            prompt = REPHRASE_PROMPT.format(where=where, text=chunk.text[:2000])
            text = generator.generate([{"role": "user", "content": prompt}], 400, 0.3).text.strip()
            if len(text) > 40 and numbers_in(text) == numbers:  # every number kept, none added
                out.append((f"{header}\n\n{text}", chunk))
    return out


# --- 4. splits and files --------------------------------------------------------------------------------


def _hash_fraction(key: str, seed: int) -> float:
    h = int(hashlib.blake2b(f"{seed}|{key}".encode(), digest_size=8).hexdigest(), 16)
    return (h % 10_000) / 10_000


def is_heldout(question: str, fraction: float, seed: int = 0) -> bool:
    """A stable split: the same question lands on the same side every run."""
    return _hash_fraction(norm_question(question), seed) < fraction


def split_questions(qas: list[QA], holdout: float, holdout_facts: float, seed: int) -> dict[int, str]:
    """Which questions are held out, and why: ``fact`` (the whole fact never trains) or ``paraphrase``
    (other wordings of the same fact do). Model-written questions, the most natural ones, are held out
    first; every fact keeps at least two questions for training."""
    by_fact: dict[str, list[int]] = {}
    for i, qa in enumerate(qas):
        by_fact.setdefault(qa.fact_id, []).append(i)
    held: dict[int, str] = {}
    for fact_id, idx in by_fact.items():
        if _hash_fraction("fact|" + fact_id, seed) < holdout_facts:
            held.update({i: "fact" for i in idx})
            continue
        n = min(int(round(holdout * len(idx))), max(len(idx) - 2, 0))
        if holdout > 0 and n == 0 and len(idx) >= 4:
            n = 1
        ranked = sorted(idx, key=lambda i: (qas[i].angle != "model", _hash_fraction(qas[i].question, seed)))
        held.update({i: "paraphrase" for i in ranked[:n]})
    return held


def qa_record(qa: QA, source_hashes: dict[str, str], messages: list[dict] | None = None, **meta) -> dict:
    messages = messages or [{"role": "user", "content": qa.question}, {"role": "assistant", "content": qa.answer}]
    return {
        "messages": messages,
        "meta": {
            "kind": qa.kind,
            "angle": qa.angle,
            "fact": qa.fact_id,
            "chunk_id": qa.chunk.chunk_id,
            "source": qa.chunk.source,
            "sources": {qa.chunk.source: source_hashes.get(qa.chunk.source, "")},
            "question": qa.question,
            "answer": qa.answer,
            "expect": list(qa.expect),
            **meta,
        },
    }


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def heldout_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".heldout" + out.suffix)


def synth_qa(
    index,
    out: Path,
    generator=None,
    questions: int = QUESTIONS,
    model_questions_: int = MODEL_QUESTIONS,
    holdout: float = 0.1,
    holdout_facts: float = 0.0,
    text_ratio: float = 0.25,
    rephrasings: int = 0,
    seed: int = 0,
    on_fact: Callable[[], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    max_facts: int = 0,
    model_until: float | None = None,
) -> SynthReport:
    """QA pairs (many per fact) plus document text, written to ``out``; held-out questions beside it."""
    if text_ratio < 0:
        raise DataError(f"--text-ratio {text_ratio}: 0 or more text examples per QA example")
    asked = _ask_index(
        index,
        generator,
        questions,
        model_questions_,
        holdout,
        holdout_facts,
        seed,
        on_fact,
        on_start,
        max_facts,
        model_until,
    )
    qas, held, hashes = asked.qas, asked.held, asked.hashes
    train = [qa_record(qa, hashes) for i, qa in enumerate(qas) if i not in held]
    heldout = [qa_record(qa, hashes, split=held[i]) for i, qa in enumerate(qas) if i in held]
    # documents of facts held out whole would teach those facts: leave them out of the text too
    held_chunks = {qas[i].chunk.chunk_id for i, why in held.items() if why == "fact"}
    texts = [
        {
            "text": text,
            "meta": {
                "kind": "text",
                "chunk_id": c.chunk_id,
                "source": c.source,
                "sources": {c.source: hashes.get(c.source, "")},
            },
        }
        for text, c in document_texts(asked.chunks, asked.titles, generator, rephrasings)
        if c.chunk_id not in held_chunks
    ]
    n_text = int(round(text_ratio * len(train)))
    rng = random.Random(seed)
    text_rows = [texts[i % len(texts)] for i in range(n_text)] if texts else []
    rows = train + text_rows
    rng.shuffle(rows)
    return _write(asked, out, rows, heldout, len(text_rows))


def raft_example(
    qa: QA, distractors: list[Chunk], include_oracle: bool, rng: random.Random, absent: str = "refuse"
) -> tuple[list[dict], int | None]:
    """The ``ask`` prompt with the oracle (maybe) among distractors, and the answer citing it."""
    passages = list(distractors)
    position = None
    if include_oracle:
        position = rng.randrange(len(passages) + 1)
        passages.insert(position, qa.chunk)
    hits = [SearchHit(c, 0.0) for c in passages]
    messages = build_messages(qa.question, hits)
    if position is not None:
        answer = f"{qa.answer.rstrip('.')} [{position + 1}]."
    else:
        answer = NOT_FOUND_IN[language_of(qa.question)] if absent == "refuse" else qa.answer
    return [*messages, {"role": "assistant", "content": answer}], position


def synth_raft(
    index,
    retriever,
    out: Path,
    distractors: int = 3,
    p_oracle: float = 0.8,
    absent: str = "refuse",
    generator=None,
    questions: int = 3,
    model_questions_: int = 1,
    holdout: float = 0.2,
    holdout_facts: float = 0.0,
    seed: int = 0,
    on_fact: Callable[[], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    max_facts: int = 0,
) -> SynthReport:
    """RAFT examples: each fact asked ``questions`` ways, in the ``ask`` prompt with its chunk among distractors."""
    if not 0.0 <= p_oracle <= 1.0:
        raise DataError(f"--p-oracle {p_oracle}: a fraction between 0 and 1")
    if absent not in ("refuse", "memorize"):
        raise DataError(f"--absent {absent!r}: use refuse or memorize")
    asked = _ask_index(
        index, generator, questions, model_questions_, holdout, holdout_facts, seed, on_fact, on_start, max_facts
    )
    qas, held, hashes = asked.qas, asked.held, asked.hashes
    rng = random.Random(seed)
    pool = list(asked.chunks)
    train, heldout = [], []
    for i, qa in enumerate(qas):
        hard = [
            h.chunk
            for h in retriever.search(qa.question, k=distractors + 3)
            if h.chunk.chunk_id != qa.chunk.chunk_id and not _same_fact(h.chunk, qa)
        ]
        chosen = hard[:distractors]
        while len(chosen) < distractors and len(pool) > len(chosen) + 1:
            c = rng.choice(pool)
            if c.chunk_id != qa.chunk.chunk_id and c not in chosen:
                chosen.append(c)
        include = rng.random() < p_oracle
        messages, position = raft_example(qa, chosen, include, rng, absent)
        meta = {
            "oracle": position + 1 if position is not None else None,
            "distractors": [c.chunk_id for c in chosen],
            # every document the row carries text of: the oracle's (the question and answer state its fact,
            # left out of the prompt or not) and each distractor's, which the model reads and may learn.
            # An adapter's lineage, its staleness and who may use it (serve) go by these.
            "sources": {c.source: hashes.get(c.source, "") for c in (qa.chunk, *chosen)},
        }
        if i in held:
            heldout.append(qa_record(qa, hashes, messages, split=held[i], **meta))
        else:
            train.append(qa_record(qa, hashes, messages, **meta))
    return _write(asked, out, train, heldout)


@dataclass
class _Asked:
    chunks: list[Chunk]
    titles: dict[str, str]
    hashes: dict[str, str]
    facts: list[Fact]
    qas: list[QA]
    held: dict[int, str]
    duplicates: int
    kept: int
    rejected: int


def _ask_index(
    index,
    generator,
    questions,
    model_share,
    holdout,
    holdout_facts,
    seed,
    on_fact,
    on_start,
    max_facts=0,
    model_until=None,
) -> _Asked:
    """The index's facts, asked and split: what synth qa and synth raft both start from. ``max_facts``: a
    stable sample of that many facts (the same for the same seed), for a measurement on a budget."""
    if not 0.0 <= holdout < 1.0 or not 0.0 <= holdout_facts < 1.0:
        raise DataError("--holdout and --holdout-facts: fractions from 0 up to (not including) 1")
    chunks, titles, hashes = all_chunks(index)
    facts = extract_facts(chunks, titles)
    if not facts:
        raise DataError("no facts found in the ingested documents: nothing to ask about")
    if 0 < max_facts < len(facts):
        chosen = set(sorted(range(len(facts)), key=lambda i: _hash_fraction("sample|" + facts[i].id, seed))[:max_facts])
        facts = [f for i, f in enumerate(facts) if i in chosen]
    if on_start:
        on_start(len(facts))
    qas, dupes, kept, rejected = ask_facts(facts, questions, generator, model_share, seed, on_fact, model_until)
    held = split_questions(qas, holdout, holdout_facts, seed)
    return _Asked(chunks, titles, hashes, facts, qas, held, dupes, kept, rejected)


def _write(asked: _Asked, out: Path, rows: list[dict], heldout: list[dict], texts: int = 0) -> SynthReport:
    """Write the training rows to ``out`` and the held-out ones beside it; what was written."""
    write_jsonl(out, rows)
    held_path = heldout_path_for(out)
    write_jsonl(held_path, heldout)
    kinds = _kinds([qa for i, qa in enumerate(asked.qas) if i not in asked.held])
    if texts:
        kinds["text"] = texts
    return SynthReport(
        len(rows),
        len(heldout),
        asked.duplicates,
        out,
        held_path,
        kinds,
        len(asked.facts),
        texts,
        asked.kept,
        asked.rejected,
    )


def _same_fact(chunk: Chunk, qa: QA) -> bool:
    # a distractor that states the answer is not a distractor
    return qa.answer.rstrip(".").lower() in chunk.text.lower()


def all_chunks(index) -> tuple[list[Chunk], dict[str, str], dict[str, str]]:
    sources = index.sources()
    if not sources:
        raise DataError("the index is empty: ingest documents before synthesizing training data")
    chunks = [c for s in sources for c in index.source_chunks(s.path)]
    return chunks, {s.path: s.title or "" for s in sources}, {s.path: s.content_hash for s in sources}


def _kinds(qas: list[QA]) -> dict[str, int]:
    out: dict[str, int] = {}
    for qa in qas:
        out[qa.kind] = out.get(qa.kind, 0) + 1
    return out
