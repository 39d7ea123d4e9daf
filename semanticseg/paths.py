"""Where the package finds its shipped data and keeps its caches: the one place that knows both.

Package data (pipelines/, annotation/, cards/) sits beside the package in a source checkout and under
semanticseg/_data/ in the installed wheel (pyproject's force-include). Caches (converted models, ONNX exports,
the Label Studio virtualenv, server logs) live under SEMANTICSEG_CACHE, by default ~/.cache/semanticseg.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def package_data(relative: str) -> Path:
    """A data file or folder shipped with the package (e.g. "pipelines/release.toml"): the installed copy, else the checkout's."""
    for candidate in (_PACKAGE / "_data" / relative, _PACKAGE.parent / relative):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{relative} not found beside the package: reinstall semanticseg")


def cache_dir() -> Path:
    """Where converted models and server state live (SEMANTICSEG_CACHE or ~/.cache/semanticseg)."""
    return Path(os.environ.get("SEMANTICSEG_CACHE", Path.home() / ".cache" / "semanticseg"))
