"""The expert's answer as the API sends it: the history a follow-up carries, the citations as text
("Sources:") and as structured fields, and what a stream adds after the model's draft."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from expertkit.answer import Answer, is_not_found, strip_citations
from expertkit.language import LANGUAGES, say
from expertkit.rag import RAG

# where a client's copy of an earlier answer ends and its sources begin ("Sources:", "Πηγές:"), in any language
# expertkit answers in
SOURCES_START = re.compile("\n\n(?:" + "|".join(re.escape(say(lang, "sources")) for lang in LANGUAGES) + "):\n")


def answer_messages(
    rag: RAG, messages: list[dict[str, str]], groups: tuple[str, ...] | None, n_new: int, on_token
) -> Answer:
    """The last user message, answered from the documents ``groups`` may read (None: all of them). Earlier turns are the
    history; a follow-up is rewritten into a standalone question for retrieval, as `expertkit chat` does."""
    from expertkit.chat import HISTORY_TURNS, standalone_question
    from expertkit.index.base import Filters

    question = messages[-1]["content"]
    turns = [m for m in messages[:-1] if m["role"] in ("user", "assistant")]  # the expert keeps its own system prompt
    history = [
        {"role": m["role"], "content": strip_citations(SOURCES_START.split(m["content"])[0])}
        for m in turns[-2 * HISTORY_TURNS :]
    ]
    previous = next((m["content"] for m in reversed(turns) if m["role"] == "user"), None)
    query = standalone_question(rag, history, question, previous)
    return rag.ask(
        question,
        Filters(groups=groups),
        history=history or None,
        retrieval_query=query,
        on_token=on_token,
        max_new_tokens=n_new,
    )


def public_source(path: str, root: Path | None) -> str:
    """A source as a client may see it: relative to the workspace when inside it, else its file name."""
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return os.path.basename(path.rstrip("/")) or path


def _citation_fields(answer: Answer, root: Path | None) -> list[dict[str, Any]]:
    return [
        {
            "number": c.number,
            "source": public_source(c.source, root),
            "page": c.page,
            "section": c.section,
            "record_id": c.record_id,
            "quote": c.quote,
            "attributed": c.attributed,
        }
        for c in answer.citations
    ]


def expert_fields(answer: Answer, root: Path | None) -> dict[str, Any]:
    """The structured part of an expert answer, beside OpenAI's fields (clients read them as extras)."""
    return {
        "citations": _citation_fields(answer, root),
        "expertkit": {
            "answer": answer.answer,
            "found": answer.found,
            # why not found (rag.Answer.reason: no_relevant_passage | missing_term | not_stated) and, for people,
            # what was missing and what the documents cover instead
            "reason": answer.reason or None,
            "explanation": answer.explanation or None,
            "language": answer.language,  # the question's: the answer and the explanation are in it
            "extractive": answer.extractive,
            "groundedness": None if answer.groundedness is None else round(answer.groundedness, 3),
            "unsupported": answer.unsupported,
            "invalid_citations": answer.invalid_citations,
            "retrieval_query": answer.retrieval_query or answer.question,
            "retrieved": [
                {"source": public_source(h.chunk.source, root), "page": h.chunk.page, "section": h.chunk.heading}
                for h in answer.retrieved
            ],
        },
    }


def explained(answer: Answer) -> str:
    """The answer as a message: a "not found" says what was missing ("Not found in the documents. No passage
    mentions HL-460; the documents cover HL-436, HL-424.")."""
    why = answer.explanation
    if answer.found or not why:
        return answer.answer
    return f"{answer.answer} {why[0].upper()}{why[1:]}."


def _where(c: dict[str, Any], lang: str = "en") -> str:
    parts = [c["source"]]
    if c["page"]:
        parts.append(say(lang, "page", n=str(c["page"])))
    if c["record_id"]:
        parts.append(c["record_id"])  # already says what it is: "row 3", "record 12"
    if c["section"]:
        parts.append(f"§ {c['section']}")
    return ", ".join(parts)


def sources_text(answer: Answer, root: Path | None) -> str:
    """The citations as text under the answer, for clients that show only the message."""
    cites = _citation_fields(answer, root)
    if not cites:
        return ""
    lines = [f"[{c['number']}] {_where(c, answer.language)}: “{c['quote']}”" for c in cites]
    return f"\n\n{say(answer.language, 'sources')}:\n" + "\n".join(lines)


def stream_tail(draft: str, answer: Answer, root: Path | None) -> str:
    """What a stream sends after the model's draft: the verified answer where checking changed what it
    claims (a quote from the passages replaced it, or "not found" was never generated), then the sources."""
    tail = ""
    if not draft.strip():
        tail = explained(answer)
    elif not answer.found and not is_not_found(draft):  # the draft claimed what the passages do not state
        tail = f"\n\n{say(answer.language, 'checked')}: {explained(answer)}"
    elif not answer.found and answer.explanation:  # the draft said "not found": what was missing follows
        tail = "\n\n" + explained(answer).removeprefix(answer.answer).strip()
    elif strip_citations(draft).strip() != strip_citations(answer.answer).strip() and answer.found:
        tail = f"\n\n{say(answer.language, 'checked')}: {answer.answer}"
    return tail + sources_text(answer, root)
