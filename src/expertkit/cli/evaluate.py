"""Measure retrieval and answer quality: eval retrieval, eval answers."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer
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
    RateColumn,
    ReportOpt,
    RichSyncProgress,
    SetOpt,
    console,
    display_path,
    err,
    eval_app,
    make_embedder,
    make_ingestor,
    make_rag,
    open_from_options,
)
from expertkit.errors import ExpertkitError


def _beir_workspace(workspace: Path | None, set_: list[str] | None, corpus: Path, progress=None):
    """The workspace for an evaluation (a scratch one unless given), with ``corpus`` ingested incrementally.

    Returns the workspace, its open index, the embedder (loaded once, for search too) and the scratch
    folder to clean up (or None)."""
    scratch = None
    if workspace is None:
        scratch = tempfile.TemporaryDirectory(prefix="expertkit-eval-")
        workspace = Path(scratch.name)
    ws = open_from_options(workspace, set_, create=True)
    index = ws.open_index(create=True)
    embedder = make_embedder(ws, index, [corpus])
    report = make_ingestor(ws, index, embedder).sync([corpus], progress=progress)
    if not report.ok:
        raise ExpertkitError(
            f"could not ingest {corpus}: " + "; ".join(r.reason or ", ".join(r.warnings) for r in report.failed)
        )
    return ws, index, embedder, scratch


@eval_app.command("retrieval")
def eval_retrieval(
    beir: Annotated[Path, typer.Option(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")],
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    mode: Annotated[str, typer.Option(help="hybrid | bm25 | dense")] = "hybrid",
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", "-w", help="reuse this workspace (ingested incrementally) instead of a scratch one"
        ),
    ] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    report: ReportOpt = None,
) -> None:
    """nDCG@10, recall@10, recall@100 and MRR@10 of the retriever on a BEIR-format set."""
    from expertkit.evaluate.beir import load_beir
    from expertkit.evaluate.retrieval import evaluate_retrieval
    from expertkit.retrieve import MODES

    if mode not in MODES:
        raise ExpertkitError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    data = load_beir(beir, split)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        ws, index, embedder, scratch = _beir_workspace(workspace, set_, data.corpus, RichSyncProgress(progress))
        task = progress.add_task(f"queries ({mode})", total=len(data.queries), chunks=0)
        scores = evaluate_retrieval(ws.retriever(index, embedder), data, mode, on_query=lambda: progress.advance(task))
    index.close()
    if scratch:
        scratch.cleanup()
    out = scores.to_json()
    if report:
        from expertkit.evaluate.report import retrieval_report

        out["report"] = str(retrieval_report(scores, beir.name, report))
    if json_:
        print(json.dumps(out))
        return
    table = Table("set", "mode", "queries", "nDCG@10", "recall@10", "recall@100", "MRR@10")
    table.add_row(
        beir.name,
        mode,
        str(scores.queries),
        f"{scores.ndcg10:.4f}",
        f"{scores.recall10:.4f}",
        f"{scores.recall100:.4f}",
        f"{scores.mrr10:.4f}",
    )
    console.print(table)
    if report:
        console.print(f"report: {display_path(out['report'])}")


@eval_app.command("answers")
def eval_answers(
    beir: Annotated[Path, typer.Option(help="BEIR folder with answers.jsonl (gold answers)")],
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    no_rag: Annotated[bool, typer.Option("--no-rag", help="the bare model, no retrieval (the baseline)")] = False,
    adapter: Annotated[str | None, typer.Option(help="a tuned adapter's name")] = None,
    limit: Annotated[int | None, typer.Option(help="a seeded sample of this many questions")] = 50,
    seed: Annotated[int, typer.Option(help="sample seed")] = 0,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", "-w", help="reuse this workspace (ingested incrementally) instead of a scratch one"
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write every question's answer and scores here (JSONL)")] = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
    report: ReportOpt = None,
) -> None:
    """ROUGE-L, token F1 and citation accuracy of answers against gold answers."""
    from expertkit.evaluate.answers import evaluate_answers, sample_questions
    from expertkit.evaluate.beir import load_beir

    data = load_beir(beir, split)
    if not data.answers:
        raise ExpertkitError(f"{beir} has no answers.jsonl: answer evaluation needs gold answers")
    ws, index, _, scratch = _beir_workspace(workspace, set_, data.corpus)
    index.close()
    rag = make_rag(ws, adapter)
    ids = sample_questions(data, limit, seed)
    route = ("base" if no_rag else "rag") + ("+ft" if adapter else "")
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as progress:
        task = progress.add_task(f"answers ({route})", total=len(ids))
        scores = evaluate_answers(
            rag, data, ids, use_rag=not no_rag, route=route, on_item=lambda: progress.advance(task)
        )
    if out:
        out.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in scores.items), encoding="utf-8")
    if scratch:
        scratch.cleanup()
    summary = scores.to_json()
    if report:
        from expertkit.evaluate.report import answers_report

        summary["report"] = str(answers_report(scores, beir.name, report))
    if json_:
        print(json.dumps(summary))
        return
    table = Table(
        "route",
        "questions",
        "ROUGE-L",
        "token F1",
        "found",
        "cited",
        "cited by model",
        "citations in gold",
        "valid citations",
        "p50 latency",
        "tok/s",
    )
    pct = lambda v: "–" if v is None else f"{v:.0%}"  # noqa: E731
    table.add_row(
        route,
        str(scores.questions),
        f"{scores.rouge_l:.4f}",
        f"{scores.token_f1:.4f}",
        pct(scores.found),
        pct(scores.cited),
        pct(scores.cited_by_model),
        pct(scores.citations_in_gold),
        pct(scores.citations_valid),
        f"{scores.latency_ms_p50 / 1000:.1f} s",
        f"{scores.tokens_per_s:.1f}",
    )
    console.print(table)
    if report:
        console.print(f"report: {display_path(summary['report'])}")
