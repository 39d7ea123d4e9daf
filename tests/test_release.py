"""`release` and `validate` on real texts: splits, DatasetDict + parquet round trip, card, publishing."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from semanticseg.dataset.release import PublishError, ReleaseInvalid, assign_splits, near_duplicate_groups, publish, release
from semanticseg.dataset.validate import instance_errors, validate_path, validate_splits
from semanticseg.recipes import load_recipe
from semanticseg.schema import Instance, length_bucket

pytestmark = pytest.mark.slow  # a release takes a few seconds (MinHash, save_to_disk, matplotlib)


ARGPARSE = "cpython:Lib/argparse.py"  # two instances cut from this one source


def _splits_of(summary_dir: Path) -> dict[str, set[str]]:
    """Source -> the splits its instances landed in."""
    import pyarrow.parquet as pq

    out: dict[str, set[str]] = {}
    for shard in (summary_dir / "data").glob("*.parquet"):
        for row in pq.read_table(shard, columns=["source"]).to_pylist():
            out.setdefault(row["source"], set()).add(shard.name.split("-", 1)[0])
    return out


def test_near_duplicates_group_by_minhash_and_by_source(release_instances):
    groups = near_duplicate_groups(release_instances, jaccard=0.8)
    by_source = {i.source: g for i, g in zip(release_instances, groups)}
    assert by_source["debian:common-licenses/GFDL-1.2"] == by_source["debian:common-licenses/GFDL-1.3"]
    assert len({g for i, g in zip(release_instances, groups) if i.source == ARGPARSE}) == 1
    assert by_source["debian:common-licenses/MPL-1.1"] != by_source["debian:common-licenses/MPL-2.0"]
    assert len(set(groups)) == len(release_instances) - 2


def test_splits_are_deterministic_stratified_and_keep_groups_together(release_instances):
    groups = near_duplicate_groups(release_instances, jaccard=0.8)
    fractions = {"train": 0.6, "validation": 0.2, "test": 0.2}
    labels = assign_splits(release_instances, groups, fractions, seed=0)
    assert labels == assign_splits(list(reversed(release_instances)), list(reversed(groups)), fractions, seed=0)[::-1]
    for g in set(groups):
        assert len({lab for lab, h in zip(labels, groups) if h == g}) == 1
    for cat in ("legal", "code"):  # every category feeds every split
        assert {lab for lab, i in zip(labels, release_instances) if i.category == cat} == set(fractions)
    assert assign_splits(release_instances, groups, fractions, seed=1) != labels


def test_release_round_trips_through_datasets_and_validates(released, tmp_path):
    import datasets

    recipe = load_recipe()
    out, summary = released
    assert sum(summary.splits.values()) == 20
    assert set(summary.splits) == {"train", "validation", "test"} and all(summary.splits.values())

    splits_of = _splits_of(out)
    assert splits_of["debian:common-licenses/GFDL-1.2"] == splits_of["debian:common-licenses/GFDL-1.3"]
    assert len(splits_of["debian:common-licenses/GFDL-1.2"]) == len(splits_of[ARGPARSE]) == 1

    columns = [f.name for f in dataclasses.fields(Instance)]
    dd = datasets.load_from_disk(str(out / "dataset"))
    assert {s: len(d) for s, d in dd.items()} == summary.splits
    assert dd["train"].column_names == columns
    assert dd["train"].features["cuts"].feature.dtype == "int64"

    files = {s: str(out / "data" / f"{s}-*.parquet") for s in summary.splits}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    assert {s: len(d) for s, d in loaded.items()} == summary.splits
    row = loaded["test"][0]
    bounds = [0, *row["cuts"], len(row["text"])]
    assert "".join(row["text"][a:b] for a, b in zip(bounds, bounds[1:])) == row["text"]
    assert validate_path(out, recipe).ok

    card = (out / "README.md").read_text()
    assert f"| all | 20 | {sum(dd[s]['n_tokens'][i] for s in dd for i in range(len(dd[s]))):,} |" in card
    assert "| legal | 10 |" in card and "![block length per category](plots/block_tokens.png)" in card
    for png in ("lengths.png", "block_tokens.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_release_is_byte_identical_when_repeated(built_work_root, tmp_path):
    recipe = load_recipe()
    digests = []
    for name in ("a", "b"):
        release(built_work_root, tmp_path / name, recipe)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / name / "data").iterdir()})
    assert digests[0] == digests[1]


def test_validator_finds_broken_instances(release_instances):
    recipe = load_recipe()
    good = release_instances[0]
    assert instance_errors(good, recipe) == []
    off_candidate = dataclasses.replace(good, cuts=[good.cuts[0] + 1, *good.cuts[1:]])
    unsorted = dataclasses.replace(good, cuts=good.cuts[::-1])
    tiny = dataclasses.replace(good, block_tokens=[3, *good.block_tokens[1:]])
    for bad, words in ((off_candidate, "not at a candidate"), (unsorted, "not sorted"), (tiny, "blocks outside")):
        assert any(words in e for e in instance_errors(bad, recipe)), words
    crossing = validate_splits({"train": [good], "test": [dataclasses.replace(good, source="elsewhere")]}, recipe)
    assert any("id repeated" in e for e in crossing.errors) and any("same text" in e for e in crossing.errors)


def test_release_refuses_invalid_instances(built_work_root, tmp_path, release_instances):
    from semanticseg.io import write_records

    broken = [dataclasses.replace(i, cuts=[1, *i.cuts]) for i in release_instances if i.category == "legal"]
    write_records(built_work_root / "legal" / "instances.parquet", broken, Instance)
    with pytest.raises(ReleaseInvalid, match="not at a candidate"):
        release(built_work_root, tmp_path / "release", load_recipe())
    assert not (tmp_path / "release" / "data").exists()


def test_push_to_a_local_folder_gives_a_loadable_hub_layout(released, tmp_path):
    import datasets

    out, summary = released
    hub = tmp_path / "hub" / "semanticseg"
    assert publish(out, str(hub)) == str(hub)
    # The card's YAML `configs` header is what the hub uses to find the splits: load the folder by it alone.
    loaded = datasets.load_dataset(str(hub), cache_dir=str(tmp_path / "hf-cache"))
    assert {s: len(d) for s, d in loaded.items()} == summary.splits
    assert (hub / "plots" / "lengths.png").exists()


def test_buckets_of_fixture_cover_more_than_one(release_instances):
    # Guards the stratification tests above: they mean little if every instance sat in one bucket.
    assert len({length_bucket(i.n_tokens) for i in release_instances}) >= 3


def test_cli_release_then_validate_and_a_broken_release_fails(built_work_root, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from semanticseg.cli import app

    out = tmp_path / "release"
    runner = CliRunner()
    done = runner.invoke(app, ["release", "--work", str(built_work_root), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0
    # Move one test row into train as well: the same id in two splits must fail validation.
    test_shard = next((out / "data").glob("test-*.parquet"))
    train_shard = next((out / "data").glob("train-*.parquet"))
    pq.write_table(pa.concat_tables([pq.read_table(train_shard), pq.read_table(test_shard).slice(0, 1)]), train_shard)
    broken = runner.invoke(app, ["validate", str(out)])
    assert broken.exit_code == 1 and "id repeated" in broken.output


def test_push_to_a_hub_repo_offline_fails_with_advice(released, monkeypatch):
    import huggingface_hub.constants

    out, _ = released
    # The real DatasetDict.push_to_hub path, stopped by the hub client's own offline switch before any request.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PublishError, match="offline mode is enabled.*hf auth login"):
        publish(out, "hub:someone/semanticseg-test")


def test_a_tiny_release_omits_empty_splits_and_loads_back(tmp_path, release_instances):
    import datasets

    from tests.fixtures_release import write_work_root

    work = write_work_root(tmp_path / "work", release_instances[:2])
    summary, _ = release(work, tmp_path / "release", load_recipe())
    assert all(summary.splits.values()) and sum(summary.splits.values()) == 2
    assert {s: len(d) for s, d in datasets.load_from_disk(str(tmp_path / "release" / "dataset")).items()} == summary.splits


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_release_refuses_a_folder_that_is_not_a_release_and_keeps_a_previous_one(built_work_root, tmp_path):
    from semanticseg.dataset.release import OutFolderTaken

    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "data" / "keep.parquet").write_bytes(b"my own data")
    (out / "README.md").write_text("my notes")
    before = _digests(out)
    with pytest.raises(OutFolderTaken, match="holds no complete release"):
        release(built_work_root, out, load_recipe())
    assert _digests(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["mine", "work"]

    out = tmp_path / "release"
    release(built_work_root, out, load_recipe())
    first = _digests(out)
    with pytest.raises(OutFolderTaken, match="--overwrite"):
        release(built_work_root, out, load_recipe())
    assert _digests(out) == first
    (built_work_root / "code" / "instances.parquet").unlink()  # a different release replaces the first one whole
    summary, _ = release(built_work_root, out, load_recipe(), overwrite=True)
    assert set(summary.categories) == {"legal"} and validate_path(out, load_recipe()).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "release", "work"]  # nothing left beside it


def test_a_killed_release_leaves_the_old_or_the_new_one_whole(built_work_root, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "release"
    release(built_work_root, out, load_recipe())
    old = _digests(out)
    (built_work_root / "code" / "instances.parquet").unlink()
    cmd = [sys.executable, "-c", "from semanticseg.cli import app; app()", "release", "--work", str(built_work_root),
           "--out", str(out), "--overwrite"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill it as soon as it starts writing: beside the release, or (before this fix) inside it.
    while proc.poll() is None and time.monotonic() < deadline:
        staged = [p for p in tmp_path.iterdir() if p.name.startswith(".release")]
        try:
            changed = _digests(out) != old
        except OSError:  # a file vanished while being read: it is changing
            changed = True
        if staged or changed:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the release finished before it could be killed"
    assert _digests(out) == old and validate_path(out, load_recipe()).ok
    summary, _ = release(built_work_root, out, load_recipe(), overwrite=True)  # the next run cleans up and replaces
    assert set(summary.categories) == {"legal"} and sorted(p.name for p in tmp_path.iterdir()) == ["release", "work"]


def test_a_kill_between_the_two_renames_is_undone_by_the_next_run(released, tmp_path):
    import shutil

    from semanticseg.dataset.release import OutFolderTaken, check_out_dir

    out, _ = released
    aside = tmp_path / ".release.release-old"
    shutil.copytree(out, aside)  # the old release renamed aside, the new one not yet renamed in
    with pytest.raises(OutFolderTaken, match="--overwrite"):
        check_out_dir(tmp_path / "release", overwrite=False)
    assert _digests(tmp_path / "release") == _digests(out) and not aside.exists()


def test_validate_requires_the_whole_release(released, tmp_path):
    import shutil

    out, _ = released
    half = tmp_path / "half"
    shutil.copytree(out, half)
    assert validate_path(half, load_recipe()).ok
    for name in ("README.md", "release.json"):  # what a release killed after writing data/ and dataset/ lacked
        (half / name).unlink()
    report = validate_path(half, load_recipe())
    assert not report.ok and "not a whole release, missing README.md, release.json" in report.errors[0]
