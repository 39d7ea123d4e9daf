"""The `semanticseg` command: one thin Typer command per stage, no logic of its own.

Commands live in semanticseg/commands/, one module per area (data, annotation, segmenter, block
attention) so each area's wiring stays small; importing them registers their commands on `app`.
"""

from __future__ import annotations

import typer

app = typer.Typer(
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
