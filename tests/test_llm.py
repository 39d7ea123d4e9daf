"""The llm annotator against real HTTP servers: the local SmolLM2 server, and a scripted loopback
server that fails, stalls and answers badly on purpose."""

from __future__ import annotations

import json

import pytest

from semanticseg.annotators.llm_answer import BadAnswer, parse_answer
from semanticseg.dataset.propose import run_propose
from semanticseg.io import read_records, read_summary
from semanticseg.schema import Candidates, Proposal
from tests.fixtures_llm import make_work, marked_answer, real_paragraphs, serve_scripted

FAST = {"max_retries": 2, "timeout_s": 5.0, "concurrency": 1}


def _work(tmp_path, n_paragraphs=4, doc_id="d1"):
    docs = make_work(tmp_path, [(doc_id, "legal", "\n\n".join(real_paragraphs(n_paragraphs)))])
    (cands,) = read_records(tmp_path / "candidates.parquet", Candidates)
    return docs[0], cands


def _propose(tmp_path, server, specs=("llm:scripted#0",), **options):
    summary = run_propose(tmp_path, list(specs), target_tokens=60, llm_options={"base_url": server.base_url, **FAST, **options})
    return read_records(tmp_path / "proposals.parquet", Proposal), summary


def test_parse_answer_tolerates_wrapping_and_fixes_order():
    answer = parse_answer('Sure! ```json\n{"cuts": [3, 1, 3]}\n```', n_markers=3)
    assert answer.numbers == [1, 3]
    assert set(answer.notes) == {"removed duplicate numbers", "sorted numbers"}
    assert parse_answer("[2]", 2).numbers == [2]
    assert parse_answer('{"cuts": ["#2"]}', 2).numbers == [2]
    with pytest.raises(BadAnswer, match="out of range"):
        parse_answer('{"cuts": [0, 2]}', 2)
    with pytest.raises(BadAnswer, match="truncated"):
        parse_answer('{"cuts": [1, 2', 2, finish_reason="length")
    with pytest.raises(BadAnswer, match="refusal"):
        parse_answer("I'm sorry, I cannot help with that.", 2)
    with pytest.raises(BadAnswer, match="empty"):
        parse_answer("  ", 2)


def test_retries_on_server_errors_then_succeeds(tmp_path, scripted_server):
    doc, cands = _work(tmp_path)
    scripted_server.reset([("status", 500), ("status", 429), ("status", 503), ("answer", '{"cuts": [2]}')])
    (proposal,), summary = _propose(tmp_path, scripted_server, max_retries=3)
    assert proposal.status == "ok", proposal.error
    assert proposal.cuts == [cands.offsets[1]]
    assert len(scripted_server.requests) == 4
    assert summary["annotators"]["llm:scripted#0"]["requests"] == 1  # one logical request, retried by the client


def test_slow_server_times_out_and_is_retried(tmp_path, scripted_server):
    _work(tmp_path)
    scripted_server.reset([("sleep", 3), ("answer", '{"cuts": [1]}')])
    (proposal,), _ = _propose(tmp_path, scripted_server, timeout_s=1.0)
    assert proposal.status == "ok", proposal.error
    assert len(scripted_server.requests) == 2


def test_server_down_is_a_failed_proposal_not_a_crash(tmp_path):
    import socket

    _work(tmp_path)
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run_propose(tmp_path, ["llm:scripted#0"], target_tokens=60,
                llm_options={"base_url": f"http://127.0.0.1:{port}/v1", "max_retries": 1, "timeout_s": 2.0})
    (proposal,) = read_records(tmp_path / "proposals.parquet", Proposal)
    assert proposal.status == "failed" and proposal.cuts == []
    assert "APIConnectionError" in proposal.error


def test_always_failing_server_records_the_reason(tmp_path, scripted_server):
    _work(tmp_path)
    scripted_server.reset(default=lambda body: ("status", 502))
    (proposal,), summary = _propose(tmp_path, scripted_server, max_retries=1)
    assert proposal.status == "failed"
    assert "502" in proposal.error
    assert summary["annotators"]["llm:scripted#0"]["failed"] == 1


