"""The asker's language: which one a question is in, and expertkit's own words in it.

Answers come in the language of the question. The model is told so (rag.py's prompts), and what expertkit
itself says beside the model's words (the not-found message and why, the labels that carry an answer) comes
from the tables here. English and Greek are written out; any other language gets the English words.
"""

from __future__ import annotations

import re

_GREEK_LETTER = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")
_LETTER = re.compile(r"[^\W\d_]")

LANGUAGES = ("en", "el")

NOT_FOUND = {"en": "Not found in the documents.", "el": "Δεν βρέθηκε στα έγγραφα."}

# the reasons a "not found" gives (rag.Answer.explanation), with {what} / {where} filled in
EXPLAIN = {
    "en": {
        "missing": "no passage mentions {what}",
        "covers": "; the documents cover {what}",
        "together": " together with ",
        "or": " or ",
        "and": " and ",
        "far": "no passage is close enough to the question; the nearest: {where}",
        "empty": "the documents you may read have no passage about it",
        "not_stated": "the passages closest to the question do not state it: {where}",
        "label": "Not found in the documents",
        "checked": "Checked against the documents",
    },
    "el": {
        "missing": "κανένα απόσπασμα δεν αναφέρει {what}",
        "covers": "· τα έγγραφα καλύπτουν {what}",
        "together": " μαζί με ",
        "or": " ή ",
        "and": " και ",
        "far": "κανένα απόσπασμα δεν είναι αρκετά κοντά στην ερώτηση· το πλησιέστερο: {where}",
        "empty": "τα έγγραφα που μπορείτε να διαβάσετε δεν έχουν απόσπασμα γι' αυτό",
        "not_stated": "τα αποσπάσματα που είναι πιο κοντά στην ερώτηση δεν το αναφέρουν: {where}",
        "label": "Δεν βρέθηκε στα έγγραφα",
        "checked": "Ελέγχθηκε στα έγγραφα",
    },
}


def language_of(text: str) -> str:
    """ "el" when most of the letters of ``text`` are Greek, else "en"."""
    letters = _LETTER.findall(text)
    greek = sum(1 for ch in letters if _GREEK_LETTER.match(ch))
    return "el" if letters and greek * 2 > len(letters) else "en"


def say(language: str, key: str, **values: str) -> str:
    table = EXPLAIN.get(language, EXPLAIN["en"])
    return table[key].format(**values)
