"""What keyword search (BM25) indexes and looks for, in more languages than English.

Both backends tokenise with English rules (SQLite FTS5's porter tokenizer, PostgreSQL's ``english``
configuration): English words are stemmed there, as before. Greek words are not, so a question that says
"αντλιες" (pumps, no accents) never met a document that says "αντλία" (pump). Here each Greek word is folded
before the backend sees it, the same way at index and at query time:

- Snowball's Greek stemmer (PyStemmer), which also folds case, accents and final sigma;
- then a trailing vowel is dropped from stems over three letters, where Snowball leaves the inflections of
  one word apart (αντλία → αντλ but αντλίες → αντλι; ψυγείο → ψυγει).

Only Greek-script words change, in place: English text, codes (ΑΨ-220 keeps its digits) and punctuation are
left exactly as they were, so an English index is byte-for-byte what it was.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Greek and Coptic, and Greek Extended (polytonic): letters only, so "ΑΨ-220" folds "ΑΨ" and keeps "-220"
_GREEK_WORD = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]+")
_TRAILING_VOWELS = re.compile(r"[αεηιουω]+$")
# stored in an index; an older index's Greek rows are re-folded on open (index/sqlite/schema.py, pgvector/schema.py)
KEYWORDS_VERSION = "1"

# common Greek function words (folded), dropped from queries as the English stop words are
_GREEK_STOP = (
    "ο η το οι τα του της των τον την στο στη στην στον στα στις στους σε με για απο και ή να θα δεν μη "
    "που ποιο ποια ποιος ποιες ποιοι πως ποσο ποση ποσα ποσες ποσοι ποτε γιατι ειναι εχει εχουν ενα μια "
    "ενας αυτο αυτη αυτος ως κατα μετα πριν οτι αν ομως ουτε"
)


def has_greek(text: str) -> bool:
    return _GREEK_WORD.search(text) is not None


def _plain(word: str) -> str:
    """Lower case, no accents, final sigma as σ: how a Greek word compares when it is not stemmed."""
    bare = "".join(ch for ch in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(ch) != "Mn")
    return bare.replace("ς", "σ")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: Snowball's stemmers in C

    return Stemmer.Stemmer("greek")


@lru_cache(maxsize=65536)
def fold_greek(word: str) -> str:
    """One Greek word as keyword search stores and looks for it: αντλίες, αντλια, ΑΝΤΛΙΕΣ → αντλ."""
    stem = _plain(_stemmer().stemWord(word.lower()))
    return _TRAILING_VOWELS.sub("", stem) if len(stem) > 3 else stem


GREEK_STOP_WORDS = frozenset(_plain(w) for w in _GREEK_STOP.split())


def keyword_text(text: str) -> str:
    """``text`` with each Greek word folded (see the module); everything else exactly as it was."""
    if not has_greek(text):
        return text
    return _GREEK_WORD.sub(lambda m: fold_greek(m.group(0)), text)


def is_greek_stop_word(word: str) -> bool:
    return _plain(word) in GREEK_STOP_WORDS
