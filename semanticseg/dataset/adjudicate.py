"""Adjudication: how far the annotators agree, the consensus cuts, and the queue for human review.

Positions are compared in candidate units (metrics.candidate_positions): two cuts one candidate apart
are a near miss whatever their distance in tokens. Per document and annotator pair: boundary similarity
(Fournier 2013) and boundary F1, both with a tolerance in candidates. Consensus: a candidate is cut when
a strict majority of the annotators cut within the tolerance of it; of neighbouring winners, the one
most annotators cut exactly is kept. A document whose mean pairwise boundary similarity is under the
threshold is disputed and goes to human review. Failed proposals do not vote; a human decision already
in consensus.parquet is kept. Several human reviewers of one document are merged and scored by the same
rules (majority_cuts, mean_agreement).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import mean
from typing import Any, ClassVar

import pyarrow as pa

from semanticseg.dataset.stage import Stage, StageContext, StageSummary, run_stage
from semanticseg.io import read_records, write_records
from semanticseg.metrics import boundary_f1, boundary_similarity, candidate_positions
from semanticseg.schema import Candidates, Consensus, Document, Proposal

DEFAULT_TOLERANCE = 1  # cuts this many candidates apart still agree


@dataclass(slots=True)
class PairAgreement:
    """Agreement between two annotators on one document (positions in candidate units)."""

    doc_id: str
    category: str
    annotator_a: str
    annotator_b: str
    boundary_similarity: float
    boundary_f1: float

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("doc_id", pa.string()),
            ("category", pa.string()),
            ("annotator_a", pa.string()),
            ("annotator_b", pa.string()),
            ("boundary_similarity", pa.float64()),
            ("boundary_f1", pa.float64()),
        ]
    )


def consensus_positions(votes: list[list[int]], tolerance: int) -> list[int]:
    """Positions cut by a strict majority of the voters within `tolerance`, one per neighbourhood."""
    if not votes:
        return []
    exact: dict[int, int] = defaultdict(int)
    near: dict[int, int] = defaultdict(int)
    for positions in votes:
        for p in positions:
            exact[p] += 1
        for p in {q + d for q in positions for d in range(-tolerance, tolerance + 1)}:
            near[p] += 1
    winners = sorted((p for p in exact if 2 * near[p] > len(votes)), key=lambda p: (-exact[p], -near[p], p))
    chosen: list[int] = []
    for p in winners:  # keep the best-supported position of each neighbourhood
        if all(abs(p - q) > tolerance for q in chosen):
            chosen.append(p)
    return sorted(chosen)


def similarity(a: list[int], b: list[int], n: int, tolerance: int = DEFAULT_TOLERANCE) -> float:
    """Boundary similarity of two segmentations in candidate units (n units); near misses up to `tolerance` apart."""
    return boundary_similarity(a, b, n, n_t=tolerance + 1)


def mean_agreement(positions: list[list[int]], n: int, tolerance: int = DEFAULT_TOLERANCE) -> float | None:
    """Mean pairwise boundary similarity of several segmentations in candidate units; None with fewer than two."""
    pairs = [similarity(a, b, n, tolerance) for a, b in itertools.combinations(positions, 2)]
    return mean(pairs) if pairs else None


def majority_cuts(cut_lists: list[list[int]], offsets: list[int], tolerance: int = DEFAULT_TOLERANCE) -> list[int]:
    """Char-offset cuts made by a strict majority of the cut lists within `tolerance` candidates."""
    positions = [candidate_positions(cuts, offsets) for cuts in cut_lists]
    return [offsets[p - 1] for p in consensus_positions(positions, tolerance)]


def awaiting_review(consensus: list[Consensus]) -> list[Consensus]:
    """The disputed documents no human has decided yet (what disputed.parquet holds)."""
    return [c for c in consensus if c.disputed and not c.human_reviewed]


def recorded_tolerance(work_dir: Path) -> int:
    """The tolerance the last adjudicate of work_dir used (the default when it left no config)."""
    path = Path(work_dir) / "adjudicate.config.json"
    return int(json.loads(path.read_text()).get("tolerance", DEFAULT_TOLERANCE)) if path.exists() else DEFAULT_TOLERANCE


def adjudicate_document(doc: Document, candidates: Candidates, proposals: list[Proposal], threshold: float,
                        tolerance: int) -> tuple[Consensus, list[PairAgreement]]:
    """Consensus and pairwise agreement for one document from its ok proposals."""
    ok = sorted((p for p in proposals if p.status == "ok"), key=lambda p: p.annotator)
    n = len(candidates.offsets) + 1
    positions = [candidate_positions(p.cuts, candidates.offsets) for p in ok]
    pairs = [
        PairAgreement(doc.id, doc.category, ok[i].annotator, ok[j].annotator,
                      similarity(positions[i], positions[j], n, tolerance),
                      boundary_f1(positions[i], positions[j], tolerance=tolerance).f1)
        for i, j in itertools.combinations(range(len(ok)), 2)
    ]
    # With fewer than two proposals there is nothing to agree on: a human decides.
    agreement = mean(p.boundary_similarity for p in pairs) if pairs else 0.0
    chosen = consensus_positions(positions, tolerance)
    cut_by = defaultdict(int)
    for pos in positions:
        for p in pos:
            cut_by[p] += 1
    disputed_offsets = sorted(candidates.offsets[p - 1] for p, count in cut_by.items() if count < len(ok))
    consensus = Consensus(
        doc_id=doc.id,
        cuts=[candidates.offsets[p - 1] for p in chosen],
        agreement=agreement,
        annotators=[p.annotator for p in ok],
        annotator_cuts=[p.cuts for p in ok],
        disputed=len(ok) < 2 or agreement < threshold,
        disputed_offsets=disputed_offsets,
    )
    return consensus, pairs


CHUNK = 32  # documents per task on a distributed executor (milliseconds each)


def _adjudicate_one(item: tuple[Document, Candidates, list[Proposal]], threshold: float,
                    tolerance: int) -> tuple[Consensus, list[PairAgreement]]:
    return adjudicate_document(*item, threshold, tolerance)


def agreement_table(pairs: list[PairAgreement]) -> list[dict[str, Any]]:
    """Mean boundary similarity and F1 per category and annotator pair."""
    groups: dict[tuple[str, str, str], list[PairAgreement]] = defaultdict(list)
    for p in pairs:
        groups[(p.category, p.annotator_a, p.annotator_b)].append(p)
    return [
        {"category": c, "pair": f"{a} vs {b}", "documents": len(rows),
         "boundary_similarity": round(mean(r.boundary_similarity for r in rows), 3),
         "boundary_f1": round(mean(r.boundary_f1 for r in rows), 3)}
        for (c, a, b), rows in sorted(groups.items())
    ]


@dataclass(slots=True)
class AdjudicateStage(Stage):
    """Consensus, pairwise agreement and the review queue (adjudicate_document per document)."""

    threshold: float  # the release recipe's agreement_threshold unless given
    tolerance: int = DEFAULT_TOLERANCE

    name: ClassVar[str] = "adjudicate"
    inputs: ClassVar[tuple[str, ...]] = ("proposals.parquet",)
    output: ClassVar[str] = "consensus.parquet"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 or self.tolerance < 0:
            raise ValueError("threshold must be in [0, 1] and tolerance >= 0")

    def settings(self) -> dict[str, Any]:
        return {"stage": self.name, "threshold": self.threshold, "tolerance": self.tolerance}

    def done(self, ctx: StageContext, fp: str) -> dict[str, Any] | None:
        done = Stage.done(self, ctx, fp)
        if done is None:
            return None
        # Human review may have settled disputes since: count what is still waiting, as run() does.
        return done | {"disputed": len(awaiting_review(read_records(ctx.path(self.output), Consensus)))}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        documents: list[Document] = read_records(ctx.path("documents.parquet"), Document)
        candidates = {c.doc_id: c for c in read_records(ctx.path("candidates.parquet"), Candidates)}
        proposals: dict[str, list[Proposal]] = defaultdict(list)
        for p in read_records(ctx.path("proposals.parquet"), Proposal):
            proposals[p.doc_id].append(p)
        out = ctx.path(self.output)
        human = {c.doc_id: c for c in read_records(out, Consensus) if c.human_reviewed} if out.exists() else {}
        consensus, pairs = [], []
        work = partial(_adjudicate_one, threshold=self.threshold, tolerance=self.tolerance)
        items = [(doc, candidates[doc.id], proposals.get(doc.id, [])) for doc in documents]
        for (record, doc_pairs), doc in zip(ctx.map(work, items, chunk=CHUNK), documents):
            consensus.append(human.get(doc.id, record))
            pairs += doc_pairs
        disputed = awaiting_review(consensus)
        write_records(ctx.path("agreement.parquet"), pairs, PairAgreement)
        write_records(ctx.path("disputed.parquet"), disputed, Consensus)
        write_records(out, consensus, Consensus)
        return {
            "documents": len(consensus),
            "disputed": len(disputed),
            "human_reviewed_kept": len(human),
            "mean_agreement": round(mean(c.agreement for c in consensus), 3) if consensus else None,
            "table": agreement_table(pairs),
        }


def run_adjudicate(work_dir: Path, threshold: float | None = None, tolerance: int = DEFAULT_TOLERANCE,
                   force: bool = False) -> StageSummary:
    """Read WORK/{documents,candidates,proposals}.parquet; write consensus, agreement and disputed parquet.

    threshold: mean agreement under which a document is disputed (None: the release recipe's, as `build` uses).

    Skips (summary["skipped"]) when consensus.parquet is complete for the same proposals and settings.
    """
    if threshold is None:
        from semanticseg.recipes import load_recipe

        threshold = load_recipe().agreement_threshold
    return run_stage(AdjudicateStage(threshold, tolerance), work_dir, force=force)
