"""Shared CLI plumbing: ``--json``, one-line errors, rich tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--json`` to a command; the command receives ``as_json: bool``."""
    return click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON")(fn)


def emit(data: Any, as_json: bool, human: Callable[[], None] | None = None) -> None:
    """Print ``data`` as JSON when ``as_json``; otherwise call ``human`` (or pretty-print)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))
    elif human is not None:
        human()
    else:
        console.print(data)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table."""
    t = Table(title=title)
    for c in columns:
        t.add_column(str(c))
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)


def home_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The HOME positional argument shared by most commands."""
    return click.argument("home", type=click.Path(file_okay=False, path_type=str))(fn)
