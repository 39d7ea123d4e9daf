"""`build`: block bounds on real text, and the whole pipeline on the embedded offline sources."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from semanticseg.dataset.instances import enforce_bounds
from semanticseg.tokens import span_tokens, token_starts

GPL3 = Path("/usr/share/common-licenses/GPL-3")
CATEGORY = "code"  # its embedded offline source is the Python standard library: real, always installed


def _paragraphs(text: str) -> list[int]:
    return [i + 2 for i in range(len(text) - 2) if text[i : i + 2] == "\n\n" and text[i + 2] != "\n"]


def _blocks(cuts: list[int], starts: list[int], n: int) -> list[int]:
    bounds = [0, *cuts, n]
    return [span_tokens(starts, a, b) for a, b in zip(bounds, bounds[1:])]


def test_short_blocks_merge_and_long_blocks_split_at_candidates():
    text = GPL3.read_text()
    starts, offsets = token_starts(text), _paragraphs(text)
    every = enforce_bounds(offsets, offsets, starts, len(text), 60, 4096)  # every paragraph: many tiny blocks
    assert every is not None and set(every) < set(offsets)
    assert min(_blocks(offsets, starts, len(text))) < 60 <= min(_blocks(every, starts, len(text)))
    none = enforce_bounds([], offsets, starts, len(text), 16, 300)  # one 7k-token block: split to <= 300
    assert none is not None and set(none) <= set(offsets)
    assert max(_blocks(none, starts, len(text))) <= 300 and min(_blocks(none, starts, len(text))) >= 16


def test_bounds_that_candidates_cannot_meet_give_none():
    text = GPL3.read_text()
    starts = token_starts(text)
    assert enforce_bounds([], [], starts, len(text), 16, 4096) is None  # 7k tokens, nowhere to cut


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from semanticseg.cli import app; app()", *args]


def _release_digests(work: Path, out: Path) -> dict[str, str]:
    from semanticseg.dataset.release import release
    from semanticseg.recipes import load_recipe

    release(work, out, load_recipe())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "data").glob("*.parquet"))}


@pytest.mark.slow
def test_killed_build_resumes_to_the_same_release(tmp_path):
    args = ["build", "--category", CATEGORY, "--limit", "3", "--annotators", "structure"]
    whole = tmp_path / "whole"
    subprocess.run(_cli(*args, "--work", str(whole)), check=True, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--work", str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the collect stage's completion marker (written just after its output) says the stage is finished
    first_output = killed / CATEGORY / "documents.parquet.done.json"
    deadline = time.monotonic() + 240
    while not first_output.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first_output.exists() and not (killed / CATEGORY / "instances.parquet").exists(), "not killed mid-build"
    subprocess.run(_cli(*args, "--work", str(killed)), check=True, capture_output=True, timeout=300)
    report = json.loads((killed / CATEGORY / "build_report.json").read_text())
    assert report["stages"]["collect"] == "skipped"  # the stage finished before the kill was not redone

    digests = _release_digests(whole, tmp_path / "release-whole")
    assert digests and digests == _release_digests(killed, tmp_path / "release-killed")

    # A build over complete outputs redoes nothing and says so, stage by stage.
    again = subprocess.run(_cli(*args, "--work", str(whole)), check=True, capture_output=True, text=True, timeout=300)
    stages = json.loads((whole / CATEGORY / "build_report.json").read_text())["stages"]
    assert stages == {s: "skipped" for s in stages} and "ran nothing (all complete)" in " ".join(again.stderr.split())


def test_build_refuses_bad_input_clearly(tmp_path):
    from typer.testing import CliRunner

    from semanticseg.cli import app

    runner = CliRunner()
    neither = runner.invoke(app, ["build", "--work", str(tmp_path)])
    assert neither.exit_code == 2 and "--category NAME" in neither.output
    unknown = runner.invoke(app, ["build", "-c", "poetry-slam", "--work", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown category poetry-slam" in unknown.output
    bad_recipe = tmp_path / "r.toml"
    bad_recipe.write_text('[release]\nsplits = { train = 0.9, test = 0.2 }\n')
    refused = runner.invoke(app, ["build", "-c", "code", "--recipe", str(bad_recipe), "--work", str(tmp_path)])
    assert refused.exit_code == 2 and "sum to 1" in refused.output
    assert not any(tmp_path.glob("*/documents.parquet"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_truncated_and_tampered_outputs_are_redone_from_their_markers(tmp_path):
    import pyarrow.parquet as pq

    args = [*_cli("build", "--category", CATEGORY, "--limit", "2", "--annotators", "structure"), "--work", str(tmp_path)]
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    work = tmp_path / CATEGORY
    docs, proposals, instances = (work / f"{name}.parquet" for name in ("documents", "proposals", "instances"))
    shards = sorted((work / "proposals.parts").rglob("*.parquet"))
    good = {p: _digest(p) for p in (docs, proposals, instances, *shards)}

    # A truncated documents.parquet: a stage that reads it says so and how to recover; build redoes it.
    docs.write_bytes(docs.read_bytes()[: docs.stat().st_size // 2])
    refused = subprocess.run(_cli("candidates", "--work", str(tmp_path), "-c", CATEGORY), capture_output=True, text=True, timeout=300)
    said = "".join(refused.stderr.split())  # rich wraps long lines, even inside a path
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "documents.parquetcannotberead" in said and "rerun`semanticsegbuild`" in said
    # Truncated proposals (the stage output and a shard it is assembled from), and an instances.parquet
    # changed behind the build's back (fewer rows).
    for path in (proposals, shards[0]):
        path.write_bytes(path.read_bytes()[:100])
    pq.write_table(pq.read_table(instances).slice(0, 1), instances)
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    report = json.loads((work / "build_report.json").read_text())
    assert report["stages"]["collect"] == report["stages"]["propose"] == report["stages"]["instances"] == "ran"
    assert {p: _digest(p) for p in good} == good  # every damaged output was redone, to the same bytes


def test_model_annotators_start_ahead_only_when_propose_will_run(tmp_path):
    """build_category asks the executor to start the model annotators' workers ahead only when propose will run: a
    resumed build whose proposals are complete must not load an encoder for nothing (and stays byte for byte)."""
    from semanticseg.dataset.build import BuildConfig, build_category
    from semanticseg.executors import LocalExecutor
    from semanticseg.recipes import load_recipe

    class Recording(LocalExecutor):
        def __init__(self) -> None:
            self.prestarted: list[list[str]] = []

        def prestart(self, makers):
            self.prestarted.append(sorted(makers))

    recipe = load_recipe()
    config = BuildConfig([CATEGORY], str(tmp_path), ["structure", "similarity"], recipe.target_block_tokens,
                         recipe.agreement_threshold, limit=2)
    first, again = Recording(), Recording()
    build_category(CATEGORY, config, recipe, executor=first)
    proposals = (tmp_path / CATEGORY / "proposals.parquet").read_bytes()
    assert first.prestarted == [["similarity"]]
    report = build_category(CATEGORY, config, recipe, executor=again)
    assert report.stages["propose"] == "skipped" and again.prestarted == []
    assert (tmp_path / CATEGORY / "proposals.parquet").read_bytes() == proposals
