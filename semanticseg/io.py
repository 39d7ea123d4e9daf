"""Atomic, resumable stage outputs.

Each stage writes its output to a temporary file in the same folder and renames it into place, so a
crash or Ctrl-C never leaves a half file that a later stage would read. Beside each output a small
`<name>.done.json` marker records the fingerprint of the inputs and settings that produced it; a rerun
with the same fingerprint skips the stage (datatrove's completion markers, per output).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from semanticseg.schema import from_table, to_table


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block finishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); outputs get the mode a plain open() would give
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_table(path: Path, table: pa.Table) -> None:
    """Write an Arrow table as parquet, atomically."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_records(path: Path, records: list[Any], cls: type) -> None:
    """Write dataclass records as parquet with the record type's schema, atomically."""
    write_table(path, to_table(records, cls))


def read_records(path: Path, cls: type) -> list[Any]:
    """Read a parquet file written by write_records back into records."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the stage that writes it first")
    return from_table(pq.read_table(path), cls)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (configs, summaries, markers)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def fingerprint(settings: dict[str, Any], *inputs: Path) -> str:
    """Hash of a stage's settings and the bytes of its input files: equal means the output is still valid."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _marker(output: Path) -> Path:
    return output.with_name(output.name + ".done.json")


def is_done(output: Path, fp: str) -> bool:
    """True when `output` exists and was produced with fingerprint `fp`."""
    marker = _marker(output)
    if not (output.exists() and marker.exists()):
        return False
    try:
        return json.loads(marker.read_text()).get("fingerprint") == fp
    except json.JSONDecodeError:
        return False


def mark_done(output: Path, fp: str, summary: dict[str, Any] | None = None) -> None:
    """Record that `output` is complete for fingerprint `fp` (written after the output itself)."""
    write_json(_marker(output), {"fingerprint": fp, "summary": summary or {}})


def read_summary(output: Path) -> dict[str, Any]:
    """The summary stored in an output's completion marker ({} when there is none)."""
    marker = _marker(output)
    return json.loads(marker.read_text()).get("summary", {}) if marker.exists() else {}
