"""The `expertkit` command: a thin Typer app that parses, calls the library and renders with Rich.

Each module of this package holds one command group; ``common`` holds the Typer apps and what the groups share."""

from __future__ import annotations

import os
import sys
import warnings

import click
import typer
from rich.markup import escape

from expertkit.cli.common import app, err
from expertkit.errors import ExpertkitError

# importing a module registers its commands on app, so this order is the order `expertkit --help` lists them
# isort: off
from expertkit.cli import init_ingest, search, answer, keys, runtime, db, evaluate, tune, advise, doctor  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def _click_errors() -> tuple[type[Exception], ...]:
    """Click's usage errors, and typer's own copy of them (typer 0.29 vendors click as typer._click)."""
    try:
        from typer._click.exceptions import ClickException as VendoredClickException
    except ImportError:
        return (click.ClickException,)
    return (click.ClickException, VendoredClickException)


def main() -> None:  # noqa: D103
    """Entry point: user errors print one line and exit 2, never a traceback."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        code = app(standalone_mode=False)
    except ExpertkitError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
    except _click_errors() as exc:  # a usage error (unknown command, bad option): click's message, no traceback
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort, typer.Abort):
        err.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except Exception as exc:
        if not type(exc).__module__.startswith("psycopg"):
            raise
        # the server went away, or refused a statement (no privilege to create the schema or extension)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        err.print(f"[red]error:[/red] PostgreSQL: {escape(first)}; check the server and index.dsn's privileges")
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
