"""expertkit doctor: what runs on this machine, how fast, and what to fix."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from expertkit.cli.common import JsonOpt, WorkspaceOpt, app, console, err, open_from_options
from expertkit.errors import WorkspaceError


@app.command()
def doctor(
    workspace: WorkspaceOpt = None,
    json_: JsonOpt = False,
    speed: Annotated[bool, typer.Option(help="start llama.cpp and measure it for 5 seconds")] = True,
    model: Annotated[str, typer.Option(help="the GGUF model the speed probe runs")] = "smollm2-135m-instruct",
) -> None:
    """Check the CPU, the llama.cpp engine (and its speed), models, disk, optional parts and the workspace.

    ✓ holds, ✗ fails (exit code 1), – an optional part that is missing (the fix says how to add it)."""
    from expertkit.doctor import run_checks

    try:
        ws = open_from_options(workspace, None)
    except WorkspaceError:
        ws = None  # outside a workspace: the machine's checks only
    if json_:
        checks = run_checks(ws, speed, model)
    else:
        with err.status("checking (the engine probe takes a few seconds)…"):
            checks = run_checks(ws, speed, model)
    failed = [c for c in checks if not c.ok and c.required]
    if json_:
        print(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        for c in checks:
            mark = "[green]✓[/green]" if c.ok else "[red]✗[/red]" if c.required else "[yellow]–[/yellow]"
            fix = f" [yellow]→ {escape(c.fix)}[/yellow]" if c.fix else ""
            console.print(f"{mark} {escape(c.name)}: {escape(c.detail)}{fix}", soft_wrap=True)
        if ws is None:
            console.print("[dim]no workspace here: its index, embedder and adapters were not checked (-w DIR)[/dim]")
    if failed:
        raise typer.Exit(1)
