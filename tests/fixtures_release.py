"""Release fixtures: Instance records made from real texts on this machine, cut at real paragraph starts.

Texts: the licence texts Debian ships in /usr/share/common-licenses (two GFDL versions are real
near-duplicates) and Python standard library modules (argparse cut into two parts of one source).
"""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import pytest

from semanticseg.schema import Instance
from semanticseg.tokens import span_tokens, token_starts

LICENCES = Path("/usr/share/common-licenses")
LICENCE_FILES = ["Apache-2.0", "GFDL-1.2", "GFDL-1.3", "GPL-1", "GPL-2", "GPL-3", "LGPL-2", "LGPL-2.1", "MPL-1.1", "MPL-2.0"]
STDLIB_FILES = ["textwrap.py", "shutil.py", "csv.py", "heapq.py", "calendar.py", "fractions.py", "statistics.py", "json/decoder.py"]


def paragraph_instance(text: str, category: str, source: str, licence: str, target: int = 400) -> Instance:
    """An Instance whose cuts are paragraph starts, taken greedily once a block reaches `target` tokens."""
    candidates = [i + 2 for i in range(len(text) - 2) if text[i : i + 2] == "\n\n" and text[i + 2] != "\n"]
    starts = token_starts(text)
    cuts: list[int] = []
    prev = 0
    for c in candidates:
        if span_tokens(starts, prev, c) >= target:
            cuts.append(c)
            prev = c
    if cuts and span_tokens(starts, cuts[-1], len(text)) < 50:
        cuts.pop()  # no tiny tail block
    bounds = [0, *cuts, len(text)]
    block_tokens = [span_tokens(starts, a, b) for a, b in zip(bounds, bounds[1:])]
    every_other = candidates[::2]
    return Instance(
        id=hashlib.sha256(text.encode()).hexdigest()[:16],
        category=category,
        source=source,
        licence=licence,
        text=text,
        cuts=cuts,
        block_tokens=block_tokens,
        n_tokens=len(starts),
        annotators=["paragraphs-greedy", "every-other-paragraph"],
        annotator_cuts=[cuts, every_other],
        agreement=0.5,
        human_reviewed=source.endswith("GPL-3"),
        candidates=candidates,
    )


def real_instances() -> list[Instance]:
    """20 real instances in two categories (legal: licences; code: stdlib modules, argparse in 2 parts)."""
    out = [
        paragraph_instance((LICENCES / name).read_text(), "legal", f"debian:common-licenses/{name}", name)
        for name in LICENCE_FILES
    ]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_FILES:
        out.append(paragraph_instance((stdlib / name).read_text(), "code", f"cpython:Lib/{name}", "PSF-2.0"))
    argparse = (stdlib / "argparse.py").read_text()
    half = argparse.index("\n\n\n", len(argparse) // 2) + 3
    for part in (argparse[:half], argparse[half:]):  # two parts of one source, as collect cuts them
        out.append(paragraph_instance(part, "code", "cpython:Lib/argparse.py", "PSF-2.0"))
    return out


@pytest.fixture(scope="session")
def release_instances() -> list[Instance]:
    """The real instances (built once per session: tokenizing them takes about a second)."""
    return real_instances()


def write_work_root(root: Path, instances: list[Instance]) -> Path:
    """A work root as `build` leaves it: WORK/<category>/instances.parquet per category."""
    from semanticseg.io import write_records

    for cat in sorted({i.category for i in instances}):
        write_records(root / cat / "instances.parquet", [i for i in instances if i.category == cat], Instance)
    return root


@pytest.fixture()
def built_work_root(tmp_path: Path, release_instances: list[Instance]) -> Path:
    """A fresh work root with the real instances (legal and code), for tests that change it."""
    return write_work_root(tmp_path / "work", release_instances)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, release_instances: list[Instance]):
    """One release of the real instances, shared by the tests that only read it: (folder, summary)."""
    from semanticseg.dataset.release import release
    from semanticseg.recipes import load_recipe

    root = tmp_path_factory.mktemp("released")
    summary, _ = release(write_work_root(root / "work", release_instances), root / "release", load_recipe())
    return root / "release", summary
