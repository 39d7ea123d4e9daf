"""The candidates stage: WORK/documents.parquet -> WORK/candidates.parquet (the rules are in semanticseg.candidates)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import mean
from typing import Any, ClassVar

from semanticseg.candidates import find_candidates, mean_gap_tokens
from semanticseg.dataset.stage import Stage, StageContext, StageSummary, run_stage
from semanticseg.io import read_records, write_records
from semanticseg.schema import Candidates, Document
from semanticseg.tokens import DEFAULT_ENCODING

CHUNK = 8  # documents per task on a distributed executor (tens of milliseconds to a second each)


def _candidates_of(doc: Document, encoding: str) -> Candidates:
    return find_candidates(doc.id, doc.text, doc.category, encoding=encoding)


@dataclass(slots=True)
class CandidatesStage(Stage):
    """Candidate cut positions for every document (find_candidates per document)."""

    encoding: str = DEFAULT_ENCODING

    name: ClassVar[str] = "candidates"
    inputs: ClassVar[tuple[str, ...]] = ("documents.parquet",)
    output: ClassVar[str] = "candidates.parquet"

    def settings(self) -> dict[str, Any]:
        return {"stage": self.name, "encoding": self.encoding}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        documents: list[Document] = read_records(ctx.path("documents.parquet"), Document)
        records, gaps = [], {}
        task = ctx.progress.add_task("candidates", total=len(documents), info="")
        for cands, doc in zip(ctx.map(partial(_candidates_of, encoding=self.encoding), documents, chunk=CHUNK), documents):
            records.append(cands)
            gaps.setdefault(doc.category, []).append(mean_gap_tokens(cands, doc.n_tokens))
            ctx.progress.advance(task)
        write_records(ctx.path(self.output), records, Candidates)
        return {
            "documents": len(records),
            "candidates": sum(len(c.offsets) for c in records),
            "mean_gap_tokens": {cat: round(mean(values), 1) for cat, values in sorted(gaps.items())},
        }


def run_candidates(work_dir: Path, encoding: str = DEFAULT_ENCODING, force: bool = False, progress: Any = None) -> StageSummary:
    """Read WORK/documents.parquet, write WORK/candidates.parquet; summary with the mean gap per category."""
    return run_stage(CandidatesStage(encoding), work_dir, progress, force)
