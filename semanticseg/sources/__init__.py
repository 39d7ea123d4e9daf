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


def field_text(value: Any, roles: bool = True, separator: str = "\n") -> str:
    """Text of one data-set field: strings as they are; chat messages (dicts with a role and a content) as
    `role: content` lines (roles=False: their contents only); lists joined by separator; others as str."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        role = (value.get("role") or value.get("from") or value.get("speaker") or "") if roles else ""
        content = field_text(value.get("content") or value.get("value") or value.get("text") or "", roles, separator)
        return f"{role}: {content}" if role else content
    if isinstance(value, list | tuple):
        return separator.join(field_text(v, roles, separator) for v in value)
    return str(value)
