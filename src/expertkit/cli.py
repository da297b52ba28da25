"""The `expertkit` command: a thin Typer app that parses, calls the library and renders with Rich."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from expertkit.config import overrides_from_pairs
from expertkit.errors import ExpertkitError
from expertkit.workspace import Workspace, init_workspace, open_workspace

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

console = Console()
err = Console(stderr=True)

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


def _open(workspace: Path | None, sets: list[str] | None, extra: dict | None = None, create: bool = False) -> Workspace:
    overrides = overrides_from_pairs(sets or [])
    for section, values in (extra or {}).items():
        overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return open_workspace(workspace, overrides, create=create)


def _display_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("../..") else path
    except ValueError:
        return path


def _ingestor(ws: Workspace, index, embedder=None):
    from expertkit.ingest.sync import AccessPolicy, Ingestor

    s = ws.settings.ingest
    access = AccessPolicy(ws.settings.access)
    return Ingestor(index, embedder or _embedder(ws), s.chunk_tokens, s.chunk_overlap, s.max_file_mb, access)


def _beir_workspace(workspace: Path | None, set_: list[str] | None, corpus: Path, progress=None):
    """The workspace for an evaluation (a scratch one unless given), with ``corpus`` ingested incrementally.

    Returns the workspace, its open index, the embedder (loaded once, for search too) and the scratch
    folder to clean up (or None)."""
    scratch = None
    if workspace is None:
        scratch = tempfile.TemporaryDirectory(prefix="expertkit-eval-")
        workspace = Path(scratch.name)
    ws = _open(workspace, set_, create=True)
    index = ws.open_index(create=True)
    embedder = _embedder(ws)
    report = _ingestor(ws, index, embedder).sync([corpus], progress=progress)
    if not report.ok:
        raise ExpertkitError(
            f"could not ingest {corpus}: " + "; ".join(r.reason or ", ".join(r.warnings) for r in report.failed)
        )
    return ws, index, embedder, scratch


def _caller_groups(groups: list[str] | None) -> tuple[str, ...] | None:
    """The caller's access groups from --as-group; None (no flag) is the workspace's owner, who sees all."""
    return tuple(sorted(set(groups))) if groups else None


def _embedder(ws: Workspace):
    return ws.embedder()


# -- init ---------------------------------------------------------------------------------------------


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="folder to make a workspace")] = Path(".")) -> None:
    """Create a workspace: a folder with a commented expertkit.toml."""
    existed = (directory / "expertkit.toml").exists()
    config = init_workspace(directory)
    console.print(f"{'Kept existing' if existed else 'Wrote'} {config}")


# -- ingest -------------------------------------------------------------------------------------------


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        chunks = task.fields.get("chunks", 0)
        elapsed = task.elapsed or 0
        rate = chunks / elapsed if elapsed > 0 else 0.0
        return Text(f"{chunks} chunks · {rate:,.0f} chunks/s", style="cyan")


class _RichSyncProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = None

    def start(self, files: int) -> None:
        self.task = self.progress.add_task("ingest", total=files, chunks=0)

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        task = self.progress.tasks[self.task]
        self.progress.update(self.task, advance=files, chunks=task.fields["chunks"] + chunks)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or folders (recursively)")],
    tag: TagOpt = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            "-g",
            help="access group (repeatable), kept by later syncs; default: access.rules in expertkit.toml, "
            "else access.default_groups",
        ),
    ] = None,
    prune: Annotated[bool, typer.Option(help="drop indexed files under PATHS that no longer exist")] = False,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Ingest files incrementally: unchanged files are skipped, changed files replaced, one transaction each."""

    ws = _open(workspace, set_, create=workspace is not None and not (workspace / "expertkit.toml").exists())
    index = ws.open_index(create=True)
    ingestor = _ingestor(ws, index)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        _RateColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        report = ingestor.sync(
            paths, tags=tag or [], prune=prune, progress=_RichSyncProgress(progress), groups=group or []
        )
    index.close()
    counts = {s: report.count(s) for s in ("added", "updated", "retagged", "unchanged", "removed", "skipped", "failed")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    work = report.seconds - report.load_seconds
    rate = report.embedded / work if work > 0 else 0
    console.print(
        f"{summary or 'nothing to do'} · {report.embedded} chunks embedded, {report.reused} reused"
        f" · {report.seconds:.1f}s ({rate:,.0f} chunks/s after {report.load_seconds:.1f}s model load)"
    )
    for r in report.results:
        if r.status == "skipped":
            console.print(f"[dim]skipped {escape(_display_path(r.path))}: {r.reason}[/dim]")
    for r in report.failed:
        if r.status == "failed":
            console.print(f"[red]failed[/red] {escape(_display_path(r.path))}: {escape(r.reason)}")
        for w in r.warnings:
            console.print(f"[yellow]warning[/yellow] {escape(_display_path(r.path))}: {escape(w)}")
    if report.interrupted:
        console.print(
            "[yellow]interrupted[/yellow]: files committed so far are complete; run the same command to finish"
        )
        raise typer.Exit(130)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def remove(
    paths: Annotated[list[Path], typer.Argument(help="files or folders to drop from the index")],
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Drop the chunks of files (or of every file under folders) from the index."""
    from expertkit.ingest.sync import remove as remove_sources

    ws = _open(workspace, set_)
    index = ws.open_index()
    results = remove_sources(index, paths)
    index.close()
    for r in results:
        console.print(f"removed {escape(_display_path(r.path))} ({r.chunks} chunks)")
    if not results:
        console.print("nothing indexed under " + ", ".join(str(p) for p in paths))


@app.command()
def status(workspace: WorkspaceOpt = None, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Documents, chunks, tags, access groups, index size, and when each source was last synced."""
    ws = _open(workspace, set_)
    index = ws.open_index()
    st, sources = index.stats(), index.sources()
    index.close()
    if json_:
        print(
            json.dumps(
                {
                    "workspace": str(ws.root),
                    "documents": st.documents,
                    "chunks": st.chunks,
                    "tags": st.tags,
                    "groups": st.groups,
                    "file_types": st.file_types,
                    "index_bytes": st.size_bytes,
                    "embedder": st.embedder,
                    "sources": [
                        {
                            "path": s.path,
                            "chunks": s.n_chunks,
                            "tags": list(s.tags),
                            "groups": list(s.groups),
                            "synced_at": s.synced_at,
                            "warnings": list(s.warnings),
                        }
                        for s in sources
                    ],
                },
                indent=2,
            )
        )
        return
    console.print(
        f"[bold]{ws.root}[/bold]: {st.documents} documents, {st.chunks} chunks, "
        f"index {st.size_bytes / 2**20:.1f} MB, embedder {st.embedder} ({st.dim}-d)"
    )
    if st.tags:
        console.print("tags: " + ", ".join(f"{t} ({n})" for t, n in st.tags.items()))
    if st.groups:
        console.print("access groups: " + ", ".join(f"{g} ({n})" for g, n in st.groups.items()))
    console.print("types: " + ", ".join(f"{t} ({n})" for t, n in st.file_types.items()))
    table = Table("source", "type", "chunks", "tags", "groups", "last synced")
    for s in sources[:200]:
        table.add_row(
            escape(_display_path(s.path)),
            s.file_type,
            str(s.n_chunks),
            ", ".join(s.tags),
            ", ".join(s.groups),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.synced_at)),
        )
    console.print(table)
    if len(sources) > 200:
        console.print(f"… and {len(sources) - 200} more (use --json for all)")


