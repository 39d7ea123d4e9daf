"""The release validator: checks every instance and the split structure of a SemanticSeg release.

Per instance: every cut inside the text, sorted, unique and at one of the instance's candidate offsets;
one block length per block, summing to n_tokens, each within the recipe's block bounds; n_tokens within
the document length window; annotator cuts aligned with annotators; agreement in [0, 1].
Across the release: ids unique, splits disjoint (no id and no identical text in two splits), and a release
folder whole (card, release.json, shards and DatasetDict: a release killed midway lacks some).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from semanticseg.recipes import Recipe
from semanticseg.schema import Instance, from_table

MAX_ERRORS_SHOWN = 50


@dataclass(slots=True)
class ValidationReport:
    """What the validator checked and every problem it found (an empty `errors` means valid)."""

    instances: dict[str, int] = field(default_factory=dict)  # split -> rows checked
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.errors


def instance_errors(inst: Instance, recipe: Recipe) -> list[str]:
    """Everything wrong with one instance (empty when it is valid)."""
    errs: list[str] = []
    n = len(inst.text)
    cuts = list(inst.cuts)
    if any(not 0 < c < n for c in cuts):
        errs.append(f"cut outside the text (0, {n})")
    if cuts != sorted(set(cuts)):
        errs.append("cuts not sorted and unique")
    off_candidate = sorted(set(cuts) - set(inst.candidates))
    if off_candidate:
        errs.append(f"{len(off_candidate)} cuts not at a candidate position, first at {off_candidate[0]}")
    if len(inst.block_tokens) != len(cuts) + 1:
        errs.append(f"{len(inst.block_tokens)} block lengths for {len(cuts) + 1} blocks")
    if sum(inst.block_tokens) != inst.n_tokens:
        errs.append(f"block lengths sum to {sum(inst.block_tokens)}, n_tokens is {inst.n_tokens}")
    bad = [b for b in inst.block_tokens if not recipe.min_block_tokens <= b <= recipe.max_block_tokens]
    if bad:
        errs.append(
            f"{len(bad)} blocks outside [{recipe.min_block_tokens}, {recipe.max_block_tokens}] tokens, e.g. {bad[0]}"
        )
    if not recipe.min_tokens <= inst.n_tokens <= recipe.max_tokens:
        errs.append(f"n_tokens {inst.n_tokens} outside [{recipe.min_tokens}, {recipe.max_tokens}]")
    if len(inst.annotators) != len(inst.annotator_cuts):
        errs.append("annotators and annotator_cuts differ in length")
    if not 0.0 <= inst.agreement <= 1.0:
        errs.append(f"agreement {inst.agreement} outside [0, 1]")
    return [f"{inst.id}: {e}" for e in errs]


def validate_splits(splits: dict[str, list[Instance]], recipe: Recipe) -> ValidationReport:
    """Validate every instance of every split, then id uniqueness and split disjointness."""
    report = ValidationReport(instances={name: len(rows) for name, rows in splits.items()})
    id_split: dict[str, str] = {}
    text_split: dict[str, str] = {}
    for name, rows in splits.items():
        for inst in rows:
            report.errors.extend(instance_errors(inst, recipe))
            if inst.id in id_split:
                report.errors.append(f"{inst.id}: id repeated (in {id_split[inst.id]} and {name})")
            id_split[inst.id] = name
            digest = hashlib.sha256(inst.text.encode()).hexdigest()
            other = text_split.setdefault(digest, name)
            if other != name:
                report.errors.append(f"{inst.id}: the same text is in splits {other} and {name}")
    return report


def read_release(path: Path) -> dict[str, list[Instance]]:
    """Instances per split from a release folder (its data/<split>-*.parquet shards) or one parquet file."""
    path = Path(path)
    if path.is_file():
        return {path.stem: from_table(pq.read_table(path), Instance)}
    shards = sorted((path / "data").glob("*.parquet")) if (path / "data").is_dir() else sorted(path.glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{path}: no parquet shards (expected data/<split>-*.parquet or a .parquet file)")
    splits: dict[str, list[Instance]] = {}
    for shard in shards:
        split = shard.name.split("-", 1)[0]
        splits.setdefault(split, []).extend(from_table(pq.read_table(shard), Instance))
    return splits


# What `release` writes; release.json last, so a folder without it was interrupted (or is no release).
RELEASE_MARKER = "release.json"
RELEASE_FILES = ("README.md", "data", "dataset/dataset_dict.json", RELEASE_MARKER)


def validate_path(path: Path, recipe: Recipe) -> ValidationReport:
    """Validate a release folder (which must be whole) or an instances parquet file against a recipe's bounds."""
    path = Path(path)
    report = validate_splits(read_release(path), recipe)
    missing = [name for name in RELEASE_FILES if path.is_dir() and not (path / name).exists()]
    if missing:
        report.errors.insert(0, f"{path}: not a whole release, missing {', '.join(missing)} (interrupted? run `semanticseg release` again)")
    return report
