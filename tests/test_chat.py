import json
import math
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


def test_a_follow_up_that_points_at_nothing_is_searched_as_it_is(session, monkeypatch):
    """A new question after a turn is not rewritten (the model would drag the old topic in)."""
    from expertkit.chat import points_back

    session.ask("What is the restocking fee?")
    monkeypatch.setattr("expertkit.chat.generate_json", lambda *a, **k: pytest.fail("no rewrite was needed"))
    assert session.standalone("What colour is the chairman's yacht?") == "What colour is the chairman's yacht?"
    assert points_back("How often is it checked?") and points_back("And for the NV-200 series?")
    assert points_back("what about tools?") and not points_back("What is the NV-200 warranty?")
    # in Greek, with or without accents
    assert points_back("Και για την ΑΨ-250;") and points_back("ποσο κοστιζει αυτο;") and points_back("Κι εκείνη;")
    assert not points_back("Πόσο κοστίζει η βιτρίνα ΑΨ-180;")


def test_history_carries_no_stale_citation_numbers(session):
    session.ask("What is the warranty period for NV-400 pumps?")
    assert "[" in session.turns[0][1].answer  # the answer as shown keeps its citations
    (_, assistant) = session.history()
    assert assistant["role"] == "assistant" and not re.search(r"\[\d+\]", assistant["content"])


HR_FACTS = {
    "pay.md": "# Salaries 2026\n\nDana Reyes, plant manager, earns an annual salary of 91,250 EUR.\n",
    "merger.md": "# Board only\n\nThe merger is code-named Project Heron; the target company is Valmont Filtration.\n",
}
STAFF_FACTS = {
    "canteen.md": "# Canteen\n\nThe canteen opens at 07:30 and closes at 14:00 on weekdays.\n",
    "parking.md": "# Parking\n\nStaff park in lot C; visitor badges are issued at gate 2.\n",
    "plant.md": "# The plant\n\nDana Reyes leads the plant; the board meets on the first Monday of each month.\n",
}
SECRETS = ("91,250", "91250", "Heron", "Valmont")


@pytest.fixture(params=["sqlite", "postgres"])
def split_index(request, tmp_path, embedder):
    """An index holding HR-only and staff documents, on each backend."""
    from expertkit.ingest.sync import Ingestor

    if request.param == "sqlite":
        from expertkit.index.sqlite import SQLiteIndex

        index = SQLiteIndex(tmp_path / "index.db")
    else:
        from tests.index.test_pgvector import fresh

        index = fresh(request.getfixturevalue("pg_dsn"), "adversarial")
    for folder, files in (("hr", HR_FACTS), ("staff", STAFF_FACTS)):
        for name, text in files.items():
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / name).write_text(text)
    ingestor = Ingestor(index, embedder)
    assert ingestor.sync([tmp_path / "hr"], groups=["hr"]).ok
    assert ingestor.sync([tmp_path / "staff"], groups=["staff"]).ok
    yield index, str(tmp_path / "hr")
    index.close()


ATTACKS = [
    "What is Dana Reyes's annual salary?",
    "How much does the plant manager earn in EUR?",
    "What is the merger code name and who is the target company?",
    "Project Heron Valmont Filtration",
    "Salaries 2026: Dana Reyes, plant manager, earns an annual salary of",
]


def test_search_as_one_group_never_returns_anothers_chunks(split_index, embedder):
    from expertkit.index.base import Filters

    index, hr_folder = split_index
    retriever = Retriever(index, embedder)
    for query in ATTACKS:
        for mode in ("hybrid", "bm25", "dense"):
            hits = retriever.search(query, k=20, mode=mode, filters=Filters(groups=("staff",)))
            assert not any(h.chunk.source.startswith(hr_folder) for h in hits), (query, mode)
        assert retriever.search(query, k=20, mode="dense", filters=Filters(groups=("staff",)))  # k still filled
        owner = retriever.search(query, k=20, mode="dense")  # the control: the HR chunks are there
        assert any(h.chunk.source.startswith(hr_folder) for h in owner)


@pytest.mark.parametrize("split_index", ["sqlite"], indirect=True)  # the filter itself is tested on both above
def test_a_caller_never_gets_another_groups_chunks_or_facts(split_index, embedder, generator, tmp_path):
    """Questions aimed at the HR group's facts, asked by a staff member directly, through follow-ups, after
    an HR member warmed every cache with the same questions, and with the secret's own words."""
    from expertkit.index.base import Filters

    index, hr_folder = split_index
    # both not-found gates open: every question reaches retrieval and the model, so a leak would show
    rag = RAG(Retriever(index, embedder), generator, k=3, max_new_tokens=24, min_relevance=-1.0, min_rerank=-math.inf)
    attacks = ATTACKS
    hr = ChatSession(rag, tmp_path / "hr-chats", Filters(groups=("hr",)))
    leaked_to_hr = [hr.ask(q) for q in attacks]  # the control: HR members do see these documents
    assert all(any(h.chunk.source.startswith(hr_folder) for h in a.retrieved) for a in leaked_to_hr)

    staff = ChatSession(rag, tmp_path / "staff-chats", Filters(groups=("staff",)))
    answers = []
    for question in attacks:  # the same questions on the same, now warm, retriever and model
        answers.append(staff.ask(question))
    staff.ask("Who leads the plant?")
    answers.append(staff.ask("And how much is she paid?"))  # a follow-up, rewritten from history
    answers.append(staff.ask("What did the board decide about the merger with that company?"))
    for answer in answers:
        sources = [h.chunk.source for h in answer.retrieved] + [c.source for c in answer.citations]
        assert not any(s.startswith(hr_folder) for s in sources), answer.question
        assert not any(secret in answer.answer for secret in SECRETS), (answer.question, answer.answer)
        assert not any(secret in h.chunk.text for h in answer.retrieved for secret in SECRETS)
    assert sum(bool(a.retrieved) for a in answers) >= 5  # the staff documents were there to be found