# -- search -------------------------------------------------------------------------------------------


def snippet(text: str, terms: list[str], width: int = 220) -> Text:
    """The window of ``text`` with the most query terms, with those terms highlighted."""
    flat = re.sub(r"\s+", " ", text)
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE) if terms else None
    start = 0
    if pattern and len(flat) > width:
        best = -1
        for m in pattern.finditer(flat):
            s = max(0, m.start() - width // 4)
            n = len(pattern.findall(flat[s : s + width]))
            if n > best:
                best, start = n, s
    piece = flat[start : start + width]
    out = Text(("…" if start else "") + piece + ("…" if start + width < len(flat) else ""))
    if pattern:
        out.highlight_regex(pattern, style="bold yellow")
    return out


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="what to look for")],
    k: Annotated[int | None, typer.Option("-k", help="number of results")] = None,
    mode: Annotated[str | None, typer.Option(help="hybrid | bm25 | dense")] = None,
    tag: TagOpt = None,
    path: Annotated[str | None, typer.Option(help="only sources whose path matches this glob")] = None,
    file_type: Annotated[list[str] | None, typer.Option("--type", help="only these file types, e.g. pdf")] = None,
    as_group: AsGroupOpt = None,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Search the index: BM25 and dense results fused by reciprocal rank fusion (hybrid) by default."""
    from expertkit.index.base import Filters, keyword_terms
    from expertkit.retrieve import Retriever

    ws = _open(workspace, set_, {"search": {"k": k, "mode": mode}})
    index = ws.open_index()
    retriever = Retriever(index, _embedder(ws), ws.settings.search)
    filters = Filters(tuple(tag or ()), path, tuple(file_type or ()), _caller_groups(as_group))
    hits = retriever.search(query, filters=filters)
    index.close()
    if json_:
        print(
            json.dumps(
                {
                    "query": query,
                    "mode": ws.settings.search.mode,
                    "results": [h.to_json() for h in hits],
                    "timings": {k: round(v, 2) for k, v in retriever.last_timings.items()},
                },
                indent=2,
            )
        )
        return
    if not hits:
        console.print("no results")
        return
    terms = keyword_terms(query)
    table = Table("#", "score", "source", "text", show_lines=True)
    for rank, hit in enumerate(hits, start=1):
        c = hit.chunk
        where = _display_path(c.source) + "".join(
            [
                f" p.{c.page}" if c.page else "",
                f" #{c.record_id}" if c.record_id else "",
                f"\n§ {c.heading}" if c.section else "",
            ]
        )
        table.add_row(str(rank), f"{hit.score:.4f}", escape(where), snippet(c.text, terms))
    console.print(table)
    console.print(f"[dim]{ws.settings.search.mode} · {retriever.last_timings['total_ms']:.0f} ms[/dim]")


# -- models, ask, chat, serve -------------------------------------------------------------------------


@app.command()
def models(json_: JsonOpt = False) -> None:
    """Known models: size, whether installed, and the command that installs each."""
    from expertkit.models.registry import REGISTRY, model_cache_dir

    rows = []
    for spec in REGISTRY.values():
        path = spec.locate()
        installed = spec.installed()
        size = spec.split.size if spec.split else (_size(path) if path else 0)
        converted = model_cache_dir() / spec.name
        rows.append(
            {
                "name": spec.name,
                "kind": spec.kind,
                "installed": installed,
                "ready": path is not None,  # a split GGUF is joined on first use
                "size_mb": round(size / 2**20, 1),
                "path": str(path) if path else None,
                "package": spec.package,
                "install": spec.install,
                "description": spec.description,
                "licence": spec.licence,
                "converted": str(converted) if (converted / "config.json").exists() else None,
            }
        )
    if json_:
        print(json.dumps({"models": rows}, indent=2))
        return
    from expertkit.config import EmbedSettings, GenerateSettings

    defaults = {EmbedSettings().model, GenerateSettings().model}
    table = Table("name", "kind", "installed", "size", "notes")
    for r in rows:
        notes = r["description"]
        if r["installed"] and not r["ready"]:
            notes += "\njoined and verified on first use"
        if r["converted"]:
            notes += f"\nsafetensors copy (training): {r['converted']}"
        table.add_row(
            r["name"] + ("\n(default)" if r["name"] in defaults else ""),
            r["kind"],
            "yes" if r["installed"] else f"no: {r['install']}",
            f"{r['size_mb']:.0f} MB" if r["size_mb"] else "",
            escape(notes),
        )
    console.print(table)
    console.print(
        "[dim]Any GGUF file (Phi-3-mini, Phi-3.5-mini, Phi-4-mini...) or HF folder works too: "
        "--set generate.model=/path/to/model.gguf[/dim]"
    )


def _ensure_model(name: str) -> None:
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


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _rag(ws: Workspace, adapter: str | None = None):
    from expertkit.models.generator import make_generator

    index = ws.open_index()
    settings = ws.settings.generate
    adapter_path = _adapter_path(ws, adapter) if adapter else None
    if adapter_path is not None:
        from expertkit.tune.adapters import read_lineage

        lineage = read_lineage(adapter_path)
        _warn_stale(adapter, lineage, index)
        if lineage.get("method") == "full":  # a full fine-tune is a whole model, not an adapter
            settings = settings.model_copy(update={"model": str(adapter_path)})
            adapter_path = None
        elif lineage.get("base") and lineage["base"] != settings.model:
            settings = settings.model_copy(update={"model": lineage["base"]})  # the base it was trained on
    _ensure_model(settings.model)
    with err.status(f"loading {settings.model}…"):
        generator = make_generator(settings, adapter=adapter_path, runtime_dir=ws.data_dir)
    return ws.rag(generator, index)


def _adapter_path(ws: Workspace, name: str) -> Path:
    path = Path(name) if Path(name).exists() else ws.root / "adapters" / name
    if not (path / "adapter_config.json").exists() and not (path / "config.json").exists():
        raise ExpertkitError(
            f"no adapter {name!r} in {ws.root / 'adapters'}: train one with `expertkit tune`, "
            "or list them with `expertkit adapters`"
        )
    return path


def _print_answer(answer, streamed: bool, shown: bool = False) -> None:
    """The verified answer (streamed tokens were the model's draft), its citations and timings.
    ``shown``: the caller printed the answer already."""
    if streamed:
        console.print()
    if not shown and (not streamed or answer.answer != answer.model_answer.strip()):
        console.print(escape(answer.answer))
    if answer.extractive:
        console.print(
            "[yellow]quoted from the passages: the model's own answer was empty or not supported by them[/yellow]"
        )
    if answer.finish_reason == "interrupted":
        console.print("[yellow]interrupted: the answer above is partial[/yellow]")
    if not answer.rag:
        console.print("[dim]bare model, no retrieval (--no-rag): nothing to cite[/dim]")
    elif not answer.found:
        console.print("[dim]no passage in the documents is relevant enough to answer from[/dim]")
    elif not answer.citations:
        console.print("[yellow]unsupported: the answer cites no passage[/yellow]")
    for c in answer.citations:
        where = (
            _display_path(c.source) + (f" p.{c.page}" if c.page else "") + (f" #{c.record_id}" if c.record_id else "")
        )
        where += f" § {c.section}" if c.section else ""
        how = " [dim](attributed by expertkit)[/dim]" if c.attributed and not answer.extractive else ""
        quote = "" if answer.extractive else f"\n      [dim]“{escape(c.quote)}”[/dim]"  # the answer is the quote
        console.print(f"  [bold cyan][{c.number}][/bold cyan] {escape(where)}{how}{quote}")
    if answer.invalid_citations:
        console.print(
            f"[yellow]removed citation numbers that were not passages in the prompt: "
            f"{', '.join(map(str, answer.invalid_citations))}[/yellow]"
        )
    if answer.citations and answer.unsupported:
        for sentence in answer.unsupported:
            console.print(f"[yellow]  unsupported:[/yellow] {escape(sentence)}")
    t = answer.timings
    if t:
        parts = [
            f"retrieve {t['retrieve_ms']:.0f} ms" if "retrieve_ms" in t else "",
            f"prompt {t['prompt_tokens']:.0f} tok" if "prompt_tokens" in t else "",
            f"first token {t['first_token_ms']:.0f} ms" if "first_token_ms" in t else "",
            f"generate {t['generate_ms']:.0f} ms ({t['tokens_per_s']:.1f} tok/s)" if "generate_ms" in t else "",
            f"grounded {answer.groundedness:.0%}" if answer.groundedness is not None else "",
        ]
        console.print("[dim]" + " · ".join(p for p in parts if p) + "[/dim]")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    k: Annotated[int | None, typer.Option("-k", help="passages to give the model")] = None,
    tag: TagOpt = None,
    adapter: Annotated[str | None, typer.Option(help="a tuned adapter's name (RAG + fine-tuning)")] = None,
    no_rag: Annotated[bool, typer.Option("--no-rag", help="ask the bare model, without retrieval")] = False,
    as_group: AsGroupOpt = None,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Answer from the documents, citing passages; every citation is checked after generation."""
    from expertkit.index.base import Filters

    ws = _open(workspace, set_, {"rag": {"k": k}})
    if not question.strip():
        raise ExpertkitError('the question is empty: ask something, e.g. expertkit ask "What is the warranty?"')
    rag = _rag(ws, adapter)
    streamed = not json_ and (console.is_terminal or os.environ.get("EXPERTKIT_STREAM") == "1")
    shown: list[str] = []
    live = None
    if streamed and console.is_terminal:  # the draft streams, then gives way to the verified answer
        from rich.live import Live

        draft = Text(style="dim")
        live = Live(draft, console=console, transient=True, refresh_per_second=12)

    def on_token(piece: str) -> None:
        shown.append(piece)
        if live is not None:
            draft.append(piece)
        else:
            console.print(piece, end="", markup=False, highlight=False)

    if live is not None:
        live.start()
    try:
        filters = Filters(tuple(tag or ()), groups=_caller_groups(as_group))
        answer = rag.ask(question, filters, rag=not no_rag, on_token=on_token if streamed else None)
    finally:
        if live is not None:
            live.stop()
    if json_:
        print(json.dumps(answer.to_json(), indent=2, ensure_ascii=False))
        return
    # "not found" is never streamed: the model was not called
    _print_answer(answer, streamed=bool(shown) and live is None)
    if answer.finish_reason == "interrupted":
        raise typer.Exit(130)


@app.command()
def chat(
    adapter: Annotated[str | None, typer.Option(help="a tuned adapter's name")] = None,
    as_group: AsGroupOpt = None,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """An interactive session: follow-ups are rewritten into standalone questions before retrieval.

    /sources shows the last answer's passages, /reset starts over, /exit (or Ctrl-D) leaves.
    The history is saved under .expertkit/chats/ in the workspace.
    """
    from expertkit.chat import ChatSession
    from expertkit.index.base import Filters

    ws = _open(workspace, set_)
    session = ChatSession(_rag(ws, adapter), ws.data_dir / "chats", Filters(groups=_caller_groups(as_group)))
    console.print(f"[dim]chat saved to {session.path} · /sources /reset /exit[/dim]")
    while True:
        try:
            line = console.input("[bold green]you>[/bold green] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            session.reset()
            console.print("[dim]history cleared[/dim]")
            continue
        if line == "/sources":
            last = session.last
            if last is None or not last.retrieved:
                console.print("[dim]no sources yet[/dim]")
            for i, hit in enumerate(last.retrieved if last else [], start=1):
                console.print(
                    f"  [{i}] {escape(hit.chunk.location())}\n      [dim]{escape(hit.chunk.text[:200])}[/dim]"
                )
            continue
        try:
            answer = session.ask(line)
        except ExpertkitError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            continue
        if session.last_query and session.last_query != line:
            console.print(f"[dim]searched for: {escape(session.last_query)}[/dim]")
        console.print("[bold blue]expertkit>[/bold blue] " + escape(answer.answer))
        _print_answer(answer, streamed=False, shown=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind (another than loopback needs API keys)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Serve the expert: OpenAI's API at /v1 (the expert, each adapter, the bare model), a web chat at /.

    Callers send an API key (`expertkit keys add`) and read only their key's access groups.
    """
    import copy

    import uvicorn

    from expertkit.models.generator import choose_backend, make_generator
    from expertkit.serve.app import EXPERT_ID, ServedModel, create_app
    from expertkit.tune.adapters import list_adapters

    ws = _open(workspace, set_)
    keys = ws.key_store()
    if not keys.has_keys() and not _loopback(host):
        raise ExpertkitError(
            f"no API keys yet, so anyone who reaches {host} could read every document: make one with "
            "`expertkit keys add NAME --group G`, or serve on 127.0.0.1"
        )
    index = ws.open_index()
    g = ws.settings.generate
    switchable = []
    for a in list_adapters(ws.root, index):
        if choose_backend(g) == "llamacpp" and a.lineage.get("base") == g.model and a.lineage.get("method") != "full":
            switchable.append(a)
        else:
            err.print(f"[dim]not serving adapter {a.name}: trained on {a.lineage.get('base')}, served {g.model}[/dim]")
    _ensure_model(g.model)
    with err.status(f"loading {g.model}…"):
        generator = make_generator(
            g, runtime_dir=None if switchable else ws.data_dir, switchable=[a.path for a in switchable]
        )
    rag = ws.rag(generator, index)
    adapters = []
    for position, a in enumerate(switchable):
        _warn_stale(a.name, a.lineage, index)
        tuned = copy.copy(rag)  # the same retriever; the adapter's answers
        tuned.generator = generator.with_adapter(position, f"{g.model}+{a.name}")
        records = [index.get_source(path) for path in a.lineage.get("sources") or {}]
        adapters.append(
            ServedModel(
                f"{EXPERT_ID}+{a.name}",
                tuned.generator,
                tuned,
                f"the expert with adapter {a.name} (fine-tuned on {len(records)} documents)",
                [frozenset(r.groups) if r else None for r in records],
            )
        )
    app_ = create_app(
        generator, rag, g.max_new_tokens, adapters=adapters, keys=keys, settings=ws.settings.serve, root=ws.root
    )
    names = [EXPERT_ID + " (default: answers from the documents, cited)", *(m.id for m in adapters), generator.name]
    console.print(f"serving on http://{host}:{port}: the web chat at /, OpenAI's API at /v1")
    console.print(f"models: {', '.join(names)}")
    n_keys = sum(r.active for r in keys.records())
    console.print(
        f"{n_keys} API key(s) active (`expertkit keys list`)"
        if n_keys
        else "[yellow]no API keys: anyone on this machine can read every document; "
        "`expertkit keys add NAME --group G` makes the server ask for keys[/yellow]"
    )
    uvicorn.run(app_, host=host, port=port, log_level="warning")


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- keys ---------------------------------------------------------------------------------------------


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="who or what uses the key, e.g. alice or helpdesk-bot")],
    group: Annotated[list[str], typer.Option("--group", "-g", help="an access group the key may read (repeatable)")],
    workspace: WorkspaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Make an API key. It is printed once, on stdout; only its hash is stored."""
    ws = _open(workspace, None)
    key, record = ws.key_store().add(name, group)
    if json_:
        print(json.dumps({"name": record.name, "key": key, "groups": record.groups}))
        return
    err.print(
        f"API key for [bold]{escape(record.name)}[/bold], reading groups {', '.join(record.groups)}. "
        "It is shown only now: give it to its user (clients send `Authorization: Bearer <key>`)."
    )
    print(key)


@keys_app.command("list")
def keys_list(workspace: WorkspaceOpt = None, json_: JsonOpt = False) -> None:
    """The keys: name, first characters, groups, when made, whether revoked. Keys themselves are not stored."""
    ws = _open(workspace, None)
    records = ws.key_store().records()
    if json_:
        rows = [{k: v for k, v in vars(r).items() if k != "hash"} for r in records]
        print(json.dumps({"keys": rows}, indent=2))
        return
    if not records:
        console.print("no API keys: `expertkit keys add NAME --group G` makes one")
        return
    table = Table("name", "key", "groups", "created", "status")
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
        status = "active" if r.active else "revoked " + time.strftime("%Y-%m-%d %H:%M", time.localtime(r.revoked))
        table.add_row(escape(r.name), r.hint + "…", ", ".join(r.groups), when, status)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="the key's name (or its first characters, as `keys list` shows)")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Revoke a key: a running server refuses it from its next request."""
    ws = _open(workspace, None)
    record = ws.key_store().revoke(name)
    console.print(f"revoked the key of {escape(record.name)} ({record.hint}…)")


# -- runtime -------------------------------------------------------------------------------------------


@runtime_app.command("start")
def runtime_start(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1; 0 = a free one")] = 0,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Start llama-server for generate.model and keep it warm: ask, chat and serve reuse it."""
    from expertkit.models.llamacpp import start_runtime
    from expertkit.models.registry import is_gguf, resolve

    ws = _open(workspace, set_)
    g = ws.settings.generate
    if not is_gguf(g.model):
        raise ExpertkitError(f"generate.model = {g.model} is not a GGUF model; the llama.cpp runtime serves GGUF files")
    _ensure_model(g.model)
    path = resolve(g.model, "generator")
    with err.status(f"starting llama-server with {g.model}…"):
        info = start_runtime(ws.data_dir, g.model, path, g.ctx_size, g.parallel, g.threads, port)
    console.print(
        f"llama-server pid {info.pid} serving {info.model} on {info.url}/v1 "
        f"({info.parallel} slots × {info.ctx_size} tokens, {info.threads} threads) · log {info.log}"
    )


@runtime_app.command("status")
def runtime_status(workspace: WorkspaceOpt = None, json_: JsonOpt = False) -> None:
    """Whether this workspace's warm server runs, and what it serves."""
    from dataclasses import asdict

    from expertkit.models.llamacpp import read_runtime

    ws = _open(workspace, None)
    info = read_runtime(ws.data_dir)
    if json_:
        print(json.dumps({"running": info is not None, **(asdict(info) if info else {})}, indent=2))
        return
    if info is None:
        console.print("no warm server: commands start a private one each time (`expertkit runtime start`)")
        return
    up = time.time() - info.started
    console.print(
        f"running: pid {info.pid} · {info.model} · {info.url}/v1 · {info.parallel} slots × {info.ctx_size} tokens"
        f" · {info.threads} threads · up {up / 60:.0f} min · log {info.log}"
    )


@runtime_app.command("stop")
def runtime_stop(workspace: WorkspaceOpt = None) -> None:
    """Stop this workspace's warm server."""
    from expertkit.models.llamacpp import stop_runtime

    ws = _open(workspace, None)
    info = stop_runtime(ws.data_dir)
    console.print(f"stopped llama-server pid {info.pid}" if info else "no warm server was running")


# -- db, index ----------------------------------------------------------------------------------------


@db_app.command("start")
def db_start(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1; 0 = a free one")] = 0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start (initialising on first use) a PostgreSQL server with pgvector, data in .expertkit/postgres."""
    from expertkit.index.pgserver import PgServer

    ws = _open(workspace, None)
    with err.status("starting PostgreSQL…"):
        info = PgServer(ws.db_dir).start(port or None)
    console.print(f"PostgreSQL pid {info.pid} on 127.0.0.1:{info.port}, data in {escape(str(info.data_dir))}")
    console.print(f"dsn: {info.dsn}")
    if ws.settings.index.backend != "postgres":
        console.print(
            '[dim]use it: set index.backend = "postgres" in expertkit.toml (index.dsn may stay empty for this '
            "server), then `expertkit index copy` to move the SQLite index over without re-embedding[/dim]"
        )


@db_app.command("status")
def db_status(workspace: WorkspaceOpt = None, json_: JsonOpt = False) -> None:
    """Whether this workspace's local PostgreSQL server runs, and its dsn."""
    from expertkit.index.pgserver import PgServer

    ws = _open(workspace, None)
    info = PgServer(ws.db_dir).status()
    running = bool(info and info.running)
    if json_:
        print(
            json.dumps(
                {"running": running, **({"pid": info.pid, "port": info.port, "dsn": info.dsn} if running else {})}
            )
        )
        return
    if not running:
        console.print("no local PostgreSQL server is running (`expertkit db start`)")
        raise typer.Exit(1)
    console.print(f"running: pid {info.pid} · {info.dsn} · data {escape(str(info.data_dir))}")


@db_app.command("stop")
def db_stop(workspace: WorkspaceOpt = None) -> None:
    """Stop this workspace's local PostgreSQL server (its data stays)."""
    from expertkit.index.pgserver import PgServer

    ws = _open(workspace, None)
    stopped = PgServer(ws.db_dir).stop()
    console.print("stopped the local PostgreSQL server" if stopped else "no local PostgreSQL server was running")


@index_app.command("copy")
def index_copy(
    to: Annotated[
        str, typer.Option("--to", help="postgresql://… (empty = the server `expertkit db start` runs here)")
    ] = "",
    schema: Annotated[str | None, typer.Option(help="schema in the destination (default index.schema_name)")] = None,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Copy this workspace's SQLite index, vectors included, into PostgreSQL: nothing is re-embedded, and an
    interrupted copy resumes where it stopped."""
    from expertkit.index.copy import copy_index
    from expertkit.index.pgvector import PostgresIndex, redact_dsn
    from expertkit.index.sqlite import SQLiteIndex

    ws = _open(workspace, set_)
    s = ws.settings.index
    if not ws.index_path.exists():
        raise ExpertkitError(f"{ws.index_path} does not exist: there is no SQLite index here to copy")
    if to and not to.startswith(("postgresql://", "postgres://")) and "=" not in to:
        raise ExpertkitError(f"--to {to!r}: expected a PostgreSQL dsn such as postgresql://user@host:5432/db")
    dsn = to or ws.index_dsn()
    src = SQLiteIndex(ws.index_path, cache_dir=ws.cache_dir)
    dst = PostgresIndex(dsn, schema=schema or s.schema_name, ef_search=s.ef_search)
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]copying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("sources"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("copy", total=len(src.sources()))
        report = copy_index(src, dst, lambda n: progress.advance(task, n))
    src.close()
    dst.close()
    console.print(
        f"copied {report.sources} sources ({report.chunks} chunks, vectors included), {report.skipped} already there"
        f" · {time.perf_counter() - started:.1f}s"
    )
    if s.backend != "postgres":
        console.print(
            f'[dim]switch: set index.backend = "postgres" and index.dsn = "{redact_dsn(to)}" in expertkit.toml[/dim]'
            if to
            else '[dim]switch: set index.backend = "postgres" in expertkit.toml[/dim]'
        )


# -- eval ---------------------------------------------------------------------------------------------


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
    from expertkit.retrieve import MODES, Retriever

    if mode not in MODES:
        raise ExpertkitError(f"--mode {mode!r}: use one of {', '.join(MODES)}")
    data = load_beir(beir, split)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        ws, index, embedder, scratch = _beir_workspace(workspace, set_, data.corpus, _RichSyncProgress(progress))
        task = progress.add_task(f"queries ({mode})", total=len(data.queries), chunks=0)
        scores = evaluate_retrieval(
            Retriever(index, embedder, ws.settings.search), data, mode, on_query=lambda: progress.advance(task)
        )
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
        console.print(f"report: {_display_path(out['report'])}")


# -- synth, tune, adapters, merge -----------------------------------------------------------------------


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


def _synth_generator(ws: Workspace, model_questions: int):
    """The local model that writes questions (through llama.cpp), or None for templates only."""
    if model_questions <= 0:
        return None
    from expertkit.models.generator import make_generator

    _ensure_model(ws.settings.generate.model)
    with err.status(f"loading {ws.settings.generate.model}…"):
        return make_generator(ws.settings.generate, runtime_dir=ws.data_dir)


def _run_synth(generator, job) -> None:
    """Run a synth job under a facts progress bar, stop the model it used, print what it wrote."""
    progress, task = _fact_progress()
    try:
        with progress:
            report = job(on_fact=lambda: progress.advance(task), on_start=lambda n: progress.update(task, total=n))
    finally:
        if generator is not None and hasattr(generator, "close"):
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

    ws = _open(workspace, set_)
    index = ws.open_index()
    generator = _synth_generator(ws, model_questions or rephrasings)
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

    ws = _open(workspace, set_)
    index = ws.open_index()
    generator = _synth_generator(ws, model_questions)
    retriever = Retriever(index, _embedder(ws), ws.settings.search)
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

    ws = _open(
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

    ws = _open(workspace, None)
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


def _warn_stale(name: str, lineage: dict, index) -> None:
    """One warning per document the adapter learned from that changed or went away since training."""
    from expertkit.tune.adapters import staleness

    for line in staleness(lineage, index):
        err.print(
            f"[yellow]warning: adapter {name} is stale, a document it was trained on {line}; "
            "retrain it (expertkit tune) or rely on RAG for that content[/yellow]"
        )


def _warn_stale_adapter(ws: Workspace, name: str, adapter: Path) -> None:
    from expertkit.tune.adapters import read_lineage

    _warn_stale(name, read_lineage(adapter), ws.open_index() if ws.has_index() else None)


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

    ws = _open(workspace, None)
    adapter = _adapter_path(ws, name)
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
        target.parent.mkdir(parents=True, exist_ok=True)
        with err.status(f"merging {name} into {Path(base_file).name}…"):
            path = merge_into_gguf(adapter, base_file, target)
        console.print(
            f"merged GGUF: {path} ({path.stat().st_size / 2**20:,.0f} MB) · use it with --set generate.model={path}, "
            f"`llama-server -m {path}`, or an Ollama Modelfile `FROM {path}`"
        )
        return
    target = out or ws.root / "models" / f"{name}-merged"
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
    ws = _open(workspace, None)
    adapter = _adapter_path(ws, name)
    _warn_stale_adapter(ws, name, adapter)
    with err.status(f"exporting {name}…"):
        path = export_lora_gguf(adapter, out)
    base = read_lineage(adapter).get("base", "")
    base_file = resolve(base, "generator") if base else "BASE.gguf"
    console.print(f"LoRA GGUF: {path} ({path.stat().st_size / 2**20:,.1f} MB), for base {base or '?'}")
    console.print(f"  llama.cpp: llama-server -m {base_file} --lora {path}")
    console.print(f"  Ollama Modelfile: FROM {base_file}\n                    ADAPTER {path}")
    console.print(f"  expertkit: ask --adapter {name} (uses it through llama.cpp when the base is a GGUF)")


# -- advise ------------------------------------------------------------------------------------------------


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
    from expertkit.advise import build_report, profile_workspace, quick_advice, save_json
    from expertkit.advise import measure as measure_routes

    ws = _open(workspace, set_, {"advise": {"traceable": traceable, "budget_minutes": budget}})
    base = ws.settings.tune.base or ws.settings.generate.model
    folder = out or ws.root / "advise"
    if measure:
        _ensure_model(base)
        paraphraser = _synth_generator(ws, ws.settings.advise.model_questions)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=err,
        ) as progress:
            try:
                advice = measure_routes(
                    ws, _embedder(ws), ws.settings.advise.budget_minutes, _AdviseProgress(progress), paraphraser
                )
            finally:
                if paraphraser is not None and hasattr(paraphraser, "close"):
                    paraphraser.close()
    else:
        index = ws.open_index()
        if not index.stats().chunks:
            raise ExpertkitError("the index is empty: ingest your documents first (`expertkit ingest DOCS`)")
        with err.status(f"reading the workspace ({base}'s perplexity on a sample of chunks)…"):
            advice = quick_advice(profile_workspace(index, ws.settings, base))
        index.close()
    advice.report = build_report(advice, folder)
    save_json(advice, folder)
    if json_:
        print(json.dumps(advice.to_json()))
        return
    console.print(f"[bold]recommendation ({advice.mode}):[/bold] [green]{advice.recommendation}[/green]")
    for reason in advice.reasons:
        console.print(f"  • {escape(reason)}")
    if advice.routes:
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
        console.print(table)
        console.print("[dim]¹ share of questions about things the documents never name answered “not found”[/dim]")
    for change in advice.changes:
        console.print(f"[dim]would change it: {escape(change)}[/dim]")
    console.print(f"report: {_display_path(str(advice.report))}")
    if not measure:
        console.print("measure it on your data: [bold]expertkit advise --measure[/bold] "
                      f"(about {ws.settings.advise.budget_minutes:g} minutes)")  # fmt: skip


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
    rag = _rag(ws, adapter)
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
        console.print(f"report: {_display_path(summary['report'])}")


def main() -> None:  # noqa: D103
    """Entry point: user errors print one line and exit 2, never a traceback."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        code = app(standalone_mode=False)
    except ExpertkitError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    except Exception as exc:
        if not type(exc).__module__.startswith("psycopg"):
            raise
        # the server went away, or refused a statement (no privilege to create the schema or extension)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        err.print(f"[red]error:[/red] PostgreSQL: {escape(first)}; check the server and index.dsn's privileges")
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        err.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
