"""Human review through a real Label Studio: tasks map back exactly, push is idempotent, pull merges.

The server tests share one real Label Studio (tests/fixtures_labelstudio.py); each test uses its own
project title and work dir so they do not see each other's tasks.
"""

from __future__ import annotations

import html
import json
import re
import socket
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from semanticseg.cli import app
from semanticseg.dataset.review import (
    ReviewError,
    annotation_cuts,
    apply_human,
    build_task,
    connect,
    disputed_windows,
    label_config,
    pull,
    push,
)
from semanticseg.io import read_records
from semanticseg.schema import Candidates, Consensus, Document, HumanCuts
from tests.fixtures_labelstudio import join_as_reviewer


def _inputs(work_dir):
    docs = {d.id: d for d in read_records(work_dir / "documents.parquet", Document)}
    cands = {c.doc_id: c for c in read_records(work_dir / "candidates.parquet", Candidates)}
    return docs, cands, read_records(work_dir / "consensus.parquet", Consensus)


def _choose(offsets):
    return [{"from_name": "cuts", "to_name": "text", "type": "choices", "value": {"choices": [str(o) for o in offsets]}}]


def test_task_shows_the_disputed_windows_with_markers_at_exact_offsets(review_dir):
    docs, cands, consensus = _inputs(review_dir)
    c = consensus[0]
    doc, cand = docs[c.doc_id], cands[c.doc_id]
    task = build_task(doc, cand, c, context_chars=300)
    data = task["data"]
    windows = [tuple(w) for w in data["windows"]]
    assert all(any(lo <= d < hi for lo, hi in windows) for d in c.disputed_offsets)
    assert sum(hi - lo for lo, hi in windows) < len(doc.text) / 2  # only the windows travel, not the text
    # Markers removed, the shown text is exactly the windows of the original document.
    shown = re.sub(r'<span class="gap">.*?</span>', "\x00", data["html"].removeprefix('<div class="seg-text">').removesuffix("</div>"))
    shown = html.unescape(re.sub(r'<span class="cut[^"]*">\[\d+\]</span>', "", shown))
    assert [part for part in shown.split("\x00") if part] == [doc.text[lo:hi] for lo, hi in windows]
    # Every choice is a candidate inside a window, numbered like its marker; disputed ones say so.
    values = [int(choice["value"]) for choice in data["candidates"]]
    assert values == sorted(values) and set(values) <= set(cand.offsets)
    assert all(any(lo <= v < hi for lo, hi in windows) for v in values)
    assert set(c.disputed_offsets) <= set(values)
    for n, choice in enumerate(data["candidates"], start=1):
        assert choice["html"].startswith(f"<b>[{n}]</b>")
        assert ("disputed" in choice["html"]) == (int(choice["value"]) in c.disputed_offsets)
    # Consensus first (the reviewer starts from it), then one prediction per annotator, all inside the windows.
    assert [p["model_version"] for p in task["predictions"]] == ["consensus", *c.annotators]
    structure = task["predictions"][1]["result"][0]["value"]["choices"]
    assert sorted(int(v) for v in structure) == sorted(set(values) & set(c.annotator_cuts[0]))


def test_a_disputed_document_without_disputed_offsets_is_still_reviewable(review_dir):
    docs, cands, consensus = _inputs(review_dir)
    c, doc = consensus[0], docs[consensus[0].doc_id]
    single = replace(c, annotators=["structure"], annotator_cuts=[c.annotator_cuts[0]], disputed_offsets=[])
    shown = [int(x["value"]) for x in build_task(doc, cands[c.doc_id], single, context_chars=100)["data"]["candidates"]]
    assert set(c.annotator_cuts[0]) <= set(shown)  # a lone proposal is reviewed around its cuts
    nothing = replace(c, cuts=[], annotators=[], annotator_cuts=[], disputed_offsets=[])
    data = build_task(doc, cands[c.doc_id], nothing, context_chars=100)["data"]
    assert data["windows"] == [[0, len(doc.text)]] and len(data["candidates"]) == len(cands[c.doc_id].offsets)


def test_windows_merge_and_stay_bounded_on_one_huge_line():
    text = "a\n" * 50 + "x" * 10_000
    assert disputed_windows(text, [10, 14], context_chars=4) == [(6, 20)]
    start, end = disputed_windows(text, [5000 + 100], context_chars=50)[0]
    assert (start, end) == (5050, 5150)


