"""The online source: a Hugging Face data set streamed row by row, so nothing is downloaded whole.

The same function reads local parquet/JSON files (`dataset = "parquet"`, `data_files = [...]`), which is
how the tests exercise it without a network.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from semanticseg.recipes import OnlineSource
from semanticseg.sources import RawText, field_text


def stream_online(spec: OnlineSource) -> Iterator[RawText]:
    """Stream spec's data set and yield each row's text fields joined by a blank line."""
    import datasets  # heavy: imported only when the online source is used

    kwargs: dict[str, Any] = {"split": spec.split, "streaming": True}
    if spec.data_dir:
        kwargs["data_dir"] = spec.data_dir
    if spec.data_files:
        kwargs["data_files"] = list(spec.data_files)
    rows = datasets.load_dataset(spec.dataset, spec.config, **kwargs)
    for i, row in enumerate(rows):
        missing = [f for f in spec.text_fields if f not in row]
        if missing:
            raise KeyError(f"{spec.dataset}: row {i} has no field(s) {missing}; it has {sorted(row)}")
        text = "\n\n".join(t for t in (field_text(row[f]) for f in spec.text_fields) if t.strip())
        yield RawText(f"{spec.dataset}#{i}", text, {"licence": spec.licence})
