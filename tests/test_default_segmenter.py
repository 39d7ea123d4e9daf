"""The segmenter that ships inside the package: it loads with no argument, from the CLI with no model, and its
blocks rebuild the input exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_default_model_loads_and_rebuilds_its_input():
    from semanticseg import Segmenter
    from semanticseg.segmenter.model import default_model_dir

    assert (default_model_dir() / "model.safetensors").stat().st_size < 8_000_000  # a few MB, kept in git
    text = README.read_text()
    seg = Segmenter.load()
    assert seg.config.voter_target_tokens == 0
    for target in (256, 1024):
        blocks = seg.segment(text, target_tokens=target)
        assert "".join(b.text for b in blocks) == text and len(blocks) > 1
        assert [b.start for b in blocks[1:]] == [b.end for b in blocks[:-1]]
    assert [(b.start, b.end) for b in Segmenter.load("default").segment(text)] == [(b.start, b.end) for b in seg.segment(text)]


@pytest.mark.slow
def test_readme_one_liner_and_cli_need_no_model():
    from semanticseg.cli import app

    line = "from semanticseg import Segmenter; print(len(Segmenter.load().segment(open('README.md').read())))"
    out = subprocess.run([sys.executable, "-c", line], cwd=README.parent, capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) > 1
    result = CliRunner().invoke(app, ["segment", str(README), "--target-tokens", "1024"])
    assert result.exit_code == 0, result.output
    records = [json.loads(r) for r in result.stdout.splitlines()]
    assert "".join(r["text"] for r in records) == README.read_text()
