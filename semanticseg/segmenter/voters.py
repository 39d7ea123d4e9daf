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
from semanticseg.annotators.structure import KIND_SCORES
from semanticseg.tiling import block_similarities, relative_depths

N_VOTER_FEATURES = 4


def voter_features(embeddings: np.ndarray, kinds: Sequence[str], token_offsets: Sequence[int], n_tokens: int,
                   target_tokens: int = 512) -> np.ndarray:
    """(candidates, 4) float32: the structure rule cuts here (0/1) at target_tokens; the similarity curve
    (standardised over the document); its depth (scaled to [0, 1]); the similarity rule cuts here (0/1)."""
    out = np.zeros((len(kinds), N_VOTER_FEATURES), dtype=np.float32)
    if not len(kinds):
        return out
    offsets = list(token_offsets)
    out[select_cuts(offsets, [KIND_SCORES.get(kind, 0.0) for kind in kinds], n_tokens, target_tokens), 0] = 1.0
    sims = block_similarities(np.asarray(embeddings, dtype=np.float64), offsets, n_tokens)
    depths = relative_depths(sims.tolist())
    out[:, 1] = (sims - sims.mean()) / (sims.std() + 1e-4)
    out[:, 2] = depths
    out[select_cuts(offsets, depths.tolist(), n_tokens, target_tokens), 3] = 1.0
    return out
