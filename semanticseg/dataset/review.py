"""Human review in Label Studio: push disputed documents as tasks, pull the reviewers' cuts back.

Label Studio grows slow on long texts, so a task holds only the *disputed windows* of a document: the
lines around each candidate the annotators disagree on, with a numbered marker at every candidate
inside them. The reviewer ticks markers (a multiple-choice `Choices` over the candidates, pre-filled
with the consensus; each annotator's proposal is a prediction). A choice's value is the candidate's
character offset in the whole document, so a pulled decision maps back exactly; outside the windows
the consensus stands. A project may ask for several reviewers per task (Label Studio's overlap,
maximum_annotations): pull waits for all of them, keeps every reviewer's cuts, merges them by majority
within the adjudication tolerance and scores how far the reviewers agree, with the same measure as
adjudication. Pull writes human.parquet (HumanCuts) and merges it into the consensus so a human decision
always wins; tasks not fully annotated yet stay queued and the next pull picks them up.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from semanticseg.dataset.adjudicate import (
    DEFAULT_TOLERANCE,
    awaiting_review,
    majority_cuts,
    mean_agreement,
    recorded_tolerance,
    similarity,
)
from semanticseg.dataset.stage import Stage, StageContext
from semanticseg.io import read_records, rewrite_records, write_json, write_records
from semanticseg.metrics import candidate_positions
from semanticseg.paths import package_data
from semanticseg.progress import NO_PROGRESS
from semanticseg.redact import redact_url
from semanticseg.schema import Candidates, Consensus, Document, HumanCuts

CONTROL = "cuts"  # the Choices that pull reads; the labeling config must keep this name
OBJECT = "text"
TASKS_FILE = "labelstudio_tasks.json"
CONTEXT_CHARS = 400  # characters of context each side of a disputed candidate
CONSENSUS_MODEL = "consensus"


class ReviewError(RuntimeError):
    """A problem the user must fix (server down, wrong token, edited config); the message says how."""


@dataclass(slots=True)
class PushConfig:
    """Settings of one `annotate push` (dumped beside its outputs)."""

    url: str
    project: str
    context_chars: int = CONTEXT_CHARS
    batch_size: int = 50
    reviewers: int | None = None  # reviewers per task; None: a new project gets 1, an existing one keeps its own


@dataclass(slots=True)
class PullConfig:
    """Settings of one `annotate pull` (dumped beside its outputs)."""

    url: str
    project: str


@dataclass(slots=True)
class ReviewSummary:
    """What a push or pull did; skips say which task and why, so nothing is silently lost."""

    project_id: int = 0
    project_url: str = ""
    reviewers: int = 1  # reviewers each task waits for
    pushed: int = 0
    already_there: int = 0
    pulled: int = 0
    queued: int = 0
    waiting_for_reviewers: int = 0  # of the queued: reviewed by some but not yet all of the reviewers
    skipped: list[dict[str, Any]] = field(default_factory=list)


def project_title(category: str) -> str:
    """The Label Studio project that holds one category's review tasks."""
    return f"SemanticSeg review: {category}"


# ---------------------------------------------------------------- tasks (pure)


def disputed_windows(text: str, disputed: list[int], context_chars: int) -> list[tuple[int, int]]:
    """Merged [start, end) spans of whole lines around each disputed offset (context_chars each side)."""
    spans: list[tuple[int, int]] = []
    for offset in sorted(disputed):
        start = text.rfind("\n", 0, max(0, offset - context_chars)) + 1
        end = text.find("\n", min(len(text), offset + context_chars))
        end = len(text) if end == -1 else end + 1
        # A single huge line (minified code) would make the window the whole text: fall back to chars.
        start = start if offset - start <= 2 * context_chars else offset - context_chars
        end = end if end - offset <= 2 * context_chars else offset + context_chars
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans


def _choices_result(offsets: list[int]) -> list[dict[str, Any]]:
    if not offsets:
        return []
    choices = [str(offset) for offset in offsets]
    return [{"from_name": CONTROL, "to_name": OBJECT, "type": "choices", "value": {"choices": choices}}]


