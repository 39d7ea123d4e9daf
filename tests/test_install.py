"""Install: a missing optional part is one line naming the extra that installs it, not a traceback.

(That the README's install line installs every part its commands need is proven by scripts/check_install.sh,
which scripts/test.sh runs in a new virtualenv.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _cli_without(module: str, args: list[str]) -> subprocess.CompletedProcess:
    """The CLI in a process where `module` cannot be imported (as if not installed)."""
    script = f"import sys; sys.modules[{module!r}] = None; sys.argv = ['semanticseg', *{args!r}]; from semanticseg.cli import app; app()"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


@pytest.mark.parametrize("module, extra", [("label_studio_sdk", "annotate"), ("torch", "train")])
def test_missing_optional_part_names_its_extra(tmp_path, module, extra):
    from semanticseg.io import write_records
    from semanticseg.schema import Candidates, Consensus, Document

    for name, cls in (("documents", Document), ("candidates", Candidates), ("consensus", Consensus)):
        write_records(tmp_path / "legal" / f"{name}.parquet", [], cls)
    args = {
        "label_studio_sdk": ["annotate", "push", "-c", "legal", "--work", str(tmp_path), "--url", "http://127.0.0.1:9", "--api-key", "x"],
        "torch": ["segment", "README.md", "--model", str(tmp_path)],
    }[module]
    done = _cli_without(module, args)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "╭" not in done.stderr
    flat = " ".join(done.stderr.split())  # rich wraps long lines
    assert f"{module} is not installed" in flat and f"pip install 'semanticseg[{extra}]'" in flat


def test_an_unrelated_missing_module_is_not_blamed_on_an_extra():
    from semanticseg.extras import missing_extra

    assert missing_extra(ModuleNotFoundError("No module named 'nope'", name="nope")) is None
    assert "semanticseg[train]" in missing_extra(ModuleNotFoundError("No module named 'torch.nn'", name="torch.nn"))
