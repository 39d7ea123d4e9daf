"""The held-out packages of the authored benchmark's fresh_test split (`bash scripts/install_corpus.sh --fresh`): they lie
where no training source reads, their documents never land in train, validation or test, and they parse (real files)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from semanticseg.recipes import categories_dir
from semanticseg.segmenter.authored import (
    AUTHORED_SOURCES,
    PARSERS,
    authored_instances,
    drop_repeats,
    fresh_instances,
    fresh_root,
    fresh_sources,
    numbered_sections,
    source_texts,
    split_by_group,
)
from semanticseg.sources.formats import front_matter

needs_fresh = pytest.mark.skipif(
    not fresh_root().is_dir(), reason=f"the held-out packages are not unpacked in {fresh_root()}: run bash scripts/install_corpus.sh --fresh"
)


def _recipe_packages(key: str) -> set[str]:
    """The package names (no version, no note) a key of the category recipes' [offline] tables lists."""
    names = set()
    for path in categories_dir().glob("*.toml"):
        for entry in tomllib.loads(path.read_text())["offline"].get(key, []):
            if match := re.fullmatch(r"(deb|pypi):([A-Za-z0-9.+_-]+?)(?:==\S+)?(?: \(.*\))?", entry):
                names.add(match.group(0).split("==")[0].split(" ")[0])
    return names


def test_fresh_packages_are_new_and_read_from_their_own_folder():
    fresh = _recipe_packages("fresh_packages")
    assert fresh and fresh.isdisjoint(_recipe_packages("packages"))
    for source in fresh_sources(Path("/fresh")):
        assert source.params["root"].startswith("/fresh/") and source.name.startswith("fresh-")
    for source in AUTHORED_SOURCES:  # no training source reads below the fresh root, nor the fresh root below one
        if "root" in source.params:
            root = Path(source.params["root"])
            assert not fresh_root().is_relative_to(root) and not root.is_relative_to(fresh_root())


@needs_fresh
def test_every_fresh_source_parses_into_sections():
    for source in fresh_sources():
        texts = list(source_texts(source))
        for group, _ in texts:
            name, _, key = group.partition(":")
            assert name == source.name and key and not key.startswith("/") and str(fresh_root()) not in group
        # Most texts have sections (most of ScanCode's licences are short notices without numbered sections).
        sectioned = [sum(s.level > 0 for s in PARSERS[source.parser](text)) >= 2 for _, text in texts]
        assert sum(sectioned) >= min(len(texts), 2) if source.category != "legal" else sum(sectioned) >= 100, source.name


@needs_fresh
def test_a_scancode_licence_without_its_front_matter_has_numbered_sections():
    path = fresh_root() / "pypi/scancode-toolkit-mini/licensedcode/data/licenses/epl-2.0.LICENSE"
    (_, text), = front_matter(path.read_text())
    assert text.lstrip().startswith("Eclipse Public License - v 2.0") and "spdx_license_key" not in text
    headings = [s.heading.strip() for s in numbered_sections(text) if s.level]
    assert headings[:3] == ["1. DEFINITIONS", "2. GRANT OF RIGHTS", "3. REQUIREMENTS"]


@needs_fresh
def test_fresh_documents_never_land_in_train_validation_or_test():
    # The benchmark's draw on the categories the training corpus shares with the held-out packages (legal, Q&A, news).
    names = {"licences", "python-faq", "python-whatsnew"}
    training = tuple(s for s in AUTHORED_SOURCES if s.name in names)
    held_out = tuple(s for s in fresh_sources() if s.category in {"legal", "qa_forum", "news"})
    sample = authored_instances(training, per_category=80, per_group=4)
    splits = split_by_group(sample)
    pool = authored_instances(training, per_category=None, per_group=None)
    extra = authored_instances(held_out, per_category=None, per_group=None)
    fresh = fresh_instances(pool + extra, list(splits.values()))
    in_splits = [i for items in splits.values() for i in items]
    assert {i.source for i in extra}.isdisjoint(i.source for i in in_splits)
    assert {i.id for i in extra}.isdisjoint(i.id for i in in_splits)
    assert {i.source.split(":")[0] for i in fresh} >= {s.name for s in held_out if any(i.source.startswith(s.name) for i in extra)}
    # Held-out documents that repeat a training source's text are dropped (ScanCode also holds licences derived from
    # those in /usr/share/common-licenses), the others kept.
    kept = {i.source for i in drop_repeats(extra, training)}
    assert "fresh-scancode-licences:ecl" not in kept and "fresh-scancode-licences:epl" in kept  # ECL-2.0 is Apache-2.0's text
    assert len(kept) >= 0.7 * len({i.source for i in extra})
