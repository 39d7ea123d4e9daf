"""One interface for everything that cuts text: the baselines, the peer libraries, the annotators and the segmenter.

`prepare(text, category)` does the work that does not depend on granularity, once per text; `cut(prepared,
target_tokens)` returns the char-offset cuts for a target mean block length, so one prepared text is cut at many
granularities. Annotators (annotators/base.py) implement it on top of their `propose` over the text's candidates,
so any of them can stand wherever a method is named (`segment --method`, `evaluate --methods`).
"""

from __future__ import annotations

from typing import Any


class Method:
    """A segmentation method: prepare once per text, then cut at any granularity."""

    name: str
    store: Any = None  # an EmbeddingStore (segmenter.units) where embeddings are kept across texts and runs (evaluate's --embedding-cache)

    def prepare(self, text: str, category: str) -> Any:
        """Granularity-free work for text (default: the text and its token starts)."""
        from semanticseg.tokens import token_starts

        return text, token_starts(text)

    def cut(self, prepared: Any, target_tokens: int) -> list[int]:
        """Char-offset cuts, sorted, unique, inside (0, len(text))."""
        raise NotImplementedError
