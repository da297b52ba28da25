"""The measured path's adapters: a QA adapter and a RAFT adapter, trained within what is left of the budget."""

from __future__ import annotations

import time
from pathlib import Path

from expertkit.advise.questions import read_jsonl
from expertkit.errors import ExpertkitError

# the share of the training time each adapter gets, in the order they are trained
ADAPTER_SHARES = {"qa": 0.6, "raft": 0.4}
LOAD_SECONDS = 60  # loading the base model for each trained route
LEAST_TRAINING_SECONDS = 120


def write_raft_data(index, retriever, path: Path, advise_settings, asked: list[dict]) -> None:
    """RAFT training data on a CPU budget: the oracle with one distractor (each passage costs training time),
    two questions per fact, none of them a question the routes are asked."""
    from expertkit.tune.synth import norm_question, synth_raft, write_jsonl

    a = advise_settings
    synth_raft(
        index,
        retriever,
        path,
        distractors=1,
        generator=None,
        questions=2,
        model_questions_=0,
        holdout=0.0,
        holdout_facts=a.holdout_facts,
        seed=a.seed,
        max_facts=a.max_facts,
    )
    asked_q = {norm_question(q["question"]) for q in asked}
    write_jsonl(path, [r for r in read_jsonl(path) if norm_question(r["meta"]["question"]) not in asked_q])


def training_seconds(deadline: float, untrained_seconds: float, budget_minutes: float) -> float:
    """What is left of the budget to train in, once the two trained routes are paid for (about as long as the
    two untrained ones took); refuses a budget that leaves too little."""
    left = deadline - time.perf_counter() - 1.2 * untrained_seconds - LOAD_SECONDS
    if left < LEAST_TRAINING_SECONDS:
        raise ExpertkitError(
            f"--budget {budget_minutes:g} minutes leaves {max(left, 0) / 60:.1f} minutes to train: raise --budget, "
            "or lower advise.questions / advise.max_facts"
        )
    return left


def train_adapters(data: dict[str, Path], base: str, work: Path, tune_settings, seconds: float, progress):
    """Train an adapter on each training data file (keys of ADAPTER_SHARES) in its share of ``seconds``;
    returns the runs by name and a method line for each."""
    from expertkit.tune.data import load_training_data
    from expertkit.tune.train import train

    runs, method = {}, []
    for name, share in ADAPTER_SHARES.items():
        minutes = share * seconds / 60
        progress.stage(f"training the {name.upper()} adapter (≤ {minutes:.1f} min)")
        settings = tune_settings.model_copy(
            update={"max_minutes": minutes, "save_steps": 100_000, "max_length": min(tune_settings.max_length, 768)}
        )
        examples = load_training_data(data[name])
        run = runs[name] = train(examples, base, work, f"advise-{name}", settings, progress=progress)
        stopped = f", stopped by the budget at step {run.steps} of {run.planned_steps}" if run.out_of_time else ""
        size = f"{len(examples.examples)} examples, {run.steps} steps in {run.seconds:.0f} s"
        method.append(f"{name.upper()} adapter: {size}{stopped}")
    return runs, method
