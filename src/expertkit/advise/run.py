"""The measured path, end to end: questions from the documents, the two untrained routes, the adapters
trained within the budget, the two trained routes, and the recommendation the numbers make."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from expertkit.advise.advice import Advice
from expertkit.advise.profile import Profile, profile_workspace
from expertkit.advise.questions import write_question_set
from expertkit.advise.recommend import recommend_measured
from expertkit.advise.routes import RouteAsker, RouteResult
from expertkit.advise.training import train_adapters, training_seconds, write_raft_data
from expertkit.private import private_dir

# the trained routes: the adapter each runs, and whether it retrieves
TRAINED_ROUTES = (("fine_tuned", "qa", False), ("rag_fine_tuned", "raft", True))


class MeasureProgress:
    """What ``measure`` reports as it goes; the CLI draws it with Rich. ``update`` is the training progress
    that ``train`` calls, so the same object is passed to it."""

    def stage(self, name: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def update(self, step: int, max_steps: int, loss: float | None, tokens: float | None) -> None: ...


def measure(
    ws,
    embedder,
    budget_minutes: float,
    progress: MeasureProgress | None = None,
    paraphraser=None,
) -> Advice:
    """Build held-out questions from the documents, train within the budget, run the four routes.
    Work files (training data, adapters, runs) go to ``<workspace>/advise/work`` and are replaced each run."""
    from expertkit.retrieve import Retriever

    progress = progress or MeasureProgress()
    started = time.perf_counter()
    s = ws.settings
    base = s.tune.base or s.generate.model
    index = ws.open_index()
    progress.stage("reading the workspace")
    profile = profile_workspace(index, s, base)
    work = _fresh_work_folder(ws.root / "advise" / "work")
    asked = write_question_set(
        index,
        work / "qa.jsonl",
        paraphraser,
        s.advise,
        budget_minutes,
        on_start=lambda n: progress.stage("facts asked", n),
        on_fact=progress.advance,
    )
    method = [
        asked.describe(s.advise),
        f"All routes run {base} (tune.base) through the same runtime; RAG retrieves {s.rag.k} passages.",
    ]
    retriever = Retriever(index, embedder, s.search.model_copy(update={"reranker": ""}))  # RAFT distractors
    raft_path = work / "raft.jsonl"
    write_raft_data(index, retriever, raft_path, s.advise, asked.questions)
    generate = s.generate.model_copy(update={"model": base, "max_new_tokens": min(s.generate.max_new_tokens, 64)})
    asker = RouteAsker(s, generate, retriever, asked.asked, progress)
    results, untrained_seconds = _ask_untrained_routes(asker)
    left = training_seconds(started + budget_minutes * 60, untrained_seconds, budget_minutes)
    data = {"qa": asked.qa_path, "raft": raft_path}
    runs, trained = train_adapters(data, base, work, s.tune, left, progress)
    method += trained
    results |= _ask_trained_routes(asker, runs, profile)
    losses = {f"{name.upper()} adapter": run.losses for name, run in runs.items()}
    index.close()
    recommendation, reasons, changes = recommend_measured(results, profile)
    advice = Advice(recommendation, reasons, profile, "measured", results, changes, losses, method)
    advice.seconds = time.perf_counter() - started
    return advice


def _fresh_work_folder(work: Path) -> Path:
    """An empty folder for this run's work files; training data and adapters made from the documents are the
    owner's only."""
    shutil.rmtree(work, ignore_errors=True)
    private_dir(work)
    return work


def _ask_untrained_routes(asker: RouteAsker) -> tuple[dict[str, RouteResult], float]:
    """Base and RAG, and the seconds they took (what the trained routes will take, about)."""
    t0 = time.perf_counter()
    results = {"base": asker.ask("base", None, False), "rag": asker.ask("rag", None, True)}
    results["rag"].stale_share = 0.0  # re-ingesting a changed file updates what RAG reads
    return results, time.perf_counter() - t0


def _ask_trained_routes(asker: RouteAsker, runs: dict, profile: Profile) -> dict[str, RouteResult]:
    """Fine-tuned and RAG + fine-tuned, each with what its training cost."""
    results = {}
    for key, name, use_rag in TRAINED_ROUTES:
        run = runs[name]
        result = results[key] = asker.ask(key, run.adapter_dir, use_rag)
        result.train_seconds, result.train_steps, result.planned_steps = run.seconds, run.steps, run.planned_steps
        result.peak_rss_mb, result.stale_share = run.peak_rss_mb, profile.changed_per_sync
    return results
