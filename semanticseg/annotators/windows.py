"""Overlapping windows over a document's candidates, and merging the windows' choices back.

A long document does not fit an LLM's context, so it is shown in windows that start and end at
candidate positions and overlap by `overlap_tokens`. Each candidate is *owned* by exactly one window:
the one whose core (the window minus half of each overlap) holds it, i.e. where it has the most context
on both sides. Merging keeps each window's choices only for the candidates it owns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Window:
    """One window: the candidates it shows (global indices) and the ones whose decision it owns."""

    char_start: int
    char_end: int
    shown: tuple[int, ...]  # candidate indices marked in this window's text, increasing
    owned: tuple[int, ...]  # subset of shown whose cut decision this window makes


def make_windows(offsets: list[int], token_offsets: list[int], n_chars: int, n_tokens: int,
                 window_tokens: int, overlap_tokens: int) -> list[Window]:
    """Windows of at most window_tokens (unless one candidate gap is longer), overlapping by about overlap_tokens."""
    if window_tokens <= 0 or not 0 <= overlap_tokens < window_tokens:
        raise ValueError("need window_tokens > 0 and 0 <= overlap_tokens < window_tokens")
    bounds, chars = [0, *token_offsets, n_tokens], [0, *offsets, n_chars]
    spans: list[tuple[int, int]] = []  # (first, last) bound index of each window
    i, last = 0, len(bounds) - 1
    while True:
        j = i + 1
        while j < last and bounds[j + 1] - bounds[i] <= window_tokens:
            j += 1
        spans.append((i, j))
        if j == last:
            break
        # Next window: the earliest start after i within overlap_tokens of this window's end (at least
        # one candidate gap of overlap, none when a single gap fills the whole window).
        k = j - 1
        while k - 1 > i and bounds[j] - bounds[k - 1] <= overlap_tokens:
            k -= 1
        i = k if k > i else j
    cores = []
    for n, (i, j) in enumerate(spans):
        low = 0 if n == 0 else (bounds[i] + bounds[spans[n - 1][1]]) / 2
        high = float("inf") if n == len(spans) - 1 else (bounds[j] + bounds[spans[n + 1][0]]) / 2
        cores.append((low, high))
    windows = []
    for (i, j), (low, high) in zip(spans, cores):
        # Bound index b (1..len(offsets)) is candidate b - 1; a window shows those from its start bound to before its end.
        shown = tuple(b - 1 for b in range(max(i, 1), j))
        owned = tuple(c for c in shown if low <= token_offsets[c] < high)
        windows.append(Window(chars[i], chars[j], shown, owned))
    return windows


def merge_choices(windows: list[Window], chosen: list[list[int]]) -> list[int]:
    """Global candidate indices chosen, taking each window's choice only for the candidates it owns."""
    merged: set[int] = set()
    for window, picks in zip(windows, chosen):
        merged |= set(picks) & set(window.owned)
    return sorted(merged)
