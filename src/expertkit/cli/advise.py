"""Which route suits the data: advise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from expertkit.cli.common import (
    JsonOpt,
    SetOpt,
    WorkspaceOpt,
    app,
    console,
    display_path,
    ensure_model,
    err,
    make_embedder,
    open_from_options,
    synth_generator,
)
from expertkit.errors import ExpertkitError

if TYPE_CHECKING:
    from expertkit.advise import Advice


class _AdviseProgress:
    """Rich progress for ``advise --measure``: one bar per stage, the training bar with loss and steps."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = None

    def stage(self, name: str, total: int | None = None) -> None:
        if self.task is not None:  # the previous stage is done, however far its bar got
            done = self.progress.tasks[self.task].total or 1
            self.progress.update(self.task, completed=done, total=done)
        self.task = self.progress.add_task(name, total=total, info="")

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)

    def update(self, step: int, max_steps: int, loss: float | None, tokens: float | None) -> None:
        if self.task is not None:  # training steps
            info = f"loss {loss:.3f}" if loss is not None else ""
            self.progress.update(self.task, completed=step, total=max_steps, info=info)


@app.command()
def advise(
    measure: Annotated[
        bool, typer.Option("--measure", help="train adapters and measure every route on held-out questions")
    ] = False,
    budget: Annotated[
        float | None, typer.Option(help="--measure: minutes for the whole run [default: advise.budget_minutes]")
    ] = None,
    traceable: Annotated[
        bool | None,
        typer.Option("--traceable/--not-traceable", help="answers must cite sources [default: advise.traceable]"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="folder for report.html [default: <workspace>/advise]")] = None,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Which route suits this data (RAG, fine-tuning, or both), with the figures behind it and a report."""
    from expertkit.advise import build_report, save_json

    ws = open_from_options(workspace, set_, {"advise": {"traceable": traceable, "budget_minutes": budget}})
    base = ws.settings.tune.base or ws.settings.generate.model
    folder = out or ws.root / "advise"
    advice = _measured_advice(ws, base) if measure else _quick_advice(ws, base)
    advice.report = build_report(advice, folder)
    save_json(advice, folder)
    if json_:
        print(json.dumps(advice.to_json()))
        return
    _print_advice(advice)
    if not measure:
        console.print(
            "measure it on your data: [bold]expertkit advise --measure[/bold] "
            f"(about {ws.settings.advise.budget_minutes:g} minutes)"
        )


def _quick_advice(ws, base: str) -> Advice:
    """The workspace's figures against the criteria (the base model's perplexity is the slow part)."""
    from expertkit.advise import profile_workspace, quick_advice

    index = ws.open_index()
    if not index.stats().chunks:
        raise ExpertkitError("the index is empty: ingest your documents first (`expertkit ingest DOCS`)")
    with err.status(f"reading the workspace ({base}'s perplexity on a sample of chunks)…"):
        advice = quick_advice(profile_workspace(index, ws.settings, base))
    index.close()
    return advice


def _measured_advice(ws, base: str) -> Advice:
    """The four routes measured within advise.budget_minutes, with a progress bar per stage."""
    from expertkit.advise import measure

    ensure_model(base)
    paraphraser = synth_generator(ws, ws.settings.advise.model_questions)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as progress:
        try:
            budget = ws.settings.advise.budget_minutes
            return measure(ws, make_embedder(ws), budget, _AdviseProgress(progress), paraphraser)
        finally:
            if paraphraser is not None:
                paraphraser.close()


def _print_advice(advice: Advice) -> None:
    console.print(f"[bold]recommendation ({advice.mode}):[/bold] [green]{advice.recommendation}[/green]")
    for reason in advice.reasons:
        console.print(f"  • {escape(reason)}")
    if advice.routes:
        console.print(_routes_table(advice))
        console.print("[dim]¹ share of questions about things the documents never name answered “not found”[/dim]")
    for change in advice.changes:
        console.print(f"[dim]would change it: {escape(change)}[/dim]")
    console.print(f"report: {display_path(str(advice.report))}")


def _routes_table(advice: Advice) -> Table:
    table = Table(
        "route",
        "accuracy",
        "95% interval",
        "n",
        "unseen facts",
        "not found¹",
        "valid citations",
        "latency p50",
        "training",
    )
    for key, result in advice.routes.items():
        j = result.to_json()
        table.add_row(
            key,
            f"{j['accuracy']:.0%}",
            f"{j['ci95'][0]:.0%}–{j['ci95'][1]:.0%}",
            str(j["n"]),
            "–" if j["unseen_facts"] is None else f"{j['unseen_facts']:.0%} of {j['unseen_n']}",
            "–" if j["not_found"] is None else f"{j['not_found']:.0%}",
            "–" if j["citation_validity"] is None else f"{j['citation_validity']:.0%}",
            f"{j['latency_s']:.2f} s" if j["latency_s"] is not None else "–",
            "–" if j["train_seconds"] is None else f"{j['train_seconds']:.0f} s",
        )
    return table
