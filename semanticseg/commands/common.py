"""Shared pieces of the CLI: the console, error reporting, progress bars."""

from __future__ import annotations

import dataclasses
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


def config_class(target: str) -> Any:
    """The config dataclass (or function) named "module:Name" (imported on use: configs live beside torch and pyarrow)."""
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def default_of(config: type | str, name: str) -> Any:
    """The default of a config dataclass's field (its default_factory called): the one source of a command's defaults.

    A command with no config dataclass (a server's start function) names the function, whose keyword default counts."""
    config = config_class(config) if isinstance(config, str) else config
    if not dataclasses.is_dataclass(config):
        import inspect

        default = inspect.signature(config).parameters[name].default
        if default is inspect.Parameter.empty:
            raise ValueError(f"{config.__name__}({name}) has no default")
        return default
    found = {f.name: f for f in dataclasses.fields(config)}[name]
    if found.default is not dataclasses.MISSING:
        return found.default
    if found.default_factory is not dataclasses.MISSING:
        return found.default_factory()
    raise ValueError(f"{config.__name__}.{name} has no default")


def shown(value: Any) -> str:
    """How --help shows a config default (lists comma-separated, as the options take them)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class ConfigDefault(str):
    """The default --help shows for a config field, read from the config only when help is rendered, so that
    `semanticseg --help` imports no config module (and so no torch)."""

    def __new__(cls, config: str, name: str) -> ConfigDefault:
        made = super().__new__(cls, f"{config}.{name}")
        made.config, made.name = config, name
        return made

    def __str__(self) -> str:
        return shown(default_of(self.config, self.name))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def option(config: str, name: str, *decls: str, **kwargs: Any) -> Any:
    """A Typer option for field `name` of the config dataclass "module:Class": "not given" (None) unless set on the
    command line, its help showing the config's default, so the config stays the one source of the default (the
    command builds the config from the options given). tests/test_defaults.py checks every command against it."""
    return typer.Option(None, *decls, show_default=ConfigDefault(config, name), **kwargs)


def given(**values: Any) -> dict[str, Any]:
    """The options that were given (not None): what overrides the config's defaults."""
    return {k: v for k, v in values.items() if v is not None}


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
