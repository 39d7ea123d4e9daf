"""On-disk cache of LLM responses, one JSON file per request key, so a rerun never pays twice.

The key hashes the endpoint (base URL), the model, the messages and every setting that changes the answer
(temperature, seed, max_tokens, response format). Files are written atomically; a corrupt file counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from semanticseg.io import write_json


def request_key(endpoint: str, model: str, messages: list[dict[str, str]], settings: dict[str, Any]) -> str:
    """Stable hash of one chat request to one endpoint."""
    blob = json.dumps({"endpoint": endpoint, "model": model, "messages": messages, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Responses under root/<key[:2]>/<key>.json; root None disables caching."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for key, or None."""
        if self.root is None or not self._path(key).exists():
            return None
        try:
            return json.loads(self._path(key).read_text())
        except (json.JSONDecodeError, OSError):
            return None

    def put(self, key: str, response: dict[str, Any]) -> None:
        """Store a response (content, finish_reason, usage)."""
        if self.root is not None:
            write_json(self._path(key), response)
