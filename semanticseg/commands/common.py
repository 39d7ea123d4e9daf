"""Shared pieces of the CLI: the console, error reporting, progress bars."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from semanticseg.errors import UserError

console = Console(stderr=True)

# The release recipe: where build, propose, adjudicate, release and validate take their defaults from.
RECIPE = typer.Option(None, "--recipe", help="Release recipe TOML (default: pipelines/release.toml).")

# The `--help` panels, in the order of the data flow (cli.FLOW lists the commands in that order).
DATASET = "Data set"
REVIEW = "Review"
SEGMENTER = "Segmenter"
BLOCKS = "Block attention"
SERVERS = "Servers"


def fail(message: str, code: int = 2) -> UserError:
    """The error to raise for a user mistake (usage: raise fail("...")); cli.py prints it as one line."""
    return UserError(message, code)


def writable_folder(ctx: Any, param: Any, value: Path | None) -> Path | None:
    """Option callback for output folders (--work, --out): a path that is a file, or a folder that cannot be
    written, is reported while the options are read, before any work; nothing is created here."""
    if value is None or ctx.resilient_parsing:
        return value
    option = f"{param.opts[0]} {value}"
    existing = next(p for p in (value, *value.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        what = "" if existing == value else f" ({existing} is a file)"
        raise UserError(f"{option}: not a folder{what}; give the path of a folder (it is created if missing)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise UserError(f"{option}: cannot write in {existing} ({err.strerror}); choose a folder you can write to") from None
    return value


def check_categories(value: str | list[str] | None) -> str | list[str] | None:
    """The --category callback of every command: known category names only.

    Category names become folders under --work, so a name such as ../x or /tmp/x would read and write
    outside it; accepting only the recipes' names rules every such trick out in one place.
    """
    from semanticseg.recipes import load_categories

    known = load_categories()
    for name in [value] if isinstance(value, str) else value or []:
        if name not in known:
            raise fail(f"unknown category {name}; valid categories: {', '.join(known)}")
    return value


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A rich progress display for long stages (to stderr, so stdout stays machine-readable)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    ) as progress:
        yield progress
