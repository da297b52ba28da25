"""A question's key terms, and whether a passage meets them.

An answer about the HL-460 may not come from a passage about the HL-424, nor an answer about a 24 V motor from
one about the 12 V motor: the passage must name what the question names. Three kinds of term are read:

- **codes**: words with letters and digits (HL-460, E19, SB-2025-05, OMW-D7700, M05). They meet a passage that
  has the same code whatever its separators or case (HL460, hl-460, HL 460), never a longer one (E1 ≠ E19).
- **quantities**: a number with a unit (24 V, 230 V, 15 mm, 18-tonne, 6 months). They meet a passage with the
  same value in the same unit (24 V = 24 volt = 24-volt, 1,400 rpm = 1400 rpm), or a range or bound that holds
  it (200–240 V holds 230 V, "up to 40 km" holds 25 km, "over 160 km" holds 250 km).
- **months**: a month of a year (June 2025). They meet a passage dated in that month in any form (2025-06-03,
  3 June 2025, 03.06.2025).
- **names**: capitalised words inside the question (Gold, Ashgrove Quay, Dana Reyes), not its first word. A
  name is looser, as documents capitalise and order words differently: its words must all be in one passage, in
  any order and case, but that passage may be anywhere in the documents the caller may read.

Plain numbers and lowercase words are not terms: "at speed 3" or "fire alarms" are too often paraphrased.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

# letters and digits in one word, with inner separators: HL-460, E19, SB-2025-05, OMW-D7700, 3A-12, M05
_CODE = re.compile(r"(?<![\w-])(?=[\w./-]*\d)(?=[\w./-]*[^\W\d_])[^\W_]+(?:[-./][^\W_]+)*(?![\w-])")

# unit spellings → one name; a quantity meets the same value in any spelling of its unit
_UNITS = {
    "v": "V", "volt": "V", "volts": "V", "vac": "V", "vdc": "V",
    "a": "A", "amp": "A", "amps": "A", "ampere": "A", "amperes": "A",
    "w": "W", "watt": "W", "watts": "W", "kw": "kW", "kilowatt": "kW", "kilowatts": "kW",
    "hz": "Hz", "rpm": "rpm", "bar": "bar", "psi": "psi", "kpa": "kPa", "mpa": "MPa",
    "mm": "mm", "cm": "cm", "m": "m", "km": "km",
    "mg": "mg", "g": "g", "kg": "kg", "t": "t", "tonne": "t", "tonnes": "t", "ton": "t", "tons": "t",
    "ml": "ml", "l": "l", "litre": "l", "litres": "l", "liter": "l", "liters": "l",
    "°c": "°C", "°f": "°F", "c": "°C", "celsius": "°C", "inch": "in", "inches": "in",
    "nm": "N·m", "n·m": "N·m", "n.m": "N·m", "%": "%", "percent": "%",
    "s": "s", "sec": "s", "second": "s", "seconds": "s", "min": "min", "mins": "min", "minute": "min",
    "minutes": "min", "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "day": "day", "days": "day",
    "week": "week", "weeks": "week", "month": "month", "months": "month", "year": "year", "years": "year",
    "m³": "m³", "m3": "m³", "m³/h": "m³/h", "m3/h": "m³/h", "l/min": "l/min", "kwh": "kWh",
}  # fmt: skip
# and in Greek, with and without accents (people type both): 45 λεπτά, 6 ώρες, 8 ημέρες, 36 μήνες, 5 χρόνια
_UNITS_EL = {
    "min": "λεπτά λεπτών λεπτό",
    "h": "ώρες ωρών ώρα",
    "day": "ημέρες ημερών ημέρα μέρες μερών μέρα",
    "week": "εβδομάδες εβδομάδων εβδομάδα",
    "month": "μήνες μηνών μήνα μήνας",
    "year": "χρόνια χρόνων χρόνο χρόνος έτη ετών έτος",
    "kg": "κιλά κιλών κιλό",
    "km": "χιλιόμετρα χιλιομέτρων",
    "m": "μέτρα μέτρων μέτρο",
    "l": "λίτρα λίτρων λίτρο",
}
_PLAIN = str.maketrans("άέήίόύώ", "αεηιουω")
_UNITS.update({w: unit for unit, words in _UNITS_EL.items() for w in words.split()})
_UNITS.update({w.translate(_PLAIN): unit for unit, words in _UNITS_EL.items() for w in words.split()})
_UNIT_WORDS = sorted(_UNITS, key=len, reverse=True)  # longest first: "m³/h" before "m", "min" before "m"
_UNIT = "|".join(re.escape(u) for u in _UNIT_WORDS)
_VALUE = r"\d+(?:[.,]\d+)*"
# 24 V, 24V, 24-volt, 18-tonne, 1,400 rpm; the unit must end a word (5 m, not 5 metres' "m" of "metres")
_QUANTITY = re.compile(rf"(?<![\w.,])({_VALUE})\s*-?\s*({_UNIT})(?![^\W\d_]|³)", re.IGNORECASE)
# 200–240 V, 200-240V, 200 to 240 V, between 200 and 240 V
_RANGE = re.compile(
    rf"(?<![\w.,])({_VALUE})\s*(?:{_UNIT})?\s*(?:[-–—]|to|and)\s*({_VALUE})\s*-?\s*({_UNIT})(?![^\W\d_]|³)",
    re.IGNORECASE,
)
_MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# a month of a year, in the forms documents write it: June 2025, 3 June 2025, June 3, 2025, 2025-06(-03),
# 03.06.2025, 03/06/2025 (day first, and month first where that reads as a date too)
_MONTH_YEAR = re.compile(rf"\b({_MONTH})\s+(?:\d{{1,2}}(?:st|nd|rd|th)?,?\s+)?(\d{{4}})\b", re.IGNORECASE)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})(?:-\d{1,2})?\b")
_DMY = re.compile(r"\b(\d{1,2})[./](\d{1,2})[./](\d{4})\b")
# one-sided bounds: "up to 40 km" holds 25 km, "over 160 km" holds 250 km
_AT_MOST = r"up\s+to|under|below|less\s+than|within|max(?:imum|\.)?|not\s+more\s+than|no\s+more\s+than|≤|<=?"
# not "above" or "at least": those mostly state a threshold ("replace if wear is above 7.1 mm"), not which
# values a line applies to
_AT_LEAST = r"over|more\s+than|beyond|exceeding|≥|>=?"
_BOUND = re.compile(
    rf"(?:({_AT_MOST})|({_AT_LEAST}))\s*({_VALUE})\s*-?\s*({_UNIT})(?![^\W\d_]|³)",
    re.IGNORECASE,
)
_NAME = re.compile(r"\b[A-Z][^\W\d_]+(?:[ -](?:(?:of|de|van|von|the|la|le)\s+)?[A-Z][^\W\d_]+)*")
# capitalised words that name nothing in the documents: question words, pronouns, units of time
_NOT_NAME_WORDS = (
    "I A An The This That These Those What Which Who Whom Whose When Where Why How Is Are Was Were Do Does Did "
    "Can Could Should Would Will May Must Please Tell List Give Show Explain Describe Name Find And Or If In On At "
    "For To Of By With From Per Mr Mrs Ms Dr EUR USD GBP"
)
_NOT_NAMES = frozenset(_NOT_NAME_WORDS.split())


def number_value(raw: str, point_groups: bool = False) -> float | None:
    """A number as written in English or in continental Europe (Greek, German): 8,000 and 8000; 318.00 and
    318,00; 1.250,00 and 1,250.00 and 1 250,00 all read as what they mean. ``point_groups``: the text writes
    thousands with a point (Greek), so a lone 2.395 is 2395, not two and a bit."""
    raw = raw.replace("\u00a0", "").replace(" ", "")
    if point_groups and re.fullmatch(r"\d{1,3}\.\d{3}", raw):
        return float(raw.replace(".", ""))
    if "," in raw and "." in raw:  # both: the last one is the decimal mark
        raw = raw.replace(".", "").replace(",", ".") if raw.rfind(",") > raw.rfind(".") else raw.replace(",", "")
    elif raw.count(".") > 1:  # 1.250.000
        raw = raw.replace(".", "")
    else:
        raw = re.sub(r",(?=\d{3}\b)", "", raw).replace(",", ".")
    try:
        return float(raw)
    except ValueError:
        return None


def _code_key(code: str) -> str:
    """HL-460, hl 460, HL460 → hl460; E05 and E5 stay apart (the zero is part of the code)."""
    return re.sub(r"[-./\s]", "", code).lower()


def _month(word: str) -> int | None:
    word = word.lower().rstrip(".")
    return next((i for i, m in enumerate(_MONTHS, start=1) if m.startswith(word[:3]) and m.startswith(word)), None)


def months(text: str) -> set[tuple[int, int]]:
    """The (year, month) pairs ``text`` dates something in, in any common form."""
    out = set()
    for m in _MONTH_YEAR.finditer(text):
        if (month := _month(m.group(1))) is not None:
            out.add((int(m.group(2)), month))
    out |= {(int(y), int(mo)) for y, mo in _ISO_DATE.findall(text) if 1 <= int(mo) <= 12}
    for d, mo, y in _DMY.findall(text):
        out |= {(int(y), int(a)) for a in (mo, d) if 1 <= int(a) <= 12}
    return out


@dataclass(frozen=True)
class Term:
    text: str  # as the question wrote it
    kind: str  # "code" | "quantity" | "month" | "name"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str


# one-letter and ambiguous unit spellings count only as written in SI: 5 A, 5 W, 5 m, 5 h, 5 s (with a space),
# not "5 a day" or "the 1990s"
_STRICT = {"a": "A", "w": "W", "m": "m", "h": "h", "s": "s", "t": "t", "g": "g", "c": "C"}


def quantities(text: str) -> list[tuple[str, Quantity]]:
    """Each number with a unit in ``text``: ("24 V", Quantity(24, "V"))."""
    out = []
    for m in _QUANTITY.finditer(text):
        raw_unit = m.group(2)
        strict = _STRICT.get(raw_unit.lower())
        if strict is not None and (raw_unit != strict or (strict == "s" and not text[m.start(2) - 1].isspace())):
            continue
        value, unit = number_value(m.group(1)), _UNITS.get(raw_unit.lower())
        if value is not None and unit is not None:
            out.append((m.group(0).strip(), Quantity(value, unit)))
    return out


def codes(text: str) -> list[str]:
    """The code-like words of ``text`` (HL-460, E19), without those that are quantities (24V, 15mm)."""
    measured = {_code_key(q) for q, _ in quantities(text)}
    found = []
    for m in _CODE.finditer(text):
        word = m.group(0).strip(".-/")
        if _code_key(word) in measured or re.fullmatch(r"\d+(?:st|nd|rd|th|s)", word, re.IGNORECASE):
            continue  # 24V is a quantity; 3rd, 1990s are not codes
        found.append(word)
    return found


def key_terms(question: str) -> list[Term]:
    """The codes, quantities and names ``question`` pins its answer to, in the order asked."""
    terms: list[Term] = []
    seen: set[str] = set()

    def add(text: str, kind: str) -> None:
        if text.lower() not in seen:
            seen.add(text.lower())
            terms.append(Term(text, kind))

    for q, _ in quantities(question):
        add(q, "quantity")
    for m in _MONTH_YEAR.finditer(question):
        if _month(m.group(1)) is not None:
            add(m.group(0), "month")
    for c in codes(question):
        add(c, "code")
    # names: capitalised runs outside codes, quantities and months, after the first word (capitalised for being
    # first); the other spans are blanked, same length, so that a name never runs across them
    body = question.strip()
    for pattern in (_CODE, _QUANTITY, _MONTH_YEAR):
        body = pattern.sub(lambda m: "," * len(m.group(0)), body)
    first = re.match(r"\W*[^\W\d_]+", body)
    for m in _NAME.finditer(body, first.end() if first else 0):
        words = m.group(0).split()
        while words and words[0] in _NOT_NAMES:  # "The Rye Room" → "Rye Room"
            words.pop(0)
        name = " ".join(words)
        if not name or name in _NOT_NAMES or (name.isupper() and len(name) <= 4):
            continue  # CSV, PDF, EUR: formats and currencies, not things the documents name
        add(name, "name")
    return terms


def _codes_in(text: str) -> set[str]:
    """The codes of ``text`` as keys: each code-like word, and its runs between plain words, so that the NV-400
    is named by "nv400-service-manual.pdf" (but SB-2025 is not named by SB-2025-05); "HL 460" also counts."""
    keys = {_code_key(m.group(0)) for m in re.finditer(r"\b[^\W\d_]{1,4}\s\d+\b", text)}
    for m in _CODE.finditer(text):
        keys.add(_code_key(m.group(0)))
        run: list[str] = []
        for part in [*re.split(r"[-./]", m.group(0)), "break"]:
            if part.isalpha() and len(part) >= 4:
                if run:
                    keys.add(_code_key("".join(run)))
                run = []
            else:
                run.append(part)
    return keys


def meets(term: Term, text: str) -> bool:
    """Whether ``text`` names ``term``: the same code, the same quantity (or a range holding it), the name."""
    if term.kind == "code":
        return _code_key(term.text) in _codes_in(text)
    if term.kind == "quantity":
        asked = quantities(term.text)
        if not asked:
            return False
        want = asked[0][1]
        if any(q == want for _, q in quantities(text)):
            return True
        for m in _RANGE.finditer(text):
            lo, hi, unit = number_value(m.group(1)), number_value(m.group(2)), _UNITS.get(m.group(3).lower())
            if unit == want.unit and lo is not None and hi is not None and min(lo, hi) <= want.value <= max(lo, hi):
                return True
        for m in _BOUND.finditer(text):
            bound, unit = number_value(m.group(3)), _UNITS.get(m.group(4).lower())
            holds = bound is not None and (want.value <= bound if m.group(1) else want.value >= bound)
            if unit == want.unit and holds:
                return True
        return False
    if term.kind == "month":
        return bool(months(term.text) & months(text))
    # a name: each of its capitalised words, in any order ("Project Heron" and "Valmont Filtration" are written
    # apart, and "Heron Valmont Filtration" ran them together)
    words = [w for w in re.split(r"[ -]", term.text) if w[:1].isupper()]
    return all(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text, re.IGNORECASE) for w in words)


def unmet(terms: list[Term], text: str) -> list[Term]:
    return [t for t in terms if not meets(t, text)]


def nearest(term: Term, texts: list[str], n: int = 3) -> list[str]:
    """What the documents have in place of ``term``: the closest codes, or the same unit's values."""
    if term.kind == "code":
        have: dict[str, str] = {}
        for text in texts:
            for c in codes(text):
                have.setdefault(_code_key(c), c)
        have.pop(_code_key(term.text), None)
        prefix = re.match(r"[^\W\d_]*", _code_key(term.text)).group(0)  # type: ignore[union-attr]
        same = {k: v for k, v in have.items() if prefix and k.startswith(prefix)} or have
        close = difflib.get_close_matches(_code_key(term.text), list(same), n=n, cutoff=0.0)
        return [same[k] for k in close]
    if term.kind == "quantity":
        asked = quantities(term.text)
        if not asked:
            return []
        unit = asked[0][1].unit
        values: dict[float, str] = {}
        for text in texts:
            for raw, q in quantities(text):
                if q.unit == unit and q.value != asked[0][1].value:
                    values.setdefault(q.value, raw)
        return [values[v] for v in sorted(values, key=lambda v: abs(v - asked[0][1].value))[:n]]
    return []
