"""What fine-tuning is for: after ingest → synth qa → tune with the default training settings, the model
alone (no retrieval) states the documents' facts when asked in words it never saw in training.

The set is one document of benchmarks/data/injection (an invented grower's delivery terms: no model can
know its four facts), asked by eight questions written by hand (four from the set's questions.jsonl, four
here), none generated. The training data is synth's templates (the model-written paraphrases have their
own test): a fifth of the set's corpus trains in about five minutes on 2 cores. The whole set, with the
model writing paraphrases (18/24 on the tuned model alone), is measured by
benchmarks/knowledge_injection.py.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SET = ROOT / "benchmarks" / "data" / "injection"


def cli(*args, timeout=1800):
    result = subprocess.run(
        [sys.executable, "-m", "expertkit.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def correct(answer: str, keys: list[str]) -> bool:
    return any(k.lower() in answer.lower() for k in keys)


# four more paraphrases of the delivery terms' facts, written for this test
MORE_QUESTIONS = [
    {"question": "What is the latest time on a weekday to order for same-afternoon dispatch?", "keys": ["10:30"]},
    {"question": "How large must an order in Orlesby be for the delivery to cost nothing?", "keys": ["180"]},
    {"question": "What deposit is taken on a delivery crate?", "keys": ["6 pounds", "£6"]},
    {"question": "Within how many hours of delivery must damage to plants be reported?", "keys": ["48"]},
]


@pytest.mark.slow
def test_the_tuned_model_alone_states_facts_asked_in_new_words(tmp_path):
    import shutil

    from expertkit.config import GenerateSettings
    from expertkit.models.generator import make_generator
    from expertkit.rag import bare_messages

    ws, corpus, data = tmp_path / "ws", tmp_path / "corpus", tmp_path / "qa.jsonl"
    corpus.mkdir()
    shutil.copy(SET / "corpus" / "delivery-terms.txt", corpus)
    cli("ingest", corpus, "-w", ws)
    synth = cli("synth", "qa", "--out", data, "--model-questions", "0", "-w", ws)
    assert "4 facts →" in synth.stdout
    tune = cli("tune", data, "--name", "grower", "-w", ws)
    print(synth.stdout, tune.stdout)
    run_log = json.loads((ws / "runs" / "grower" / "run.json").read_text())
    print("training seconds:", run_log["train_seconds"], "steps:", run_log["steps"])

    from_set = [json.loads(line) for line in (SET / "questions.jsonl").read_text().splitlines()]
    questions = [q for q in from_set if q["id"] in ("g19", "g20", "g21", "g22")] + MORE_QUESTIONS
    assert len(questions) == 8
    trained = {json.loads(line)["meta"].get("question", "").lower() for line in data.read_text().splitlines()}
    assert not {q["question"].lower() for q in questions} & trained  # never seen in training

    settings = GenerateSettings(model="smollm2-135m-instruct", max_new_tokens=60)
    scores, said = {}, {}
    for route, adapter in (("base", None), ("tuned", ws / "adapters" / "grower")):
        generator = make_generator(settings, adapter=adapter)  # llama.cpp, with --lora for the adapter
        try:
            answers = [generator.generate(bare_messages(q["question"]), 60, 0.0).text for q in questions]
        finally:
            generator.close()
        said[route] = answers
        scores[route] = sum(correct(a, q["keys"]) for a, q in zip(answers, questions, strict=True))
        print(route, scores[route], "/", len(questions), answers)
    assert scores["base"] <= 2  # measured: 1 of 8
    assert scores["tuned"] >= 5  # measured: 7 of 8

    # the command a user runs takes the same path: the same greedy answer (it may run longer: 160 tokens)
    ask = cli("ask", questions[2]["question"], "--adapter", "grower", "--no-rag", "--json", "-w", ws)
    assert json.loads(ask.stdout)["answer"].strip().startswith(said["tuned"][2].strip()[:40])
