"""The propose stage: every annotator proposes cuts for every document -> WORK/proposals.parquet.

Resumable at the document level: each (annotator, document) proposal is written at once as a small
shard under WORK/proposals.parts/<settings>/<annotator>/, so Ctrl-C or a crash loses nothing finished and
a rerun continues; failed proposals are retried on a rerun (their shards are kept until then). Ctrl-C
stops within about one document and raises Interrupted saying what was kept. LLM annotators run
concurrently, all documents at once under each annotator's request limit. Where the annotators run is the
executor's (semanticseg.executors): this process by default, Ray actors with `build --executor ray`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from semanticseg.annotators.base import Annotator, get_annotator, parse_name
from semanticseg.dataset.stage import Stage, StageContext, StageSummary, run_stage
from semanticseg.io import Interrupted, StaleOutput, fingerprint, read_records, write_records
from semanticseg.redact import redact_url
from semanticseg.schema import Candidates, Document, Proposal

# LLM options that change answers (so they key the shards); the rest (concurrency, timeouts) do not.
_ANSWER_OPTIONS = ("base_url", "temperature", "max_tokens", "window_tokens", "overlap_tokens", "structured")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] + "-" + hashlib.sha1(name.encode()).hexdigest()[:6]


def build_annotators(specs: list[str], work_dir: Path, llm_options: dict[str, Any] | None = None,
                     similarity_options: dict[str, Any] | None = None) -> list[Annotator]:
    """Annotators from names ("structure", "similarity", "llm", "llm:<model>#<sample>"); LLMs share options and a
    cache; similarity_options are the similarity annotator's (its own defaults where unset)."""
    built = []
    for spec in specs:
        kind = parse_name(spec)[0]
        if kind == "llm":
            built.append(get_annotator(spec, cache_dir=work_dir / "llm_cache", **(llm_options or {})))
        else:
            built.append(get_annotator(spec, **(similarity_options or {}) if kind == "similarity" else {}))
    names = [a.name for a in built]
    if len(set(names)) != len(names):
        raise ValueError(f"two annotators share a name ({names}); give LLM samples different numbers, e.g. llm#0 llm#1")
    return built


def _make_annotator(spec: str, work_dir: Path, llm_options: dict[str, Any] | None,
                    similarity_options: dict[str, Any] | None) -> Annotator:
    return build_annotators([spec], work_dir, llm_options, similarity_options)[0]


def annotator_makers(specs: list[str], built: list[Annotator], work_dir: Path, llm_options: dict[str, Any] | None = None,
                     similarity_options: dict[str, Any] | None = None) -> dict[str, Callable[[], Annotator]]:
    """name -> a maker that builds annotator `built[i]` again from specs[i] (and the same options), where an executor
    runs it; each annotator's `provision` is done first, here, so the workers find what their `load` reads."""
    for annotator in built:
        annotator.provision()
    return {a.name: partial(_make_annotator, spec, work_dir, llm_options, similarity_options) for spec, a in zip(specs, built)}


def model_makers(specs: list[str], work_dir: Path, llm_options: dict[str, Any] | None = None,
                 similarity_options: dict[str, Any] | None = None) -> dict[str, Callable[[], Annotator]]:
    """name -> maker of the annotators among specs that keep a model: what an executor may start before propose."""
    rules = [s for s in specs if parse_name(s)[0] != "llm"]  # an LLM annotator's model is its server's
    kept = [(s, a) for s, a in zip(rules, build_annotators(rules, work_dir, similarity_options=similarity_options)) if a.keeps_model]
    return annotator_makers([s for s, _ in kept], [a for _, a in kept], work_dir, llm_options, similarity_options)


def _summarise(proposals: list[Proposal], seconds: dict[str, float], tokens: dict[str, int]) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    for p in proposals:
        row = per.setdefault(p.annotator, {"ok": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                           "requests": 0, "cache_hits": 0, "cuts": 0, "errors": []})
        row["ok" if p.status == "ok" else "failed"] += 1
        row["prompt_tokens"] += p.prompt_tokens
        row["completion_tokens"] += p.completion_tokens
        row["requests"] += p.meta.get("requests", 0)
        row["cache_hits"] += p.meta.get("cache_hits", 0)
        row["cuts"] += len(p.cuts)
        if p.error and len(row["errors"]) < 5:
            row["errors"].append(f"{p.doc_id}: {p.error}")
    for name, row in per.items():
        row["seconds"] = round(seconds.get(name, 0.0), 2)
        row["doc_tokens_per_s"] = round(tokens.get(name, 0) / seconds[name], 1) if seconds.get(name) else None
    return per


