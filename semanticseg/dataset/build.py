"""`semanticseg build`: collect -> candidates -> propose -> adjudicate -> review -> instances, per category.

Every stage writes its output atomically under WORK/<category>/ with its own completion marker and skips
itself when that output is complete for the same inputs and settings, so a killed build resumes at the
stage it was in and ends with the same instances as an uninterrupted one. Review pushes disputed
documents to Label Studio (and pulls decisions already made) only when a server is configured; otherwise
the annotators' consensus stands and is marked not human-reviewed. The build follows the release recipe
and reports, per category and length bucket, how far it got against the recipe's targets.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semanticseg.dataset.stage import Stage, StageSummary, is_complete, run_stage
from semanticseg.executors import Executor, ExecutorConfig, make_executor
from semanticseg.io import read_records, write_json
from semanticseg.progress import NO_PROGRESS, ProgressLike
from semanticseg.recipes import Recipe
from semanticseg.redact import redact_url
from semanticseg.schema import Consensus, Instance, length_bucket

STAGES = ("collect", "candidates", "propose", "adjudicate", "review", "instances")
FORCE_REDOES = ("candidates", "adjudicate", "instances")  # what --force redoes; collect and propose keep their (costly) work


@dataclass(slots=True)
class BuildConfig:
    """Settings of one `semanticseg build` (dumped as WORK/<category>/build.config.json)."""

    categories: list[str]
    work_root: str
    annotators: list[str]  # these three come from the release recipe unless the command line overrides them
    target_tokens: int
    agreement_threshold: float
    source: str = "offline"
    limit: int | None = None  # documents per category; None = all the source has
    label_studio_url: str = ""  # empty: no human review, the consensus stands
    force: bool = False
    similarity: dict[str, Any] = field(default_factory=dict)  # SimilarityAnnotator options given (e.g. backend); its defaults where unset


@dataclass(slots=True)
class CategoryReport:
    """What the build of one category produced, and its shortfall against the recipe."""

    category: str
    stages: dict[str, str]  # stage -> "ran" or "skipped" (already complete)
    documents: int
    instances: int
    dropped: dict[str, int]
    disputed: int  # still waiting for a human decision
    human_reviewed: int
    agreement: float
    built: dict[str, int]  # length bucket -> instances
    target: dict[str, int]
    shortfall: dict[str, int]
    notes: list[str] = field(default_factory=list)


def _llm_available(names: list[str], recipe: Recipe, source: str, remote: bool) -> tuple[list[str], list[str], Any]:
    """Annotators to use, notes, and a local server to stop later: without a remote endpoint, "llm" needs the local server."""
    if not any(n.split(":")[0] == "llm" for n in names) or remote:
        return names, [], None
    if recipe.offline_llm == "off" and source == "offline":
        return [n for n in names if n.split(":")[0] != "llm"], ["llm annotator off in the recipe (offline.llm)"], None
    try:
        from semanticseg.servers.llm_server import start_server

        return names, [], start_server()
    except Exception as err:  # no model package, no transformers serve, port taken: build without it, say so
        return [n for n in names if n.split(":")[0] != "llm"], [f"llm annotator skipped: local server did not start ({err})"], None


@contextmanager
def _shown(progress: ProgressLike, overall: Any, label: str):
    """Run a stage under the one progress display: its own bars are removed when it ends."""
    before = set(progress.task_ids)
    progress.update(overall, info=label)
    yield
    for task in set(progress.task_ids) - before:
        progress.remove_task(task)
    progress.advance(overall)


def category_stages(category: str, config: BuildConfig, recipe: Recipe, api_key: str = "",
                    llm_options: dict[str, Any] | None = None) -> list[Stage]:
    """The stages that build one category, in order, with their settings from the build config and the recipe."""
    from semanticseg.dataset.adjudicate import AdjudicateStage
    from semanticseg.dataset.candidates import CandidatesStage
    from semanticseg.dataset.collect import CollectConfig, CollectStage
    from semanticseg.dataset.instances import InstancesStage
    from semanticseg.dataset.propose import ProposeStage
    from semanticseg.dataset.review import ReviewStage

    collect = CollectConfig(category, config.source, config.limit, recipe.min_tokens, recipe.max_tokens, recipe.encoding,
                            recipe.near_duplicate_jaccard)
    return [
        CollectStage(collect),
        CandidatesStage(recipe.encoding),
        ProposeStage(config.annotators, config.target_tokens, dict(llm_options or {}), dict(config.similarity)),
        AdjudicateStage(config.agreement_threshold),
        ReviewStage(config.label_studio_url, api_key),
        InstancesStage(recipe),
    ]


def _status(summary: StageSummary) -> str:
    if summary.stage == "review" and not summary.skipped:
        pushed, pulled = summary["push"], summary["pull"]
        return f"ran (pushed {pushed.pushed}, pulled {pulled.pulled}, queued {pulled.queued})"
    return summary.status


def build_category(
    category: str, config: BuildConfig, recipe: Recipe, progress: ProgressLike | None = None, overall: Any = None,
    api_key: str = "", llm_options: dict[str, Any] | None = None, executor: Executor | None = None,
) -> CategoryReport:
    """Run every stage for one category under WORK/<category>/ and report what it built.

    llm_options (base_url, model) point the llm annotator at a server; None: its own default endpoint.
    executor runs the stages' per-document work (None: this process).
    """
    progress = progress or NO_PROGRESS
    work_dir = Path(config.work_root) / category
    work_dir.mkdir(parents=True, exist_ok=True)
    settings = {**asdict(config), "label_studio_url": redact_url(config.label_studio_url)}
    write_json(work_dir / "build.config.json", {"config": settings, "recipe": recipe.to_json()})
    summaries: dict[str, StageSummary] = {}
    stages = category_stages(category, config, recipe, api_key, llm_options)
    propose = next(s for s in stages if s.name == "propose")
    if executor is not None and not is_complete(propose, work_dir):
        from semanticseg.dataset.propose import model_makers

        # A model annotator's workers can start loading now and be ready when propose comes (the Ray executor does);
        # not when propose will be skipped (a resumed build whose proposals are complete): they would load for nothing.
        executor.prestart(model_makers(config.annotators, work_dir, llm_options, config.similarity))
    for stage in stages:
        with _shown(progress, overall, f"{category}: {stage.name}"):
            summaries[stage.name] = run_stage(stage, work_dir, progress, force=config.force and stage.name in FORCE_REDOES,
                                              executor=executor)
    return _report(category, work_dir, recipe, {name: _status(s) for name, s in summaries.items()}, summaries["instances"])


def _report(category: str, work_dir: Path, recipe: Recipe, stages: dict[str, str], summary: StageSummary) -> CategoryReport:
    from semanticseg.dataset.adjudicate import awaiting_review

    rows: list[Instance] = read_records(work_dir / "instances.parquet", Instance)
    consensus: list[Consensus] = read_records(work_dir / "consensus.parquet", Consensus)
    built = Counter(length_bucket(r.n_tokens) for r in rows)
    target = recipe.target(category)
    return CategoryReport(
        category=category,
        stages=stages,
        documents=summary.get("documents", 0),
        instances=len(rows),
        dropped=summary.get("dropped", {}),
        disputed=len(awaiting_review(consensus)),  # as adjudicate counts: not yet decided by a human
        human_reviewed=sum(r.human_reviewed for r in rows),
        agreement=round(sum(r.agreement for r in rows) / len(rows), 4) if rows else 0.0,
        built={b: built.get(b, 0) for b in target},
        target=target,
        shortfall={b: max(target[b] - built.get(b, 0), 0) for b in target},
    )


def build(config: BuildConfig, recipe: Recipe, progress: ProgressLike | None = None, label_studio_api_key: str = "",
          llm_options: dict[str, Any] | None = None, executor: ExecutorConfig | None = None) -> list[CategoryReport]:
    """Build every category in config.categories; write a build_report.json per category; return the reports.

    The Label Studio token is a parameter, not part of the config, so it never lands in a JSON dump. llm_options
    are the llm annotator's (as `propose` takes them); with a base_url (or $OPENAI_BASE_URL) that endpoint is
    used, else the local server, with the recipe's offline.llm_options under the options given. executor says
    where the per-document work runs (None: this process); it is not part of the build config because the
    outputs are the same whichever executor made them, so a build resumes under another executor.
    """
    llm_options = dict(llm_options or {})
    remote = bool(llm_options.get("base_url") or os.environ.get("OPENAI_BASE_URL"))
    progress = progress or NO_PROGRESS
    starting = progress.add_task("llm server", total=None, info="starting the local model server") if not remote else None
    annotators, notes, server = _llm_available(config.annotators, recipe, config.source, remote)
    if starting is not None:
        progress.remove_task(starting)
    config.annotators = annotators
    # The build owns the local server it started: every category's llm annotator talks to it (with the recipe's
    # settings for a small CPU model), and it stops at the end.
    if server is not None:
        llm_options = {**recipe.offline_llm_options, **llm_options, "base_url": server.base_url, "model": server.model}
    if not any(n.split(":")[0] == "llm" for n in annotators):
        llm_options = {}  # LLM settings key the proposal shards: without an llm annotator they must not change them
    overall = progress.add_task("build", total=len(STAGES) * len(config.categories), info="")
    reports = []
    runner: Executor | None = None
    try:
        runner = make_executor(executor or ExecutorConfig())
        for category in config.categories:
            report = build_category(category, config, recipe, progress, overall, label_studio_api_key, llm_options, runner)
            report.notes = list(notes)
            write_json(Path(config.work_root) / category / "build_report.json", asdict(report))
            reports.append(report)
    finally:
        if runner is not None:
            runner.close()
        if server is not None:
            server.stop()
    return reports
