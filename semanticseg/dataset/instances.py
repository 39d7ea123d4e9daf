"""The last build stage: documents + candidates + consensus -> instances.parquet (schema.Instance).

Block bounds from the recipe are enforced here, as constraints rather than hopes: a block longer than
max_block_tokens is split at the candidate nearest its token midpoint, and a block shorter than
min_block_tokens is merged into its shorter neighbour by dropping the cut between them. Cuts stay at
candidate positions either way. A document whose blocks still break the bounds (no candidate inside an
over-long block) is left out and counted, never released broken.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from semanticseg.dataset.stage import Stage, StageContext, StageSummary, run_stage
from semanticseg.io import read_records, write_records
from semanticseg.recipes import Recipe
from semanticseg.schema import Candidates, Consensus, Document, Instance
from semanticseg.tokens import span_tokens, token_starts


def _lengths(cuts: list[int], starts: list[int], n_chars: int) -> list[int]:
    bounds = [0, *cuts, n_chars]
    return [span_tokens(starts, a, b) for a, b in zip(bounds, bounds[1:])]


def enforce_bounds(cuts: list[int], offsets: list[int], starts: list[int], n_chars: int, low: int, high: int) -> list[int] | None:
    """Cuts whose blocks all hold low..high tokens, moving only through candidate offsets; None if impossible."""
    cuts = sorted(set(cuts))
    while True:  # split over-long blocks at the candidate nearest their token midpoint
        lengths = _lengths(cuts, starts, n_chars)
        long = next((i for i, n in enumerate(lengths) if n > high), None)
        if long is None:
            break
        bounds = [0, *cuts, n_chars]
        a, b = bounds[long], bounds[long + 1]
        inside = offsets[bisect.bisect_right(offsets, a) : bisect.bisect_left(offsets, b)]
        if not inside:
            return None
        middle = starts[bisect.bisect_left(starts, a) + lengths[long] // 2]
        cuts = sorted([*cuts, min(inside, key=lambda o: abs(o - middle))])
    while cuts:  # merge short blocks into their shorter neighbour
        lengths = _lengths(cuts, starts, n_chars)
        short = next((i for i, n in enumerate(lengths) if n < low), None)
        if short is None:
            break
        if short == 0:
            drop = 0
        elif short == len(lengths) - 1:
            drop = short - 1
        else:
            drop = short - 1 if lengths[short - 1] <= lengths[short + 1] else short
        cuts.pop(drop)
    lengths = _lengths(cuts, starts, n_chars)
    return cuts if all(low <= n <= high for n in lengths) else None


def to_instance(doc: Document, cands: Candidates, cons: Consensus, recipe: Recipe) -> Instance | None:
    """The released record for one document, or None when its cuts cannot meet the block bounds."""
    starts = token_starts(doc.text, recipe.encoding)
    cuts = enforce_bounds(cons.cuts, cands.offsets, starts, len(doc.text), recipe.min_block_tokens, recipe.max_block_tokens)
    if cuts is None:
        return None
    return Instance(
        id=doc.id,
        category=doc.category,
        source=doc.source,
        licence=doc.licence,
        text=doc.text,
        cuts=cuts,
        block_tokens=_lengths(cuts, starts, len(doc.text)),
        n_tokens=len(starts),
        annotators=list(cons.annotators),
        annotator_cuts=[list(c) for c in cons.annotator_cuts],
        agreement=cons.agreement,
        human_reviewed=cons.human_reviewed,
        candidates=list(cands.offsets),
        human_agreement=cons.human_agreement,
    )


@dataclass(slots=True)
class InstancesStage(Stage):
    """Documents + candidates + consensus -> instances within the recipe's bounds (to_instance per document)."""

    recipe: Recipe

    name: ClassVar[str] = "instances"
    inputs: ClassVar[tuple[str, ...]] = ("documents.parquet", "candidates.parquet", "consensus.parquet")
    output: ClassVar[str] = "instances.parquet"

    def settings(self) -> dict[str, Any]:
        r = self.recipe
        return {"stage": self.name, "encoding": r.encoding, "min_tokens": r.min_tokens, "max_tokens": r.max_tokens,
                "min_block_tokens": r.min_block_tokens, "max_block_tokens": r.max_block_tokens}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        recipe = self.recipe
        docs, cands, cons = (read_records(ctx.path(n), cls) for n, cls in zip(self.inputs, (Document, Candidates, Consensus)))
        cands_of = {c.doc_id: c for c in cands}
        cons_of = {c.doc_id: c for c in cons}
        task = ctx.progress.add_task("instances", total=len(docs), info="")
        rows, dropped = [], {"length": 0, "no consensus": 0, "block bounds": 0}
        for doc in sorted(docs, key=lambda d: d.id):
            ctx.progress.advance(task)
            if not recipe.min_tokens <= doc.n_tokens <= recipe.max_tokens:
                dropped["length"] += 1
            elif doc.id not in cons_of or doc.id not in cands_of:
                dropped["no consensus"] += 1
            elif (inst := to_instance(doc, cands_of[doc.id], cons_of[doc.id], recipe)) is None:
                dropped["block bounds"] += 1
            else:
                rows.append(inst)
        write_records(ctx.path(self.output), rows, Instance)
        return {"documents": len(docs), "instances": len(rows), "dropped": dropped}


def run_instances(work_dir: Path, recipe: Recipe, force: bool = False, progress: Any = None) -> StageSummary:
    """Read documents, candidates and consensus under work_dir; write instances.parquet; return a summary."""
    return run_stage(InstancesStage(recipe), work_dir, progress, force)
