"""`eval answers`: answer quality of a route on questions with gold answers (BEIR folder + answers.jsonl).

Per question: ROUGE-L F1 and SQuAD-style token F1 against the gold answer, the share of printed
citations that point into a gold section (the qrels), whether every printed [n] was a passage in
the prompt, latency and tokens/s. A seeded sample keeps CPU runs short and comparable.

`normalise_values` and `contains_key` score answers against short key values (a number, a code, a date): both
sides are brought to one spelling of numbers, units, dates and times first, so "six years" meets "6 years",
"1.400,00" meets "1400" and "3 March 2025" meets "2025-03-03".
"""

from __future__ import annotations

import random
import re
import statistics
import string
import time
import unicodedata
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


# -- value normalisation for key matching ----------------------------------------------------------------------

_UNITS_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS_WORDS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALE_WORDS = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_WORD = "|".join(sorted([*_UNITS_WORDS, *_TENS_WORDS, *_SCALE_WORDS], key=len, reverse=True))
_NUMBER_RUN = re.compile(rf"\b(?:{_NUMBER_WORD})(?:(?:\s+|-)(?:and\s+)?(?:{_NUMBER_WORD}))*\b")

_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
}  # fmt: skip
# Greek months, unaccented as normalise_values sees them: the genitive of dates ("14 Απριλίου 2025") and the nominative
_MONTHS_EL = [
    "ιανουαριου", "φεβρουαριου", "μαρτιου", "απριλιου", "μαιου", "ιουνιου", "ιουλιου", "αυγουστου", "σεπτεμβριου",
    "οκτωβριου", "νοεμβριου", "δεκεμβριου",
]  # fmt: skip
_MONTHS.update({form: n for n, gen in enumerate(_MONTHS_EL, start=1) for form in (gen, gen[:-2] + "ος")})
# Greek number words from two to twelve ("ένα"/"μία" are also the article "a", so they are left alone)
_NUMBER_WORDS_EL = {
    "δυο": 2, "τρεις": 3, "τρια": 3, "τεσσερις": 4, "τεσσερα": 4, "πεντε": 5, "εξι": 6, "επτα": 7, "εφτα": 7,
    "οκτω": 8, "οχτω": 8, "εννεα": 9, "εννια": 9, "δεκα": 10, "εντεκα": 11, "ενδεκα": 11, "δωδεκα": 12,
}  # fmt: skip
_NUMBER_WORD_EL = re.compile(r"(?<![^\W\d_])(" + "|".join(_NUMBER_WORDS_EL) + r")(?![^\W\d_])")
_MONTH = "(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ORD = r"(?:st|nd|rd|th)?"

