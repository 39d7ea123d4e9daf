"""Atomic, resumable stage outputs.

Each stage writes its output to a temporary file in the same folder and renames it into place, so a
crash or Ctrl-C never leaves a half file that a later stage would read. Beside each output a small
`<name>.done.json` marker records the fingerprint of the inputs and settings that produced it, and the
output's row count and content hash; a rerun with the same fingerprint skips the stage only while the
output still matches its marker (datatrove's completion markers, per output). A file truncated or edited
after it was written is redone by its stage, and refused with the way to recover by any stage reading it.
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

from semanticseg.errors import UserError
from semanticseg.schema import from_table, to_table


class StaleOutput(UserError):
    """An output no longer matches its completion marker (truncated or changed after it was written)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying one line that says what was kept (the CLI prints it instead of a traceback)."""


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
    """Write an Arrow table as parquet, atomically; any completion marker of the old content is removed first."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
        _marker(path).unlink(missing_ok=True)


def write_records(path: Path, records: list[Any], cls: type) -> None:
    """Write dataclass records as parquet with the record type's schema, atomically."""
    write_table(path, to_table(records, cls))


def rewrite_records(path: Path, records: list[Any], cls: type) -> None:
    """Rewrite a finished stage output in place (human decisions merged into the consensus): its completion
    marker keeps its fingerprint and summary and records the new rows and hash, so the stage still counts
    as complete. Any other write removes the marker."""
    marker = _read_marker(path)
    write_records(path, records, cls)
    if marker is not None and "fingerprint" in marker:
        mark_done(path, marker["fingerprint"], marker.get("summary"))


def read_records(path: Path, cls: type) -> list[Any]:
    """Read a parquet file written by write_records back into records.

    Raises StaleOutput, saying how to recover, when the file does not match its completion marker or
    cannot be read as parquet.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the stage that writes it first")
    recover = "rerun `semanticseg build` (it redoes every output that does not match its marker) or the stage that writes it"
    marker = _read_marker(path)
    if marker and "sha256" in marker and (why := _mismatch(path, marker)):
        raise StaleOutput(f"{path} {why}: {recover}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise StaleOutput(f"{path} cannot be read ({err}): {recover}") from None
    return from_table(table, cls)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (configs, summaries, markers)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _hash_file(digest: Any, path: Path) -> None:
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


def fingerprint(settings: dict[str, Any], *inputs: Path) -> str:
    """Hash of a stage's settings and the bytes of its input files: equal means the output is still valid."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        digest.update(path.name.encode())
        _hash_file(digest, path)
    return digest.hexdigest()[:16]


def _marker(output: Path) -> Path:
    return output.with_name(output.name + ".done.json")


def _read_marker(output: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads(_marker(output).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


def _content(output: Path) -> dict[str, Any]:
    """Row count (parquet outputs; None for others) and sha256 of an output's bytes."""
    digest = hashlib.sha256()
    _hash_file(digest, output)
    rows = pq.read_metadata(output).num_rows if output.suffix == ".parquet" else None
    return {"rows": rows, "sha256": digest.hexdigest()}


def _mismatch(output: Path, marker: dict[str, Any]) -> str | None:
    """Why `output` does not match its marker's row count and hash; None when it does."""
    if "sha256" not in marker:
        return "has a completion marker without a content hash (written by an older version)"
    if not output.exists():
        return "is missing"
    try:
        content = _content(output)
    except (pa.ArrowException, OSError) as err:
        return f"cannot be read, truncated? ({err})"
    if content["rows"] != marker.get("rows"):
        return f"has {content['rows']} rows where its completion marker recorded {marker.get('rows')} (truncated?)"
    if content["sha256"] != marker["sha256"]:
        return "was changed after it was written (its hash differs from its completion marker's)"
    return None


def is_done(output: Path, fp: str) -> bool:
    """True when `output` was produced with fingerprint `fp` and still has the rows and hash its marker recorded."""
    marker = _read_marker(output)
    return marker is not None and marker.get("fingerprint") == fp and _mismatch(output, marker) is None


def mark_done(output: Path, fp: str, summary: dict[str, Any] | None = None) -> None:
    """Record that `output` is complete for fingerprint `fp`, with its row count and hash (written after the output)."""
    write_json(_marker(output), {"fingerprint": fp, **_content(output), "summary": summary or {}})


def read_summary(output: Path) -> dict[str, Any]:
    """The summary stored in an output's completion marker ({} when there is none)."""
    return (_read_marker(output) or {}).get("summary", {})
