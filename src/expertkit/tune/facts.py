"""The facts a document states, found without a model: what ``synth qa`` asks about (synth.py).

Every field of a table row or record is a fact, its row named by its key and, where it has one, a short
descriptive field; every informative sentence of prose is one, with its key values (a number with its unit, an
amount, a clock time, a code, or a name) to ask for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from expertkit.answer import split_sentences
from expertkit.language import language_of
from expertkit.schema import Chunk

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


def readable(name: str) -> str:
    """A file or field name as words: price_eur → price eur, nv400-service-manual → nv400 service manual."""
    return re.sub(r"[_\-.]+", " ", name).strip()


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


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
            attribute = readable(name)
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
                    key_name=readable(key_name),
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
        where = titles.get(source) or readable(Path(source).stem)
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
