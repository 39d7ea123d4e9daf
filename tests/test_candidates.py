"""Candidate cuts on real texts (a licence shipped with Debian, the Python standard library's source)
and on planted structure (headings, turns, sessions, long paragraphs, text without newlines)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from semanticseg.candidates import find_candidates, mean_gap_tokens
from semanticseg.dataset.candidates import run_candidates
from semanticseg.io import read_records, read_summary
from semanticseg.schema import Candidates
from semanticseg.tokens import char_to_token, count_tokens, token_starts
from tests.fixtures_llm import make_work, real_paragraphs

GPL = Path("/usr/share/common-licenses/GPL-3").read_text()


def _valid(c: Candidates, text: str) -> None:
    assert c.offsets == sorted(set(c.offsets))
    assert all(0 < o < len(text) for o in c.offsets)
    starts = token_starts(text)
    assert c.token_offsets == [char_to_token(starts, o) for o in c.offsets]
    assert len(c.kinds) == len(c.offsets)


@pytest.mark.parametrize("category", ["legal", "unknown", "books", "some new category"])
def test_prose_candidates_are_paragraph_and_heading_starts(category):
    c = find_candidates("gpl", GPL, category)
    _valid(c, GPL)
    kinds = dict(zip(c.offsets, c.kinds))
    section = GPL.index("  6. Conveying Non-Source Forms.")
    assert kinds[section] == "heading"
    paragraph = GPL.index("  The licenses for most software")
    assert kinds[paragraph] == "paragraph"
    # Hard-wrapped lines inside a paragraph are not candidates.
    wrapped = GPL.index("software and other kinds of works.") - 1
    assert GPL[wrapped] != "\n" or wrapped + 1 not in kinds
    assert 20 < mean_gap_tokens(c, count_tokens(GPL)) < 200


def test_long_paragraph_gets_sentence_starts():
    paragraph = " ".join(real_paragraphs())  # one huge paragraph, no newlines
    text = "Title\n\n" + paragraph
    c = find_candidates("long", text, "unknown")
    _valid(c, text)
    sentences = [o for o, k in zip(c.offsets, c.kinds) if k == "sentence"]
    assert len(sentences) > 20
    # Each starts right after a sentence end and a space, never inside a sentence.
    assert all(text[o - 1] == " " and text[o - 2] in ".!?:;\"')" for o in sentences)


def test_text_without_punctuation_or_newlines_still_has_candidates():
    text = " ".join(f"word{i}" for i in range(4000))
    c = find_candidates("flat", text, "unknown")
    _valid(c, text)
    bounds = [0, *c.token_offsets, count_tokens(text)]
    assert max(b - a for a, b in zip(bounds, bounds[1:])) <= 400
    assert all(text[o - 1] == " " for o in c.offsets)


def test_conversation_turns_and_sessions():
    turns = []
    for session in range(1, 4):
        turns.append(f"Session {session}:")
        for i, p in enumerate(real_paragraphs(6)):
            turns.append(f"{'User' if i % 2 == 0 else 'Assistant'}: {p}")
    text = "\n".join(turns)
    c = find_candidates("chat", text, "chat")
    _valid(c, text)
    kinds = dict(zip(c.offsets, c.kinds))
    assert kinds[text.index("Session 2:")] == "session"
    assert kinds[text.index("Assistant:")] == "turn"
    assert sum(k == "turn" for k in c.kinds) >= 15


def test_hearing_transcript_labels_with_titles_and_parentheses_and_short_turns():
    labels = ["The PRESIDENT (Mr. Biden)", "Senator Warren (D-MA)", "Mr. SMITH", "Dr. Jan van der Berg", "Ms. O'Neill"]
    answers = ["Yes.", "No, sir.", "Thank you."] + real_paragraphs(12)
    lines = [f"{labels[i % len(labels)]}: {answers[i % len(answers)]}" for i in range(40)]
    text = "\n".join(lines)
    c = find_candidates("hearing", text, "transcripts")
    _valid(c, text)
    starts = [sum(len(line) + 1 for line in lines[:i]) for i in range(1, len(lines))]
    # Every turn starts a candidate, also after a two-token turn ("Yes.").
    assert set(starts) <= set(c.offsets)
    assert {k for o, k in zip(c.offsets, c.kinds) if o in starts} == {"turn"}


def test_one_unpunctuated_utterance_per_line_without_blank_lines():
    # Real sentences, lower-cased and without punctuation, one per line (as speech recognition writes them).
    sentences = [s.strip() for p in real_paragraphs(8) for s in p.split(". ") if len(s.split()) > 3]
    lines = ["".join(ch for ch in s.lower() if ch.isalnum() or ch == " ") for s in sentences]
    text = "\n".join(lines)
    c = find_candidates("asr", text, "transcripts")
    _valid(c, text)
    starts = [sum(len(line) + 1 for line in lines[:i]) for i in range(1, len(lines))]
    assert sum(s in set(c.offsets) for s in starts) >= 0.95 * len(starts)


def test_python_code_top_level_statements_with_decorators_and_comments():
    source = inspect.getsource(inspect.getmodule(Path))  # pathlib, real stdlib source
    c = find_candidates("pathlib", source, "code")
    _valid(c, source)
    kinds = dict(zip(c.offsets, c.kinds))
    assert kinds[source.index("\nclass PurePath(") + 1] == "code"
    assert kinds[source.index("\n    def __reduce__(self):") + 1] == "code"  # class members too
    decorator = source.index("\n    @property") + 1  # a decorator starts its definition, not the def line
    assert decorator in kinds
    assert source.index("\n", decorator) + 1 not in kinds
    assert 30 < mean_gap_tokens(c, count_tokens(source)) < 200


def test_brace_code_zero_indent_statements():
    text = "\n".join(
        f"static int f{i}(int x) {{\n    int y = x * {i};\n    if (y > 3) {{\n        y -= 1;\n    }} else {{\n        y += 1;\n    }}\n    return y;\n}}\n"
        for i in range(30)
    )
    c = find_candidates("c", text, "code")
    _valid(c, text)
    functions = {text.index(f"static int f{i}(") for i in range(1, 30)}
    assert functions <= set(c.offsets)
    assert not any(text.startswith("}", o) for o in c.offsets)


def test_run_candidates_writes_parquet_and_skips_when_done(tmp_path):
    make_work(tmp_path, [("a", "legal", GPL), ("b", "unknown", "\n\n".join(real_paragraphs(5)))])
    records = read_records(tmp_path / "candidates.parquet", Candidates)
    assert [r.doc_id for r in records] == ["a", "b"]
    summary = read_summary(tmp_path / "candidates.parquet")
    assert set(summary["mean_gap_tokens"]) == {"legal", "unknown"}
    assert run_candidates(tmp_path)["skipped"] is True