def test_annotation_to_cuts_keeps_consensus_outside_windows_and_rejects_bad_cuts(review_dir):
    docs, cands, consensus = _inputs(review_dir)
    c = consensus[0]
    cand = cands[c.doc_id]
    data = build_task(docs[c.doc_id], cand, c, context_chars=300)["data"]
    windows = data["windows"]
    outside = [x for x in c.cuts if not any(lo <= x < hi for lo, hi in windows)]
    chosen = c.disputed_offsets[:1]
    assert annotation_cuts(_choose(chosen), data, c, cand) == sorted(set(outside) | set(chosen))
    assert annotation_cuts([], data, c, cand) == outside  # nothing ticked: no cut inside the windows
    with pytest.raises(ValueError, match="outside the text"):
        annotation_cuts(_choose([len(docs[c.doc_id].text) + 5]), data, c, cand)
    with pytest.raises(ValueError, match="not at a candidate"):
        annotation_cuts(_choose([cand.offsets[0] + 1]), data, c, cand)
    with pytest.raises(ValueError, match="labeling config"):
        annotation_cuts([{"from_name": "other", "type": "labels", "value": {}}], data, c, cand)


def test_human_decision_wins_in_the_consensus(review_dir):
    consensus = _inputs(review_dir)[2]
    human = HumanCuts(doc_id=consensus[1].doc_id, cuts=[5], reviewer="ann", task_id=1, annotation_id=1, lead_time_s=1.0, annotated_at="")
    merged = apply_human(consensus, [human])
    assert merged[1].cuts == [5] and merged[1].human_reviewed and merged[1].reviewer == "ann"
    assert merged[0] == consensus[0] and merged[2] == consensus[2]


# ---------------------------------------------------------------- against the real server


def _annotate(client, task_id, offsets, lead_time=7.5):
    """What a reviewer's Submit in the UI sends."""
    return client.annotations.create(id=task_id, result=_choose(offsets), lead_time=lead_time)


def _task_ids(work_dir):
    return json.loads((work_dir / "labelstudio_tasks.json").read_text())["tasks"]


@pytest.mark.slow
def test_push_review_pull_round_trip_is_idempotent_and_partial(labelstudio, review_dir):
    url, key, title = labelstudio.url, labelstudio.token, "roundtrip"
    first = push(review_dir, url, key, project=title)
    assert (first.pushed, first.already_there) == (2, 0)  # only the two disputed documents
    again = push(review_dir, url, key, project=title)
    assert (again.pushed, again.already_there) == (0, 2)
    client = connect(url, key)
    assert len(list(client.tasks.list(project=first.project_id))) == 2
    ids = _task_ids(review_dir)
    assert sorted(ids) == ["apache-2.0", "gpl-3"]
    assert {p.model_version for p in client.predictions.list(task=ids["gpl-3"])} == {"consensus", "structure", "llm:smollm2"}

    docs, cands, consensus = _inputs(review_dir)
    gpl = next(c for c in consensus if c.doc_id == "gpl-3")
    task = client.tasks.get(id=ids["gpl-3"])
    chosen = [gpl.disputed_offsets[0]]  # the reviewer sides with "structure" on the first disputed cut only
    _annotate(client, ids["gpl-3"], chosen)
    partial = pull(review_dir, url, key, project=title)
    assert (partial.pulled, partial.queued, partial.skipped) == (1, 1, [])

    human = read_records(review_dir / "human.parquet", HumanCuts)
    assert [h.doc_id for h in human] == ["gpl-3"]
    expected = annotation_cuts(_choose(chosen), task.data, gpl, cands["gpl-3"])
    assert human[0].cuts == expected and gpl.disputed_offsets[0] in expected and gpl.disputed_offsets[1] not in expected
    assert human[0].reviewer == labelstudio.username and human[0].lead_time_s == 7.5 and human[0].annotated_at
    assert set(human[0].agreement_with) == {"structure", "llm:smollm2"}
    assert all(0.0 < v < 1.0 for v in human[0].agreement_with.values())
    merged = {c.doc_id: c for c in read_records(review_dir / "consensus.parquet", Consensus)}
    assert merged["gpl-3"].cuts == expected and merged["gpl-3"].human_reviewed
    assert not merged["apache-2.0"].human_reviewed and merged["apache-2.0"].cuts == consensus[1].cuts
    assert [c.doc_id for c in read_records(review_dir / "disputed.parquet", Consensus)] == ["apache-2.0"]  # still queued

    _annotate(client, ids["apache-2.0"], [])  # the reviewer removes every cut in the windows
    done = pull(review_dir, url, key, project=title)
    assert (done.pulled, done.queued) == (2, 0)
    assert {h.doc_id for h in read_records(review_dir / "human.parquet", HumanCuts)} == {"gpl-3", "apache-2.0"}
    assert push(review_dir, url, key, project=title).pushed == 0  # reviewed documents are not sent again