@pytest.mark.parametrize(
    ("first", "second", "status", "reason"),
    [
        (("answer", "the cuts are 1 and 2"), ("answer", '{"cuts": [1, 2]}'), "ok", ""),  # malformed, repaired
        (("answer", '{"cuts": [1, 2'), ("answer", '{"cuts": [1, 2'), "failed", "malformed"),
        (("answer", '{"cuts": [1, 2', "length"), ("answer", '{"cuts": [1', "length"), "failed", "truncated"),
        (("answer", '{"cuts": [99]}'), ("answer", '{"cuts": [2, 99]}'), "failed", "out of range"),
        (("answer", ""), ("answer", '{"cuts": [2]}'), "ok", ""),  # empty, repaired
        (("answer", "I'm sorry, I can't do that."), ("answer", "I won't."), "failed", "refusal"),
        (("garbage", "<html>bad gateway</html>"), ("answer", '{"cuts": [2]}'), "ok", ""),
        (("answer", '{"cuts": [3, 1, 1]}'), None, "ok", ""),  # duplicates and order fixed, no repair
    ],
    ids=["malformed-repaired", "malformed-twice", "truncated", "out-of-range", "empty-repaired", "refusal",
         "non-json-body", "duplicates-unsorted"],
)
def test_every_bad_answer_is_repaired_or_recorded(tmp_path, scripted_server, first, second, status, reason):
    _, cands = _work(tmp_path)
    assert len(cands.offsets) >= 3
    scripted_server.reset([first] + ([second] if second else []))
    (proposal,), _ = _propose(tmp_path, scripted_server)
    assert proposal.status == status, proposal.error
    assert reason in proposal.error
    if status == "ok":
        assert proposal.cuts and set(proposal.cuts) <= set(cands.offsets)
        assert proposal.cuts == sorted(set(proposal.cuts))
    else:
        assert proposal.cuts == []
    assert len(scripted_server.requests) == (2 if second else 1)
    if second:  # the repair turn shows the model its bad answer and the reason
        assert scripted_server.requests[1]["messages"][-1]["content"].startswith("Your answer could not be used")


def test_cache_hits_on_rerun_and_failed_proposals_are_retried(tmp_path, scripted_server):
    _, cands = _work(tmp_path)
    scripted_server.reset([("answer", '{"cuts": [1, 3]}')])
    (first,), _ = _propose(tmp_path, scripted_server)
    (tmp_path / "proposals.parquet").unlink()
    for shard in (tmp_path / "proposals.parts").rglob("*.parquet"):
        shard.unlink()  # forget the finished shard: only the response cache is left
    scripted_server.reset(default=lambda body: ("status", 500))
    (again,), summary = _propose(tmp_path, scripted_server)
    assert scripted_server.requests == []  # nothing sent: the cache answered
    assert again.cuts == first.cuts == [cands.offsets[0], cands.offsets[2]]
    assert again.meta["cache_hits"] == 1 and again.prompt_tokens == 0
    assert summary["annotators"]["llm:scripted#0"]["cache_hits"] == 1

    # A failed proposal is asked again on the next run; an ok one is not.
    (tmp_path / "other").mkdir()
    _work(tmp_path / "other")
    scripted_server.reset(default=lambda body: ("status", 500))
    (failed,), _ = _propose(tmp_path / "other", scripted_server, max_retries=0, temperature=0.5)
    assert failed.status == "failed"
    scripted_server.reset([("answer", '{"cuts": [2]}')])
    (fixed,), _ = _propose(tmp_path / "other", scripted_server, max_retries=0, temperature=0.5)
    assert fixed.status == "ok" and len(scripted_server.requests) == 1


def test_a_200_body_labelled_json_that_is_not_json_is_a_failed_proposal(tmp_path, scripted_server):
    _work(tmp_path)
    scripted_server.reset(default=lambda body: ("garbage", "<html>upstream timed out</html>", "application/json"))
    (proposal,), summary = _propose(tmp_path, scripted_server, max_retries=0)
    assert proposal.status == "failed" and proposal.cuts == []
    assert "non-JSON response" in proposal.error and "upstream timed out" in proposal.error
    assert summary["annotators"]["llm:scripted#0"]["failed"] == 1


def test_only_answers_that_parsed_are_cached(tmp_path, scripted_server):
    _, cands = _work(tmp_path)
    scripted_server.reset([("answer", "no idea"), ("answer", "still no idea")])
    (failed,), _ = _propose(tmp_path, scripted_server)
    assert failed.status == "failed"
    scripted_server.reset(default=lambda body: ("answer", '{"cuts": [2]}'))
    (fixed,), _ = _propose(tmp_path, scripted_server)
    assert len(scripted_server.requests) == 1  # the bad answers were not cached: asked again
    assert fixed.status == "ok" and fixed.cuts == [cands.offsets[1]]
    scripted_server.reset(default=lambda body: ("status", 500))
    for shard in (tmp_path / "proposals.parts").rglob("*.parquet"):
        shard.unlink()
    (again,), _ = _propose(tmp_path, scripted_server)
    assert scripted_server.requests == [] and again.cuts == fixed.cuts  # the good one was


def test_another_endpoint_never_gets_cached_answers(tmp_path, scripted_server):
    _, cands = _work(tmp_path)
    scripted_server.reset(default=lambda body: ("answer", '{"cuts": [1]}'))
    (first,), _ = _propose(tmp_path, scripted_server)
    assert first.cuts == [cands.offsets[0]]
    with serve_scripted() as other:
        other.reset(default=lambda body: ("answer", '{"cuts": [3]}'))
        (second,), _ = _propose(tmp_path, other)
    assert len(other.requests) == 1 and second.cuts == [cands.offsets[2]]


