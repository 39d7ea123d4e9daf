"""Baselines behind one interface, so evaluation and the benchmark treat every method alike.

A method has two steps: `prepare(text, category)` does the costly, granularity-free work once (tokenise,
find candidates, embed); `cut(prepared, target_tokens)` returns char-offset cuts for a target mean block
length and is cheap, so evaluation can tune each method's granularity on validation without redoing the
expensive part. Speed is measured over both steps.

- fixed: windows of target_tokens tokens (the chunker every RAG framework ships);
- paragraph: paragraphs (blank-line separated) packed greedily up to target_tokens;
- recursive: semchunk's recursive splitting (paragraphs, lines, sentences, words) to target_tokens;
- texttiling: nltk's TextTilingTokenizer (no length knob: the target is ignored);
- embedding: the MiniLM over the same units as the segmenter (each unit's first 64 tokens, about a
  sentence or two, as sentence-level semantic chunkers embed; the segmenter reads only 32), TextTiling
  depth scores of the similarity between the units before and after each candidate, cut by the same
  length-prior DP;
- structure: the structure annotator (candidate kind scores + length prior);
- segmenter: the trained model.
"""

from __future__ import annotations

import bisect
import re
from typing import Any, Callable

import numpy as np

from semanticseg.annotators.structure import StructureAnnotator
from semanticseg.method import Method
from semanticseg.segmenter.decode import decode
from semanticseg.segmenter.units import doc_units, embed_units, load_encoder
from semanticseg.tiling import relative_depths
from semanticseg.tokens import DEFAULT_ENCODING, get_encoding


def _clean(cuts: list[int], n_chars: int) -> list[int]:
    return sorted({c for c in cuts if 0 < c < n_chars})


class FixedWindows(Method):
    name = "fixed"

    def cut(self, prepared: Any, target_tokens: int) -> list[int]:
        text, starts = prepared
        return _clean([starts[i] for i in range(target_tokens, len(starts), target_tokens)], len(text))


class ParagraphPacking(Method):
    name = "paragraph"

    def cut(self, prepared: Any, target_tokens: int) -> list[int]:
        text, starts = prepared
        cuts, block_start = [], 0
        for match in re.finditer(r"\n\s*\n", text):
            at = match.end()
            if bisect.bisect_left(starts, at) - bisect.bisect_left(starts, block_start) >= target_tokens:
                cuts.append(at)
                block_start = at
        return _clean(cuts, len(text))


class RecursiveSplit(Method):
    """semchunk (the fastest well-kept recursive splitter) with the same tiktoken encoding."""

    name = "recursive"

    def prepare(self, text: str, category: str) -> Any:
        return text

    def cut(self, prepared: Any, target_tokens: int) -> list[int]:
        import semchunk

        encoding = get_encoding(DEFAULT_ENCODING)
        _, offsets = semchunk.chunk(prepared, target_tokens, lambda s: len(encoding.encode(s, disallowed_special=())), offsets=True)
        return _clean([start for start, _ in offsets], len(prepared))


class TextTiling(Method):
    """nltk's TextTiling; empty stop-word list because no nltk corpus ships offline."""

    name = "texttiling"

    def prepare(self, text: str, category: str) -> Any:
        from nltk.tokenize import TextTilingTokenizer

        try:
            segments = TextTilingTokenizer(stopwords=[]).tokenize(text)
        except ValueError:  # no paragraph breaks, or too short: TextTiling finds nothing
            return text, []
        cuts, at = [], 0
        for segment in segments[:-1]:
            at += len(segment)
            cuts.append(at)
        return text, cuts

    def cut(self, prepared: Any, target_tokens: int) -> list[int]:
        text, cuts = prepared
        return _clean(cuts, len(text))


class EmbeddingSimilarity(Method):
    """Cut at dips of MiniLM similarity between the `context` units before and after each candidate."""

    name = "embedding"

    def __init__(self, context: int = 3, max_unit_tokens: int = 64, encoder: str = "minilm") -> None:
        self.context, self.max_unit_tokens, self.encoder = context, max_unit_tokens, encoder

    def prepare(self, text: str, category: str) -> Any:
        units = doc_units(text, category)
        if not units.offsets:
            return units, np.zeros(0)
        vectors = embed_units(units, load_encoder(self.encoder), self.max_unit_tokens, store=self.store)
        sims = []
        for i in range(1, len(vectors)):
            left = vectors[max(0, i - self.context) : i].mean(0)
            right = vectors[i : i + self.context].mean(0)
            sims.append(float(left @ right / (np.linalg.norm(left) * np.linalg.norm(right) + 1e-9)))
        return units, relative_depths(sims)

    def cut(self, prepared: Any, target_tokens: int) -> list[int]:
        units, scores = prepared
        return [units.offsets[i] for i in decode(units.token_offsets, units.n_tokens, (4 * scores).tolist(), target_tokens)]


class TrainedSegmenter(Method):
    """The trained segmenter (probabilities once, decoding per target)."""

    name = "segmenter"

    def __init__(self, path: str) -> None:
        from semanticseg.segmenter.model import Segmenter

        self.model = Segmenter.load(path)

    def prepare(self, text: str, category: str) -> Any:
        units = doc_units(text, category, self.model.config.encoding)
        return units, self.model.probabilities(units, self.store)

    def cut(self, prepared: Any, target_tokens: int) -> list[int]:
        units, probs = prepared
        return [units.offsets[i] for i in self.model.cut_indices(units, probs, target_tokens)]


BASELINES: dict[str, Callable[[], Method]] = {
    "fixed": FixedWindows,
    "paragraph": ParagraphPacking,
    "recursive": RecursiveSplit,
    "texttiling": TextTiling,
    "embedding": EmbeddingSimilarity,
    "structure": StructureAnnotator,  # an annotator is a method too (semanticseg.method)
}


def get_methods(names: list[str], model: str | None = None) -> list[Method]:
    """Methods by name ("segmenter" needs model, a trained segmenter directory; "peers" is every peer)."""
    from semanticseg.segmenter.peers import PEERS, get_peer

    methods: list[Method] = []
    for name in [p for n in names for p in (PEERS if n == "peers" else [n])]:
        if name in PEERS:
            methods.append(get_peer(name))
        elif name == "segmenter":
            if not model:
                raise ValueError("the segmenter method needs --model DIR")
            methods.append(TrainedSegmenter(model))
        elif name in BASELINES:
            methods.append(BASELINES[name]())
        else:
            raise ValueError(f"unknown method {name!r}; known: segmenter, {', '.join(BASELINES)}, peers ({', '.join(PEERS)})")
    return methods
