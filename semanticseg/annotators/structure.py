"""The `structure` annotator: format rules, cheap and deterministic.

It cuts where the text's own structure says a new unit starts (headings and chapter markers,
conversation sessions, top-level definitions, paragraphs), choosing among candidates by their kind and
a length prior so blocks come out near the target size. No model, no network: the baseline.
"""

from __future__ import annotations

from semanticseg.annotators.base import Annotator, ok_proposal, select_cuts
from semanticseg.schema import Candidates, Document, Proposal

# How strongly each candidate kind marks the start of a self-contained unit.
KIND_SCORES = {"heading": 1.0, "session": 1.0, "code": 0.6, "paragraph": 0.4, "turn": 0.3, "line": 0.15, "sentence": 0.05, "window": 0.0}


class StructureAnnotator(Annotator):
    """Cuts at the strongest structural candidates, with blocks near target_tokens."""

    name = "structure"

    def propose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Proposal:
        """Cuts for doc chosen by kind score under the target-length prior."""
        scores = [KIND_SCORES.get(kind, 0.0) for kind in candidates.kinds]
        indices = select_cuts(candidates.token_offsets, scores, doc.n_tokens, target_tokens)
        return ok_proposal(self.name, doc, candidates, indices)