# canonical unit <- spellings, longest first; applied only right after a number ("50 minutes", "6-year", "1.85m")
_UNITS = [
    ("m3/h", r"m3\s*/\s*h|m3\s+per\s+hour|cubic\s+met(?:re|er)s?\s+(?:per|an|a)\s+hour"),
    ("km/h", r"km\s*/\s*h|kph|kilomet(?:re|er)s?\s+(?:per|an|a)\s+hour"),
    ("rpm", r"rpm|r/min|revolutions\s+(?:per|a)\s+minute"),
    ("°c", r"°\s*c(?:elsius)?|degrees?\s+(?:celsius|centigrade|c)|deg\.?\s*c|celsius|c"),
    ("°dh", r"°\s*dh|degrees?\s+(?:of\s+)?(?:german\s+hardness|dh)|dh"),
    ("min", r"minutes?|mins?"),
    ("h", r"hours?|hrs?|h"),
    ("s", r"seconds?|secs?|s"),
    ("day", r"days?"),
    ("week", r"weeks?|wks?"),
    ("month", r"months?|mths?"),
    ("year", r"years?|yrs?"),
    ("kg", r"kilo(?:gram(?:me)?)?s?|kgs?"),
    ("km", r"kilomet(?:re|er)s?|kms?"),
    ("mm", r"millimet(?:re|er)s?|mm"),
    ("cm", r"centimet(?:re|er)s?|cm"),
    ("m", r"met(?:re|er)s?|m"),
    ("l", r"lit(?:re|er)s?|l"),
    ("kw", r"kilowatts?|kw"),
    ("w", r"watts?|w"),
    ("v", r"volts?|v"),
    ("a", r"amp(?:ere)?s?|a"),
    ("hz", r"hertz|hz"),
    ("bar", r"bars?"),
    ("ppm", r"ppm|parts\s+per\s+million"),
    ("%", r"%|per\s*cent|pct"),
]
# and in Greek, as normalise_values sees it: lower case, accents dropped ("λεπτά" → "λεπτα")
_UNITS += [
    ("min", r"λεπτ(?:α|ων|ο)"),
    ("h", r"ωρ(?:ες|ων|α)"),
    ("day", r"(?:η)?μερ(?:ες|ων|α)"),
    ("week", r"εβδομαδ(?:ες|ων|α)"),
    ("month", r"μην(?:ες|ων|ας|α)"),
    ("year", r"χρονι(?:α|ων)|χρον(?:ος|ο|ου)|ετ(?:η|ων|ος)"),
    ("kg", r"κιλ(?:α|ων|ο)"),
    ("km", r"χιλιομετρ(?:α|ων|ο)"),
    ("cm", r"εκατοστ(?:α|ων|ο)"),
    ("m", r"μετρ(?:α|ων|ο)"),
    ("l", r"λιτρ(?:α|ων|ο)"),
    ("°c", r"βαθμ(?:οι|ους|ων|ος|ο)(?:\s+κελσιου)?"),
    ("a", r"αμπερ"),
    ("v", r"βολτ"),
    ("%", r"τοις\s+εκατο"),
]
_UNIT_RE = re.compile(
    r"(?<=\d)(?:\s*-\s*|\s*)(" + "|".join(f"(?:{alt})" for _, alt in _UNITS) + r")(?![a-z0-9\u0370-\u03ff])"
)
_UNIT_CANON = [(re.compile(rf"(?:{alt})\Z"), canon) for canon, alt in _UNITS]
_CURRENCY = r"€|£|\$|eur(?:os?)?|ευρω|gbp|usd|pounds?(?:\s+sterling)?|dollars?"
_GREEK = re.compile(r"[\u0370-\u03ff]")
_SPACES = "\u00a0\u2007\u2009\u200a\u202f"
_DASHES = "\u2212\u2010\u2011\u2012\u2013\u2014\ufe63\uff0d"


def _words_to_numbers(run: str) -> str:
    """'twenty-four' -> '24', 'one thousand four hundred' -> '1400', 'three four' -> '3 4'."""
    words = re.split(r"[\s-]+", run)
    out: list[str] = []
    total = seg = 0
    last = ""  # kind of the previous word of the number being read: "", unit, ten, scale

    def flush() -> None:
        nonlocal total, seg, last
        if last:
            out.append(str(total + seg))
        total = seg = 0
        last = ""

    for i, word in enumerate(words):
        after_scale = last == "scale" and seg % 100 == 0
        if word == "and":
            if after_scale and i + 1 < len(words) and words[i + 1] in (*_UNITS_WORDS, *_TENS_WORDS):
                continue  # "two hundred and twelve"
            flush()
            out.append(word)
        elif word in _UNITS_WORDS:
            value = _UNITS_WORDS[word]
            if not (after_scale or last == "ten" and seg % 10 == 0 and 0 < value < 10):
                flush()
            seg += value
            last = "unit"
        elif word in _TENS_WORDS:
            if not after_scale:
                flush()
            seg += _TENS_WORDS[word]
            last = "ten"
        elif word == "hundred":
            if last in ("unit", "ten") and seg < 100:
                seg *= 100
            else:
                flush()
                seg = 100
            last = "scale"
        else:  # thousand, million
            total += (seg if last else 1) * _SCALE_WORDS[word]
            seg = 0
            last = "scale"
    flush()
    return " ".join(out)


def _iso(year: str, month: int, day: str) -> str:
    return f"{int(year):04d}-{month:02d}-{int(day):02d}"


