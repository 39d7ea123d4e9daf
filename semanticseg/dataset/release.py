"""Built categories -> the SemanticSeg release: splits, HF DatasetDict, parquet shards, card, hub push.

Splits are deterministic and stratified by (category, length bucket). Near-duplicates never cross a split:
instances are first grouped (union-find) by two relations, and whole groups are assigned to splits:
- the same source: parts cut from one long source file (a book, a module, a log) share names, style and
  topic, so a model that saw part 1 in train has seen part 2's test answer in all but text;
- MinHash near-duplicates (datasketch LSH over word 5-grams): the same text reached us from two sources
  (e.g. two versions of one licence, a vendored file), which the source relation cannot see.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from semanticseg.dataset.stage import Stage, StageContext
from semanticseg.dataset.validate import RELEASE_MARKER, ValidationReport, validate_splits
from semanticseg.errors import UserError
from semanticseg.io import write_json, write_table
from semanticseg.recipes import Recipe
from semanticseg.schema import Instance, length_bucket, to_table

SPLIT_ORDER = ("train", "validation", "test")


class ReleaseInvalid(ValueError):
    """The release failed validation; nothing was published."""


class PublishError(RuntimeError):
    """The release was written locally but could not be published where --push-to-hub said."""


class OutFolderTaken(UserError):
    """--out holds something a release must not replace (files of its own, or a release without --overwrite)."""


@dataclass(slots=True)
class ReleaseSummary:
    """What a release wrote and how big each split is."""

    out_dir: str
    splits: dict[str, int]
    categories: dict[str, dict[str, int]]  # category -> split -> instances
    groups: int  # near-duplicate groups (each wholly inside one split)
    files: list[str] = field(default_factory=list)
    pushed_to: str = ""


def _shingles(text: str, n: int = 5) -> set[bytes]:
    words = text.split()
    return {" ".join(words[i : i + n]).encode() for i in range(max(len(words) - n + 1, 1))}


def near_duplicate_groups(instances: list[Instance], jaccard: float, num_perm: int = 128) -> list[int]:
    """Group index per instance: same source file or MinHash Jaccard >= `jaccard` puts two in one group."""
    from datasketch import MinHash, MinHashLSH

    parent = list(range(len(instances)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)

    by_source: dict[str, int] = {}
    for i, inst in enumerate(instances):
        union(i, by_source.setdefault(inst.source, i))  # collect gives every part of one text the same source
    lsh = MinHashLSH(threshold=jaccard, num_perm=num_perm)
    hashes = []
    for i, inst in enumerate(instances):
        mh = MinHash(num_perm=num_perm, seed=1)
        mh.update_batch(sorted(_shingles(inst.text)))
        hashes.append(mh)
        for j in lsh.query(mh):  # LSH candidates are approximate: confirm with the estimated Jaccard
            if mh.jaccard(hashes[j]) >= jaccard:
                union(i, j)
        lsh.insert(i, mh)
    return [find(i) for i in range(len(instances))]


def assign_splits(instances: list[Instance], groups: list[int], fractions: dict[str, float], seed: int) -> list[str]:
    """Split name per instance: whole groups go, largest first, where their strata still need most.

    Greedy stratified assignment (as in iterative stratification): every (category, length bucket)
    stratum wants fractions[split] x its size in each split; a group goes to the split whose remaining
    need, summed over its members' strata, is largest. The category's and the whole release's needs count
    half as much: in a small release the strata hold a few documents each and would all round to train,
    while these keep every split near its share. Largest groups go first
    so small ones can even out what they leave; ties between equal sizes break in a seeded hash order.
    """
    names = [s for s in SPLIT_ORDER if s in fractions] + sorted(set(fractions) - set(SPLIT_ORDER))
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys_of = []
    for inst in instances:
        cat, bucket = inst.category, length_bucket(inst.n_tokens)
        keys_of.append((((cat, bucket), 1.0), (cat, 0.5), ("all", 0.5)))
    need: dict[tuple[Any, str], float] = {}
    for keys in keys_of:
        for key, _ in keys:
            for split in names:
                need[(key, split)] = need.get((key, split), 0.0) + fractions[split]

    def order(g: int) -> tuple[int, str]:
        first = min(instances[i].id for i in members[g])
        return -len(members[g]), hashlib.sha256(f"{seed}:{first}".encode()).hexdigest()

    out = [""] * len(instances)
    for g in sorted(members, key=order):
        keys = [k for i in members[g] for k in keys_of[i]]
        best = max(names, key=lambda s: (sum(w * need[(key, s)] for key, w in keys), fractions[s]))
        for i in members[g]:
            out[i] = best
        for key, _ in keys:
            need[(key, best)] -= 1
    return out


def gather(work_root: Path, categories: list[str] | None = None) -> list[Instance]:
    """All instances under WORK/<category>/instances.parquet (for the given categories, or every built one)."""
    from semanticseg.io import read_records

    paths = sorted(Path(work_root).glob("*/instances.parquet"))
    if categories:
        paths = [Path(work_root) / c / "instances.parquet" for c in categories]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"not built yet: {', '.join(missing)} (run `semanticseg build` first)")
    if not paths:
        raise FileNotFoundError(f"no built category under {work_root} (run `semanticseg build` first)")
    return [inst for p in paths for inst in read_records(p, Instance)]


def write_shards(out_dir: Path, splits: dict[str, list[Instance]], shard_rows: int) -> list[Path]:
    """Parquet shards in the hub layout, data/<split>-NNNNN-of-MMMMM.parquet, rows sorted by id."""
    data = out_dir / "data"
    if data.exists():
        shutil.rmtree(data)
    written = []
    for split, rows in splits.items():
        rows = sorted(rows, key=lambda r: r.id)
        n_shards = max(1, -(-len(rows) // shard_rows))
        for k in range(n_shards):
            path = data / f"{split}-{k:05d}-of-{n_shards:05d}.parquet"
            write_table(path, to_table(rows[k * shard_rows : (k + 1) * shard_rows], Instance))
            written.append(path)
    return written


def save_dataset_dict(out_dir: Path, shards: list[Path]) -> Path:
    """The release as a Hugging Face DatasetDict saved with save_to_disk (out_dir/dataset)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables: dict[str, list[pa.Table]] = {}
    for shard in shards:
        tables.setdefault(shard.name.split("-", 1)[0], []).append(pq.read_table(shard))
    datasets.disable_progress_bars()  # the CLI shows its own progress; datasets' bars would interleave with it
    dd = datasets.DatasetDict({s: datasets.Dataset(pa.concat_tables(t)) for s, t in tables.items()})
    target, tmp = out_dir / "dataset", out_dir / ".dataset.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    dd.save_to_disk(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


