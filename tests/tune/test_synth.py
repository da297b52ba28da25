import json

import pytest

from expertkit.config import SearchSettings
from expertkit.errors import DataError
from expertkit.rag import NOT_FOUND, SYSTEM_PROMPT, build_messages
from expertkit.retrieve import Retriever
from expertkit.schema import SearchHit
from expertkit.tune.data import load_training_data
from expertkit.tune.facts import extract_facts, prose_facts, record_facts
from expertkit.tune.questions import ask_facts, model_questions, template_questions
from expertkit.tune.synth import synth_qa, synth_raft


def _facts(index, name):
    path = _path(index, name)
    return extract_facts(index.source_chunks(path), {s.path: s.title or "" for s in index.sources()})


def test_record_facts_name_the_row_by_key_and_label(sample_index):
    rows = sample_index.source_chunks(_path(sample_index, "parts.csv"))
    facts = {f.statement: f for f in record_facts(rows)}
    price = facts["The price eur of NP-4472 (Mechanical seal kit 45 mm (SiC/SiC/FKM)) is 318.00."]
    assert price.value == "318.00" and "212.50" in price.others
    assert price.names == [
        "NP-4472 (Mechanical seal kit 45 mm (SiC/SiC/FKM))",
        "Mechanical seal kit 45 mm (SiC/SiC/FKM)",
        "NP-4472",
    ]


def test_prose_facts_ask_for_each_value_of_a_sentence(sample_index):
    chunk = next(
        c for c in sample_index.source_chunks(_path(sample_index, "nv400-service-manual.pdf")) if "68 N·m" in c.text
    )
    fact = next(f for f in prose_facts(chunk) if "impeller nut" in f.statement)
    assert fact.statement.startswith("Tighten the impeller nut")  # the PDF heading "3 Torque values" is gone
    assert fact.value == "68 N·m"
    assert (
        fact.clozes[0] == "Tighten the impeller nut on all NV-400 models to what using the impeller locking tool NT-11?"
    )
    assert any(c.endswith("impeller locking tool what?") for c in fact.clozes)  # the code is asked for too


def test_every_fact_is_asked_many_ways_from_several_angles(sample_index):
    import random

    fact = next(f for f in _facts(sample_index, "parts.csv") if f.statement.startswith("The price eur of NP-4472"))
    qas = template_questions(fact, 12, random.Random(0))
    questions = [q.question for q in qas]
    assert len(set(questions)) == len(qas) >= 10
    assert {q.angle for q in qas} == {"value", "entity", "yes", "no"}
    assert "Which part number has a price eur of 318.00?" in questions
    no = next(q for q in qas if q.angle == "no")
    assert "318.00" not in no.question and no.answer == f"No. {fact.statement}"
    assert next(q for q in qas if q.angle == "yes").answer == f"Yes. {fact.statement}"
    assert all(q.answer.endswith(fact.statement) for q in qas)  # answers restate the fact in full
    assert any("Mechanical seal kit 45 mm" in q and "NP-4472" not in q for q in questions)  # named by its label