def build_task(doc: Document, candidates: Candidates, consensus: Consensus, context_chars: int) -> dict[str, Any]:
    """One Label Studio task (data + predictions) for the disputed windows of one document."""
    text = doc.text
    # With fewer than two proposals nothing is "disagreed on": review around whatever was proposed,
    # and with no proposal at all the whole text (rare; Label Studio copes with one long task).
    focus = consensus.disputed_offsets or sorted(set(consensus.cuts).union(*consensus.annotator_cuts))
    windows = disputed_windows(text, focus, context_chars) if focus else [(0, len(text))]
    disputed = set(focus)
    kinds = dict(zip(candidates.offsets, candidates.kinds))
    shown: list[int] = []
    parts: list[str] = []
    previous_end = 0
    for start, end in windows:
        if start > previous_end:
            parts.append(f'<span class="gap">[… {start - previous_end:,} characters not shown …]</span>')
        inside = [c for c in candidates.offsets if start <= c < end]
        cursor = start
        for offset in inside:
            shown.append(offset)
            parts.append(html.escape(text[cursor:offset]))
            css = "cut disputed" if offset in disputed else "cut"
            parts.append(f'<span class="{css}">[{len(shown)}]</span>')
            cursor = offset
        parts.append(html.escape(text[cursor:end]))
        previous_end = end
    if previous_end < len(text):
        parts.append(f'<span class="gap">[… {len(text) - previous_end:,} characters not shown …]</span>')
    choices = [
        {
            "value": str(offset),
            "html": f"<b>[{n}]</b> {kinds.get(offset, '')}{' · disputed' if offset in disputed else ''}",
        }
        for n, offset in enumerate(shown, start=1)
    ]
    in_view = set(shown)
    predictions = [
        {"model_version": CONSENSUS_MODEL, "score": consensus.agreement, "result": _choices_result(sorted(in_view & set(consensus.cuts)))}
    ] + [
        # The score shown beside each proposal: its boundary similarity with the consensus.
        {"model_version": name, "score": _similarity(cuts, consensus.cuts, candidates.offsets),
         "result": _choices_result(sorted(in_view & set(cuts)))}
        for name, cuts in zip(consensus.annotators, consensus.annotator_cuts)
    ]
    data = {
        "doc_id": doc.id,
        "category": doc.category,
        "title": f"{doc.category} · {doc.id} · {len(disputed)} disputed of {len(shown)} shown candidates · {doc.n_tokens:,} tokens",
        "html": f'<div class="seg-text">{"".join(parts)}</div>',
        "candidates": choices,
        "windows": [list(w) for w in windows],
        "n_chars": len(text),
    }
    return {"data": data, "predictions": predictions}


def _similarity(a: list[int], b: list[int], candidates: list[int], tolerance: int = DEFAULT_TOLERANCE) -> float:
    """Boundary similarity of two cut lists counted in candidates, as adjudication measures annotators."""
    return similarity(candidate_positions(a, candidates), candidate_positions(b, candidates), len(candidates) + 1, tolerance)


def annotation_cuts(result: list[dict[str, Any]], task_data: dict[str, Any], consensus: Consensus, candidates: Candidates) -> list[int]:
    """A reviewer's annotation result -> the document's cuts; ValueError says why it cannot be used."""
    items = [r for r in result if r.get("from_name") == CONTROL]
    if result and not items:
        raise ValueError(f"annotation has no '{CONTROL}' choices (was the labeling config edited?)")
    chosen: set[int] = set()
    for item in items:
        for value in item.get("value", {}).get("choices", []):
            try:
                chosen.add(int(value))
            except (TypeError, ValueError):
                raise ValueError(f"choice {value!r} is not a character offset") from None
    n_chars = int(task_data["n_chars"])
    allowed = set(candidates.offsets)
    for offset in sorted(chosen):
        if not 0 < offset < n_chars:
            raise ValueError(f"cut {offset} is outside the text (0, {n_chars})")
        if offset not in allowed:
            raise ValueError(f"cut {offset} is not at a candidate position")
    windows = [tuple(w) for w in task_data["windows"]]
    outside = [c for c in consensus.cuts if not any(lo <= c < hi for lo, hi in windows)]
    return sorted(chosen.union(outside))


