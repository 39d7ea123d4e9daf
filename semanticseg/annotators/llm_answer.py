"""Reading an LLM's answer: the chosen marker numbers, or why the answer cannot be used.

Models wrap JSON in prose or code fences, stop mid-list, list numbers twice or out of order, invent
numbers, or refuse. `parse_answer` finds the JSON tolerantly; what it cannot read raises BadAnswer with
a reason (the caller retries once with a repair prompt, then records a failed proposal). What it can
fix harmlessly (order, duplicates) it fixes and reports in `notes`; numbers outside 1..n are a bad
answer, never silently dropped into a wrong cut.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_REFUSAL = re.compile(r"\b(I can(?:no|')t|I am unable|I'm unable|I won't|as an AI|I'm sorry|I apologi[sz]e)\b", re.I)


class BadAnswer(ValueError):
    """The answer cannot be turned into cuts; str(err) is the reason."""


@dataclass(slots=True)
class Answer:
    """Marker numbers (1-based, sorted, unique) and what was repaired on the way."""

    numbers: list[int]
    notes: list[str] = field(default_factory=list)


def _json_values(text: str) -> list[object]:
    """Every JSON object or array that decodes starting at a '{' or '[' in text, in order."""
    decoder, found, pos = json.JSONDecoder(), [], 0
    while (match := re.compile(r"[{\[]").search(text, pos)) is not None:
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            pos = match.start() + 1
            continue
        found.append(value)
        pos = end
    return found


def _numbers(value: object) -> list[int] | None:
    """The list of numbers in {"cuts": [...]} or a bare [...]; None when value has another shape."""
    if isinstance(value, dict):
        value = next((v for k, v in value.items() if isinstance(v, list) and k.lower() in ("cuts", "markers", "numbers", "boundaries")), None)
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, bool):
            return None
        if isinstance(item, int) or (isinstance(item, float) and item.is_integer()):
            out.append(int(item))
        elif isinstance(item, str) and item.strip().lstrip("#").isdigit():
            out.append(int(item.strip().lstrip("#")))
        else:
            return None
    return out


def parse_answer(content: str | None, n_markers: int, finish_reason: str | None = None) -> Answer:
    """Marker numbers chosen in content (1..n_markers); raises BadAnswer with the reason otherwise."""
    text = (content or "").strip()
    if not text:
        raise BadAnswer("empty answer")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    numbers = next((n for chunk in candidates for v in _json_values(chunk) if (n := _numbers(v)) is not None), None)
    if numbers is None:
        if finish_reason == "length":
            raise BadAnswer("truncated answer (hit max_tokens before the JSON closed)")
        if _REFUSAL.search(text):
            raise BadAnswer(f"refusal: {text[:120]!r}")
        raise BadAnswer(f"malformed answer, no JSON list of marker numbers: {text[:120]!r}")
    outside = sorted({n for n in numbers if not 1 <= n <= n_markers})
    if outside:
        raise BadAnswer(f"marker numbers out of range 1..{n_markers}: {outside[:10]}")
    notes = []
    if len(set(numbers)) != len(numbers):
        notes.append("removed duplicate numbers")
    if numbers != sorted(numbers):
        notes.append("sorted numbers")
    return Answer(sorted(set(numbers)), notes)