@pytest.mark.slow
def test_bad_inputs_are_clear_errors_or_recorded_skips(labelstudio, review_dir):
    url, key, title = labelstudio.url, labelstudio.token, "bad inputs"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ReviewError, match="cannot reach Label Studio"):
        push(review_dir, dead, key, project=title)
    with pytest.raises(ReviewError, match="refused the API token"):
        push(review_dir, url, "0" * 40, project=title)
    with pytest.raises(ReviewError, match="no Label Studio project"):
        pull(review_dir, url, key, project=title)

    summary = push(review_dir, url, key, project=title)
    client = connect(url, key)
    # A config edited by hand so that pull could no longer read the reviews.
    client.projects.update(id=summary.project_id, label_config=label_config().replace('name="cuts"', 'name="blocks"'))
    with pytest.raises(ReviewError, match="edited by hand"):
        pull(review_dir, url, key, project=title)
    push(review_dir, url, key, project=title, reset_config=True)

    ids = _task_ids(review_dir)
    n_chars = len(_inputs(review_dir)[0]["gpl-3"].text)
    bad = _annotate(client, ids["gpl-3"], [n_chars + 10])
    _annotate(client, ids["apache-2.0"], [7])  # not a candidate position
    result = pull(review_dir, url, key, project=title)
    reasons = {s["doc_id"]: s["reason"] for s in result.skipped}
    assert result.pulled == 0 and "outside the text" in reasons["gpl-3"] and "not at a candidate" in reasons["apache-2.0"]
    assert read_records(review_dir / "human.parquet", HumanCuts) == []

    # The reviewer fixes the annotation: the next pull picks it up.
    gpl = next(c for c in _inputs(review_dir)[2] if c.doc_id == "gpl-3")
    client.annotations.update(id=bad.id, result=_choose(gpl.disputed_offsets))
    assert pull(review_dir, url, key, project=title).pulled == 1

    # A task deleted in the UI: recorded, and the next push re-creates it.
    client.tasks.delete(id=str(ids["apache-2.0"]))
    gone = pull(review_dir, url, key, project=title)
    assert [s["doc_id"] for s in gone.skipped] == ["apache-2.0"] and "deleted" in gone.skipped[0]["reason"]
    assert push(review_dir, url, key, project=title).pushed == 1
    recreated = client.tasks.get(id=str(_task_ids(review_dir)["apache-2.0"]))
    assert recreated.data["doc_id"] == "apache-2.0" and not recreated.annotations
    assert [h.doc_id for h in read_records(review_dir / "human.parquet", HumanCuts)] == ["gpl-3"]  # nothing lost


@pytest.mark.slow
def test_personal_access_token_and_cli(labelstudio, review_dir, monkeypatch):
    legacy = connect(labelstudio.url, labelstudio.token)
    pat = legacy.tokens.create().token  # a JWT refresh token, what the 1.23 UI hands out
    assert pat.count(".") == 2
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    work = review_dir.parent
    runner = CliRunner()
    pushed = runner.invoke(app, ["annotate", "push", "--category", "legal", "--work", str(work), "--project", "via cli"])
    assert pushed.exit_code == 0, pushed.output
    assert "2 tasks pushed" in pushed.output
    project_id = json.loads((review_dir / "labelstudio_push.json").read_text())["summary"]["project_id"]
    assert f"{labelstudio.url}/projects/{project_id}/data" in pushed.output.replace("\n", "")  # where to review
    pulled = runner.invoke(app, ["annotate", "pull", "--category", "legal", "--work", str(work), "--project", "via cli"])
    assert pulled.exit_code == 0 and "2 still queued" in pulled.output
    config = json.loads((review_dir / "labelstudio_pull.json").read_text())["config"]
    assert config == {"url": labelstudio.url, "project": "via cli"}
    missing = runner.invoke(app, ["annotate", "pull", "--category", "news", "--work", str(work)])
    assert missing.exit_code == 2 and "semanticseg adjudicate --category news" in missing.output.replace("\n", "")


