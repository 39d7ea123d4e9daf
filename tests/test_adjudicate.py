"""Adjudication on planted agreements and disagreements between annotators."""

from __future__ import annotations

import pytest

from semanticseg.dataset.adjudicate import PairAgreement, consensus_positions, run_adjudicate
from semanticseg.io import read_records, rewrite_records, write_records
from semanticseg.schema import Candidates, Consensus, Proposal
from tests.fixtures_llm import make_work, real_paragraphs


@pytest.fixture()
def work(tmp_path):
    """Three documents of real text with their candidates."""
    make_work(tmp_path, [(f"d{i}", "legal", "\n\n".join(real_paragraphs(30)[i * 10:(i + 1) * 10])) for i in range(3)])
    cands = {c.doc_id: c.offsets for c in read_records(tmp_path / "candidates.parquet", Candidates)}
    assert all(len(o) >= 9 for o in cands.values())
    return tmp_path, cands


def _write(tmp_path, rows):
    write_records(tmp_path / "proposals.parquet", [Proposal(d, a, cuts, status=s, error="x" if s != "ok" else "")
                                                   for d, a, cuts, s in rows], Proposal)


def test_consensus_is_a_majority_within_tolerance():
    assert consensus_positions([[3, 7], [3, 8], [3]], tolerance=1) == [3, 7]  # 7/8 near miss: 2 of 3 votes
    assert consensus_positions([[3, 7], [3, 8], [3]], tolerance=0) == [3]
    assert consensus_positions([[2], [5], [9]], tolerance=1) == []
    assert consensus_positions([[4, 5], [5], [5]], tolerance=1) == [5]  # one cut per neighbourhood
    assert consensus_positions([], tolerance=1) == []


def test_planted_agreement_and_disagreement(work):
    tmp_path, c = work
    o = {d: offsets for d, offsets in c.items()}
    _write(tmp_path, [
        # d0: all three agree exactly.
        ("d0", "a", [o["d0"][2], o["d0"][5]], "ok"), ("d0", "b", [o["d0"][2], o["d0"][5]], "ok"),
        ("d0", "c", [o["d0"][2], o["d0"][5]], "ok"),
        # d1: b misses one cut by one candidate (near miss), c agrees with a.
        ("d1", "a", [o["d1"][1], o["d1"][6]], "ok"), ("d1", "b", [o["d1"][1], o["d1"][7]], "ok"),
        ("d1", "c", [o["d1"][1], o["d1"][6]], "ok"),
        # d2: nobody agrees; the failed proposal does not vote.
        ("d2", "a", [o["d2"][0]], "ok"), ("d2", "b", [o["d2"][4]], "ok"), ("d2", "c", [o["d2"][8]], "ok"),
        ("d2", "llm", [], "failed"),
    ])
    summary = run_adjudicate(tmp_path, threshold=0.6, tolerance=1)
    consensus = {r.doc_id: r for r in read_records(tmp_path / "consensus.parquet", Consensus)}
    assert consensus["d0"].agreement == pytest.approx(1.0) and not consensus["d0"].disputed
    assert consensus["d0"].cuts == [o["d0"][2], o["d0"][5]] and consensus["d0"].disputed_offsets == []
    assert 0.6 < consensus["d1"].agreement < 1.0 and not consensus["d1"].disputed
    assert consensus["d1"].cuts == [o["d1"][1], o["d1"][6]]
    assert consensus["d1"].disputed_offsets == [o["d1"][6], o["d1"][7]]
    assert consensus["d2"].agreement == pytest.approx(0.0) and consensus["d2"].disputed
    assert consensus["d2"].cuts == [] and consensus["d2"].annotators == ["a", "b", "c"]
    disputed = read_records(tmp_path / "disputed.parquet", Consensus)
    assert [d.doc_id for d in disputed] == ["d2"]
    pairs = read_records(tmp_path / "agreement.parquet", PairAgreement)
    assert len(pairs) == 9
    assert summary["disputed"] == 1
    assert {row["pair"] for row in summary["table"]} == {"a vs b", "a vs c", "b vs c"}
    ab = next(row for row in summary["table"] if row["pair"] == "a vs b")
    assert ab["documents"] == 3 and 0 < ab["boundary_similarity"] < 1


def test_single_annotator_goes_to_review_and_human_decisions_are_kept(work):
    tmp_path, c = work
    _write(tmp_path, [(d, "structure", [c[d][3]], "ok") for d in c])
    run_adjudicate(tmp_path)
    consensus = read_records(tmp_path / "consensus.parquet", Consensus)
    assert all(r.disputed for r in consensus)
    human = consensus[0]
    human.cuts, human.human_reviewed, human.disputed, human.reviewer = [c["d0"][7]], True, False, "ann@example.org"
    rewrite_records(tmp_path / "consensus.parquet", consensus, Consensus)  # as `annotate pull` merges a decision
    skipped = run_adjudicate(tmp_path)  # same proposals and settings: nothing to redo
    assert skipped["skipped"] and skipped["disputed"] == 2  # counted as now: d0 has its human decision
    run_adjudicate(tmp_path, force=True)
    again = {r.doc_id: r for r in read_records(tmp_path / "consensus.parquet", Consensus)}
    assert again["d0"].human_reviewed and again["d0"].cuts == [c["d0"][7]]
    assert [d.doc_id for d in read_records(tmp_path / "disputed.parquet", Consensus)] == ["d1", "d2"]


def test_bad_settings_are_rejected(work):
    tmp_path, _ = work
    with pytest.raises(ValueError):
        run_adjudicate(tmp_path, threshold=1.5)


def test_the_command_takes_its_threshold_from_the_recipe(tmp_path):
    """`semanticseg adjudicate` alone disputes what `build` disputes: its threshold is the recipe's unless given."""
    import json

    from typer.testing import CliRunner

    from semanticseg.cli import app
    from semanticseg.recipes import load_recipe

    folder = tmp_path / "legal"
    folder.mkdir()
    make_work(folder, [(f"d{i}", "legal", "\n\n".join(real_paragraphs(20)[i * 10:(i + 1) * 10])) for i in range(2)])
    o = {c.doc_id: c.offsets for c in read_records(folder / "candidates.parquet", Candidates)}
    # d0: exact agreement; d1: b misses one cut by one candidate (agreement under 1, above the shipped threshold).
    _write(folder, [("d0", "a", [o["d0"][2], o["d0"][5]], "ok"), ("d0", "b", [o["d0"][2], o["d0"][5]], "ok"),
                    ("d1", "a", [o["d1"][1], o["d1"][6]], "ok"), ("d1", "b", [o["d1"][1], o["d1"][7]], "ok")])
    strict = tmp_path / "strict.toml"
    strict.write_text("[annotation]\nagreement_threshold = 0.95\n")
    runner = CliRunner()

    def adjudicate(*args: str) -> tuple[float, list[str]]:
        result = runner.invoke(app, ["adjudicate", "--work", str(tmp_path), "-c", "legal", *args])
        assert result.exit_code == 0, result.output
        threshold = json.loads((folder / "adjudicate.config.json").read_text())["threshold"]
        return threshold, [d.doc_id for d in read_records(folder / "disputed.parquet", Consensus)]

    assert adjudicate() == (load_recipe().agreement_threshold, [])
    assert adjudicate("--recipe", str(strict)) == (0.95, ["d1"])
    assert adjudicate("--recipe", str(strict), "--threshold", "0.2") == (0.2, [])  # the option overrides the recipe
