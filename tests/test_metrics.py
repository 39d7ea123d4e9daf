"""Metrics against segeval (the reference implementation) and hand-worked values."""

from __future__ import annotations

import random

import pytest
import segeval

from semanticseg.metrics import (
    boundary_f1,
    boundary_similarity,
    candidate_positions,
    masses_to_positions,
    pk,
    positions_to_masses,
    token_positions,
    window_diff,
    window_size,
)


def _random_positions(rng: random.Random, n: int) -> list[int]:
    return sorted(rng.sample(range(1, n), rng.randint(0, min(12, n - 1))))


def test_pk_and_window_diff_equal_segeval_on_random_segmentations():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(8, 120)
        ref, hyp = _random_positions(rng, n), _random_positions(rng, n)
        ref_m, hyp_m = positions_to_masses(ref, n), positions_to_masses(hyp, n)
        # segeval takes (hypothesis, reference) as masses.
        assert pk(ref, hyp, n) == pytest.approx(float(segeval.pk(hyp_m, ref_m)))
        assert window_diff(ref, hyp, n) == pytest.approx(float(segeval.window_diff(hyp_m, ref_m)))


def test_boundary_similarity_equals_segeval_and_is_symmetric():
    rng = random.Random(1)
    for _ in range(50):
        n = rng.randint(8, 60)
        ref, hyp = _random_positions(rng, n), _random_positions(rng, n)
        if not ref and not hyp:
            continue
        expected = float(segeval.boundary_similarity(positions_to_masses(hyp, n), positions_to_masses(ref, n)))
        assert boundary_similarity(ref, hyp, n) == pytest.approx(expected)
        assert boundary_similarity(hyp, ref, n) == pytest.approx(expected)


def test_hand_worked_values():
    # Reference segments of 10 and 10 units, k = round(20 / 2 / 2) = 5.
    assert window_size([10], 20) == 5
    # A hypothesis with no boundary: the 5 pairs straddling position 10 (i = 5..9) disagree, of 15.
    assert pk([10], [], 20) == pytest.approx(5 / 15)
    assert window_diff([10], [], 20) == pytest.approx(5 / 15)
    # Off by 2: pairs i = 5,6 (hyp same, ref differs) and 10,11 disagree: 4 / 15 for both metrics.
    assert pk([10], [12], 20) == pytest.approx(4 / 15)
    assert window_diff([10], [12], 20) == pytest.approx(4 / 15)
    assert pk([10], [10], 20) == 0.0
    # Boundary similarity: identical = 1; one of two boundaries missed = 1 - 1/2; empty vs empty = 1.
    assert boundary_similarity([5, 10], [5, 10], 20) == 1.0
    assert boundary_similarity([5, 10], [5], 20) == pytest.approx(0.5)
    assert boundary_similarity([], [], 20) == 1.0


def test_boundary_f1_tolerance_is_one_to_one():
    exact = boundary_f1([10, 20, 30], [10, 21, 40])
    assert (exact.precision, exact.recall, exact.matched) == (pytest.approx(1 / 3), pytest.approx(1 / 3), 1)
    near = boundary_f1([10, 20, 30], [10, 21, 40], tolerance=1)
    assert near.matched == 2 and near.f1 == pytest.approx(2 / 3)
    # Two hypothesis boundaries near one reference boundary: only one may match it.
    assert boundary_f1([10], [9, 11], tolerance=2).matched == 1
    assert boundary_f1([], []).f1 == 1.0
    assert boundary_f1([5], []).f1 == 0.0


def test_conversions_round_trip_and_reject_bad_positions():
    assert positions_to_masses([3, 7], 10) == [3, 4, 3]
    assert masses_to_positions([3, 4, 3]) == ([3, 7], 10)
    with pytest.raises(ValueError):
        pk([0, 5], [], 10)
    with pytest.raises(ValueError):
        pk([5, 5], [], 10)
    starts = [0, 3, 6, 9, 12]  # five tokens of three chars
    assert token_positions([3, 7, 8, 12], starts) == [1, 2, 4]
    assert candidate_positions([40, 10], [10, 25, 40]) == [1, 3]
    with pytest.raises(ValueError, match="not among"):
        candidate_positions([11], [10, 25])