# ---------------------------------------------------------------- the server and a team of reviewers


def _listening(port: int) -> set[str]:
    import psutil

    return {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


@pytest.mark.slow
def test_serve_listens_on_loopback_only(labelstudio):
    port = int(labelstudio.url.rsplit(":", 1)[1])
    assert _listening(port) == {"127.0.0.1"}


@pytest.mark.slow
def test_bind_opens_the_server_to_the_network_when_asked(labelstudio, labelstudio_dir, tmp_path):
    import sqlite3

    from semanticseg.servers import labelstudio_server
    from tests.fixtures_labelstudio import _free_port

    # A copy of the session server's database (migrated already), so this second server starts fast.
    data_dir = tmp_path / "open"
    data_dir.mkdir()
    with sqlite3.connect(labelstudio_dir / "label_studio.sqlite3") as source, sqlite3.connect(data_dir / "label_studio.sqlite3") as copy:
        source.backup(copy)
    port = _free_port()
    try:
        creds, _ = labelstudio_server.serve(data_dir, port=port, bind="0.0.0.0", timeout_s=300)
        assert _listening(port) == {"0.0.0.0"} and creds.url == f"http://127.0.0.1:{port}"
        assert labelstudio_server.running(data_dir).bind == "0.0.0.0"
    finally:
        labelstudio_server.stop(data_dir)
    assert labelstudio_server.running(data_dir) is None and not _listening(port)


@pytest.mark.slow
def test_serve_tells_its_own_server_from_another_work_roots(labelstudio, labelstudio_dir, tmp_path):
    from semanticseg.servers import labelstudio_server

    port = int(labelstudio.url.rsplit(":", 1)[1])
    again, generated = labelstudio_server.serve(labelstudio_dir, port=port, timeout_s=30)
    assert again == labelstudio and not generated  # our own server, identified by its data dir: reused
    with pytest.raises(RuntimeError, match="taken by another Label Studio"):
        labelstudio_server.serve(tmp_path / "other", port=port, timeout_s=30)
    runner = CliRunner()
    other = runner.invoke(app, ["annotate", "serve", "--work", str(tmp_path / "work"), "--port", str(port), "--bind", "0.0.0.0"])
    output = " ".join(other.output.split())
    assert other.exit_code == 2 and "warning" in output and "not loopback" in output and "taken by another Label Studio" in output
    bad = runner.invoke(app, ["annotate", "serve", "--work", str(tmp_path / "work"), "--bind", "everywhere"])
    assert bad.exit_code == 2 and "--bind must be an IP address" in " ".join(bad.output.split())


def _next_task(url: str, token: str, project_id: int):
    """What Label Studio's labeling stream hands this reviewer next (None when it has nothing)."""
    import httpx

    reply = httpx.get(f"{url}/api/projects/{project_id}/next", headers={"Authorization": f"Token {token}"}, timeout=60)
    return reply.json()["id"] if reply.status_code == 200 else None


@pytest.mark.slow
def test_a_skipped_task_comes_back_to_a_lone_reviewer(labelstudio, review_dir):
    url, key = labelstudio.url, labelstudio.token
    summary = push(review_dir, url, key, project="lone reviewer")
    client = connect(url, key)
    skipped = []
    for _ in range(summary.pushed):  # the reviewer skips every task in the stream
        task_id = _next_task(url, key, summary.project_id)
        client.annotations.create(id=task_id, result=[], was_cancelled=True)
        skipped.append(task_id)
    assert _next_task(url, key, summary.project_id) in skipped
    assert pull(review_dir, url, key, project="lone reviewer").queued == 2  # a skip is no decision


@pytest.mark.slow
def test_two_reviewers_per_task_merge_by_majority_with_their_agreement(labelstudio, review_dir):
    from semanticseg.dataset.adjudicate import mean_agreement
    from semanticseg.dataset.card import render_card
    from semanticseg.dataset.instances import run_instances
    from semanticseg.metrics import candidate_positions
    from semanticseg.recipes import load_recipe
    from semanticseg.schema import Instance

    url, key, title = labelstudio.url, labelstudio.token, "two reviewers"
    summary = push(review_dir, url, key, project=title, reviewers=2)
    admin = connect(url, key)
    assert admin.projects.get(id=summary.project_id).maximum_annotations == 2
    assert summary.reviewers == 2 and summary.project_url == f"{url}/projects/{summary.project_id}/data"
    second = connect(url, join_as_reviewer(url, admin, "second@semanticseg.local", "second-reviewer-pw"))
    ids = _task_ids(review_dir)
    gpl = next(c for c in _inputs(review_dir)[2] if c.doc_id == "gpl-3")
    both, one_only = gpl.disputed_offsets
    admin.annotations.create(id=ids["gpl-3"], result=_choose([both, one_only]), lead_time=3.0)
    second.annotations.create(id=ids["gpl-3"], result=_choose([both]), lead_time=4.0)
    admin.annotations.create(id=ids["apache-2.0"], result=_choose([]), lead_time=1.0)  # one of two reviewers so far

    pulled = pull(review_dir, url, key, project=title)
    assert (pulled.pulled, pulled.queued, pulled.waiting_for_reviewers, pulled.skipped) == (1, 1, 1, [])
    (human,) = read_records(review_dir / "human.parquet", HumanCuts)
    assert human.reviewers == [labelstudio.username, "second@semanticseg.local"] and human.lead_time_s == 7.0
    assert len(human.reviewer_cuts) == 2 and both in human.reviewer_cuts[1] and one_only in human.reviewer_cuts[0]
    assert both in human.cuts and one_only not in human.cuts  # a cut one of two made is no majority
    assert set(human.reviewer_cuts[0]) - set(human.cuts) == {one_only}
    task = admin.tasks.get(id=ids["gpl-3"])
    shown = [int(choice["value"]) for choice in task.data["candidates"]]
    expected = mean_agreement([candidate_positions(sorted(set(c) & set(shown)), shown) for c in human.reviewer_cuts], len(shown) + 1)
    assert 0.0 < human.human_agreement == expected < 1.0
    merged = {c.doc_id: c for c in read_records(review_dir / "consensus.parquet", Consensus)}
    assert merged["gpl-3"].human_agreement == expected and merged["gpl-3"].cuts == human.cuts
    assert not merged["apache-2.0"].human_reviewed  # waits for its second reviewer

    # The agreement between people reaches the released row and the data set card.
    recipe = load_recipe()
    run_instances(review_dir, recipe)
    rows = {r.id: r for r in read_records(review_dir / "instances.parquet", Instance)}
    assert rows["gpl-3"].human_agreement == expected and rows["mpl-2.0"].human_agreement is None
    card = render_card({"train": list(rows.values())}, recipe)
    assert "human agreement" in card and f"{expected:.3f} (1)" in card


def _build(work, *extra):
    args = ["build", "--category", "code", "--limit", "3", "--annotators", "structure", "--work", str(work), *extra]
    return CliRunner().invoke(app, args)


@pytest.mark.slow
def test_build_reviews_with_the_served_token_and_counts_like_adjudicate(labelstudio, tmp_path, monkeypatch):
    from dataclasses import asdict

    from semanticseg.io import write_json

    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    work = tmp_path / "work"
    write_json(work / "labelstudio" / "credentials.json", asdict(labelstudio))  # what `annotate serve` keeps
    first = _build(work, "--label-studio-url", labelstudio.url)  # no key given: the one serve kept
    assert first.exit_code == 0, first.output
    report = json.loads((work / "code" / "build_report.json").read_text())
    assert report["stages"]["review"].startswith("ran (pushed 3") and report["disputed"] == 3  # one annotator: all disputed
    wrong = _build(work, "--label-studio-url", labelstudio.url, "--api-key", "0" * 40)
    assert wrong.exit_code == 2 and "refused the API token" in " ".join(wrong.output.split())  # --api-key wins

    client = connect(labelstudio.url, labelstudio.token)
    tasks = json.loads((work / "code" / "labelstudio_tasks.json").read_text())["tasks"]
    reviewed = sorted(tasks)[0]
    client.annotations.create(id=tasks[reviewed], result=[], lead_time=2.0)
    second = _build(work, "--label-studio-url", labelstudio.url)
    assert second.exit_code == 0, second.output
    report = json.loads((work / "code" / "build_report.json").read_text())
    stages = report["stages"]
    assert stages["propose"] == stages["adjudicate"] == "skipped" and "pulled 1" in stages["review"]
    assert stages["instances"] == "ran"  # the human decision changed the consensus
    # Disputed as adjudication counts it: the reviewed document is no longer waiting.
    assert (report["disputed"], report["human_reviewed"]) == (2, 1)
    assert len(read_records(work / "code" / "disputed.parquet", Consensus)) == 2
    assert "ran review, instances;" in " ".join(second.output.split())
