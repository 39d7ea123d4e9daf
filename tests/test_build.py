"""`build`: block bounds on real text, and the whole pipeline on the embedded offline sources."""

from __future__ import annotations

from pathlib import Path

from semanticseg.instances import enforce_bounds
from semanticseg.tokens import span_tokens, token_starts

GPL3 = Path("/usr/share/common-licenses/GPL-3")


def _paragraphs(text: str) -> list[int]:
    return [i + 2 for i in range(len(text) - 2) if text[i : i + 2] == "\n\n" and text[i + 2] != "\n"]


def _blocks(cuts: list[int], starts: list[int], n: int) -> list[int]:
    bounds = [0, *cuts, n]
    return [span_tokens(starts, a, b) for a, b in zip(bounds, bounds[1:])]


def test_short_blocks_merge_and_long_blocks_split_at_candidates():
    text = GPL3.read_text()
    starts, offsets = token_starts(text), _paragraphs(text)
    every = enforce_bounds(offsets, offsets, starts, len(text), 60, 4096)  # every paragraph: many tiny blocks
    assert every is not None and set(every) < set(offsets)
    assert min(_blocks(offsets, starts, len(text))) < 60 <= min(_blocks(every, starts, len(text)))
    none = enforce_bounds([], offsets, starts, len(text), 16, 300)  # one 7k-token block: split to <= 300
    assert none is not None and set(none) <= set(offsets)
    assert max(_blocks(none, starts, len(text))) <= 300 and min(_blocks(none, starts, len(text))) >= 16


def test_bounds_that_candidates_cannot_meet_give_none():
    text = GPL3.read_text()
    starts = token_starts(text)
    assert enforce_bounds([], [], starts, len(text), 16, 4096) is None  # 7k tokens, nowhere to cut
