"""API keys for `expertkit serve`: keys add, list, revoke."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from expertkit.cli.common import (
    JsonOpt,
    WorkspaceOpt,
    console,
    err,
    keys_app,
    open_from_options,
)


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="who or what uses the key, e.g. alice or helpdesk-bot")],
    group: Annotated[list[str], typer.Option("--group", "-g", help="an access group the key may read (repeatable)")],
    workspace: WorkspaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Make an API key. It is printed once, on stdout; only its hash is stored."""
    ws = open_from_options(workspace, None)
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
    ws = open_from_options(workspace, None)
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
    ws = open_from_options(workspace, None)
    record = ws.key_store().revoke(name)
    console.print(f"revoked the key of {escape(record.name)} ({record.hint}…)")
