"""The warm llama.cpp server: runtime start, status, stop."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from expertkit.cli.common import (
    JsonOpt,
    SetOpt,
    WorkspaceOpt,
    console,
    ensure_model,
    err,
    open_from_options,
    runtime_app,
)
from expertkit.errors import ExpertkitError


@runtime_app.command("start")
def runtime_start(
    port: Annotated[int, typer.Option(help="port on 127.0.0.1; 0 = a free one")] = 0,
    workspace: WorkspaceOpt = None,
    set_: SetOpt = None,
) -> None:
    """Start llama.cpp's server for generate.model and keep it warm: ask, chat and serve reuse it."""
    from expertkit.config import server_binary_for
    from expertkit.models.llamacpp import start_runtime
    from expertkit.models.registry import is_gguf, resolve

    ws = open_from_options(workspace, set_)
    g = ws.settings.generate
    if not is_gguf(g.model):
        raise ExpertkitError(f"generate.model = {g.model} is not a GGUF model; the llama.cpp runtime serves GGUF files")
    ensure_model(g.model)
    path = resolve(g.model, "generator")
    with err.status(f"starting llama.cpp with {g.model}…"):
        info = start_runtime(
            ws.data_dir, g.model, path, g.ctx_size, g.parallel, g.threads, port, g.engine, server_binary_for(g)
        )
    console.print(
        f"{info.engine} pid {info.pid} serving {info.model} on {info.url}/v1 "
        f"({info.parallel} slots × {info.ctx_size} tokens, {info.threads} threads) · log {info.log}"
    )


@runtime_app.command("status")
def runtime_status(workspace: WorkspaceOpt = None, json_: JsonOpt = False) -> None:
    """Whether this workspace's warm server runs, and what it serves."""
    from dataclasses import asdict

    from expertkit.models.llamacpp import read_runtime

    ws = open_from_options(workspace, None)
    info = read_runtime(ws.data_dir)
    if json_:
        shown = {k: v for k, v in asdict(info).items() if k != "api_key"} if info else {}  # the key stays in the record
        print(json.dumps({"running": info is not None, **shown}, indent=2))
        return
    if info is None:
        console.print("no warm server: commands start a private one each time (`expertkit runtime start`)")
        return
    up = time.time() - info.started
    console.print(
        f"running: {info.engine or 'llama-server'} pid {info.pid} · {info.model} · {info.url}/v1"
        f" · {info.parallel} slots × {info.ctx_size} tokens"
        f" · {info.threads} threads · up {up / 60:.0f} min · log {info.log}"
    )


@runtime_app.command("stop")
def runtime_stop(workspace: WorkspaceOpt = None) -> None:
    """Stop this workspace's warm server."""
    from expertkit.models.llamacpp import stop_runtime

    ws = open_from_options(workspace, None)
    info = stop_runtime(ws.data_dir)
    console.print(f"stopped {info.engine or 'llama-server'} pid {info.pid}" if info else "no warm server was running")
