"""What fine-tuning is for: after ingest → synth qa → tune with the defaults, the model alone (no
retrieval) states the documents' facts when asked in words it never saw in training.

The set is benchmarks/data/injection: an invented grower (no model can know its facts), 3 small
documents, 24 questions written by hand (not generated) that paraphrase its facts. Paraphrases for
training come from the test model (SmolLM2 through llama.cpp), a weaker writer than the default
Qwen 1.5B, so the bar here is lower than the README's measured figure.
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


@pytest.mark.slow
def test_the_tuned_model_alone_states_facts_asked_in_new_words(tmp_path):
    from expertkit.config import GenerateSettings
    from expertkit.models.generator import make_generator
    from expertkit.rag import bare_messages

    ws = tmp_path / "ws"
    data = tmp_path / "qa.jsonl"
    cli("ingest", SET / "corpus", "-w", ws)
    synth = cli("synth", "qa", "--out", data, "-w", ws)
    assert "facts →" in synth.stdout
    tune = cli("tune", data, "--name", "grower", "-w", ws)
    print(synth.stdout, tune.stdout)
    run_log = json.loads((ws / "runs" / "grower" / "run.json").read_text())
    print("training seconds:", run_log["train_seconds"], "steps:", run_log["steps"])

    questions = [json.loads(line) for line in (SET / "questions.jsonl").read_text().splitlines()]
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
    assert scores["base"] <= 0.1 * len(questions)
    assert scores["tuned"] >= 0.5 * len(questions)  # measured here: 15/24 (templates only; README: 18/24)

    # the command a user runs takes the same path: the same greedy answer (it may run longer: 160 tokens)
    ask = cli("ask", questions[6]["question"], "--adapter", "grower", "--no-rag", "--json", "-w", ws)
    assert json.loads(ask.stdout)["answer"].strip().startswith(said["tuned"][6].strip()[:40])
