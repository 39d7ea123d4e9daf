"""Errors in what the user gave (options, recipes, model folders): one clear message, no traceback.

Library code raises UserError; the CLI catches it once (semanticseg/cli.py) and prints "error: <message>".
UserError is a ValueError, so callers of the library that catch ValueError keep working.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


class UserError(ValueError):
    """A mistake in the user's input; its message names the thing and says what to do."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def validated(schema: type[T], data: Any, where: str) -> T:
    """data checked against schema (a pydantic model or dataclass); UserError with one line per bad field.

    Each line reads "<where>: <key>: <problem>", e.g. "pipelines/release.toml: documents.max_token: unknown key".
    """
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(schema).validate_python(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join(str(part) for part in e["loc"]) or "(top level)"
            unknown = e["type"] in ("extra_forbidden", "unexpected_keyword_argument")  # models / dataclasses
            problem = "unknown key (check its spelling)" if unknown else e["msg"]
            if e["type"] == "value_error":  # our own validators' messages, without pydantic's "Value error, "
                problem = str(e["ctx"]["error"])
            shown = repr(e["input"])
            given = "" if unknown or e["type"] in ("missing", "value_error") else f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
            lines.append(f"{where}: {key}: {problem}{given}")
        raise UserError("\n".join(lines)) from None
