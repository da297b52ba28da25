import json

import pytest

from expertkit.errors import DataError
from expertkit.rag import NOT_FOUND, SYSTEM_PROMPT, build_messages
from expertkit.retrieve import Retriever
from expertkit.schema import SearchHit
from expertkit.tune.data import load_training_data
from expertkit.tune.synth import fact_questions, make_qa, record_questions, synth_qa, synth_raft


def test_record_questions_name_the_field_and_entity(sample_index):
    row = next(c for c in sample_index.source_chunks(_path(sample_index, "parts.csv")) if "NP-4472" in c.text)
    qas = {qa.question: qa.answer for qa in record_questions(row)}
    assert qas["What is the price eur of NP-4472?"] == "The price eur of NP-4472 (part number) is 318.00."


def test_fact_questions_are_cloze_with_the_sentence_as_answer(sample_index):
    chunk = next(
        c for c in sample_index.source_chunks(_path(sample_index, "nv400-service-manual.pdf")) if "68 N·m" in c.text
    )
    qa = next(q for q in fact_questions(chunk) if "impeller nut" in q.question)
    assert "68" not in qa.question and "what" in qa.question and qa.question.endswith("?")
    assert "68 N·m" in qa.answer


def test_synth_qa_writes_deduplicated_split_files_with_lineage(sample_index, tmp_path):
    out = tmp_path / "qa.jsonl"
    report = synth_qa(sample_index, out, holdout=0.2, seed=1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    held = [json.loads(line) for line in report.heldout_path.read_text().splitlines()]
    assert report.written == len(rows) and report.heldout == len(held) > 0
    assert {"record", "fact", "section"} <= set(report.kinds)
    questions = [r["meta"]["question"] for r in rows + held]
    assert len(questions) == len(set(questions))  # duplicates removed
    assert not {r["meta"]["question"] for r in rows} & {r["meta"]["question"] for r in held}
    source = rows[0]["meta"]["source"]
    assert rows[0]["meta"]["sources"] == {source: sample_index.get_source(source).content_hash}
    again = synth_qa(sample_index, tmp_path / "again.jsonl", holdout=0.2, seed=1)
    assert again.heldout == report.heldout  # a stable split
    assert load_training_data(out).source_hashes  # the training loader reads the lineage back


def test_duplicates_are_counted(sample_index):
    chunks = sample_index.source_chunks(_path(sample_index, "parts.csv"))
    qas, dupes = make_qa(chunks + chunks, {}, "extractive")
    assert dupes == len(qas) > 0


def test_raft_examples_use_the_ask_prompt_and_cite_the_oracle(sample_index, embedder, tmp_path):
    out = tmp_path / "raft.jsonl"
    retriever = Retriever(sample_index, embedder)
    synth_raft(sample_index, retriever, out, distractors=2, p_oracle=0.75, holdout=0.0, seed=3)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    with_oracle = [r for r in rows if r["meta"]["oracle"]]
    share = len(with_oracle) / len(rows)
    assert 0.6 < share < 0.9
    for r in rows[:30]:
        system, user, answer = r["messages"]
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert user["content"].count("\n[") + user["content"].startswith("Passages:\n\n[") >= 3  # 3 passages
        n = r["meta"]["oracle"]
        if n:
            assert answer["content"].endswith(f"[{n}].")
            oracle = sample_index.get_chunks([r["meta"]["chunk_id"]])[0]
            assert f"[{n}] (" in user["content"] and oracle.text in user["content"]
            rebuilt = build_messages(r["meta"]["question"], [SearchHit(c, 0) for c in _passages(sample_index, r)])
            assert rebuilt[-1]["content"] == user["content"]  # exactly the prompt ask builds
        else:
            assert answer["content"] == NOT_FOUND
            assert r["meta"]["chunk_id"] not in r["meta"]["distractors"]


def test_raft_rejects_bad_fractions(sample_index, embedder, tmp_path):
    with pytest.raises(DataError, match="p-oracle"):
        synth_raft(sample_index, Retriever(sample_index, embedder), tmp_path / "x.jsonl", p_oracle=1.5)


def test_model_mode_keeps_only_answers_from_the_passage(sample_index, generator):
    chunks = sample_index.source_chunks(_path(sample_index, "nv400-service-manual.pdf"))[:3]
    qas, _ = make_qa(chunks, {}, "model", generator)
    for qa in qas:
        assert qa.kind == "model" and qa.question.endswith("?")
    with pytest.raises(DataError, match="needs a generator"):
        make_qa(chunks, {}, "model", None)


def _path(index, name):
    return next(s.path for s in index.sources() if s.path.endswith(name))


def _passages(index, row):
    ids = list(row["meta"]["distractors"])
    ids.insert(row["meta"]["oracle"] - 1, row["meta"]["chunk_id"])
    return index.get_chunks(ids)
