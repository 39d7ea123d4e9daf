"""The `semanticseg` command: one thin Typer command per stage, no logic of its own.

Commands live in semanticseg/commands/, one module per area (data, annotation, segmenter, block
attention) so each area's wiring stays small; importing them registers their commands on `app`.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from semanticseg.errors import UserError
from semanticseg.extras import missing_extra


class _Commands(TyperGroup):
    """The command group: expected user errors become one "error: ..." line and a non-zero exit, caught here
    once for every command (a parameter callback's too, since subcommands parse inside this invoke)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as err:
            raise _exit(str(err), err.code) from None
        except ModuleNotFoundError as err:
            message = missing_extra(err)  # an optional part the install left out: name the extra that has it
            if message is None:
                raise
            raise _exit(message, 2) from None
        except (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError) as err:
            if err.filename is None:
                raise
            # The file system refused a path the user chose (read-only output folder, a file where a folder goes).
            raise _exit(f"{err.filename}: {err.strerror}; check its permissions, or choose another folder (--work / --out)", 1) from None


def _exit(message: str, code: int) -> typer.Exit:
    from rich.markup import escape

    from semanticseg.commands.common import console

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)  # one line per error, not wrapped
    return typer.Exit(code)


app = typer.Typer(
    cls=_Commands,
    name="semanticseg",
    help=(
        "Build SemanticSeg (a long-text semantic segmentation data set), cut text into self-contained "
        "blocks, and distill block-attention LLMs.\n\n"
        "Data flow: collect -> candidates -> propose -> adjudicate -> annotate push/pull -> release; "
        "`build` runs them all for a category."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)

from semanticseg.commands import annotators, blocks, data, review, segmenter  # noqa: E402,F401  (registers commands)