HUB_PREFIX = "hub:"


def publish_target(target: str) -> tuple[str, str]:
    """Where --push-to-hub points: ("hub", "owner/name") for "hub:owner/name", else ("files", folder or fsspec URL).

    A bare "owner/name" that is not an existing folder could mean either, so it is refused (UserError) rather
    than guessed: a typo must not upload to the hub, nor a hub id be written to a local folder.
    """
    if target.startswith(HUB_PREFIX):
        repo = target[len(HUB_PREFIX):]
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            raise UserError(f"--push-to-hub {target}: a hub data set is hub:owner/name")
        return "hub", repo
    if re.fullmatch(r"[\w.-]+/[\w.-]+", target) and not Path(target).exists():
        raise UserError(
            f"--push-to-hub {target}: say where: hub:{target} for the Hugging Face hub, or ./{target} for a local folder"
        )
    return "files", target


def publish(out_dir: Path, target: str, private: bool = False) -> str:
    """Publish a release: "hub:owner/name" gets DatasetDict.push_to_hub; a local folder or fsspec URL
    ("file://...", "s3://...") gets the same files the hub repo would hold (card + data/ shards)."""
    import datasets

    kind, target = publish_target(target)
    if kind == "hub":
        from huggingface_hub import HfApi

        dd = datasets.load_from_disk(str(out_dir / "dataset"))
        try:
            dd.push_to_hub(target, private=private)
            # push_to_hub writes its own minimal README: replace it with the card and add its plots.
            HfApi().upload_folder(
                folder_path=str(out_dir), repo_id=target, repo_type="dataset", allow_patterns=["README.md", "plots/*.png"]
            )
        except OSError as err:  # the hub's HTTP, offline-mode and connection errors are all OSErrors
            raise PublishError(
                f"could not push to the hub data set {target}: {err}. Log in (`hf auth login` or HF_TOKEN) and check "
                "the network, or give --push-to-hub a folder to write the same files locally."
            ) from err
        return f"https://huggingface.co/datasets/{target}"
    import fsspec

    fs, root = fsspec.core.url_to_fs(target)
    for path in sorted([out_dir / "README.md", *(out_dir / "plots").glob("*.png"), *(out_dir / "data").glob("*.parquet")]):
        dest = f"{root}/{path.relative_to(out_dir).as_posix()}"
        fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(path), dest)
    return target


