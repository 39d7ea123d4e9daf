"""Offline readers: real text shipped inside installed PyPI and Debian packages, read where it lies.

One generic reader walks a package's files (found by an importable module name, the Python standard
library, or an absolute Debian path), decompresses .gz/.bz2/.dz, decodes strict UTF-8, parses a few
container formats (semanticseg.sources.formats) into units, and optionally joins units that belong
together (the files of one info manual, the articles of one news file) so collect can cut the joined
text at natural boundaries. Nothing is downloaded: a missing package is a clear error naming it.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import importlib.util
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from semanticseg.sources import RawText, Skipped
from semanticseg.sources.formats import FORMATS

_DECOMPRESS = {".gz": gzip.decompress, ".dz": gzip.decompress, ".bz2": bz2.decompress}  # dictzip is gzip


_CONTROL = frozenset(set(range(0x09)) | set(range(0x0E, 0x1F)) - {0x1B})


class SourceMissing(FileNotFoundError):
    """The package that ships a category's offline text is not installed."""


def locate_root(params: dict[str, Any]) -> tuple[Path, str]:
    """The folder a reader walks and a label for sources: a Python package, the stdlib, or a Debian path."""
    if "package" in params:
        # find_spec on a top-level name locates the package without importing (running) it.
        spec = importlib.util.find_spec(params["package"])
        if spec is None or not spec.submodule_search_locations:
            raise SourceMissing(
                f"Python package {params['package']!r} is not installed: run `bash scripts/install_corpus.sh`"
            )
        root = Path(list(spec.submodule_search_locations)[0])
        label = f"pypi:{params['package']}"
    elif params.get("stdlib"):
        root, label = Path(sysconfig.get_paths()["stdlib"]), "python-stdlib"
    elif "root" in params:
        root, label = Path(params["root"]), f"deb:{params['root']}"
        if not root.is_dir():
            raise SourceMissing(f"{root} does not exist: run `bash scripts/install_corpus.sh` (Debian packages)")
    else:
        raise ValueError("an offline source needs one of: package, stdlib, root")
    sub = params.get("subdir")
    return (root / sub, f"{label}/{sub}") if sub else (root, label)


def list_files(root: Path, patterns: list[str], exclude: list[str]) -> list[Path]:
    """Files under root matching any glob pattern and no exclude pattern, in a stable (sorted) order."""
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in root.glob(pattern) if p.is_file())
    rel = {p: p.relative_to(root).as_posix() for p in found}
    return sorted((p for p in found if not any(fnmatch.fnmatch(rel[p], ex) for ex in exclude)), key=rel.get)


def decode_file(path: Path) -> str | Skipped:
    """A file's text (decompressed, strict UTF-8), or Skipped with the reason it cannot be used."""
    try:
        data = path.read_bytes()
        if path.suffix in _DECOMPRESS:
            data = _DECOMPRESS[path.suffix](data)
    except (OSError, EOFError, ValueError) as err:
        return Skipped(str(path), f"unreadable: {type(err).__name__}")
    sample = data[:8192]
    # Binary = more than 1% control bytes (text formats carry a few: info's 0x1f node marks, NUL-framed tags).
    if sum(byte in _CONTROL for byte in sample) > len(sample) / 100:
        return Skipped(str(path), "binary")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return Skipped(str(path), "non-UTF-8")


def read_files(params: dict[str, Any]) -> Iterator[RawText | Skipped]:
    """The generic offline reader. Params:

    package | stdlib | root, subdir: where the files lie (see locate_root);
    patterns, exclude: globs relative to that folder;
    format: how a file becomes units ("text": the whole file; see formats.FORMATS for the others);
    group_by: regex on the relative path; units whose paths give the same first group are joined
      (blank line between them) into one text, in file order. Without it each unit stays alone.
    start: an HTML page to read first, then the pages its <link rel="next"> chain names, in that order.
    """
    root, label = locate_root(params)
    parse = FORMATS[params.get("format", "text")]
    group_by = re.compile(params["group_by"]) if params.get("group_by") else None
    files = list_files(root, list(params.get("patterns", ["**/*"])), list(params.get("exclude", [])))
    if not files:
        raise SourceMissing(f"no files match {params.get('patterns')} under {root}: is the package installed?")
    if params.get("start"):  # a book split into pages: follow its <link rel="next"> chain from the start page
        files = _reading_order(files, root, params["start"])
    elif group_by is not None:  # a group's files one after another, so each group is joined once
        files.sort(key=lambda p: (_group_key(group_by, p.relative_to(root).as_posix()), _natural(p.relative_to(root))))
    pending_key: str | None = None
    pending: list[str] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        decoded = decode_file(path)
        if isinstance(decoded, Skipped):
            yield decoded
            continue
        units = [(f"{label}/{rel}{suffix}", text) for suffix, text in parse(decoded)]
        if group_by is None:
            yield from (RawText(source, text) for source, text in units if text.strip())
            continue
        key = _group_key(group_by, rel)
        if key != pending_key and pending:
            yield RawText(_joined_source(label, pending_key), "\n\n".join(pending))
            pending = []
        pending_key = key
        pending.extend(text for _, text in units if text.strip())
    if pending:
        yield RawText(_joined_source(label, pending_key), "\n\n".join(pending))


_NEXT = re.compile(r'<link rel="next" href="([^"#]+)"')


def _reading_order(files: list[Path], root: Path, start: str) -> list[Path]:
    """Files in the reading order of their next-links from `start`; pages off the chain follow, sorted."""
    by_name = {p.relative_to(root).as_posix(): p for p in files}
    order: list[Path] = []
    name: str | None = start
    while name in by_name and by_name[name] not in order:
        order.append(by_name[name])
        match = _NEXT.search(by_name[name].read_text(encoding="utf-8", errors="replace"))
        name = match.group(1) if match else None
    return order + [p for p in files if p not in set(order)]


def _natural(rel: Path) -> str:
    """Sort key that puts `x.info.gz` before `x.info-1.gz` (the compression suffix is not part of the name)."""
    return rel.as_posix().removesuffix(rel.suffix) if rel.suffix in _DECOMPRESS else rel.as_posix()


def _group_key(group_by: re.Pattern[str], rel: str) -> str:
    match = group_by.search(rel)
    return match.group(1) if match else rel


def _joined_source(label: str, key: str | None) -> str:
    return f"{label}/{key}" if key else label


READERS = {"files": read_files}


def read_offline(reader: str, params: dict[str, Any], extra: list[dict[str, Any]] = ()) -> Iterator[RawText | Skipped]:
    """Run the named offline reader with the recipe's parameters, then with each extra parameter set."""
    if reader not in READERS:
        raise ValueError(f"unknown offline reader {reader!r}; known: {', '.join(READERS)}")
    for one in (params, *extra):
        yield from READERS[reader](one)
