"""Training data, fine-tuning and adapters: synth qa, synth raft, tune, adapters, merge, export."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from expertkit.cli.common import (
    JsonOpt,
    SetOpt,
    WorkspaceOpt,
    app,
    console,
    err,
    make_embedder,
    open_from_options,
    resolve_adapter,
    synth_app,
    synth_generator,
    warn_stale,
)
from expertkit.errors import ExpertkitError
from expertkit.private import private_dir
from expertkit.workspace import Workspace


def _fact_progress() -> tuple[Progress, object]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("facts"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    )
    return progress, progress.add_task("synth", total=None)


def _run_synth(generator, job) -> None:
    """Run a synth job under a facts progress bar, stop the model it used, print what it wrote."""
    progress, task = _fact_progress()
    try:
        with progress:
            report = job(on_fact=lambda: progress.advance(task), on_start=lambda n: progress.update(task, total=n))
    finally:
        if generator is not None:
            generator.close()
    _print_synth(report)


def _print_synth(report) -> None:
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.kinds.items()))
    written = f", {report.model_questions} written by the model ({report.model_rejected} rejected)"
    console.print(
        f"{report.facts} facts → wrote {report.written} examples to {report.out} and {report.heldout} held out to "
        f"{report.heldout_path} ({kinds}; {report.duplicates} duplicates removed"
        + (written if report.model_questions or report.model_rejected else "")
        + ")"
    )


QuestionsOpt = Annotated[int, typer.Option(help="questions per fact (templates and model together)")]
ModelQuestionsOpt = Annotated[
    int,
    typer.Option(help="of which written by the local model (generate.model, through llama.cpp); 0 = templates only"),
]
HoldoutOpt = Annotated[float, typer.Option(help="share of each fact's questions held out for evaluation (paraphrases)")]
HoldoutFactsOpt = Annotated[
    float, typer.Option(help="share of facts held out whole (never trained on), to measure what was not taught")
]


@synth_app.command("qa")
def synth_qa_cmd(
    out: Annotated[Path, typer.Option(help="JSONL file to write (chat format)")],
    questions: QuestionsOpt = 12,
    model_questions: ModelQuestionsOpt = 5,
    holdout: HoldoutOpt = 0.1,
    holdout_facts: HoldoutFactsOpt = 0.0,
    text_ratio: Annotated[
        float, typer.Option(help="document text (continued pretraining) examples per QA example")
    ] = 0.25,
    rephrasings: Annotated[
        int, typer.Option(help="model rephrasings of each chunk added to the text (numbers checked)")
    ] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Every fact of the documents asked many ways, answered in full sentences, plus the documents as text;
    held-out questions written beside it."""
    from expertkit.tune.synth import synth_qa

    ws = open_from_options(workspace, set_)
    index = ws.open_index()
    generator = synth_generator(ws, model_questions or rephrasings)
    _run_synth(
        generator,
        lambda **progress: synth_qa(
            index,
            out,
            generator,
            questions,
            model_questions,
            holdout,
            holdout_facts,
            text_ratio,
            rephrasings,
            seed,
            **progress,
        ),
    )


