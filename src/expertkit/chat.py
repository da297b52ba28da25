"""A multi-turn chat over RAG: follow-ups are rewritten into standalone questions before retrieval,
and every turn is appended to a JSONL file in the workspace."""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from pathlib import Path

from expertkit.answer import Answer, strip_citations
from expertkit.index.base import Filters
from expertkit.models.generator import generate_json
from expertkit.private import open_private, private_dir
from expertkit.rag import RAG

REWRITE_PROMPT = (
    "Rewrite the follow-up question so that it can be understood without the conversation, in its own language. "
    'Reply with a JSON object: {{"question": "..."}}\n\nConversation:\n{history}\n\nFollow-up question: {question}'
)
REWRITE_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}
HISTORY_TURNS = 3  # earlier turns given to the model; retrieval sees the rewritten question


class ChatSession:
    def __init__(self, rag: RAG, folder: Path, filters: Filters | None = None) -> None:
        """``filters`` apply to every turn; their ``groups`` are the caller's access groups."""
        self.rag = rag
        self.filters = filters
        private_dir(folder)  # the answers quote the documents: the owner's only, as the index is
        self.path = folder / time.strftime("%Y%m%d-%H%M%S.jsonl")
        self.turns: list[tuple[str, Answer]] = []
        self.last_query: str | None = None

    @property
    def last(self) -> Answer | None:
        return self.turns[-1][1] if self.turns else None

    def reset(self) -> None:
        self.turns.clear()
        self._log({"event": "reset"})

    def history(self) -> list[dict[str, str]]:
        out = []
        for question, answer in self.turns[-HISTORY_TURNS:]:
            # an old [n] pointed at that turn's passages; this turn numbers its own, so the markers go
            out += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": strip_citations(answer.answer)},
            ]
        return out

    def standalone(self, question: str) -> str:
        """The follow-up as a standalone question, for retrieval (see ``standalone_question``)."""
        previous = self.turns[-1][0] if self.turns else None
        return standalone_question(self.rag, self.history(), question, previous)

    def ask(self, question: str) -> Answer:
        query = self.standalone(question)
        self.last_query = query
        answer = self.rag.ask(question, self.filters, history=self.history(), retrieval_query=query)
        self.turns.append((question, answer))
        self._log({"event": "turn", "question": question, "retrieval_query": query, **answer.to_json()})
        return answer

    def _log(self, record: dict) -> None:
        # appended whole lines (a crash loses at most one turn), to a 0600 file
        with open(open_private(self.path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"time": time.time(), **record}, ensure_ascii=False) + "\n")


def standalone_question(rag: RAG, history: list[dict[str, str]], question: str, previous: str | None) -> str:
    """A follow-up as a standalone question, for retrieval.

    A follow-up that does not point back at the conversation (no "it", "they", "this", no leading "and" or
    "what about") is a new question and is searched as it is: a model asked to rewrite it tends to drag
    the previous topic in, and "what colour is the chairman's yacht?" would then find the pump manual.
    One that points back is rewritten by the model; an unusable rewrite (empty, rambling, dropping the
    follow-up's identifiers, or unchanged) falls back to joining it with the previous question.
    ``history`` is the conversation as chat messages."""
    if previous is None or not points_back(question):
        return question
    if rag.generator is None:
        return f"{previous} {question}"
    lines = "\n".join(f"{m['role']}: {m['content'][:300]}" for m in history)
    reply = generate_json(
        rag.generator,
        [{"role": "user", "content": REWRITE_PROMPT.format(history=lines, question=question)}],
        REWRITE_SCHEMA,
        64,
    )
    rewrite = (reply or {}).get("question", "").strip().split("\n")[0]
    # a rewrite that drops the follow-up's identifiers (NV-200, 45 mm) changed the question
    specifics = {w for w in re.findall(r"[\w-]+", question.lower()) if any(ch.isdigit() for ch in w)}
    kept = set(re.findall(r"[\w-]+", rewrite.lower()))
    if not rewrite or len(rewrite) > 4 * len(question) + 80 or not specifics <= kept:
        return f"{previous} {question}"
    if _normal(rewrite) == _normal(question):  # the model resolved nothing: the query must carry the context
        return f"{previous} {question}"
    return rewrite


# words by which a follow-up points back at the conversation, and openings that continue it
_REFERS = frozenset(
    {"it", "its", "they", "them", "their", "theirs", "this", "that", "these", "those", "he", "him", "his"}
    | {"she", "her", "hers", "one", "ones", "same", "other", "former", "latter"}
)
_CONTINUES = ("and ", "what about ", "how about ", "also ", "but ", "or ", "same ")
# and in Greek, unaccented as points_back compares them: αυτό/αυτή/αυτά/αυτού/αυτής..., εκείνο..., "το ίδιο";
# "και για το ΑΨ-250;", "κι αυτό;", "τι γίνεται με…", "όσο για…", "επίσης…"
_REFERS_EL = frozenset(
    {"αυτο", "αυτος", "αυτη", "αυτα", "αυτοι", "αυτες", "αυτου", "αυτης", "αυτων", "αυτον", "αυτην", "αυτους"}
    | {"εκεινο", "εκεινος", "εκεινη", "εκεινα", "εκεινου", "εκεινης", "ιδιο", "ιδια", "ιδιος", "αλλο"}
)
_CONTINUES_EL = ("και ", "κι ", "τι γινεται με ", "οσο για ", "επισης ", "αλλα ", "η για ", "ενω ")


def points_back(question: str) -> bool:
    """Whether a follow-up leans on the conversation ("and for the NV-200?", "how often is it checked?")."""
    words = _normal(question)
    plain = "".join(c for c in unicodedata.normalize("NFD", words) if not unicodedata.combining(c))
    return bool((_REFERS | _REFERS_EL) & set(plain.split())) or (plain + " ").startswith(_CONTINUES + _CONTINUES_EL)


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))