def _slash_date(m: re.Match) -> str:
    a, b, year = int(m[1]), int(m[2]), m[3]
    if a > 12 >= b:
        return _iso(year, b, str(a))  # 30/09/2025
    if b > 12 >= a:
        return _iso(year, a, str(b))  # 09/30/2025
    return m[0]  # 03/04/2025 could be either


def _clock(m: re.Match) -> str:
    hour, minute, half = int(m[1]), int(m[2] or 0), m[3][0]
    if hour > 12:
        return m[0]
    hour = hour % 12 + (12 if half == "p" else 0)
    return f"{hour:02d}:{minute:02d}"


def _decimal(m: re.Match) -> str:
    whole, frac = m[0].split(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def _unit(m: re.Match) -> str:
    spelled = re.sub(r"\s+", " ", m[1])
    for pattern, canon in _UNIT_CANON:
        if pattern.match(spelled):
            return canon if canon == "%" else " " + canon
    return m[0]


def normalise_values(text: str, greek: bool | None = None) -> str:
    """One spelling for numbers, units, dates and times, lower-cased, for matching short key values.

    - minus signs and dashes -> '-'; thin and no-break spaces -> ' '; accents dropped; 'minus 27' -> '-27'
    - number words -> digits ('six' -> '6', 'twenty-four' -> '24', 'one thousand four hundred' -> '1400')
    - digit grouping dropped: '1,400', '1 400' (thin or plain space), '1.400,00' -> '1400'; a decimal comma
      becomes a point ('6,5' -> '6.5'); trailing decimal zeros go ('9.20' -> '9.2', '85.00' -> '85')
    - currency names and signs next to a number go ('EUR 1,395.00', '€1395', '1395 euros' -> '1395')
    - a unit after a number gets one short singular form after one space ('50 minutes', '50min' -> '50 min';
      'six-year', '6 yrs' -> '6 year'; '320°C', '320 degrees Celsius' -> '320 °c'; '15 per cent' -> '15%')
    - dates -> ISO ('3 March 2025', 'March 3rd, 2025', '03.03.2025', '2025-3-3' -> '2025-03-03';
      'March 2025' -> '2025-03'); 12-hour times -> 24-hour ('1 pm', '1:00 p.m.' -> '13:00'; '6:00' -> '06:00')
    - plural weekdays -> singular ('Mondays' -> 'monday')
    - Greek: units ('45 λεπτά' -> '45 min', '36 μηνών' -> '36 month'), months ('14 Απριλίου 2025' -> '2025-04-14'),
      number words from two to twelve ('έξι' -> '6'), 'ευρώ' as a currency, and '2.395' as 2395 where the text is
      Greek (``greek`` None) or ``greek`` says so: Greek groups thousands with a point
    """
    for ch in _DASHES:
        text = text.replace(ch, "-")
    text = re.sub(rf"(?<=\d)[{_SPACES}](?=\d{{3}}(?!\d))", "", text)  # '1 400' with a thin or no-break space
    for ch in _SPACES:
        text = text.replace(ch, " ")
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()
    text = text.replace("\u2044", "/")
    # dotted and slashed numeric dates before the digit grouping rules read them as numbers
    text = re.sub(
        r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(\d{4})(?![\d])",
        lambda m: _iso(m[3], int(m[2]), m[1]) if 1 <= int(m[2]) <= 12 and 1 <= int(m[1]) <= 31 else m[0],
        text,
    )
    text = re.sub(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{4})(?!\d)", _slash_date, text)
    text = re.sub(r"(?<![\d-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\d])", lambda m: _iso(m[1], int(m[2]), m[3]), text)
    # number words, then signs
    text = _NUMBER_RUN.sub(lambda m: _words_to_numbers(m[0]), text)
    text = _NUMBER_WORD_EL.sub(lambda m: str(_NUMBER_WORDS_EL[m[1]]), text)
    text = re.sub(r"\bminus\s+(?=\d)", "-", text)  # not Greek "μείον": "όλο το ποσό μείον 5 €" is "less 5 €"
    # digit grouping: '1 400' / '1.400,00' / '1.400.000' / '1,400.5'; then a decimal comma
    # a plain space only where nothing else reads as a list, a code or a phone number: not 'HL-424 600', '85 204 7730'
    text = re.sub(
        r"(?<![\w.,+-])(?<!\d )\d{1,3}(?: \d{3})+(?![\d]|[.,]\d{3}| \d)", lambda m: m[0].replace(" ", ""), text
    )
    text = re.sub(
        r"(?<![\d.,])\d{1,3}(?:\.\d{3})+,\d+(?![\d.,]?\d)",
        lambda m: m[0].replace(".", "").replace(",", "."),
        text,
    )
    # '1.400.000' anywhere; '2.395' where the text is Greek, which groups thousands with a point
    grouped = r"{1,}" if (_GREEK.search(text) if greek is None else greek) else r"{2,}"
    text = re.sub(rf"(?<![\d.,])\d{{1,3}}(?:\.\d{{3}}){grouped}(?![\d.,]?\d)", lambda m: m[0].replace(".", ""), text)
    text = re.sub(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]|\.\d)", lambda m: m[0].replace(",", ""), text)
    text = re.sub(r"(?<![\d.,])(\d+),(\d{1,2})(?![\d]|[.,]\d)", r"\1.\2", text)
    text = re.sub(r"(?<![\d.])\d+\.\d+(?![\d]|\.\d)", _decimal, text)
    # currency next to a number
    text = re.sub(rf"(?<![a-z])(?:{_CURRENCY})\s*(?=[-+]?\d)", "", text)
    text = re.sub(rf"(?<=\d)\s*(?:{_CURRENCY})(?![a-z])", "", text)
    # dates with month names, then month and year
    text = re.sub(
        rf"(?<![\d])(\d{{1,2}}){_ORD}(?:\s+of)?\s+{_MONTH},?\s+(\d{{4}})(?!\d)",
        lambda m: _iso(m[3], _MONTHS[m[2]], m[1]),
        text,
    )
    text = re.sub(
        rf"\b{_MONTH}\s+(\d{{1,2}}){_ORD},?\s+(\d{{4}})(?!\d)",
        lambda m: _iso(m[3], _MONTHS[m[1]], m[2]),
        text,
    )
    text = re.sub(rf"\b{_MONTH},?\s+(\d{{4}})(?!\d)", lambda m: f"{int(m[2]):04d}-{_MONTHS[m[1]]:02d}", text)
    # times: 12-hour clock to 24-hour, one-digit hours padded
    text = re.sub(r"\b(\d{1,2})(?:[:.](\d{2}))?\s*([ap])\.?m\.?(?![a-z])", _clock, text)
    text = re.sub(r"\b(?:noon|midday)\b", "12:00", text)
    text = re.sub(r"\bmidnight\b", "00:00", text)
    text = re.sub(r"(?<![\d:.])(\d):(\d{2})(?!\d)", r"0\1:\2", text)
    # units after a number; plural weekdays
    text = re.sub(r"\bhalf an hour\b", "30 min", text)
    text = _UNIT_RE.sub(_unit, text)
    text = re.sub(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)s\b", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def contains_key(answer: str, key: str) -> bool:
    """Whether the answer states the key value, after `normalise_values` on both. The key must stand on its own:
    '85' is not in '1850' or '85.5', and '17' is not in '-17'."""
    greek = bool(_GREEK.search(answer))  # the key is read as the answer's language writes numbers: '3.500' = 3500
    a, k = normalise_values(answer), normalise_values(key, greek)
    if not k:
        return False
    left = r"(?<!\w)" if k[0].isalnum() else ""
    if k[0].isdigit():
        left += r"(?<!\d\.)(?<!(?<![\w.])-)"
    right = r"(?!\w)" if k[-1].isalnum() else ""
    if k[-1].isdigit():
        right += r"(?!\.\d)"
    return re.search(left + re.escape(k) + right, a) is not None


def matches_any_key(answer: str, keys: list[str]) -> bool:
    return any(contains_key(answer, k) for k in keys)


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