def apply_human(consensus: list[Consensus], human: list[HumanCuts]) -> list[Consensus]:
    """Consensus rows with every human decision applied: a human decision always wins."""
    by_doc = {h.doc_id: h for h in human}
    return [
        replace(c, cuts=list(h.cuts), human_reviewed=True, reviewer=h.reviewer, human_agreement=h.human_agreement)
        if (h := by_doc.get(c.doc_id)) is not None
        else c
        for c in consensus
    ]


def _config_problem(label_config: str) -> str | None:
    """Why a project's labeling config cannot be read back by pull, or None when it can."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as error:
        return f"the labeling config is not valid XML ({error})"
    control = next((e for e in root.iter("Choices") if e.get("name") == CONTROL), None)
    if control is None:
        return f"the labeling config has no <Choices name=\"{CONTROL}\">"
    if control.get("value") != "$candidates" or control.get("choice") != "multiple" or control.get("toName") != OBJECT:
        return f'<Choices name="{CONTROL}"> must keep toName="{OBJECT}" choice="multiple" value="$candidates"'
    if not any(e.get("name") == OBJECT and e.get("value") == "$html" for e in root.iter()):
        return f'the labeling config has no object tag name="{OBJECT}" value="$html"'
    return None


# ---------------------------------------------------------------- server side


def label_config() -> str:
    """The labeling config shipped in annotation/labelstudio_config.xml."""
    return package_data("annotation/labelstudio_config.xml").read_text()


def instructions() -> str:
    """annotation/guidelines.md rendered to HTML for the project's instructions."""
    from markdown_it import MarkdownIt

    return MarkdownIt().render(package_data("annotation/guidelines.md").read_text())