def test_cli_propose_fails_when_every_proposal_failed(tmp_path, scripted_server):
    from typer.testing import CliRunner

    from semanticseg.cli import app

    make_work(tmp_path / "legal", [("d1", "legal", "\n\n".join(real_paragraphs(4)))])
    scripted_server.reset(default=lambda body: ("status", 502))
    args = ["propose", "--work", str(tmp_path), "-a", "llm:scripted#0", "--llm-base-url", scripted_server.base_url,
            "--max-retries", "0", "--target-tokens", "60"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1, done.output
    words = " ".join(done.output.split())  # rich wraps long lines at the terminal width
    assert words.endswith("error: every proposal failed in legal (reasons above); fix the cause and rerun: failed proposals are asked again")
    assert (tmp_path / "legal" / "proposals.parquet").exists()  # the failures and their reasons are recorded
    scripted_server.reset(default=lambda body: ("answer", '{"cuts": [1]}'))
    assert CliRunner().invoke(app, args).exit_code == 0


def test_long_document_windows_are_merged(tmp_path, scripted_server):
    paragraphs = real_paragraphs(40)
    planted = {5, 12, 19, 27, 33}
    text = "\n\n".join(("PLANTED " + p) if i in planted else p for i, p in enumerate(paragraphs))
    make_work(tmp_path, [("long", "legal", text)])
    (cands,) = read_records(tmp_path / "candidates.parquet", Candidates)
    scripted_server.reset(default=marked_answer("PLANTED"))
    (proposal,), _ = _propose(tmp_path, scripted_server, window_tokens=400, overlap_tokens=120, concurrency=3)
    assert proposal.status == "ok", proposal.error
    assert proposal.meta["windows"] == len(scripted_server.requests) >= 4
    expected = [o for o in cands.offsets if text.startswith("PLANTED", o)]
    assert len(expected) == len(planted)
    assert proposal.cuts == expected
    # Overlap: some candidate was shown in two windows, yet each planted cut appears exactly once.
    shown = [len(json.dumps(r["messages"][-1]["content"]).split("[#")) - 1 for r in scripted_server.requests]
    assert sum(shown) > len(cands.offsets)


def test_several_llm_annotators_in_one_call(tmp_path, scripted_server):
    _work(tmp_path)
    scripted_server.reset(default=lambda body: ("answer", json.dumps({"cuts": [1 + body["seed"]]})))
    proposals, summary = _propose(tmp_path, scripted_server, specs=("llm:scripted#0", "llm:scripted#1", "llm:other#0"))
    assert [p.annotator for p in proposals] == ["llm:scripted#0", "llm:scripted#1", "llm:other#0"]
    assert all(p.status == "ok" for p in proposals)
    temperatures = sorted(r["temperature"] for r in scripted_server.requests)
    assert temperatures == [0.0, 0.0, 0.8]  # sample 0 greedy, sample 1 sampled
    assert proposals[0].cuts != proposals[1].cuts


@pytest.mark.slow
def test_real_local_server_through_propose(tmp_path, local_llm):
    """SmolLM2 behind `transformers serve`, the real openai client, the real propose stage."""
    text = "\n\n".join(p[:300] for p in real_paragraphs(3))
    make_work(tmp_path, [("tiny", "legal", text)])
    (cands,) = read_records(tmp_path / "candidates.parquet", Candidates)
    options = {"base_url": local_llm["base_url"], "max_tokens": 24, "timeout_s": 300.0, "max_retries": 1}
    model = local_llm["model"]
    run_propose(tmp_path, [f"llm:{model}#0"], target_tokens=60, llm_options=options)
    (proposal,) = read_records(tmp_path / "proposals.parquet", Proposal)
    # A 135M model may answer well or badly; either way the answer went through the real path and
    # was paid for, and it is a valid proposal or a failure with its reason.
    assert proposal.prompt_tokens > 0 and proposal.completion_tokens > 0
    assert proposal.meta["requests"] >= 1
    if proposal.status == "ok":
        assert set(proposal.cuts) <= set(cands.offsets)
    else:
        assert proposal.error
    summary = read_summary(tmp_path / "proposals.parquet")
    assert summary["annotators"][proposal.annotator]["prompt_tokens"] == proposal.prompt_tokens
    # Rerun from scratch but with the cache: answers that parsed come from it, only bad ones are asked again.
    (tmp_path / "proposals.parquet").unlink()
    for shard in (tmp_path / "proposals.parts").rglob("*.parquet"):
        shard.unlink()
    run_propose(tmp_path, [f"llm:{model}#0"], target_tokens=60, llm_options=options)
    (again,) = read_records(tmp_path / "proposals.parquet", Proposal)
    if proposal.status == "ok":  # greedy: the same bad first answers again, their repairs from the cache
        repaired = sum(note.startswith("repair:") for note in proposal.meta["notes"])
        assert again.meta["requests"] == repaired and again.meta["cache_hits"] == proposal.meta["requests"] - repaired
        assert (again.status, again.cuts) == (proposal.status, proposal.cuts)
    else:
        assert again.meta["requests"] >= 1  # a failure is never cached


def test_no_endpoint_means_the_local_server_with_the_given_cache(tmp_path, monkeypatch):
    """Without an endpoint the annotator targets the local SmolLM2 server and still caches where told."""
    from semanticseg.annotators.llm import LLMAnnotator

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    annotator = LLMAnnotator(cache_dir=tmp_path / "cache")
    assert annotator.base_url is None and annotator.cache.root == tmp_path / "cache"
    assert annotator.name == "llm:SmolLM2-135M-Instruct#0"
