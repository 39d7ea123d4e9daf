"""The release recipe (pipelines/release.toml) as a typed record.

`build`, `release` and `validate` all read the same recipe, so the block bounds the build enforces are the
ones the validator checks, and the targets the build reports its shortfall against are the ones in the card.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semanticseg.schema import LENGTH_BUCKETS

_RECIPE_NAME = "release.toml"


def package_data(relative: str) -> Path:
    """A data file shipped with the package (pipelines/, cards/): the installed copy, else the checkout's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / relative, here.parent / relative):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{relative} not found beside the package")


def default_recipe_path() -> Path:
    """pipelines/release.toml (installed package data or the source checkout)."""
    return package_data(f"pipelines/{_RECIPE_NAME}")


@dataclass(slots=True)
class Recipe:
    """Everything the release recipe fixes: splits, length window, block bounds, annotators, targets."""

    name: str = "SemanticSeg"
    seed: int = 0
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    near_duplicate_jaccard: float = 0.8
    shard_rows: int = 2000
    min_tokens: int = 2000
    max_tokens: int = 32000
    encoding: str = "cl100k_base"
    target_block_tokens: int = 512
    min_block_tokens: int = 16
    max_block_tokens: int = 4096
    annotators: list[str] = field(default_factory=lambda: ["structure", "similarity", "llm"])
    agreement_threshold: float = 0.6
    offline_documents: int = 4
    offline_llm: str = "auto"
    offline_llm_options: dict[str, Any] = field(default_factory=dict)  # LLMAnnotator options for the local server
    targets: dict[str, dict[str, int]] = field(default_factory=dict)  # category or "default" -> bucket -> count
    path: str = ""

    def target(self, category: str) -> dict[str, int]:
        """Target instances per length bucket for a category (its own table, else the default one)."""
        table = self.targets.get(category, self.targets.get("default", {}))
        return {name: int(table.get(name, 0)) for name, _, _ in LENGTH_BUCKETS}

    def to_json(self) -> dict[str, Any]:
        """The recipe as a JSON-ready dict (dumped beside every output that followed it; no local path)."""
        return {k: v for k, v in asdict(self).items() if k != "path"}


def load_recipe(path: Path | None = None) -> Recipe:
    """Read a release recipe TOML (default: pipelines/release.toml) into a Recipe; raise ValueError if invalid."""
    path = path or default_recipe_path()
    raw = tomllib.loads(Path(path).read_text())
    rel, docs, blocks = raw.get("release", {}), raw.get("documents", {}), raw.get("blocks", {})
    ann, off = raw.get("annotation", {}), raw.get("offline", {})
    recipe = Recipe(
        name=rel.get("name", "SemanticSeg"),
        seed=int(rel.get("seed", 0)),
        splits={k: float(v) for k, v in rel.get("splits", {"train": 0.8, "validation": 0.1, "test": 0.1}).items()},
        near_duplicate_jaccard=float(rel.get("near_duplicate_jaccard", 0.8)),
        shard_rows=int(rel.get("shard_rows", 2000)),
        min_tokens=int(docs.get("min_tokens", 2000)),
        max_tokens=int(docs.get("max_tokens", 32000)),
        encoding=docs.get("encoding", "cl100k_base"),
        target_block_tokens=int(blocks.get("target_tokens", 512)),
        min_block_tokens=int(blocks.get("min_tokens", 16)),
        max_block_tokens=int(blocks.get("max_tokens", 4096)),
        annotators=list(ann.get("annotators", ["structure", "similarity", "llm"])),
        agreement_threshold=float(ann.get("agreement_threshold", 0.6)),
        offline_documents=int(off.get("documents_per_category", 4)),
        offline_llm=str(off.get("llm", "auto")),
        offline_llm_options=dict(off.get("llm_options", {})),
        targets={k: dict(v) for k, v in raw.get("targets", {}).items()},
        path=str(path),
    )
    if abs(sum(recipe.splits.values()) - 1.0) > 1e-6 or any(v < 0 for v in recipe.splits.values()):
        raise ValueError(f"{path}: split fractions must be >= 0 and sum to 1, got {recipe.splits}")
    if not 0 < recipe.min_block_tokens <= recipe.target_block_tokens <= recipe.max_block_tokens:
        raise ValueError(f"{path}: need 0 < blocks.min_tokens <= target_tokens <= max_tokens")
    if recipe.offline_llm not in {"auto", "off"}:
        raise ValueError(f"{path}: offline.llm must be 'auto' or 'off', got {recipe.offline_llm!r}")
    return recipe
