"""TextTiling's signals (Hearst 1997), shared by the similarity annotator, the segmenter's voter features and the
embedding baseline: the similarity of the blocks either side of each candidate, and how deep a dip it sits in.

The segmenter's model computes the same depth on tensors inside its forward pass (segmenter/model.py,
tested equal to depth_scores here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def depth_scores(similarities: Sequence[float]) -> list[float]:
    """TextTiling depth: for each point, (left peak - value) + (right peak - value), climbing while rising."""
    depths = []
    for i, value in enumerate(similarities):
        left = i
        while left > 0 and similarities[left - 1] >= similarities[left]:
            left -= 1
        right = i
        while right < len(similarities) - 1 and similarities[right + 1] >= similarities[right]:
            right += 1
        depths.append(similarities[left] - value + similarities[right] - value)
    return depths


def relative_depths(similarities: Sequence[float]) -> np.ndarray:
    """depth_scores scaled to [0, 1] by the deepest dip (all zeros when the curve never dips)."""
    depths = np.array(depth_scores(list(similarities)), dtype=np.float64)
    return depths / (depths.max() or 1.0) if len(depths) else depths


def block_similarities(embeddings: np.ndarray, token_offsets: Sequence[int], n_tokens: int, window_tokens: int = 128) -> np.ndarray:
    """Per candidate, the cosine between the token-weighted mean unit embedding of about window_tokens before it and
    after it (TextTiling blocks over the units between candidates, vectorised with prefix sums). embeddings holds one
    row per unit: len(token_offsets) + 1 rows."""
    bounds = np.array([0, *token_offsets, n_tokens], dtype=np.float64)
    weights = np.maximum(np.diff(bounds), 1.0)
    prefix = np.concatenate([[0.0], np.cumsum(weights)])
    vectors = np.concatenate([np.zeros((1, embeddings.shape[1])), np.cumsum(embeddings * weights[:, None], axis=0)])
    n_units = len(weights)
    at = np.arange(1, n_units)  # candidate i sits between unit i - 1 and unit i (prefix index i)
    # Left block: units from the last j whose sum up to the candidate reaches window_tokens; right: the first k.
    first = np.clip(np.searchsorted(prefix, prefix[at] - window_tokens, side="right") - 1, 0, at - 1)
    last = np.clip(np.searchsorted(prefix, prefix[at] + window_tokens, side="left"), at + 1, n_units)
    left, right = vectors[at] - vectors[first], vectors[last] - vectors[at]
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    return (left * right).sum(1) / np.maximum(norms, 1e-9)
