"""RAG with the real shipped model: prompt, window fitting, citation verification, not-found, errors."""

import pytest

from expertkit.errors import QuestionError
from expertkit.rag import NOT_FOUND, RAG, build_messages, split_sentences
from expertkit.retrieve import Retriever


@pytest.fixture(scope="module")
def rag(sample_index, embedder, generator):
    return RAG(Retriever(sample_index, embedder), generator, k=4, max_new_tokens=48)


@pytest.fixture(scope="module")
def passages(sample_index, embedder):
    return Retriever(sample_index, embedder).search("impeller nut torque", k=3)


def test_prompt_numbers_passages_with_their_sources(passages, generator):
    messages = build_messages("What torque?", passages)
    assert messages[0]["role"] == "system" and "[1]" in messages[0]["content"]
    user = messages[-1]["content"]
    assert "[1] (nv400-service-manual.pdf, page 3, 3 Torque values)" in user and "[3] (" in user
    assert user.index("[1]") < user.index("[2]") < user.index("Question: What torque?")
    assert generator.render(messages).startswith("<|im_start|>system")  # the model's own template


def test_real_answer_has_json_shape_and_timings(rag):
    answer = rag.ask("What torque for the impeller nut?")
    data = answer.to_json()
    assert {"answer", "found", "citations", "unsupported", "retrieved", "timings"} <= set(data)
    assert data["found"] and data["answer"]
    assert 1 <= len(data["retrieved"]) <= 4 and all(
        {"chunk_id", "score", "source"} <= set(r) for r in data["retrieved"]
    )
    t = data["timings"]
    assert t["retrieve_ms"] > 0 and t["prompt_tokens"] > 100 and t["generate_ms"] > 0 and t["tokens_per_s"] > 0
    numbers = {c["number"] for c in data["citations"]}
    assert numbers <= set(range(1, len(data["retrieved"]) + 1))  # every printed number was a passage in the prompt
    if not data["citations"]:
        assert data["unsupported"] == split_sentences(data["answer"])  # uncited answers are marked unsupported


def test_not_found_without_calling_the_model(sample_index, embedder):
    class Refuses:
        name, context_window = "refuses", 2048

        def count_tokens(self, messages):
            return 10

        def generate(self, *a, **k):
            raise AssertionError("the model must not be called")

    rag = RAG(Retriever(sample_index, embedder), Refuses(), min_relevance=0.3)
    answer = rag.ask("Who won the football world cup in 2018?")
    assert not answer.found and answer.answer == NOT_FOUND and answer.retrieved == []


def test_passages_are_fitted_to_the_window_best_first(sample_index, embedder, generator):
    class Small:
        name, context_window = "small", 420

        def __init__(self, inner):
            self.inner = inner

        def count_tokens(self, messages):
            return self.inner.count_tokens(messages)

    rag = RAG(Retriever(sample_index, embedder), Small(generator), k=5, max_new_tokens=100)
    hits = Retriever(sample_index, embedder).search("mechanical seal replacement", k=5)
    kept = rag.fit_passages("mechanical seal replacement", hits)
    assert 0 < len(kept) < 5 and kept[0] is hits[0]
    assert generator.count_tokens(build_messages("mechanical seal replacement", kept)) <= 420 - 100


def test_citations_are_verified(rag, passages):
    torque = passages[0].chunk.text
    assert "68 N·m" in torque
    answer = rag.verify(
        "q", "Tighten the impeller nut to 68 N·m [1]. Use tool NT-11 [1, 7]. Sunsets are red [2].", passages
    )
    assert answer.invalid_citations == [7] and "[7]" not in answer.answer and "[1]" in answer.answer
    (first, *_) = answer.citations
    assert first.number == 1 and first.chunk_id == passages[0].chunk.chunk_id and "68 N·m" in first.quote
    assert first.page == 3 and first.source.endswith("nv400-service-manual.pdf")
    assert answer.unsupported == ["Sunsets are red [2]."]
    assert answer.groundedness == pytest.approx(2 / 3)


def test_an_answer_without_citations_is_unsupported(rag, passages):
    answer = rag.verify("q", "The nut takes 68 N·m. It is tight.", passages)
    assert answer.citations == [] and answer.unsupported == ["The nut takes 68 N·m.", "It is tight."]
    assert answer.groundedness == 0.0


def test_model_saying_not_found_is_reported_as_not_found(rag, passages):
    answer = rag.verify("q", "Not found in the documents.", passages)
    assert not answer.found


def test_no_rag_asks_the_bare_model(rag):
    answer = rag.ask("What is the capital of France?", rag=False)
    assert answer.rag is False and answer.retrieved == [] and answer.citations == [] and "Paris" in answer.answer
    assert "retrieve_ms" not in answer.timings


def test_empty_and_overlong_questions(rag):
    with pytest.raises(QuestionError, match="empty"):
        rag.ask("   ")
    with pytest.raises(QuestionError, match="tokens"):
        rag.ask("pump " * 9000)
