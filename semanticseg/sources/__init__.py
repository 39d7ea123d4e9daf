"""Where text comes from: named offline readers over package-shipped text, and HF hub streaming.

A source yields `RawText` (a text with where it came from) or `Skipped` (a file that could not be read,
with the reason), so collect can count what it dropped instead of crashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RawText:
    """One text read from a source, before normalisation and cutting."""

    source: str  # package-relative path (e.g. "deb:jargon-text/jargon.txt.gz") or "<hub id>#<row>"
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Skipped:
    """A file a reader could not use, and why (binary, non-UTF-8, unreadable)."""

    source: str
    reason: str
