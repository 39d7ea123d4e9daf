"""The progress display a long stage reports to, and a no-op one for callers that show none.

Stages call `progress.add_task / update / advance / remove_task` unconditionally (rich.progress.Progress's
methods); a library caller that passes no display gets NO_PROGRESS, so no stage tests `if progress:`.
"""

from __future__ import annotations

from typing import Any, Protocol


class ProgressLike(Protocol):
    """What stages use of rich.progress.Progress."""

    task_ids: list[Any]

    def add_task(self, description: str, *args: Any, **fields: Any) -> Any: ...

    def update(self, task_id: Any, **fields: Any) -> None: ...

    def advance(self, task_id: Any, advance: float = 1) -> None: ...

    def remove_task(self, task_id: Any) -> None: ...


class NoProgress:
    """A progress display that shows nothing: every call is accepted and ignored."""

    task_ids: list[Any] = []

    def add_task(self, description: str, *args: Any, **fields: Any) -> int:
        return 0

    def update(self, task_id: Any, **fields: Any) -> None:
        pass

    def advance(self, task_id: Any, advance: float = 1) -> None:
        pass

    def remove_task(self, task_id: Any) -> None:
        pass


NO_PROGRESS = NoProgress()
