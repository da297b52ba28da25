import json
import re

import pytest

from expertkit.chat import ChatSession
from expertkit.rag import RAG
from expertkit.retrieve import Retriever


@pytest.fixture
def session(sample_index, embedder, generator, tmp_path):
    return ChatSession(RAG(Retriever(sample_index, embedder), generator, k=3, max_new_tokens=32), tmp_path / "chats")


def test_follow_up_is_rewritten_for_retrieval_and_history_is_saved(session):
    first = session.ask("What is the warranty period for NV-400 pumps?")
    assert first.found
    session.ask("And for the NV-200 series?")
    query = session.last_query
    assert query and query != "And for the NV-200 series?"  # retrieval saw a standalone question
    assert "NV-200" in query
    lines = [json.loads(line) for line in session.path.read_text().splitlines()]
    assert [line["question"] for line in lines] == [
        "What is the warranty period for NV-400 pumps?",
        "And for the NV-200 series?",
    ]
    assert lines[1]["retrieval_query"] == query and "citations" in lines[1]
    assert len(session.history()) == 4


def test_reset_clears_history(session):
    session.ask("What is the restocking fee?")
    session.reset()
    assert session.history() == [] and session.standalone("What about tools?") == "What about tools?"
    assert json.loads(session.path.read_text().splitlines()[-1])["event"] == "reset"


def test_unusable_rewrite_falls_back_to_joining_questions(session, monkeypatch):
    session.ask("What is the restocking fee?")

    class Rambling:
        text = "word " * 500

    monkeypatch.setattr(session.rag.generator, "generate", lambda *a, **k: Rambling())
    assert session.standalone("and for pumps?") == "What is the restocking fee? and for pumps?"


def test_history_carries_no_stale_citation_numbers(session):
    session.ask("What is the warranty period for NV-400 pumps?")
    assert "[" in session.turns[0][1].answer  # the answer as shown keeps its citations
    (_, assistant) = session.history()
    assert assistant["role"] == "assistant" and not re.search(r"\[\d+\]", assistant["content"])
