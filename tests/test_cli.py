"""The command line's shape: every command in one help panel, panels and commands in the order data flows,
and `semanticseg --help` without the heavy libraries."""

from __future__ import annotations

import re
import subprocess
import sys

import typer
from typer.testing import CliRunner

from semanticseg.cli import FLOW, app
from semanticseg.commands.common import BLOCKS, DATASET, REVIEW, SEGMENTER, SERVERS


def _top_level() -> dict[str, str | None]:
    """Command name -> its help panel, as click sees the group."""
    group = typer.main.get_command(app)
    return {name: getattr(cmd, "rich_help_panel", None) for name, cmd in group.commands.items()}


def test_every_command_has_a_panel_and_a_place_in_the_flow():
    commands = _top_level()
    assert sorted(commands) == sorted(FLOW)  # a new command must be placed in cli.FLOW
    assert not [name for name, panel in commands.items() if panel is None]


def test_help_lists_panels_and_commands_in_data_flow_order():
    result = CliRunner().invoke(app, ["--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    panels = re.findall(r"╭─ (.+?) ─", result.output)
    assert panels == ["Options", DATASET, REVIEW, SEGMENTER, BLOCKS, SERVERS]
    listed = re.findall(r"^│ ([a-z][a-z-]+) ", result.output, flags=re.MULTILINE)
    listed = [name for name in listed if name in FLOW]
    assert listed == list(FLOW)


def test_the_cli_imports_no_heavy_library():
    """`semanticseg --help` stays fast: the stages' libraries load inside the commands that use them."""
    heavy = ("torch", "transformers", "label_studio_sdk", "datasets", "polars", "pyarrow", "openai", "sentence_transformers")
    code = f"import sys, semanticseg.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