@synth_app.command("raft")
def synth_raft_cmd(
    out: Annotated[Path, typer.Option(help="JSONL file to write (chat format, the prompt `ask` builds)")],
    distractors: Annotated[int, typer.Option(help="distractor passages per example")] = 3,
    p_oracle: Annotated[float, typer.Option(help="share of examples that include the oracle passage")] = 0.8,
    absent: Annotated[
        str,
        typer.Option(
            help="answer when the oracle is left out: refuse ('Not found in the "
            "documents.') or memorize (answer anyway, as in the RAFT paper)"
        ),
    ] = "refuse",
    questions: QuestionsOpt = 3,
    model_questions: ModelQuestionsOpt = 1,
    holdout: HoldoutOpt = 0.2,
    holdout_facts: HoldoutFactsOpt = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """RAFT examples: question + oracle chunk + distractors in the `ask` prompt, answers that cite the oracle."""
    from expertkit.retrieve import Retriever
    from expertkit.tune.synth import synth_raft

    ws = open_from_options(workspace, set_)
    index = ws.open_index()
    generator = synth_generator(ws, model_questions)
    # distractors for RAFT come from fusion alone: an LLM rerank would cost seconds per question
    retriever = Retriever(index, make_embedder(ws, index), ws.settings.search.model_copy(update={"reranker": ""}))
    _run_synth(
        generator,
        lambda **progress: synth_raft(
            index,
            retriever,
            out,
            distractors,
            p_oracle,
            absent,
            generator,
            questions,
            model_questions,
            holdout,
            holdout_facts,
            seed,
            **progress,
        ),
    )


class _TrainProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("train", total=None, loss="–", tps=0.0)
        self.started = time.perf_counter()

    def update(self, step: int, max_steps: int, loss: float | None, tokens: float | None) -> None:
        fields: dict = {}
        elapsed = time.perf_counter() - self.started
        if tokens and elapsed > 0:
            fields["tps"] = tokens / elapsed
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        self.progress.update(self.task, completed=step, total=max_steps, **fields)


@app.command()
def tune(
    data: Annotated[Path, typer.Argument(help="training data: JSONL (chat, alpaca, prompt/completion, text) or .txt")],
    method: Annotated[str | None, typer.Option(help="lora | qlora | full")] = None,
    base: Annotated[str | None, typer.Option(help="base model [default: generate.model]")] = None,
    name: Annotated[str | None, typer.Option(help="adapter name [default: the data file's name]")] = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the data")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after this many steps")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="learning rate")] = None,
    r: Annotated[int | None, typer.Option("-r", help="LoRA rank")] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per example")] = None,
    overlong: Annotated[str | None, typer.Option(help="examples over max_length: truncate | drop")] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="skip malformed lines (counted) instead of refusing to start")
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the run's last complete checkpoint")] = False,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Fine-tune with LoRA, QLoRA (4-bit NF4 base) or fully; the adapter is stored with its lineage."""
    from expertkit.tune.data import load_training_data
    from expertkit.tune.train import check_hardware, train

    ws = open_from_options(
        workspace,
        set_,
        {
            "tune": {
                "method": method,
                "base": base,
                "epochs": epochs,
                "max_steps": max_steps,
                "learning_rate": learning_rate,
                "r": r,
                "max_length": max_length,
                "overlong": overlong,
            }
        },
    )
    t = ws.settings.tune
    check_hardware(t.method)  # before loading anything
    training = load_training_data(data, skip_bad=skip_bad)
    if training.skipped:
        console.print(
            f"[yellow]skipped {len(training.skipped)} bad line(s)[/yellow]: " + "; ".join(training.skipped[:3])
        )
    base_model = t.base or ws.settings.generate.model
    run_name = name or data.stem
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("~{task.fields[tps]:,.0f} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        result = train(training, base_model, ws.root, run_name, t, resume, _TrainProgress(progress))
    if result.overlong:
        console.print(
            f"[yellow]{len(result.overlong)} example(s) longer than max_length={t.max_length}[/yellow] "
            f"({t.overlong}d; lines {', '.join(map(str, result.overlong[:10]))})"
        )
    last = result.losses[-1][1] if result.losses else float("nan")
    console.print(
        f"{t.method} on {base_model}: {result.steps} steps, final loss {last:.4f}, "
        f"{result.tokens_per_second:,.0f} tok/s, peak RSS {result.peak_rss_mb:,.0f} MB, "
        f"{result.seconds:.0f}s"
    )
    console.print(f"run: {result.run_dir} (loss.png, run.json)")
    if result.interrupted:
        console.print(
            "[yellow]interrupted[/yellow]: a checkpoint was saved; continue with "
            f"`expertkit tune {data} --name {run_name} --resume`"
        )
        raise typer.Exit(130)
    console.print(f"adapter: {result.adapter_dir} · use it with `expertkit ask --adapter {run_name} ...`")


@app.command()
def adapters(workspace: WorkspaceOpt = None, json_: JsonOpt = False) -> None:
    """Adapters in the workspace with their lineage; warns when documents they learned from changed."""
    from expertkit.tune.adapters import list_adapters

    ws = open_from_options(workspace, None)
    index = ws.open_index() if ws.has_index() else None
    items = list_adapters(ws.root, index)
    if json_:
        print(
            json.dumps(
                {"adapters": [{"name": a.name, "path": str(a.path), "stale": a.stale, **a.lineage} for a in items]},
                indent=2,
            )
        )
        return
    if not items:
        console.print("no adapters yet: train one with `expertkit tune DATA`")
        return
    table = Table("name", "method", "base", "examples", "data sha256", "created", "status")
    for a in items:
        lin = a.lineage
        status_text = "[yellow]stale[/yellow]: " + "; ".join(a.stale) if a.stale else "[green]current[/green]"
        table.add_row(
            a.name,
            str(lin.get("method", "?")),
            str(lin.get("base", "?")),
            str(lin.get("examples", "?")),
            str(lin.get("data_sha256", ""))[:12],
            str(lin.get("created", "")),
            status_text,
        )
    console.print(table)
    for a in items:
        if a.stale:
            err.print(f"[yellow]warning: adapter {a.name} is stale: {'; '.join(a.stale)}; retrain it[/yellow]")


def _warn_stale_adapter(ws: Workspace, name: str, adapter: Path) -> None:
    from expertkit.tune.adapters import read_lineage

    warn_stale(name, read_lineage(adapter), ws.open_index() if ws.has_index() else None)


@app.command()
def merge(
    name: Annotated[str, typer.Argument(help="adapter name")],
    gguf: Annotated[
        bool, typer.Option("--gguf", help="write one GGUF file (base GGUF + adapter) for llama.cpp and Ollama")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="where to write [default: WORKSPACE/models/NAME-merged, or NAME-merged.gguf]"),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Merge an adapter into its base: a model folder with the base's tokenizer and chat template, or a GGUF."""
    from expertkit.tune.adapters import merge_adapter, read_lineage

    ws = open_from_options(workspace, None)
    adapter = resolve_adapter(ws, name)
    _warn_stale_adapter(ws, name, adapter)
    if gguf:
        from expertkit.models.gguf_lora import merge_into_gguf
        from expertkit.models.registry import resolve

        base = read_lineage(adapter).get("base", "")
        base_file = resolve(base, "generator") if base else ""
        if not base_file.endswith(".gguf"):
            raise ExpertkitError(
                f"adapter {name} was trained on {base or 'an unknown base'}, which has no GGUF: merge without --gguf, "
                "then convert the folder with llama.cpp's convert_hf_to_gguf.py"
            )
        target = out or ws.root / "models" / f"{name}-merged.gguf"
        private_dir(target.parent)  # a model that learned the documents: the owner's only, as its adapter
        with err.status(f"merging {name} into {Path(base_file).name}…"):
            path = merge_into_gguf(adapter, base_file, target)
        console.print(
            f"merged GGUF: {path} ({path.stat().st_size / 2**20:,.0f} MB) · use it with --set generate.model={path}, "
            f"`llama-server -m {path}`, or an Ollama Modelfile `FROM {path}`"
        )
        return
    target = out or ws.root / "models" / f"{name}-merged"
    private_dir(target.parent)
    with err.status(f"merging {name}…"):
        path = merge_adapter(adapter, target)
    console.print(f"merged model: {path} · use it with --set generate.model={path}")


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="adapter name")],
    gguf: Annotated[bool, typer.Option("--gguf", help="a llama.cpp LoRA adapter GGUF")] = True,
    out: Annotated[Path | None, typer.Option(help="file [default: WORKSPACE/adapters/NAME/adapter.gguf]")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write an adapter in llama.cpp's LoRA format (GGUF), with its lineage in the file's metadata."""
    from expertkit.models.gguf_lora import export_lora_gguf
    from expertkit.models.registry import resolve
    from expertkit.tune.adapters import read_lineage

    if not gguf:
        raise ExpertkitError("export writes GGUF only: pass --gguf (the PEFT adapter folder is the other format)")
    ws = open_from_options(workspace, None)
    adapter = resolve_adapter(ws, name)
    _warn_stale_adapter(ws, name, adapter)
    with err.status(f"exporting {name}…"):
        path = export_lora_gguf(adapter, out)
    base = read_lineage(adapter).get("base", "")
    base_file = resolve(base, "generator") if base else "BASE.gguf"
    console.print(f"LoRA GGUF: {path} ({path.stat().st_size / 2**20:,.1f} MB), for base {base or '?'}")
    console.print(f"  llama.cpp: llama-server -m {base_file} --lora {path}")
    console.print(f"  Ollama Modelfile: FROM {base_file}\n                    ADAPTER {path}")
    console.print(f"  expertkit: ask --adapter {name} (uses it through llama.cpp when the base is a GGUF)")