@dataclass(slots=True)
class ProposeStage(Stage):
    """Every annotator proposes cuts for every document (Annotator.propose per document)."""

    annotators: list[str]
    target_tokens: int = 512
    llm_options: dict[str, Any] = field(default_factory=dict, repr=False)  # as given: may hold credentials
    similarity_options: dict[str, Any] = field(default_factory=dict)  # as given (e.g. backend); the annotator's defaults where unset
    retry_failed: bool = True  # how to treat failed proposals, not what a proposal is: not a setting

    name: ClassVar[str] = "propose"
    inputs: ClassVar[tuple[str, ...]] = ("candidates.parquet",)  # candidates are keyed by the documents they came from
    output: ClassVar[str] = "proposals.parquet"

    def __post_init__(self) -> None:
        if self.target_tokens <= 0:
            raise ValueError("target_tokens must be positive")

    def _public(self) -> dict[str, Any]:
        # The annotators get the endpoint as given; what is written (config, shard keys) never holds its credentials.
        return {k: redact_url(v) if k == "base_url" else v for k, v in self.llm_options.items()}

    def settings(self) -> dict[str, Any]:
        return {"stage": self.name, "annotators": self.annotators, "target_tokens": self.target_tokens, "llm_options": self._public(),
                **self._similarity()}

    def _similarity(self) -> dict[str, Any]:
        # Only when given (and the similarity annotator runs): the settings, and so the fingerprint and the shards,
        # of a build with the annotator's defaults stay those of a build made before the option existed.
        return {"similarity_options": self.similarity_options} if self.similarity_options and "similarity" in self.annotators else {}

    def done(self, ctx: StageContext, fp: str) -> dict[str, Any] | None:
        done = Stage.done(self, ctx, fp)
        if done is not None and self.retry_failed and any(row.get("failed") for row in done.get("annotators", {}).values()):
            return None  # complete, but some proposals failed: retry them
        return done

    def run(self, ctx: StageContext) -> dict[str, Any]:
        work_dir, progress, target_tokens = ctx.work_dir, ctx.progress, self.target_tokens
        documents: list[Document] = read_records(work_dir / "documents.parquet", Document)
        by_id = {c.doc_id: c for c in read_records(work_dir / "candidates.parquet", Candidates)}
        missing = [d.id for d in documents if d.id not in by_id]
        if missing:
            raise ValueError(f"{len(missing)} documents have no candidates (e.g. {missing[0]}): rerun `semanticseg candidates`")
        built = build_annotators(self.annotators, work_dir, self.llm_options, self.similarity_options)
        # The similarity options change its answers (an encoder backend's embeddings differ by float rounding): they
        # key the shards too, so a resumed build never mixes proposals of two backends.
        keyed = {**{k: v for k, v in self._public().items() if k in _ANSWER_OPTIONS}, **self._similarity()}
        shard_root = work_dir / "proposals.parts" / fingerprint({"target_tokens": target_tokens, **keyed}, work_dir / "candidates.parquet")
        results, todo = _pending(built, documents, shard_root, self.retry_failed)
        total = sum(len(v) for v in todo.values())
        task = progress.add_task("propose", total=total, info="") if total else None

        def record(name: str, doc: Document, proposal: Proposal) -> None:
            write_records(shard_root / _slug(name) / f"{_slug(doc.id)}.parquet", [proposal], Proposal)
            results[(name, doc.id)] = proposal
            progress.update(task, advance=1, info=f"{name} {proposal.status}")

        # A distributed executor builds its own copies of the annotators where it runs them (same specs and options).
        makers = annotator_makers(self.annotators, built, work_dir, self.llm_options, self.similarity_options)
        try:
            seconds, tokens = ctx.executor.propose(built, makers, todo, by_id, target_tokens, record)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted: kept {len(results)} of {len(built) * len(documents)} proposals finished so far "
                              f"in {shard_root}; rerun the same command to resume") from None
        finally:
            for annotator in built:
                if hasattr(annotator, "close"):
                    annotator.close()
        proposals = [results[(a.name, d.id)] for a in built for d in documents]
        write_records(ctx.path(self.output), proposals, Proposal)
        return {"documents": len(documents), "annotators": _summarise(proposals, seconds, tokens)}


def run_propose(
    work_dir: Path,
    annotators: list[str],
    target_tokens: int = 512,
    llm_options: dict[str, Any] | None = None,
    retry_failed: bool = True,
    progress: Any = None,
    similarity_options: dict[str, Any] | None = None,
) -> StageSummary:
    """Run the annotators over WORK/documents.parquet + candidates.parquet; write WORK/proposals.parquet
    (similarity_options: the similarity annotator's, e.g. {"backend": "onnx"}; its defaults where unset).

    Skips (summary["skipped"]) when proposals.parquet is complete for the same candidates and settings
    and none of its proposals failed (failed ones are retried when retry_failed).
    """
    stage = ProposeStage(list(annotators), target_tokens, dict(llm_options or {}), dict(similarity_options or {}),
                         retry_failed=retry_failed)
    return run_stage(stage, work_dir, progress)


def _pending(built: list[Annotator], documents: list[Document], shard_root: Path,
             retry_failed: bool) -> tuple[dict[tuple[str, str], Proposal], dict[str, list[Document]]]:
    """Proposals already in shards, and the documents each annotator still has to do.

    A shard that cannot be read (truncated, or written by hand) is redone, not trusted.
    """
    results: dict[tuple[str, str], Proposal] = {}
    todo: dict[str, list[Document]] = {}
    for annotator in built:
        for doc in documents:
            shard = shard_root / _slug(annotator.name) / f"{_slug(doc.id)}.parquet"
            try:
                old = read_records(shard, Proposal) if shard.exists() else []
            except StaleOutput:
                old = []
            if len(old) == 1 and old[0].doc_id == doc.id and (old[0].status == "ok" or not retry_failed):
                results[(annotator.name, doc.id)] = old[0]
                continue
            todo.setdefault(annotator.name, []).append(doc)
    return results, todo