@contextmanager
def _talking_to(url: str) -> Iterator[None]:
    """Turn the SDK's transport and HTTP errors into ReviewErrors that say what to do."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    url = redact_url(url)  # messages never show a password given inside the URL
    try:
        yield
    except httpx.HTTPError as error:
        raise ReviewError(f"cannot reach Label Studio at {url} ({error}); start it with `semanticseg annotate serve`") from None
    except ApiError as error:  # also raised by the SDK itself for an expired personal access token
        if error.status_code in (401, 403):
            raise ReviewError(f"Label Studio at {url} refused the API token (HTTP {error.status_code}: {error.body}): check --api-key / LABEL_STUDIO_API_KEY") from None
        raise ReviewError(f"Label Studio at {url} answered HTTP {error.status_code}: {error.body}") from None


def connect(url: str, api_key: str):
    """A label-studio-sdk client that has proved it can reach the server and log in.

    Legacy tokens and personal access tokens (JWT refresh tokens) both work: the SDK tells them apart.
    """
    from label_studio_sdk import LabelStudio

    if not api_key:
        raise ReviewError("no Label Studio API token: pass --api-key or set LABEL_STUDIO_API_KEY")
    with _talking_to(url):
        client = LabelStudio(base_url=url, api_key=api_key, timeout=60)
        client.users.whoami()
    return client


def _find_project(client, title: str):
    return next((p for p in client.projects.list(title=title) if p.title == title), None)


def _checked(project) -> Any:
    problem = _config_problem(project.label_config or "")
    if problem:
        raise ReviewError(
            f"project {project.title!r} (id {project.id}) was edited by hand: {problem}. "
            "Restore annotation/labelstudio_config.xml in its Settings > Labeling Interface, or push with --reset-config."
        )
    return project


def _push_project(client, title: str, reset_config: bool, reviewers: int | None):
    """The project titled `title`, created with our config and instructions when missing.

    reviewers (None: keep the project's own setting) is how many people review each task: Label Studio
    shows every task to that many of them (overlap on all tasks).
    """
    found = _find_project(client, title)
    if found is None:
        found = client.projects.create(
            title=title,
            label_config=label_config(),
            expert_instruction=instructions(),
            show_instruction=True,
            show_collab_predictions=True,
            model_version=CONSENSUS_MODEL,  # the reviewer starts from the consensus
            description="Disputed windows of SemanticSeg documents: tick where a new self-contained block starts.",
            # A skipped task comes back to the one who skipped it (the default hands it to others, so a lone
            # reviewer never sees it again).
            skip_queue="REQUEUE_FOR_ME",
            maximum_annotations=reviewers or 1,
            overlap_cohort_percentage=100,
        )
        return _checked(found)
    changes: dict[str, Any] = {}
    if reviewers is not None and found.maximum_annotations != reviewers:
        changes |= {"maximum_annotations": reviewers, "overlap_cohort_percentage": 100}
    if reset_config:
        changes |= {"label_config": label_config(), "expert_instruction": instructions()}
    if changes:
        client.projects.update(id=found.id, **changes)
        found = client.projects.get(id=found.id)
    return _checked(found)


def project_url(url: str, project_id: int) -> str:
    """The page of a project's tasks in Label Studio."""
    return f"{url.rstrip('/')}/projects/{project_id}/data"


def _server_tasks(client, project_id: int, with_annotations: bool = False) -> dict[str, Any]:
    """doc_id -> task for every task in the project (the server is the source of truth for the map)."""
    fields = "all" if with_annotations else "task_only"
    return {t.data["doc_id"]: t for t in client.tasks.list(project=project_id, fields=fields, page_size=100) if "doc_id" in (t.data or {})}


def _inputs(work_dir: Path) -> tuple[dict[str, Document], dict[str, Candidates], list[Consensus]]:
    docs = {d.id: d for d in read_records(work_dir / "documents.parquet", Document)}
    cands = {c.doc_id: c for c in read_records(work_dir / "candidates.parquet", Candidates)}
    return docs, cands, read_records(work_dir / "consensus.parquet", Consensus)


def _read_human(work_dir: Path) -> list[HumanCuts]:
    path = work_dir / "human.parquet"
    return read_records(path, HumanCuts) if path.exists() else []


def push(work_dir: Path, url: str, api_key: str, project: str | None = None, context_chars: int = CONTEXT_CHARS,
         reset_config: bool = False, reviewers: int | None = None, progress: Any = NO_PROGRESS) -> ReviewSummary:
    """Create or reuse the category's project and import each disputed, not yet reviewed document once.

    reviewers: how many people review each task (None: 1 for a new project, else the project's setting).

    Idempotent: tasks are matched to documents by the doc_id in their data, so pushing again (even
    after losing labelstudio_tasks.json) adds only what is missing, e.g. a task deleted in the UI.
    """
    if reviewers is not None and reviewers < 1:
        raise ReviewError(f"reviewers per task must be at least 1, got {reviewers}")
    config = PushConfig(url=redact_url(url), project=project or project_title(work_dir.name), context_chars=context_chars, reviewers=reviewers)
    docs, cands, consensus = _inputs(work_dir)
    reviewed = {h.doc_id for h in _read_human(work_dir)}
    client = connect(url, api_key)
    with _talking_to(url):
        found = _push_project(client, config.project, reset_config, reviewers)
        summary = ReviewSummary(project_id=found.id, project_url=project_url(url, found.id), reviewers=found.maximum_annotations or 1)
        existing = _server_tasks(client, found.id)
        todo = []
        for c in (c for c in consensus if c.disputed and c.doc_id not in reviewed):
            if c.doc_id in existing:
                summary.already_there += 1
            elif c.doc_id not in docs or c.doc_id not in cands:
                summary.skipped.append({"doc_id": c.doc_id, "reason": "not in documents.parquet or candidates.parquet"})
            else:
                todo.append(c)
        task_bar = progress.add_task("push", total=len(todo), info="")
        for i in range(0, len(todo), config.batch_size):
            batch = todo[i : i + config.batch_size]
            tasks = [build_task(docs[c.doc_id], cands[c.doc_id], c, context_chars) for c in batch]
            client.projects.import_tasks(id=found.id, request=tasks)
            summary.pushed += len(batch)
            progress.update(task_bar, advance=len(batch))
        _write_task_map(work_dir, config.url, found, _server_tasks(client, found.id))
    write_json(work_dir / "labelstudio_push.json", {"config": asdict(config), "summary": asdict(summary)})
    return summary


def _write_task_map(work_dir: Path, url: str, project, tasks: dict[str, Any]) -> None:
    write_json(
        work_dir / TASKS_FILE,
        {"url": url, "project_id": project.id, "project": project.title, "tasks": {d: t.id for d, t in sorted(tasks.items())}},
    )


def _submitted(task) -> list[dict[str, Any]]:
    """Each reviewer's newest submitted (not skipped) annotation of a task, as dicts, oldest reviewer id first."""
    newest: dict[Any, dict[str, Any]] = {}
    for a in (a if isinstance(a, dict) else a.dict() for a in (task.annotations or [])):
        if a.get("was_cancelled"):
            continue
        who = a.get("completed_by")
        if who not in newest or _stamp(a) > _stamp(newest[who]):
            newest[who] = a
    return [newest[who] for who in sorted(newest, key=str)]


def _stamp(annotation: dict[str, Any]) -> str:
    return _iso(annotation.get("updated_at") or annotation.get("created_at"))


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return str(value or "")


def human_decision(consensus: Consensus, candidates: Candidates, task_id: int, task_data: dict[str, Any],
                   annotations: list[dict[str, Any]], users: dict[Any, str], tolerance: int) -> HumanCuts:
    """The reviewers' submitted annotations of one task -> one HumanCuts (ValueError: an annotation is unusable).

    Every reviewer's cuts are kept; the decision is what a strict majority of them cut within `tolerance`
    candidates (one reviewer: their cuts). Their agreement is measured over the candidates the task showed,
    since outside the windows every reviewer keeps the consensus.
    """
    per_reviewer = []
    for annotation in annotations:
        try:
            per_reviewer.append(annotation_cuts(annotation.get("result") or [], task_data, consensus, candidates))
        except ValueError as error:
            raise ValueError(f"annotation {annotation.get('id')}: {error}") from None
    offsets = candidates.offsets
    cuts = majority_cuts(per_reviewer, offsets, tolerance)
    shown = [int(choice["value"]) for choice in task_data["candidates"]]
    in_view = [candidate_positions(sorted(set(c) & set(shown)), shown) for c in per_reviewer]
    reviewers = [users.get(a.get("completed_by"), f"user:{a.get('completed_by')}") for a in annotations]
    newest = max(annotations, key=_stamp)
    return HumanCuts(
        doc_id=consensus.doc_id,
        cuts=cuts,
        reviewer=", ".join(reviewers),
        task_id=int(task_id),
        annotation_id=int(newest["id"]),
        lead_time_s=float(sum(a.get("lead_time") or 0.0 for a in annotations)),
        annotated_at=_stamp(newest),
        agreement_with={
            name: _similarity(cuts, a_cuts, offsets, tolerance) for name, a_cuts in zip(consensus.annotators, consensus.annotator_cuts)
        },
        reviewers=reviewers,
        reviewer_cuts=per_reviewer,
        human_agreement=mean_agreement(in_view, len(shown) + 1, tolerance),
    )


def pull(work_dir: Path, url: str, api_key: str, project: str | None = None) -> ReviewSummary:
    """Fetch submitted annotations, turn them into cuts, write human.parquet and merge into the consensus.

    A task is decided once as many reviewers as the project asks for (its maximum_annotations) submitted;
    until then it stays queued. Unusable annotations and deleted tasks are recorded as skips (earlier human
    decisions for them are kept), and a later pull retries them.
    """
    config = PullConfig(url=redact_url(url), project=project or project_title(work_dir.name))
    _, cands, consensus = _inputs(work_dir)
    tolerance = recorded_tolerance(work_dir)
    client = connect(url, api_key)
    with _talking_to(url):
        found = _find_project(client, config.project)
        if found is None:
            raise ReviewError(f"no Label Studio project titled {config.project!r} at {config.url}: run `semanticseg annotate push` first")
        _checked(found)
        server = _server_tasks(client, found.id, with_annotations=True)
        users = {u.id: (u.email or u.username or f"user:{u.id}") for u in client.users.list()}
    needed = max(found.maximum_annotations or 1, 1)
    summary = ReviewSummary(project_id=found.id, project_url=project_url(url, found.id), reviewers=needed)
    human = {h.doc_id: h for h in _read_human(work_dir)}
    known = _known_tasks(work_dir)
    for c in (c for c in consensus if c.disputed):
        task = server.get(c.doc_id)
        if task is None:
            if c.doc_id in known and c.doc_id not in human:
                summary.skipped.append({"doc_id": c.doc_id, "task_id": known[c.doc_id], "reason": "task deleted in Label Studio: push again to re-create it"})
            continue
        annotations = _submitted(task)
        if len(annotations) < needed:
            summary.queued += 1
            summary.waiting_for_reviewers += bool(annotations)
            continue
        try:
            human[c.doc_id] = human_decision(c, cands[c.doc_id], task.id, task.data, annotations, users, tolerance)
        except ValueError as error:
            summary.skipped.append({"doc_id": c.doc_id, "task_id": task.id, "reason": str(error)})
            continue
        summary.pulled += 1
    records = sorted(human.values(), key=lambda h: h.doc_id)
    write_records(work_dir / "human.parquet", records, HumanCuts)
    _merge_into_consensus(work_dir, consensus, records)
    _write_task_map(work_dir, config.url, found, server)
    write_json(work_dir / "labelstudio_pull.json", {"config": asdict(config), "summary": asdict(summary)})
    return summary


def _known_tasks(work_dir: Path) -> dict[str, int]:
    path = work_dir / TASKS_FILE
    return json.loads(path.read_text()).get("tasks", {}) if path.exists() else {}


def _merge_into_consensus(work_dir: Path, consensus: list[Consensus], human: list[HumanCuts]) -> None:
    """Rewrite consensus.parquet with the human decisions applied, and disputed.parquet as what is still queued."""
    merged = apply_human(consensus, human)
    rewrite_records(work_dir / "consensus.parquet", merged, Consensus)  # adjudicate's marker stays valid
    write_records(work_dir / "disputed.parquet", awaiting_review(merged), Consensus)


@dataclass(slots=True)
class ReviewStage(Stage):
    """The review step: push the disputed documents to Label Studio, then pull the decisions made (or one of them).

    Nothing to do (skipped) without a server: the annotators' consensus stands. Always runs with one, since the
    server's state is not an input the fingerprint can see.
    """

    url: str
    api_key: str = field(default="", repr=False)  # a credential: never in settings()
    steps: tuple[str, ...] = ("push", "pull")
    project: str | None = None
    context_chars: int = CONTEXT_CHARS
    reset_config: bool = False
    reviewers: int | None = None

    name: ClassVar[str] = "review"

    @property
    def config_file(self) -> None:
        return None  # push and pull record their settings with their summaries (labelstudio_push.json, labelstudio_pull.json)

    def settings(self) -> dict[str, Any]:
        return {"url": redact_url(self.url), "steps": list(self.steps), "project": self.project,
                "context_chars": self.context_chars, "reviewers": self.reviewers}

    def done(self, ctx: StageContext, fp: str) -> dict[str, Any] | None:
        return {} if not self.url else None

    def run(self, ctx: StageContext) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if "push" in self.steps:
            details["push"] = push(ctx.work_dir, self.url, self.api_key, self.project, self.context_chars, self.reset_config,
                                   self.reviewers, ctx.progress)
        if "pull" in self.steps:
            details["pull"] = pull(ctx.work_dir, self.url, self.api_key, self.project)
        return details
