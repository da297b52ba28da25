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
        # the labels around an answer (cli/answer.py, the server's text answer)
        "sources": "Sources",
        "page": "page {n}",
        "p": "p.{n}",
        "quoted": "quoted from the passages: the model's own answer was empty or not supported by them",
        "uncited": "unsupported: the answer cites no passage",
        "unsupported": "unsupported",
        "attributed": "attributed by expertkit",
        "irrelevant": "no passage in the documents is relevant enough to answer from",
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
        "sources": "Πηγές",
        "page": "σελίδα {n}",
        "p": "σ.{n}",
        "quoted": "παράθεση από τα αποσπάσματα: η απάντηση του μοντέλου ήταν κενή ή δεν τη στήριζαν τα αποσπάσματα",
        "uncited": "χωρίς στήριξη: η απάντηση δεν παραπέμπει σε κανένα απόσπασμα",
        "unsupported": "χωρίς στήριξη",
        "attributed": "η παραπομπή δόθηκε από το expertkit",
        "irrelevant": "κανένα απόσπασμα των εγγράφων δεν είναι αρκετά σχετικό για να απαντήσει",
    },
}


def language_of(text: str) -> str:
    """ "el" when most of the letters of ``text`` are Greek, else "en"."""
    letters = _LETTER.findall(text)
    greek = sum(1 for ch in letters if _GREEK_LETTER.match(ch))
    return "el" if letters and greek * 2 > len(letters) else "en"


# the commonest short words of English and of the Latin-script languages nearest to it: a text whose words
# include more of another list's than of English's is not English. No English word is in another list.
_FUNCTION_WORDS = {
    "en": "the of and to is in that for with are was this be by as on it not or from have which",
    "de": "der die das und ist nicht ein eine mit den dem zu auf für sich von wird sind oder auch",
    "fr": "le la les et est des une du que pour dans pas sur au aux sont avec ce ou qui",
    "es": "el los las y es del por una con para que se su al como más pero sus",
    "it": "il di che è della per un una sono nel gli anche con non più dei delle alla",
    "pt": "o os da das dos em uma não com para são ao pelo pela mais seu",
    "nl": "de het een van en niet met voor op zijn dat aan ook wordt bij",
}
_WORDS_OF = {lang: frozenset(words.split()) for lang, words in _FUNCTION_WORDS.items()}
_WORD = re.compile(r"[^\W\d_]+")


def is_english(text: str) -> bool:
    """Whether ``text`` reads as English: most of its letters are Latin, and its function words are English
    rather than German, French, Spanish, Italian, Portuguese or Dutch ones. A text with no function words at
    all (a parts list, a table of codes) counts as English when its letters are Latin. It picks an embedder
    (``embed.model = "auto"``), so it errs towards "not English": the multilingual model reads English too."""
    letters = _LETTER.findall(text)
    latin = sum(1 for ch in letters if ch.isascii() or "\u00c0" <= ch <= "\u024f")
    if not letters or latin * 10 < len(letters) * 9:
        return not letters
    counts = dict.fromkeys(_WORDS_OF, 0)
    for word in _WORD.findall(text.lower()):
        for lang, words in _WORDS_OF.items():
            if word in words:
                counts[lang] += 1
    english = counts.pop("en")
    return english >= max(counts.values())


def say(language: str, key: str, **values: str) -> str:
    table = EXPLAIN.get(language, EXPLAIN["en"])
    return table[key].format(**values)
