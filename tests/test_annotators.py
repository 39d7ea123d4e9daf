"""The annotator interface, the structure and similarity annotators, and the resumable propose stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from semanticseg.annotators import get_annotator
from semanticseg.annotators.base import parse_name, select_cuts
from semanticseg.annotators.similarity import model_dir
from semanticseg.dataset.propose import run_propose
from semanticseg.io import read_records
from semanticseg.schema import Candidates, Document, Proposal
from semanticseg.tiling import depth_scores
from tests.fixtures_llm import make_work, real_paragraphs
from tests.fixtures_signals import interruptible

GPL = Path("/usr/share/common-licenses/GPL-3").read_text()


def _doc_and_candidates(tmp_path: Path, text: str, category: str = "legal") -> tuple[Document, Candidates]:
    (doc,) = make_work(tmp_path, [("d", category, text)])
    (cands,) = read_records(tmp_path / "candidates.parquet", Candidates)
    return doc, cands


def test_registry_names_and_errors():
    assert parse_name("llm:gpt-4o-mini#2") == ("llm", {"model": "gpt-4o-mini", "sample": 2})
    assert parse_name("structure") == ("structure", {})
    assert get_annotator("structure").name == "structure"
    with pytest.raises(ValueError, match="unknown annotator"):
        get_annotator("magic")
    with pytest.raises(ValueError, match="sample"):
        parse_name("llm#x")


def test_select_cuts_follows_the_target_and_prefers_high_scores():
    positions = list(range(10, 1000, 10))
    scores = [1.0 if p % 200 == 0 else 0.0 for p in positions]
    chosen = [positions[i] for i in select_cuts(positions, scores, 1000, 200)]
    assert chosen == [200, 400, 600, 800]
    few = select_cuts(positions, [0.0] * len(positions), 1000, 500)
    many = select_cuts(positions, [0.0] * len(positions), 1000, 50)
    assert len(few) == 1 and 15 <= len(many) <= 25


def test_structure_cuts_at_sections_near_the_target(tmp_path):
    doc, cands = _doc_and_candidates(tmp_path, GPL)
    proposal = get_annotator("structure").propose(doc, cands, target_tokens=600)
    assert proposal.status == "ok" and set(proposal.cuts) <= set(cands.offsets)
    kinds = dict(zip(cands.offsets, cands.kinds))
    assert sum(kinds[c] == "heading" for c in proposal.cuts) >= len(proposal.cuts) // 2
    blocks = doc.n_tokens / (len(proposal.cuts) + 1)
    assert 300 < blocks < 1200
    finer = get_annotator("structure").propose(doc, cands, target_tokens=150)
    assert len(finer.cuts) > 2 * len(proposal.cuts)


def test_depth_scores_peak_at_the_valley():
    depths = depth_scores([0.9, 0.8, 0.2, 0.7, 0.9])
    assert max(range(5), key=depths.__getitem__) == 2
    assert depths[2] == pytest.approx(0.7 + 0.7)


@pytest.mark.slow
def test_similarity_finds_the_seam_between_two_real_texts(tmp_path):
    """GPL paragraphs followed by the MiniLM model card: the one real topic change is found."""
    card = (model_dir() / "README.md").read_text().split("---")[-1]
    card_paragraphs = [" ".join(p.split()) for p in card.split("\n\n") if len(p.split()) > 12][:8]
    left = real_paragraphs(8)
    text = "\n\n".join(left + card_paragraphs)
    doc, cands = _doc_and_candidates(tmp_path, text, "unknown")
    seam = text.index(card_paragraphs[0])
    proposal = get_annotator("similarity").propose(doc, cands, target_tokens=doc.n_tokens // 2)
    assert proposal.status == "ok" and len(proposal.cuts) >= 1
    index = cands.offsets.index
    assert min(abs(index(c) - index(seam)) for c in proposal.cuts) <= 1


def test_propose_is_resumable_and_keeps_finished_shards(tmp_path, scripted_server):
    make_work(tmp_path, [(f"d{i}", "legal", "\n\n".join(real_paragraphs(12)[i:i + 6])) for i in range(3)])
    scripted_server.reset(default=lambda body: ("status", 500))
    options = {"base_url": scripted_server.base_url, "max_retries": 0, "timeout_s": 5.0}
    run_propose(tmp_path, ["structure", "llm:scripted#0"], target_tokens=80, llm_options=options)
    first = read_records(tmp_path / "proposals.parquet", Proposal)
    assert [p.annotator for p in first] == ["structure"] * 3 + ["llm:scripted#0"] * 3
    assert [p.status for p in first] == ["ok"] * 3 + ["failed"] * 3
    shards = sorted((tmp_path / "proposals.parts").rglob("*.parquet"))
    assert len(shards) == 6
    stamps = {s: s.stat().st_mtime_ns for s in shards if "structure" in str(s)}
    # The rerun (as after a crash) redoes only the failed LLM proposals.
    scripted_server.reset(default=lambda body: ("answer", '{"cuts": [1]}'))
    summary = run_propose(tmp_path, ["structure", "llm:scripted#0"], target_tokens=80, llm_options=options)
    again = read_records(tmp_path / "proposals.parquet", Proposal)
    assert [p.status for p in again] == ["ok"] * 6
    assert len(scripted_server.requests) == 3
    assert {s: s.stat().st_mtime_ns for s in stamps} == stamps
    assert summary["annotators"]["llm:scripted#0"]["ok"] == 3
    assert (tmp_path / "propose.config.json").exists()


def test_propose_rejects_missing_candidates(tmp_path):
    make_work(tmp_path, [("d", "legal", GPL)])
    (tmp_path / "candidates.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="candidates.parquet"):
        run_propose(tmp_path, ["structure"])


@pytest.mark.slow
def test_ctrl_c_loses_nothing_and_a_rerun_continues(tmp_path, scripted_server):
    import signal
    import subprocess
    import time

    make_work(tmp_path / "legal", [(f"d{i}", "legal", "\n\n".join(real_paragraphs(12)[i:i + 4])) for i in range(4)])
    scripted_server.reset(default=lambda body: ("sleep", 1.5))
    cmd = ["semanticseg", "propose", "--work", str(tmp_path), "-c", "legal", "-a", "llm:scripted#0", "--target-tokens", "60",
           "--llm-base-url", scripted_server.base_url, "--concurrency", "1"]
    process = interruptible(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = tmp_path / "legal" / "proposals.parts"
    deadline = time.monotonic() + 60
    while not list(parts.rglob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert b"interrupted: kept" in err and b"Traceback" not in err  # one line saying what was kept
    done = len(list(parts.rglob("*.parquet")))
    assert 1 <= done < 4
    assert not (tmp_path / "legal" / "proposals.parquet").exists()
    scripted_server.reset(default=lambda body: ("sleep", 0))
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert len(scripted_server.requests) == 4 - done  # only the unfinished documents were asked again
    assert len(read_records(tmp_path / "legal" / "proposals.parquet", Proposal)) == 4


@pytest.mark.slow
def test_ctrl_c_stops_propose_within_seconds_and_a_rerun_resumes(tmp_path):
    """SIGINT to a real `semanticseg propose` while similarity runs: exit within seconds, one line, shards kept."""
    import signal
    import subprocess
    import sys
    import time

    licences = ("GPL-3", "LGPL-2.1", "GFDL-1.3", "MPL-1.1", "GPL-2", "MPL-2.0", "GFDL-1.2", "LGPL-2")
    make_work(tmp_path / "legal", [(name, "legal", Path(f"/usr/share/common-licenses/{name}").read_text()) for name in licences])
    cmd = [sys.executable, "-c", "from semanticseg.cli import app; app()", "propose", "--work", str(tmp_path),
           "-a", "structure", "-a", "similarity"]
    parts = tmp_path / "legal" / "proposals.parts"
    proc = interruptible(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list(parts.glob("*/similarity*/*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the first similarity proposal is written: the encoder is loaded, the rest is running
    assert proc.poll() is None, "propose finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    lines = [(time.monotonic() - sent, line) for line in proc.stderr]
    proc.wait(timeout=60)
    said = [(t, line) for t, line in lines if line.startswith("interrupted: kept")]
    assert said, lines
    # The work stops at once; the exit then waits only for the interpreter's teardown of torch (seconds).
    assert said[0][0] < 3, f"propose took {said[0][0]:.1f} s to stop after Ctrl-C"
    assert lines[-1][0] < 30
    assert proc.returncode == 130
    assert "rerun the same command to resume" in said[0][1] and not any("Traceback" in line for _, line in lines)
    kept = {p: p.stat().st_mtime_ns for p in parts.rglob("*.parquet")}
    assert len(kept) < 2 * len(licences) and any("similarity" in str(p) for p in kept)

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in kept.items())  # finished proposals were not redone
    proposals = read_records(tmp_path / "legal" / "proposals.parquet", Proposal)
    assert len(proposals) == 2 * len(licences) and all(p.status == "ok" for p in proposals)


def test_propose_takes_annotators_and_granularity_from_the_recipe(tmp_path):
    """Unset, `semanticseg propose`'s annotators and target come from the recipe (--recipe, else the shipped one)."""
    import json

    from typer.testing import CliRunner

    from semanticseg.cli import app
    from semanticseg.recipes import load_recipe

    make_work(tmp_path / "legal", [("d", "legal", GPL)])
    recipe = tmp_path / "structure-only.toml"
    recipe.write_text('[annotation]\nannotators = ["structure"]\n\n[blocks]\ntarget_tokens = 300\n')
    runner = CliRunner()

    def propose(*args: str) -> tuple[list[str], int]:
        result = runner.invoke(app, ["propose", "--work", str(tmp_path), "-c", "legal", *args])
        assert result.exit_code == 0, result.output
        config = json.loads((tmp_path / "legal" / "propose.config.json").read_text())
        return config["annotators"], config["target_tokens"]

    assert propose("--recipe", str(recipe)) == (["structure"], 300)
    assert propose("--recipe", str(recipe), "-a", "structure", "--target-tokens", "200") == (["structure"], 200)
    assert propose("-a", "structure") == (["structure"], load_recipe().target_block_tokens)
