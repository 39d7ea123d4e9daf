"""The annotator interface, the registry that names annotators, and the shared cut selection.

An annotator proposes cuts for one document, choosing only among the document's candidate offsets, for a
granularity target in tokens: `propose(doc, candidates, target_tokens) -> Proposal`. Names in the
registry ("structure", "similarity", "llm") are what recipes and the command line use; an LLM name may
carry a model and a sample number, "llm:<model>#<sample>".
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from semanticseg.method import Method
from semanticseg.schema import Candidates, Document, Proposal

# name -> "module:Class", imported on first use so that cheap annotators never load torch or openai.
REGISTRY: dict[str, str] = {
    "structure": "semanticseg.annotators.structure:StructureAnnotator",
    "similarity": "semanticseg.annotators.similarity:SimilarityAnnotator",
    "llm": "semanticseg.annotators.llm:LLMAnnotator",
}


class Annotator(Method, ABC):
    """Proposes cuts for a document; `name` goes into Proposal.annotator. As a Method (prepare / cut), an annotator
    cuts any text over its candidates, wherever the baselines and the segmenter are used."""

    name: str
    # True when proposing needs a model that is worth keeping loaded between documents: a distributed executor
    # then holds the annotator in a long-lived worker (an actor); a rule is cheap to build wherever a task runs.
    keeps_model: ClassVar[bool] = False

    def prepare(self, text: str, category: str) -> tuple[Document, Candidates]:
        """The text as a document, with the candidates propose chooses among."""
        from semanticseg.candidates import find_candidates

        doc = Document.from_text(text, category)
        return doc, find_candidates(doc.id, text, category)

    def cut(self, prepared: tuple[Document, Candidates], target_tokens: int) -> list[int]:
        doc, candidates = prepared
        return self.propose(doc, candidates, target_tokens).cuts

    def provision(self) -> None:
        """Make, once and before any worker starts, the files every worker's `load` reads (a model's export to the
        cache): run by the process that hands the annotator to workers. A no-op for most annotators."""

    def load(self) -> None:
        """Load what propose needs (a model) now rather than on the first document; a no-op for rules."""

    @abstractmethod
    def propose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Proposal:
        """Cuts for doc, each one of candidates.offsets, aiming at blocks of about target_tokens."""

    async def apropose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Proposal:
        """Async form used by the propose stage; annotators that wait on the network override it."""
        return self.propose(doc, candidates, target_tokens)


def parse_name(spec: str) -> tuple[str, dict[str, Any]]:
    """'llm:gpt-4o-mini#2' -> ('llm', {'model': 'gpt-4o-mini', 'sample': 2}); plain names pass through."""
    base, _, sample = spec.partition("#")
    kind, _, model = base.partition(":")
    options: dict[str, Any] = {}
    if model:
        options["model"] = model
    if sample:
        if not sample.isdigit():
            raise ValueError(f"annotator {spec!r}: the sample after '#' must be a number")
        options["sample"] = int(sample)
    return kind, options


def check_names(specs: list[str]) -> list[str]:
    """specs, if every one names a registered annotator (checked before any work starts); else ValueError."""
    for spec in specs:
        kind = parse_name(spec)[0]
        if kind not in REGISTRY:
            raise ValueError(f"unknown annotator {kind!r}; known: {', '.join(sorted(REGISTRY))}")
    return specs


def get_annotator(name: str, **options: Any) -> Annotator:
    """Build the annotator registered under name (a name may carry ':model#sample') with options."""
    kind, parsed = parse_name(check_names([name])[0])
    module, _, cls = REGISTRY[kind].partition(":")
    return getattr(importlib.import_module(module), cls)(**(options | parsed))


def select_cuts(token_offsets: list[int], scores: list[float], n_tokens: int, target_tokens: int) -> list[int]:
    """Indices of the candidates to cut at: blocks near target_tokens, preferring high-score candidates.

    Dynamic programming over candidates (written here because the cost mixes a length prior with
    per-candidate scores, which no splitter library exposes): a block of L tokens costs
    ((L - target) / target)^2 and a cut at candidate i earns scores[i] (in [0, 1]). Blocks longer than
    4 x target are only allowed when no candidate is closer.
    """
    if target_tokens <= 0:
        raise ValueError("target_tokens must be positive")
    positions = [0, *token_offsets, n_tokens]
    gains = [0.0, *scores, 0.0]
    best = [0.0] + [float("inf")] * (len(positions) - 1)
    back = [0] * len(positions)
    for j in range(1, len(positions)):
        i = j - 1
        while i >= 0:
            length = positions[j] - positions[i]
            if length > 4 * target_tokens and i < j - 1:
                break
            cost = best[i] + ((length - target_tokens) / target_tokens) ** 2 - gains[j]
            if cost < best[j]:
                best[j], back[j] = cost, i
            i -= 1
    chosen, j = [], back[-1]
    while j > 0:
        chosen.append(j - 1)
        j = back[j]
    return sorted(chosen)


def ok_proposal(name: str, doc: Document, candidates: Candidates, indices: list[int], **meta: Any) -> Proposal:
    """A successful Proposal whose cuts are the candidates at indices."""
    return Proposal(doc_id=doc.id, annotator=name, cuts=[candidates.offsets[i] for i in sorted(set(indices))], meta=meta)