def test_synth_qa_holds_out_paraphrases_and_facts(sample_index, tmp_path):
    out = tmp_path / "qa.jsonl"
    report = synth_qa(sample_index, out, holdout=0.2, holdout_facts=0.2, text_ratio=0.25, seed=1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    held = [json.loads(line) for line in report.heldout_path.read_text().splitlines()]
    qa_rows = [r for r in rows if "messages" in r]
    texts = [r for r in rows if "text" in r]
    assert report.written == len(rows) and report.heldout == len(held) and report.facts > 50
    assert len(texts) == report.texts == round(0.25 * len(qa_rows))
    questions = [r["meta"]["question"] for r in qa_rows + held]
    assert len(questions) == len(set(questions))  # duplicates removed
    by_split = {s: [r for r in held if r["meta"]["split"] == s] for s in ("paraphrase", "fact")}
    assert by_split["paraphrase"] and by_split["fact"]
    trained_facts = {r["meta"]["fact"] for r in qa_rows}
    assert all(r["meta"]["fact"] in trained_facts for r in by_split["paraphrase"])  # other wordings trained
    assert not {r["meta"]["fact"] for r in by_split["fact"]} & trained_facts  # whole facts never trained
    held_chunks = {r["meta"]["chunk_id"] for r in by_split["fact"]}
    assert not {t["meta"]["chunk_id"] for t in texts} & held_chunks  # nor their documents' text
    per_fact = {}
    for r in qa_rows:
        per_fact[r["meta"]["fact"]] = per_fact.get(r["meta"]["fact"], 0) + 1
    assert min(per_fact.values()) >= 2
    source = qa_rows[0]["meta"]["source"]
    assert qa_rows[0]["meta"]["sources"] == {source: sample_index.get_source(source).content_hash}
    again = synth_qa(sample_index, tmp_path / "again.jsonl", holdout=0.2, holdout_facts=0.2, seed=1)
    assert again.heldout == report.heldout  # a stable split
    assert load_training_data(out).source_hashes  # the training loader reads the lineage back


def test_duplicate_questions_are_counted(sample_index):
    facts = _facts(sample_index, "parts.csv")
    qas, dupes, _, _ = ask_facts(facts + facts, questions=10)
    assert dupes == len(qas) > 0


def test_bad_fractions_are_refused(sample_index, tmp_path):
    with pytest.raises(DataError, match="holdout"):
        synth_qa(sample_index, tmp_path / "x.jsonl", holdout=1.0)
    with pytest.raises(DataError, match="questions"):
        ask_facts(_facts(sample_index, "parts.csv"), questions=0)


def test_raft_examples_use_the_ask_prompt_and_cite_the_oracle(sample_index, embedder, tmp_path):
    out = tmp_path / "raft.jsonl"
    retriever = Retriever(sample_index, embedder, SearchSettings(reranker=""))  # as `tune synth-raft` builds it
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


def test_raft_rows_name_every_document_whose_text_is_in_the_prompt(sample_index, embedder, tmp_path):
    """Finding 8: a RAFT row's distractors carry other documents' text, but only the oracle's document was in
    its meta.sources, so an adapter trained on it named too few documents: its staleness missed their
    changes, and serve let callers use it who may not read them."""
    from dataclasses import replace

    from expertkit.tune.adapters import staleness

    out = tmp_path / "raft.jsonl"
    retriever = Retriever(sample_index, embedder, SearchSettings(reranker=""))  # as `tune synth-raft` builds it
    synth_raft(sample_index, retriever, out, distractors=3, p_oracle=0.5, holdout=0.0, seed=5)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    hashes = {s.path: s.content_hash for s in sample_index.sources()}
    assert len(rows) > 100
    for r in rows:
        passages = sample_index.get_chunks([r["meta"]["chunk_id"], *r["meta"]["distractors"]])
        assert r["meta"]["sources"] == {c.source: hashes[c.source] for c in passages}
    # an adapter trained on one fact's rows, whose distractors came from another document (which fact that is
    # depends on the ranking, not on the checkout's path: every fact was asked)
    fact = min(r["meta"]["chunk_id"] for r in rows if len(r["meta"]["sources"]) > 1)
    one = [r for r in rows if r["meta"]["chunk_id"] == fact]
    oracle_doc = one[0]["meta"]["source"]
    assert {r["meta"]["source"] for r in one} == {oracle_doc}
    out.write_text("".join(json.dumps(r) + "\n" for r in one))
    lineage = {"sources": load_training_data(out).source_hashes}  # what `tune` writes into the adapter
    others = sorted(set(lineage["sources"]) - {oracle_doc})
    assert others and all(lineage["sources"][p] == hashes[p] for p in others)

    class Edited:  # the index after a distractor's document changed
        def get_source(self, path):
            now = sample_index.get_source(path)
            return replace(now, content_hash="edited") if path == others[0] else now

    assert staleness(lineage, sample_index) == []
    assert staleness(lineage, Edited()) == [f"changed: {others[0]}"]


def test_raft_rejects_bad_fractions(sample_index, embedder, tmp_path):
    with pytest.raises(DataError, match="p-oracle"):
        synth_raft(sample_index, Retriever(sample_index, embedder), tmp_path / "x.jsonl", p_oracle=1.5)


def test_the_local_model_writes_questions_about_the_fact(sample_index):
    """Through the llama.cpp runtime (the shipped SmolLM2 here): kept questions end with '?' and share
    words with the fact; the rest are counted as rejected."""
    from expertkit.answer import content_words
    from expertkit.config import GenerateSettings
    from expertkit.models.generator import make_generator

    fact = next(f for f in _facts(sample_index, "nv400-service-manual.pdf") if "impeller nut" in f.statement)
    generator = make_generator(GenerateSettings(model="smollm2-135m-instruct"))
    try:
        kept, rejected = model_questions(fact, generator, 4)
    finally:
        generator.close()
    assert kept and len(kept) <= 4 and len(kept) + rejected >= 1
    for qa in kept:
        assert qa.angle == "model" and qa.question.endswith("?") and qa.answer == fact.statement
        assert content_words(qa.question) & content_words(fact.statement)


def _path(index, name):
    return next(s.path for s in index.sources() if s.path.endswith(name))


def _passages(index, row):
    ids = list(row["meta"]["distractors"])
    ids.insert(row["meta"]["oracle"] - 1, row["meta"]["chunk_id"])
    return index.get_chunks(ids)


def test_greek_documents_are_asked_in_greek():
    """Facts from Greek text become Greek questions: the cloze asks τι and ends with Greek's question mark,
    records are stated and asked in Greek, yes/no answers are Ναι/Όχι, and a RAFT row with its passage left
    out refuses in Greek. Greek codes (ΑΨ-220), decimal commas and Greek units are what they ask for."""
    import random

    from expertkit.language import NOT_FOUND as NOT_FOUND_IN
    from expertkit.language import language_of
    from expertkit.schema import Chunk
    from expertkit.tune.synth import raft_example

    prose = Chunk(
        "Η αντλία νερού ψύξης ΑΨ-220 κοστίζει 412,50 ευρώ και παραδίδεται σε 15 εργάσιμες.", "/d/a.md", 0, 0, 80
    )
    rows = [
        Chunk(f"κωδικός: {code}; περιγραφή: {name}; τιμή €: {price}", "/d/t.csv", i, 0, 60, record_id=code)
        for i, (code, name, price) in enumerate(
            [("ΑΨ-220", "Αντλία νερού", "412,50"), ("ΣΑ-08", "Συμπιεστής", "980,00")]
        )
    ]
    fact = prose_facts(prose)[0]
    assert fact.cloze_values == ["412,50 ευρώ", "15 εργάσιμες", "ΑΨ-220"]  # money first, then amounts, codes
    assert fact.clozes[0] == "Η αντλία νερού ψύξης ΑΨ-220 κοστίζει τι και παραδίδεται σε 15 εργάσιμες;"
    record = next(f for f in record_facts(rows) if f.value == "412,50")
    assert record.statement == "Τιμή € για ΑΨ-220 (Αντλία νερού): 412,50."
    for f in (fact, record):
        asked = template_questions(f, 6, random.Random(0))
        assert len(asked) == 6
        assert all(
            language_of(q.question) == "el" and q.question.rstrip(".").endswith((";", "ΑΨ-220", "Αντλία νερού"))
            for q in asked
        ), [q.question for q in asked]
        yes, no = next(q for q in asked if q.angle == "yes"), next(q for q in asked if q.angle == "no")
        assert (
            yes.question.startswith("Ισχύει ότι ") and yes.answer.startswith("Ναι. ") and no.answer.startswith("Όχι. ")
        )
    qa = template_questions(record, 3, random.Random(0))[-1]
    messages, position = raft_example(qa, [], include_oracle=False, rng=random.Random(0))
    assert position is None and messages[-1]["content"] == NOT_FOUND_IN["el"] == "Δεν βρέθηκε στα έγγραφα."
