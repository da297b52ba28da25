"""What the command groups share: the Typer apps, the consoles, the option types and the helpers."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TextColumn,
)
from rich.text import Text

from expertkit.config import overrides_from_pairs
from expertkit.errors import ExpertkitError
from expertkit.workspace import AUTO_EMBEDDER, MULTILINGUAL_EMBEDDER, Workspace, open_workspace

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    help="Make a small language model an expert in your domain: RAG, LoRA/QLoRA, and measured advice.",
)
eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval and answer quality.")
app.add_typer(eval_app, name="eval")
synth_app = typer.Typer(no_args_is_help=True, help="Make training data from the ingested documents.")
app.add_typer(synth_app, name="synth")
runtime_app = typer.Typer(
    no_args_is_help=True, help="A warm llama.cpp server for this workspace, reused by ask, chat and serve."
)
app.add_typer(runtime_app, name="runtime")
db_app = typer.Typer(
    no_args_is_help=True,
    help="A local PostgreSQL + pgvector server for this workspace (development; production uses index.dsn).",
)
app.add_typer(db_app, name="db")
index_app = typer.Typer(no_args_is_help=True, help="Move the index between backends.")
app.add_typer(index_app, name="index")
keys_app = typer.Typer(
    no_args_is_help=True, help="API keys for `expertkit serve`: each key reads the access groups it names."
)
app.add_typer(keys_app, name="keys")

# output that is not a terminal (a file, a pipe, another program) is not wrapped at 80 columns: a DSN or a path
# stays on its line
console = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="workspace folder [default: $EXPERTKIT_WORKSPACE or the nearest folder upwards with expertkit.toml]",
        show_default=False,
    ),
]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a setting, e.g. --set search.k=20")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="write report.html and its PNG plots into this folder")
]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", "-t", help="tag (repeatable)")]
AsGroupOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--as-group",
        help="search as a member of this access group (repeatable): other groups' documents are never read; "
        "default: every document (the workspace's owner)",
    ),
]


def open_from_options(
    workspace: Path | None, sets: list[str] | None, extra: dict | None = None, create: bool = False
) -> Workspace:
    overrides = overrides_from_pairs(sets or [])
    for section, values in (extra or {}).items():
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return open_workspace(workspace, overrides, create=create)


def display_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("../..") else path
    except ValueError:
        return path


def make_ingestor(ws: Workspace, index, embedder=None, paths: Sequence[Path] = ()):
    from expertkit.ingest.sync import AccessPolicy, Ingestor

    s = ws.settings.ingest
    access = AccessPolicy(ws.settings.access)
    embedder = embedder or make_embedder(ws, index, paths)
    return Ingestor(index, embedder, s.chunk_tokens, s.chunk_overlap, s.max_file_mb, access, s.context_headers)


def caller_groups(groups: list[str] | None) -> tuple[str, ...] | None:
    """The caller's access groups from --as-group; None (no flag) is the workspace's owner, who sees all."""
    return tuple(sorted(set(groups))) if groups else None


def make_embedder(ws: Workspace, index=None, paths: Sequence[Path] = ()):
    """The workspace's embedder (``Workspace.embedder``); where ``embed.model = "auto"`` chose one for the
    documents of a first ingest, a line says which and why."""
    embedder = ws.embedder(index, paths)
    if ws.settings.embed.model == AUTO_EMBEDDER and paths and (index is None or index.bound_embedder() is None):
        multilingual = embedder.name == MULTILINGUAL_EMBEDDER
        why = "a document is not in English" if multilingual else "the documents are in English"
        err.print(f"[dim]embedder: {embedder.name} ({why}; embed.model = auto)[/dim]")
    return embedder


class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        chunks = task.fields.get("chunks", 0)
        elapsed = task.elapsed or 0
        rate = chunks / elapsed if elapsed > 0 else 0.0
        return Text(f"{chunks} chunks · {rate:,.0f} chunks/s", style="cyan")


class RichSyncProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = None

    def start(self, files: int) -> None:
        self.task = self.progress.add_task("ingest", total=files, chunks=0)

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        task = self.progress.tasks[self.task]
        self.progress.update(self.task, advance=files, chunks=task.fields["chunks"] + chunks)


def ensure_model(name: str) -> None:
    """Join a split registry model once, with a progress bar (about 1 GB: seconds, not minutes)."""
    from expertkit.models.registry import REGISTRY

    spec = REGISTRY.get(name.lower())
    if spec is None or spec.split is None or spec.locate() is not None or not spec.installed():
        return
    with Progress(
        TextColumn(f"joining {spec.name}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), console=err
    ) as progress:
        task = progress.add_task("join", total=spec.split.size)
        spec.ensure(lambda done, total: progress.update(task, completed=done))


def make_rag(ws: Workspace, adapter: str | None = None):
    from expertkit.models.backend import choose
    from expertkit.models.generator import make_generator

    index = ws.open_index()
    adapter_path = resolve_adapter(ws, adapter) if adapter else None
    if adapter_path is not None:
        from expertkit.tune.adapters import read_lineage

        warn_stale(adapter, read_lineage(adapter_path), index)
    # a full fine-tune runs as the model, an adapter on the base it was trained on
    choice = choose(ws.settings.generate, adapter_path)
    ensure_model(choice.settings.model)
    with err.status(f"loading {choice.settings.model}…"):
        generator = make_generator(choice.settings, adapter=choice.adapter, runtime_dir=ws.data_dir)
    return ws.rag(generator, index)


def resolve_adapter(ws: Workspace, name: str) -> Path:
    path = Path(name) if Path(name).exists() else ws.root / "adapters" / name
    if not (path / "adapter_config.json").exists() and not (path / "config.json").exists():
        raise ExpertkitError(
            f"no adapter {name!r} in {ws.root / 'adapters'}: train one with `expertkit tune`, "
            "or list them with `expertkit adapters`"
        )
    return path


def warn_stale(name: str, lineage: dict, index) -> None:
    """One warning per document the adapter learned from that changed or went away since training."""
    from expertkit.tune.adapters import staleness

    for line in staleness(lineage, index):
        err.print(
            f"[yellow]warning: adapter {name} is stale, a document it was trained on {line}; "
            "retrain it (expertkit tune) or rely on RAG for that content[/yellow]"
        )


def synth_generator(ws: Workspace, model_questions: int):
    """The local model that writes questions (through llama.cpp), or None for templates only."""
    if model_questions <= 0:
        return None
    from expertkit.models.generator import make_generator

    ensure_model(ws.settings.generate.model)
    with err.status(f"loading {ws.settings.generate.model}…"):
        return make_generator(ws.settings.generate, runtime_dir=ws.data_dir)
