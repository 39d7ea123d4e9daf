"""What the release's two offline annotators would say at each candidate: cheap inputs for the segmenter.

An offline release's references are the consensus of the `structure` and `similarity` annotators (both
cut within one candidate of each other). Both rules are cheap to rerun from what the segmenter already
has: the structure rule is its kind scores under `select_cuts`' length prior; the similarity rule is
approximated from the segmenter's own unit embeddings (each unit's first tokens, not the whole unit),
pooled over about `window_tokens` tokens on each side, token-weighted, as the annotator pools them. Given
these, the network learns where the two rules agree instead of rediscovering each rule from a few hundred
documents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semanticseg.annotators.base import select_cuts
from semanticseg.annotators.similarity import depth_scores
from semanticseg.annotators.structure import KIND_SCORES

N_VOTER_FEATURES = 4


def window_similarities(embeddings: np.ndarray, token_offsets: Sequence[int], n_tokens: int, window_tokens: int = 128) -> np.ndarray:
    """Per candidate, the cosine between the token-weighted mean unit embedding of about window_tokens
    before it and after it (the similarity annotator's TextTiling blocks, vectorised with prefix sums)."""
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


def voter_features(embeddings: np.ndarray, kinds: Sequence[str], token_offsets: Sequence[int], n_tokens: int,
                   target_tokens: int = 512) -> np.ndarray:
    """(candidates, 4) float32: the structure rule cuts here (0/1) at target_tokens; the similarity curve
    (standardised over the document); its depth (scaled to [0, 1]); the similarity rule cuts here (0/1)."""
    out = np.zeros((len(kinds), N_VOTER_FEATURES), dtype=np.float32)
    if not len(kinds):
        return out
    offsets = list(token_offsets)
    out[select_cuts(offsets, [KIND_SCORES.get(kind, 0.0) for kind in kinds], n_tokens, target_tokens), 0] = 1.0
    sims = window_similarities(np.asarray(embeddings, dtype=np.float64), offsets, n_tokens)
    depths = np.array(depth_scores(sims.tolist()))
    depths = depths / (depths.max() or 1.0)
    out[:, 1] = (sims - sims.mean()) / (sims.std() + 1e-4)
    out[:, 2] = depths
    out[select_cuts(offsets, depths.tolist(), n_tokens, target_tokens), 3] = 1.0
    return out
