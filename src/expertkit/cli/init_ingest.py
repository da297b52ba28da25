"""Create a workspace and keep its index: init, ingest, remove, status."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

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
    RateColumn,
    RichSyncProgress,
    SetOpt,
    TagOpt,
    WorkspaceOpt,
    app,
    console,
    display_path,
    err,
    make_ingestor,
    open_from_options,
)
from expertkit.workspace import init_workspace


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="folder to make a workspace")] = Path(".")) -> None:
    """Create a workspace: a folder with a commented expertkit.toml."""
    existed = (directory / "expertkit.toml").exists()
    config = init_workspace(directory)
    console.print(f"{'Kept existing' if existed else 'Wrote'} {config}")


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

    ws = open_from_options(
        workspace, set_, create=workspace is not None and not (workspace / "expertkit.toml").exists()
    )
    index = ws.open_index(create=True)
    ingestor = make_ingestor(ws, index, paths=paths)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        RateColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as progress:
        report = ingestor.sync(
            paths, tags=tag or [], prune=prune, progress=RichSyncProgress(progress), groups=group or []
        )
    index.close()
    counts = {s: report.count(s) for s in ("added", "updated", "retagged", "unchanged", "removed", "skipped", "failed")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    work = report.seconds - report.load_seconds - report.index_seconds
    rate = report.embedded / work if work > 0 else 0
    console.print(
        f"{summary or 'nothing to do'} · {report.embedded} chunks embedded, {report.reused} reused"
        f" · {report.seconds:.1f}s ({rate:,.0f} chunks/s after {report.load_seconds:.1f}s model load)"
        + (f" · search index updated in {report.index_seconds:.1f}s" if report.index_seconds >= 0.1 else "")
    )
    for r in report.results:
        if r.status == "skipped":
            console.print(f"[dim]skipped {escape(display_path(r.path))}: {r.reason}[/dim]")
    for r in report.failed:
        if r.status == "failed":
            console.print(f"[red]failed[/red] {escape(display_path(r.path))}: {escape(r.reason)}")
        for w in r.warnings:
            console.print(f"[yellow]warning[/yellow] {escape(display_path(r.path))}: {escape(w)}")
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

    ws = open_from_options(workspace, set_)
    index = ws.open_index()
    results = remove_sources(index, paths)
    index.close()
    for r in results:
        console.print(f"removed {escape(display_path(r.path))} ({r.chunks} chunks)")
    if not results:
        console.print("nothing indexed under " + ", ".join(str(p) for p in paths))


@app.command()
def status(workspace: WorkspaceOpt = None, set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Documents, chunks, tags, access groups, index size, and when each source was last synced."""
    from expertkit.private import describe, fix_command

    ws = open_from_options(workspace, set_)
    wide = ws.exposed()
    if wide:  # on stderr, in --json mode too
        warning = f"{describe(ws.data_dir, wide)}; fix: {fix_command(ws.data_dir)}"
        err.print(f"[yellow]warning[/yellow]: {escape(warning)}", soft_wrap=True)
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
            escape(display_path(s.path)),
            s.file_type,
            str(s.n_chunks),
            ", ".join(s.tags),
            ", ".join(s.groups),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.synced_at)),
        )
    console.print(table)
    if len(sources) > 200:
        console.print(f"… and {len(sources) - 200} more (use --json for all)")
