"""The `semanticseg` command: one thin Typer command per stage, no logic of its own.

Commands live in semanticseg/commands/, one module per area (data, annotation, review, segmenter, block
attention) so each area's wiring stays small. Each module holds its commands on its own Typer `app`; this
module merges them (the commands never import this one) and lists them in the order data flows.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from semanticseg.commands import annotators, blocks, data, review, segmenter
from semanticseg.errors import UserError
from semanticseg.extras import missing_extra

# `--help` lists the commands in the order data flows through them (DESIGN.md); the panels (commands/common.py)
# follow, each first shown with its first command here.
FLOW = ("build", "collect", "candidates", "propose", "adjudicate", "release", "validate", "annotate",
        "train-segmenter", "segment", "evaluate", "distill", "eval-blocks", "llm")


class _Commands(TyperGroup):
    """The command group: expected user errors become one "error: ..." line and a non-zero exit, caught here
    once for every command (a parameter callback's too, since subcommands parse inside this invoke); Ctrl-C
    anywhere ends with one line saying what was kept (exit 130), never a traceback."""

    def list_commands(self, ctx):
        rank = {name: i for i, name in enumerate(FLOW)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as err:
            raise _exit(str(err), err.code) from None
        except KeyboardInterrupt as err:  # stages raise semanticseg.io.Interrupted with what they kept
            from semanticseg.commands.common import console

            console.print(str(err) or "interrupted: outputs already written are kept whole (each is written "
                          "atomically), the one in progress is not; rerun the same command to resume", soft_wrap=True)
            raise typer.Exit(130) from None
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
for commands in (data, annotators, review, segmenter, blocks):
    app.add_typer(commands.app)  # no name: the module's commands join the top level
