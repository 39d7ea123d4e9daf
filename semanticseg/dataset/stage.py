"""One interface for every data-set stage and one runner for all of them.

A stage is a dataclass whose fields are its settings: `name`, the `inputs` whose bytes key its output, the
`output` that carries its completion marker, `settings()` (what it dumps as <name>.config.json and what the
fingerprint hashes) and `run(ctx)`, which does the work and returns the stage's numbers. `run_stage` is the only
place that fingerprints, skips a complete output, runs, writes the config and marks the output done (io.py's
markers; the config is written with the marker, so an interrupted stage leaves no file claiming settings), and it returns a StageSummary that means the same for every stage: which stage, whether it was
skipped, and its numbers. `build` is a loop of run_stage over the stages; the commands run the same stages.

Inside each stage the per-document work is a plain function of (document, settings) (find_candidates,
Annotator.propose, adjudicate_document, to_instance): the seam where a distributed executor maps a stage over
shards of documents.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from semanticseg.executors import Executor, LocalExecutor
from semanticseg.io import fingerprint, is_done, mark_done, read_summary, write_json
from semanticseg.progress import NO_PROGRESS, ProgressLike


@dataclass(slots=True)
class StageContext:
    """What a stage runs against: its category's work folder, the progress display, and the executor that runs
    its per-document work (this process unless `build --executor ray`)."""

    work_dir: Path
    progress: ProgressLike = NO_PROGRESS
    executor: Executor = field(default_factory=LocalExecutor)
    stage: str = ""
    fingerprint: str = ""  # of the stage's settings and inputs: keys the shards a distributed run keeps

    def path(self, name: str) -> Path:
        return self.work_dir / name

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], chunk: int = 1) -> Iterator[Any]:
        """fn(item) for every item, in order, on the executor. A distributed executor keeps each finished chunk under
        WORK/<stage>.parts/<fingerprint>/ so that a killed run resumes per chunk; they are removed once all are done."""
        parts = self.path(f"{self.stage}.parts")
        yield from self.executor.imap(fn, items, chunk, parts / self.fingerprint)
        shutil.rmtree(parts, ignore_errors=True)


@dataclass(slots=True)
class StageSummary(Mapping[str, Any]):
    """What one stage run did, the same for every stage: `skipped` when its output was already complete for
    the same inputs and settings (or it had nothing to do), else it ran; `details` are the stage's own numbers
    (read back from the completion marker when skipped). Reads as a mapping of the details plus "skipped"."""

    stage: str
    skipped: bool
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "ran"

    def __getitem__(self, key: str) -> Any:
        return self.skipped if key == "skipped" else self.details[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.details, "skipped": self.skipped})

    def __len__(self) -> int:
        return len({*self.details, "skipped"})


class Stage:
    """Base of the data-set stages (subclasses are dataclasses; their fields are the stage's settings)."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()  # files in the work dir whose bytes key the output
    output: ClassVar[str | None] = None  # the file whose completion marker lets a rerun skip; None: always runs
    version: ClassVar[int | None] = None  # hashed with the settings: bump when the stage's logic changes its output

    @property
    def config_file(self) -> str | None:
        """Where the runner dumps settings() after a run (None: the stage records its settings itself)."""
        return f"{self.name}.config.json"

    def settings(self) -> dict[str, Any]:
        """The settings as JSON: dumped beside the output and hashed into its fingerprint."""
        raise NotImplementedError

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Read the inputs, write the output(s); return the stage's numbers (kept in the completion marker)."""
        raise NotImplementedError

    def done(self, ctx: StageContext, fp: str) -> dict[str, Any] | None:
        """The numbers to report when there is nothing to do (output complete for fingerprint fp); None: run."""
        if self.output is None:
            return None
        out = ctx.path(self.output)
        return read_summary(out) if is_done(out, fp) else None


def run_stage(stage: Stage, work_dir: Path, progress: ProgressLike | None = None, force: bool = False,
              executor: Executor | None = None) -> StageSummary:
    """Run one stage in work_dir: fingerprint -> skip when complete (unless force) -> run -> write config -> mark done.

    executor: where the stage's per-document work runs (None: this process); it never changes the output.
    """
    ctx = StageContext(Path(work_dir), progress or NO_PROGRESS, executor or LocalExecutor(), stage.name)
    for name in stage.inputs:
        if not ctx.path(name).exists():
            raise FileNotFoundError(f"{ctx.path(name)} does not exist: run the stage that writes it first")
    fp = ctx.fingerprint = _fingerprint(stage, ctx)
    if not force and (details := stage.done(ctx, fp)) is not None:
        return StageSummary(stage.name, True, details)
    details = stage.run(ctx)
    if stage.config_file:
        write_json(ctx.path(stage.config_file), stage.settings())
    if stage.output:
        mark_done(ctx.path(stage.output), fp, details)
    return StageSummary(stage.name, False, details)


def is_complete(stage: Stage, work_dir: Path) -> bool:
    """Whether run_stage would skip the stage now: its inputs are there and its output is complete for them.

    Asked before the earlier stages run (a model annotator's workers are started ahead only when propose will run),
    so it is the answer for the inputs as they are now; an earlier stage that writes them again with the same
    bytes keeps it.
    """
    ctx = StageContext(Path(work_dir), stage=stage.name)
    if stage.output is None or not all(ctx.path(name).exists() for name in stage.inputs):
        return False
    return stage.done(ctx, _fingerprint(stage, ctx)) is not None


def _fingerprint(stage: Stage, ctx: StageContext) -> str:
    """The stage's settings (and version) with its inputs' bytes: what its completion marker is keyed by."""
    if not stage.output:
        return ""
    settings = stage.settings()
    keyed = settings if stage.version is None else {**settings, "version": stage.version}
    return fingerprint(keyed, *(ctx.path(n) for n in stage.inputs))
