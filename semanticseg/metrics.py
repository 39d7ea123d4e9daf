"""Segmentation metrics: Pk, WindowDiff, boundary F1 and boundary similarity.

Every metric compares a reference and a hypothesis segmentation of the same sequence of n units, each
given as a sorted list of *boundary positions*: the index of the unit that starts a new segment,
0 < position < n (segment 0 always starts at 0 and is never listed). The units are whatever the caller
chose, usually tokens. To score cuts stored as char offsets (the Instance `cuts`), convert them first:

- `token_positions(cuts, starts)` -> token positions (starts = `semanticseg.tokens.token_starts(text)`),
  n = number of tokens; this is what Pk, WindowDiff and boundary F1 use in evaluation;
- `candidate_positions(cuts, candidate_offsets)` -> positions in candidate units (unit 0 is the text
  before the first candidate, unit i the text from candidate i-1 on), n = len(candidates) + 1; boundary
  similarity on these units treats cuts one candidate apart as near misses, whatever their distance in
  tokens, which is what adjudication wants.
- `masses_to_positions` / `positions_to_masses` convert to and from segment masses (segment lengths),
  the format of segeval and of Instance `block_tokens`.

Pk and WindowDiff follow Beeferman et al. (1999) and Pevzner & Hearst (2002) with the usual window
k = half the mean reference segment length (rounded, at least 2; segeval's convention), and are penalties
(0 is perfect). They are written with numpy here because segeval's pure-Python loops over Decimals are
too slow for 32k-token documents; tests check they equal segeval's values. Boundary similarity
(Fournier 2013) is segeval's own implementation.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def positions_to_masses(positions: Sequence[int], n: int) -> list[int]:
    """Boundary positions over n units -> segment masses (lengths), summing to n."""
    _check(positions, n)
    bounds = [0, *positions, n]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def masses_to_positions(masses: Sequence[int]) -> tuple[list[int], int]:
    """Segment masses -> (boundary positions, n)."""
    if any(m <= 0 for m in masses):
        raise ValueError("segment masses must be positive")
    positions = np.cumsum(masses).tolist()
    return positions[:-1], (positions[-1] if positions else 0)


def token_positions(cuts: Sequence[int], starts: Sequence[int]) -> list[int]:
    """Char-offset cuts -> token positions (the token covering each cut), duplicates and 0 removed.

    starts is `semanticseg.tokens.token_starts(text)`; the matching n is len(starts).
    """
    out: list[int] = []
    for cut in cuts:
        token = max(bisect.bisect_right(starts, cut) - 1, 0)
        if token > 0 and (not out or token > out[-1]):
            out.append(token)
    return out


def candidate_positions(cuts: Sequence[int], candidate_offsets: Sequence[int]) -> list[int]:
    """Char-offset cuts -> positions in candidate units (n = len(candidate_offsets) + 1).

    Every cut must be one of the candidate offsets (a ValueError says which is not).
    """
    index = {offset: i + 1 for i, offset in enumerate(candidate_offsets)}
    missing = [c for c in cuts if c not in index]
    if missing:
        raise ValueError(f"cuts not among the candidates: {missing[:5]}")
    return sorted({index[c] for c in cuts})


def window_size(reference: Sequence[int], n: int) -> int:
    """k = half the mean reference segment length, rounded, at least 2 (segeval's convention)."""
    return max(int(round((n / (len(reference) + 1)) / 2)), 2)


def _check(positions: Sequence[int], n: int) -> None:
    if any(not 0 < p < n for p in positions) or any(a >= b for a, b in zip(positions, positions[1:])):
        raise ValueError(f"boundary positions must be sorted, unique and inside (0, {n})")


def _boundary_counts(positions: Sequence[int], n: int) -> np.ndarray:
    """counts[i] = number of boundaries at positions <= i."""
    marks = np.zeros(n, dtype=np.int64)
    marks[np.asarray(positions, dtype=np.int64)] = 1
    return np.cumsum(marks)


def pk(reference: Sequence[int], hypothesis: Sequence[int], n: int, k: int | None = None) -> float:
    """Pk: share of unit pairs k apart on which the two segmentations disagree about same-segment."""
    _check(reference, n), _check(hypothesis, n)
    k = window_size(reference, n) if k is None else k
    if n <= k:
        return 0.0
    ref, hyp = _boundary_counts(reference, n), _boundary_counts(hypothesis, n)
    same_ref = ref[k:] == ref[:-k]
    same_hyp = hyp[k:] == hyp[:-k]
    return float(np.mean(same_ref != same_hyp))


def window_diff(reference: Sequence[int], hypothesis: Sequence[int], n: int, k: int | None = None) -> float:
    """WindowDiff: share of windows of k units whose boundary counts differ."""
    _check(reference, n), _check(hypothesis, n)
    k = window_size(reference, n) if k is None else k
    if n <= k:
        return 0.0
    ref, hyp = _boundary_counts(reference, n), _boundary_counts(hypothesis, n)
    return float(np.mean((ref[k:] - ref[:-k]) != (hyp[k:] - hyp[:-k])))


@dataclass(frozen=True, slots=True)
class BoundaryF1:
    """Precision, recall and F1 of hypothesis boundaries matched one-to-one to reference boundaries."""

    precision: float
    recall: float
    f1: float
    matched: int


def boundary_f1(reference: Sequence[int], hypothesis: Sequence[int], tolerance: int = 0) -> BoundaryF1:
    """Boundary P/R/F1: a hypothesis boundary counts when it is within `tolerance` units of a reference
    boundary not matched yet (one-to-one, greedy in order, which is optimal on a line). Both empty = 1.0.
    """
    if not reference and not hypothesis:
        return BoundaryF1(1.0, 1.0, 1.0, 0)
    matched, j = 0, 0
    for h in hypothesis:
        while j < len(reference) and reference[j] < h - tolerance:
            j += 1
        if j < len(reference) and abs(reference[j] - h) <= tolerance:
            matched, j = matched + 1, j + 1
    precision = matched / len(hypothesis) if hypothesis else 0.0
    recall = matched / len(reference) if reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    return BoundaryF1(precision, recall, f1, matched)


def boundary_similarity(reference: Sequence[int], hypothesis: Sequence[int], n: int, n_t: int = 2) -> float:
    """Boundary similarity B (Fournier 2013) via segeval, in [0, 1], 1 = identical; symmetric.

    n_t is the largest distance (in units) + 1 at which two boundaries count as a near miss (segeval's
    default 2: adjacent units). Two segmentations with no boundaries at all are identical (1.0), which
    segeval cannot compute.
    """
    if not reference and not hypothesis:
        return 1.0
    import segeval

    value = segeval.boundary_similarity(
        tuple(positions_to_masses(hypothesis, n)), tuple(positions_to_masses(reference, n)), n_t=n_t
    )
    return float(value)