def release(
    work_root: Path,
    out_dir: Path,
    recipe: Recipe,
    categories: list[str] | None = None,
    push_to_hub: str | None = None,
    overwrite: bool = False,
) -> tuple[ReleaseSummary, ValidationReport]:
    """Gather built categories, split, validate, write parquet + DatasetDict + card, and optionally publish.

    The release is written beside out_dir and renamed into place, so out_dir always holds a whole release.
    Raises OutFolderTaken when out_dir holds other files, or a previous release and overwrite is False;
    ReleaseInvalid (after writing nothing) when the validator finds a problem.
    """
    from semanticseg.dataset.card import write_dataset_card

    if push_to_hub:
        publish_target(push_to_hub)  # a target that cannot work is an error before the release is built
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    instances = gather(work_root, categories)
    groups = near_duplicate_groups(instances, recipe.near_duplicate_jaccard)
    labels = assign_splits(instances, groups, recipe.splits, recipe.seed)
    splits: dict[str, list[Instance]] = {s: [] for s in recipe.splits}
    for inst, split in zip(instances, labels):
        splits[split].append(inst)
    # A few instances can leave a split empty; datasets cannot load an empty split back from disk, so omit it.
    splits = {s: rows for s, rows in splits.items() if rows}
    report = validate_splits(splits, recipe)
    if not report.ok:
        raise ReleaseInvalid(f"{len(report.errors)} problems, first: " + "; ".join(report.errors[:5]))
    staging = _aside(out_dir, "new")
    shutil.rmtree(staging, ignore_errors=True)  # left by a release killed while writing
    staging.mkdir(parents=True)
    shards = write_shards(staging, splits, recipe.shard_rows)
    save_dataset_dict(staging, shards)
    card_files = write_dataset_card(staging, splits, recipe)
    per_cat: dict[str, dict[str, int]] = {}
    for split, rows in splits.items():
        for inst in rows:
            per_cat.setdefault(inst.category, {s: 0 for s in splits})[split] += 1
    summary = ReleaseSummary(
        out_dir=str(out_dir),
        splits={s: len(r) for s, r in splits.items()},
        categories=dict(sorted(per_cat.items())),
        groups=len(set(groups)),
        files=[str(p.relative_to(staging)) for p in [*shards, *card_files]],
    )
    write_json(staging / RELEASE_MARKER, {"summary": asdict(summary), "recipe": recipe.to_json()})
    _swap_in(staging, out_dir)
    if push_to_hub:
        summary.pushed_to = publish(out_dir, push_to_hub)
        write_json(out_dir / RELEASE_MARKER, {"summary": asdict(summary), "recipe": recipe.to_json()})
    return summary, report


def _aside(out_dir: Path, role: str) -> Path:
    """The sibling folder where a new release is written ("new") or the old one waits to be deleted ("old")."""
    return out_dir.parent / f".{out_dir.name}.release-{role}"


def is_release(folder: Path) -> bool:
    """True when folder holds a whole release: release.json is written last, after data, dataset and card."""
    try:
        return "summary" in json.loads((Path(folder) / RELEASE_MARKER).read_text())
    except (OSError, ValueError):
        return False


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse an --out that holds anything but a previous release, and a previous release without overwrite.

    First finishes a swap that a kill interrupted: the previous release is put back, or its leftover deleted.
    """
    old = _aside(out_dir, "old")
    if old.exists() and not out_dir.exists():
        old.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutFolderTaken(f"--out {out_dir} is a file, not a folder")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if not is_release(out_dir):
        raise OutFolderTaken(
            f"--out {out_dir} is not empty and holds no complete release (no {RELEASE_MARKER}): nothing there was "
            "touched. Choose a new or empty folder, or remove this one if it is a release that was interrupted."
        )
    if not overwrite:
        raise OutFolderTaken(f"--out {out_dir} holds a previous release: pass --overwrite to replace it")


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Put the finished release at out_dir: the old one is renamed aside, the new renamed in, then the old deleted.

    A kill leaves the old release or the new one at out_dir (or, between the two renames, the old one aside,
    which check_out_dir puts back on the next run).
    """
    old = _aside(out_dir, "old")
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(slots=True)
class ReleaseStage(Stage):
    """Built categories under the work root -> the release folder (release() does the work)."""

    out_dir: Path
    recipe: Recipe
    categories: list[str] | None = None
    push_to_hub: str | None = None
    overwrite: bool = False

    name: ClassVar[str] = "release"

    @property
    def config_file(self) -> None:
        return None  # the release records its recipe and summary in its own release.json

    def settings(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "categories": self.categories, "push_to_hub": self.push_to_hub,
                "overwrite": self.overwrite, "recipe": self.recipe.to_json()}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        summary, _ = release(ctx.work_dir, self.out_dir, self.recipe, self.categories, self.push_to_hub, self.overwrite)
        return asdict(summary)
