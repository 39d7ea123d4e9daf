"""Boundary scores -> cuts by dynamic programming under length constraints and a length prior.

Written here because no segmentation library exposes this combination (SaT's length prior + Viterbi is
the model). Blocks run between consecutive chosen candidates; the best segmentation minimises

    sum over blocks  prior_weight * ((L - target) / target)^2   -   sum over cuts  (score + bias)

subject to min_tokens <= L <= max_tokens for every block. The constraints are hard whenever the
candidates allow them; when they cannot hold (a stretch longer than max_tokens with no candidate inside,
or a document shorter than min_tokens) the least violating block is taken instead of failing.

Mean block length tracks the target because `bias` (added to every cut's score) is searched by
bisection until the document has round(n_tokens / target) blocks, or as close as the constraints allow.
With a band, a given bias (e.g. one fitted on a corpus, `fit_bias`) decides the block count as long as
that count stays within the band around round(n_tokens / target); outside it the bisection moves the bias
to the band's nearer edge, so no document drifts far from the target whatever its scores.

With a count scale the block count is round(n_tokens / target * count_scale) instead: `section_scale` gives it
from a document's own sections (the cuts the model is sure of), `fit_section_count` fits its two numbers so
that a corpus's mean block length stays on target.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

_VIOLATION = 1e6  # per token outside [min, max]: any feasible segmentation is cheaper than any infeasible one
_ROWS = 256  # DP steps whose block costs are computed together (bounds memory when every predecessor is allowed)


def _dp(pos: np.ndarray, gains: np.ndarray, target: float | None, low: int, high: int, prior_weight: float) -> list[int]:
    """Indices into pos (1..len(pos)-2) of the cuts of the cheapest segmentation."""
    m = len(pos)
    # Predecessors of j: those whose block fits under high, plus the nearest one that does not (least violation).
    # Their block costs (length prior, violation) do not depend on the DP, so they are computed for _ROWS steps at
    # once, one row per step padded to the widest window; the loop then only adds them to best and takes the argmin.
    firsts = np.maximum(np.searchsorted(pos, pos - high, side="left") - 1, 0)
    best = np.full(m, np.inf)
    best[0] = 0.0
    back = np.zeros(m, dtype=np.int64)
    for top in range(1, m, _ROWS):
        rows = np.arange(top, min(top + _ROWS, m))
        width = int((rows - firsts[rows]).max())
        lengths = pos[rows, None] - pos[np.minimum(firsts[rows, None] + np.arange(width), m - 1)]
        prior = prior_weight * ((lengths - target) / target) ** 2 if target else None
        violation = _VIOLATION * (np.maximum(lengths - high, 0) + np.maximum(low - lengths, 0))
        for row, j in enumerate(rows.tolist()):
            first = int(firsts[j])
            cost = best[first:j] - gains[j]
            if prior is not None:
                cost += prior[row, : j - first]
            cost += violation[row, : j - first]
            k = int(np.argmin(cost))
            best[j], back[j] = cost[k], first + k
    cuts, j = [], int(back[-1])
    while j > 0:
        cuts.append(j)
        j = int(back[j])
    return cuts[::-1]


def check_bounds(target_tokens: int | None, min_tokens: int | None, max_tokens: int | None) -> tuple[int, int | None]:
    """(low, high) block bounds as `decode` applies them; ValueError when they cannot hold together, so a
    command can check its options before it loads any model. high is None without max_tokens or a target."""
    if target_tokens is not None and target_tokens <= 0:
        raise ValueError("target_tokens must be positive")
    low = max(min_tokens or 1, 1)
    high = max_tokens or (4 * target_tokens if target_tokens else None)
    if high is not None and low > high:
        implied = "" if max_tokens else ", 4 x target_tokens"
        raise ValueError(f"min_tokens ({low}) is larger than max_tokens ({high}{implied})")
    return low, high


def decode(
    token_offsets: Sequence[int],
    n_tokens: int,
    scores: Sequence[float],
    target_tokens: int | None = 512,
    min_tokens: int | None = None,
    max_tokens: int | None = None,
    prior_weight: float = 1.0,
    calibrate: bool = True,
    bias: float = 0.0,
    band: float = 0.0,
    count_scale: float = 1.0,
) -> list[int]:
    """Indices of the candidates to cut at.

    token_offsets: token index where each candidate starts (sorted); scores: gain for cutting there (e.g.
    a boundary log-odds; positive = worth a cut on its own); bias is added to every score. With
    target_tokens, blocks are pulled towards that length and (calibrate=True) the block count k is kept
    within want * (1 - band) <= k <= want * (1 + band), want = max(round(n_tokens / target_tokens), 1):
    band 0 gives exactly want blocks; a count at `bias` inside the band is kept as it is. count_scale
    divides the target of the count and of the length prior (`section_scale`). With
    target_tokens=None only the scores and the constraints decide. max_tokens defaults to 4 x
    target_tokens (no bound without a target); min_tokens defaults to 1.
    """
    if len(token_offsets) != len(scores):
        raise ValueError("token_offsets and scores must have the same length")
    low, high = check_bounds(target_tokens, min_tokens, max_tokens)
    high = high or n_tokens + 1
    if not len(token_offsets) or n_tokens <= 0:
        return []
    pos = np.array([0, *token_offsets, n_tokens], dtype=np.float64)
    base = np.array([0.0, *scores, 0.0])
    # A scaled count pulls the blocks towards the length it implies (the bounds stay the caller's).
    length = target_tokens / count_scale if target_tokens else None

    def run(b: float) -> list[int]:
        gains = base + b
        gains[0] = gains[-1] = 0.0
        return [i - 1 for i in _dp(pos, gains, length, low, high, prior_weight)]

    cuts = run(bias)
    if not (length and calibrate):
        return cuts
    blocks = max(round(n_tokens / length), 1)
    # Cut counts allowed by the band (the epsilon keeps an exact edge such as 10 * 1.1 inside it).
    fewest = max(math.ceil(blocks * (1 - band) - 1e-9), 1) - 1
    most = max(math.floor(blocks * (1 + band) + 1e-9), 1) - 1
    if fewest <= len(cuts) <= most:
        return cuts
    want = fewest if len(cuts) < fewest else most

    def miss(k: int) -> tuple[bool, int]:
        # The count can jump past the edge as the bias moves (a few cuts appear at once): a count inside the band
        # beats a nearer one outside it, then the nearer to the edge wins.
        return not fewest <= k <= most, abs(k - want)

    # More bias, more cuts: bisect the bias until the count is right (or the interval is tiny).
    lo_b, hi_b = (bias - 64.0, bias) if len(cuts) > want else (bias, bias + 64.0)
    best = cuts
    for _ in range(14):
        mid = (lo_b + hi_b) / 2
        trial = run(mid)
        if miss(len(trial)) < miss(len(best)):
            best = trial
        if len(trial) == want:
            return trial
        lo_b, hi_b = (mid, hi_b) if len(trial) < want else (lo_b, mid)
    return best


def section_scale(probs: np.ndarray, n_tokens: int, threshold: float, density: float, floor: float) -> float:
    """How many times round(n_tokens / target) blocks a document gets when its block count follows its own sections:
    its density of sure cuts (candidates with P(boundary) > threshold, plus one for its first block, per token) over
    `density`, a corpus's, but never under `floor` (a document whose sections do not show keeps about the count a
    fixed block length gives it). Both numbers come from `fit_section_count`."""
    return max(floor, (int((np.asarray(probs) > threshold).sum()) + 1) / max(n_tokens, 1) / density)


def fit_section_count(documents: Sequence[tuple[np.ndarray, int]], threshold: float, floor: float) -> dict[str, float]:
    """SegmenterConfig.section_count for documents (probabilities, n_tokens), e.g. a validation split: the pooled
    density of sure cuts and the floor (as a share of it), rescaled together so that `section_scale` averages 1 over
    the documents' tokens. Then the documents' total block count at any target is about what round(n_tokens / target)
    per document gives them, so their mean block length stays on target; a document denser in sure cuts than the
    corpus gets more blocks, one with fewer (down to the floor) fewer."""
    tokens = sum(n for _, n in documents)
    sure = [int((np.asarray(p) > threshold).sum()) + 1 for p, _ in documents]
    density = sum(sure) / tokens
    scale = sum(max(floor * n, s / density) for s, (_, n) in zip(sure, documents)) / tokens
    return {"threshold": threshold, "density": round(density * scale, 8), "floor": round(floor / scale, 6)}


def fit_bias(documents: Sequence[tuple[Sequence[int], int, Sequence[float]]], target_tokens: int, prior_weight: float = 1.0,
             rounded: bool = False, band: float | None = None) -> float:
    """The one bias (added to every score) under which `decode` without per-document calibration gives these
    documents (token_offsets, n_tokens, scores) a mean block length of target_tokens over all of them.

    Per-document calibration gives every document round(n_tokens / target) blocks; a bias fitted over a
    corpus instead lets a document with many strong boundaries have more blocks and one with few have
    fewer, while the corpus mean stays on target. rounded: the total block count aimed at is the sum of
    max(round(n_tokens / target), 1), the count per-document calibration gives these documents, instead of
    total tokens / target (the two differ where documents hold only a few blocks of the target). band: the
    documents are decoded with that band (SegmenterConfig.bias_band), so the mean is on target as the banded
    decoding gives it: clipping a skewed spread of block counts to the band otherwise moves the mean off target.
    A band may not reach the aim (every document at an edge); the bias then runs to the bound on that side."""
    total = sum(n for _, n, _ in documents)
    want = (sum(max(round(n / target_tokens), 1) for _, n, _ in documents) if rounded
            else max(total / target_tokens, len(documents)))

    def blocks(bias: float) -> int:
        return sum(len(decode(o, n, scores, target_tokens, prior_weight=prior_weight, calibrate=band is not None, bias=bias,
                              band=band or 0.0)) + 1 for o, n, scores in documents)

    lo, hi = -64.0, 64.0
    for _ in range(16):  # more bias, more blocks
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if blocks(mid) < want else (lo, mid)
    return (lo + hi) / 2
