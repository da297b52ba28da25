"""The local PostgreSQL server and moving the index: db start, status, stop; index copy."""

from __future__ import annotations

import json
import os
import time
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

from expertkit.cli.common import (
    JsonOpt,
    SetOpt,
    WorkspaceOpt,
    console,
    db_app,
    err,
    index_app,
    open_from_options,
)
from expertkit.errors import ExpertkitError


def _server(ws):  # -> PgServer
    """This workspace's PostgreSQL server. Under root it runs as an unprivileged user (initdb refuses root),
    which must pass through .expertkit (0700): that user's own group may enter it (0710), no one else."""
    import pwd

    from expertkit.index.pgserver import PgServer
    from expertkit.private import private_dir

    server = PgServer(ws.db_dir)
    if server.user is not None:
        private_dir(ws.data_dir)
        os.chown(ws.data_dir, -1, pwd.getpwnam(server.user).pw_gid)
        ws.data_dir.chmod(0o710)
    return server


@db_app.command("start")
def db_start(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1; 0 = a free one")] = 0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Start (initialising on first use) a PostgreSQL server with pgvector, data in .expertkit/postgres."""
    ws = open_from_options(workspace, None)
    with err.status("starting PostgreSQL…"):
        info = _server(ws).start(port or None)
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

    ws = open_from_options(workspace, None)
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
    ws = open_from_options(workspace, None)
    stopped = _server(ws).stop()
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

    ws = open_from_options(workspace, set_)
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
