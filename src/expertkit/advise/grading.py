"""Grading an answer against the fact's value, and the confidence interval around an accuracy."""

from __future__ import annotations

import math
import re


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% by default); sound at small n and at 0 or 1. ``z`` is the
    normal quantile, as in the textbook formula (1.96: 95%); nothing measured (n == 0) is the whole [0, 1]."""
    if n == 0:
        return 0.0, 1.0
    from scipy import stats  # here: scipy.stats takes longer to import than the rest of advise

    # scipy takes a confidence level, and turns it back into z: the level whose two-sided quantile is z
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=math.erf(z / math.sqrt(2)), method="wilson")
    return float(ci.low), float(ci.high)


def _compact(text: str) -> str:
    text = text.lower().replace("−", "-").replace("–", "-").replace(",", "")
    return re.sub(r"[^0-9a-z]+", "", text)


def contains_value(answer: str, value: str) -> bool:
    """Does the answer state ``value``? Spacing, punctuation, case and thousands separators aside, and not
    as part of a longer number (68 is not in 168)."""
    v = _compact(value)
    if not v:
        return False
    a = _compact(answer)
    return re.search(r"(?<![0-9])" + re.escape(v) + (r"(?![0-9])" if v[-1].isdigit() else ""), a) is not None


def is_correct(answer: str, question: str, expect: list[str]) -> bool:
    """Yes/no questions: the answer starts with the right word. Others: the answer states an expected value
    that the question did not already contain."""
    if expect in (["yes"], ["no"]):
        first = re.findall(r"[a-z]+", answer.lower())[:1]
        return first == expect
    wanted = [e for e in expect if e and not contains_value(question, e)] or [e for e in expect if e]
    return any(contains_value(answer, e) for e in wanted)
