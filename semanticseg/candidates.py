"""Candidate cut positions: where a block may start in a document.

Every later stage (annotators, adjudication, the segmenter, metrics) only cuts at these offsets, so they
agree on positions. Candidates must be dense enough that any sensible human cut is near one, and sparse
enough that an LLM can read them as a numbered list. The rules, by what the text is:

- prose (any category, also "unknown"): paragraph starts, headings and chapter markers, line starts
  where the previous line ends a sentence or the line is a list item (hard-wrapped lines inside a
  paragraph are not candidates), and sentence starts inside paragraphs longer than
  `long_paragraph_tokens` (nltk Punkt, trained unsupervised on the document itself because no Punkt
  model ships offline in any package here);
- conversations: turn starts ("Name:", "[user]", "User:") and session markers ("Session 3", "Day 2");
- code (categories whose name contains "code"): top-level statements and class members from Python's
  `ast`, otherwise zero-indent lines that open a statement (not closing braces or `else`-like lines);
- anything left longer than `max_gap_tokens` (no punctuation, no newlines) is split at whitespace.
"""

from __future__ import annotations

import ast
import bisect
import re
from functools import lru_cache
from statistics import mean
from typing import Any

from semanticseg.schema import Candidates
from semanticseg.tokens import char_to_token, token_starts

# Higher wins when two rules propose the same offset.
KIND_PRIORITY = {"heading": 7, "session": 6, "turn": 5, "code": 4, "paragraph": 3, "line": 2, "sentence": 1, "window": 0}

_HEADING = re.compile(
    r"^\s{0,3}(?:#{1,6}\s+\S"
    r"|(?i:chapter|book|part|section|act|scene|canto|volume|appendix|prologue|epilogue|preface|introduction)\b"
    r"(?:\s+[\dIVXLCDMivxlcdm]+\b|\s*$|[.:])"
    r"|[IVXLCDM]+\.?\s*$"
    r"|\d+(?:\.\d+)*\.?\s+[A-Z][^.!?\n]{0,80}\.?$"
    r"|[A-Z][A-Z0-9 ,'’:;&-]{2,60}$)",
)
_KEEP_CLOSE = frozenset({"turn", "session"})
_KEEP_FIRST = frozenset({"heading", "session", "code"})
_SETEXT = re.compile(r"^\s*(?:=+|-+)\s*$")
_SESSION = re.compile(
    r"^\s*(?:[#=*-]+\s*)?(?:session|conversation|dialogue|episode|day|date|timestamp)\b\s*[\d#:(\[-]",
    re.IGNORECASE,
)
_NAME = r"[A-Z][\w.'’-]{0,20}(?: (?:[A-Z][\w.'’-]{0,20}|van|von|de|der|del|da|di|du|la|le|of|the|and)){0,4}"
_TURN = re.compile(
    # Speaker labels as transcripts write them: "Mr. SMITH:", "The PRESIDENT (Mr. Biden):", "Senator Warren (D-MA):",
    # "Dr. Jan van der Berg:", chat roles, "[user]"; and a play's "HAMLET." opening a speech.
    r"^\s*(?:\*\*|<\|)?(?:(?:\[[^\]\n]{1,40}\]|user|assistant|system|human|ai|bot|gpt|tool|observation|action|"
    rf"thought|speaker\s*\d+|{_NAME})(?:\s*\([^)\n]{{1,40}}\))?(?:\*\*|\|>)?\s*:"
    r"|[A-Z][A-Z'’-]+(?: [A-Z][A-Z'’-]+){0,3}\.)(?:\s|$)",
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]\s|\d{1,3}[.)]\s|[a-z][.)]\s)")
_SENTENCE_END = re.compile(r"[.!?:;…\"'”’)\]]\s*$")
_CODE_CLOSER = re.compile(r"^(?:[}\])]|end\b|else\b|elif\b|elsif\b|except\b|catch\b|finally\b|#\s*end|\)|where\b)")


def _lines(text: str) -> list[tuple[int, str]]:
    """(start offset, line text without its newline) for every line."""
    out, start = [], 0
    for line in text.split("\n"):
        out.append((start, line))
        start += len(line) + 1
    return out


def is_heading(line: str, next_line: str) -> bool:
    """Whether line reads as a heading: a heading pattern (Markdown `#`, chapter/act/scene words, Roman or section
    numbers, a short ALL CAPS line) or a line underlined by `===` / `---` (next_line)."""
    return bool((_HEADING.match(line) and len(line) < 60) or (_SETEXT.match(next_line) and 0 < len(line.strip()) < 100))


def line_marks(line: str) -> tuple[bool, bool, bool, bool]:
    """Whether line opens a session, a speaker's turn or a list item, and whether it ends as a sentence does
    (the marks the structure rules cut at, for other readers of a line's layout)."""
    return bool(_SESSION.match(line)), bool(_TURN.match(line)), bool(_LIST_ITEM.match(line)), bool(_SENTENCE_END.search(line))


def _structure_rules(lines: list[tuple[int, str]], add: Any) -> None:
    """Headings, sessions, turns, paragraphs and sentence-ending line starts (all categories)."""
    lengths = sorted(len(line) for _, line in lines if line.strip())
    wrap = lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0
    # Hard-wrapped text fills most lines to about the wrap width; otherwise a line is a unit of its own (one
    # sentence, utterance or paragraph per line, with or without punctuation) and every line start is a candidate.
    wrapped = sum(n >= 0.8 * wrap for n in lengths) > 0.5 * len(lengths)
    prev = ""
    for i, (start, line) in enumerate(lines):
        if not line.strip():
            prev = line
            continue
        after_blank = i > 0 and not prev.strip()
        nxt = lines[i + 1][1] if i + 1 < len(lines) else ""
        if _SESSION.match(line):
            add(start, "session")
        elif is_heading(line, nxt):
            add(start, "heading")
        elif _TURN.match(line):
            add(start, "turn")
        elif after_blank:
            add(start, "paragraph")
        elif i > 0 and (not wrapped or _SENTENCE_END.search(prev) or _LIST_ITEM.match(line) or len(prev) < 0.6 * wrap):
            add(start, "line")
        prev = line


def _code_paragraph_rules(lines: list[tuple[int, str]], add: Any, spans: list[tuple[int, int]] | None = None) -> None:
    """Line starts after a blank line: one indent level deep at most, or any depth inside `spans`."""
    for i in range(1, len(lines)):
        start, line = lines[i]
        indent = len(line) - len(line.lstrip())
        inside = spans is not None and any(a < start < b for a, b in spans)
        if line.strip() and not lines[i - 1][1].strip() and (indent <= 4 or inside):
            add(start, "paragraph")


def _python_rules(text: str, lines: list[tuple[int, str]], add: Any) -> bool:
    """Top-level statements and class members of Python source (with decorators and leading comments)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):  # not Python, or too deeply nested to parse
        return False
    nodes = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            nodes += node.body
    for node in nodes:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        # A comment block right above a statement belongs to it.
        while first > 0 and lines[first - 1][1].lstrip().startswith("#"):
            first -= 1
        add(lines[first][0], "code")
    return True


def _brace_rules(lines: list[tuple[int, str]], add: Any) -> None:
    """Zero-indent lines that open a statement, in any brace- or indentation-structured language."""
    for start, line in lines:
        if line.strip() and not line[0].isspace() and not _CODE_CLOSER.match(line):
            add(start, "code")


@lru_cache(maxsize=1)
def _punkt_token() -> type:
    """nltk's PunktToken with its per-token regular expressions memoised by token text (they are pure functions
    of it, and a document repeats most of its words): the same parameters and sentences, Punkt's training in
    about half the time."""
    from nltk.tokenize.punkt import PunktToken

    @lru_cache(maxsize=1 << 16)
    def tests(tok: str) -> tuple[str, bool, bool, bool]:
        return (PunktToken._RE_NUMERIC.sub("##number##", tok.lower()), bool(PunktToken._RE_ELLIPSIS.match(tok)),
                bool(PunktToken._RE_INITIAL.match(tok)), bool(PunktToken._RE_ALPHA.match(tok)))

    class MemoPunktToken(PunktToken):
        __slots__ = ()

        def _get_type(self, tok: str) -> str:
            return tests(tok)[0]

        @property
        def is_ellipsis(self) -> bool:
            return tests(self.tok)[1]

        @property
        def is_initial(self) -> bool:
            return tests(self.tok)[2]

        @property
        def is_alpha(self) -> bool:
            return tests(self.tok)[3]

    return MemoPunktToken


def _sentence_rules(text: str, spans: list[tuple[int, int]], add: Any) -> None:
    """Sentence starts inside the given long spans, with Punkt trained on this document."""
    from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTrainer

    trainer = PunktTrainer(token_cls=_punkt_token())
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train(text, finalize=True)
    splitter = PunktSentenceTokenizer(trainer.get_params(), token_cls=_punkt_token())
    for begin, end in spans:
        for s_begin, _ in splitter.span_tokenize(text[begin:end]):
            add(begin + s_begin, "sentence")


def _long_spans(offsets: list[int], starts: list[int], n_chars: int, limit: int) -> list[tuple[int, int]]:
    """Spans between consecutive offsets that hold more than `limit` tokens."""
    bounds = [0, *offsets, n_chars]
    return [
        (a, b)
        for a, b in zip(bounds, bounds[1:])
        if bisect.bisect_left(starts, b) - bisect.bisect_left(starts, a) > limit
    ]


def find_candidates(
    doc_id: str,
    text: str,
    category: str,
    encoding: str = "cl100k_base",
    long_paragraph_tokens: int = 200,
    max_gap_tokens: int = 400,
    min_gap_tokens: int = 3,
) -> Candidates:
    """Candidate cut offsets for one document (pure, fast, no torch); works for any category string."""
    found: dict[int, str] = {}

    def add(offset: int, kind: str) -> None:
        while offset < len(text) and text[offset] in " \t" and kind in ("sentence", "window"):
            offset += 1
        if 0 < offset < len(text) and KIND_PRIORITY[kind] > KIND_PRIORITY.get(found.get(offset, ""), -1):
            found[offset] = kind

    lines = _lines(text)
    is_code = "code" in category.lower()
    if is_code:
        # In code, every line "ends a sentence" and comments look like headings: blank lines and
        # statements are the structure.
        _code_paragraph_rules(lines, add)
        if not _python_rules(text, lines, add):
            _brace_rules(lines, add)
    else:
        _structure_rules(lines, add)
    starts = token_starts(text, encoding)
    long = _long_spans(sorted(found), starts, len(text), long_paragraph_tokens)
    if long and is_code:
        _code_paragraph_rules(lines, add, long)
    elif long:
        _sentence_rules(text, long, add)
    # Last resort for text without blank lines or punctuation: the next line start (else space) every
    # max_gap/2 tokens.
    for begin, end in _long_spans(sorted(found), starts, len(text), max_gap_tokens):
        first, last = bisect.bisect_left(starts, begin), bisect.bisect_left(starts, end)
        for tok in range(first + max_gap_tokens // 2, last - 1, max_gap_tokens // 2):
            limit = starts[min(tok + 32, last - 1)]
            newline, space = text.find("\n", starts[tok], limit), text.find(" ", starts[tok], limit)
            add(newline + 1 if newline >= 0 else space + 1 if space >= 0 else starts[tok], "window")
    offsets, token_offsets, kinds = [], [], []
    for offset in sorted(found):
        token = char_to_token(starts, offset)
        # Candidates a few tokens apart (consecutive imports, one-word lines) add nothing but noise; consecutive
        # turns stay (in a transcript of short turns, any turn may open a new topic).
        both_turns = bool(kinds) and found[offset] in _KEEP_CLOSE and kinds[-1] in _KEEP_CLOSE
        if token_offsets and token - token_offsets[-1] < min_gap_tokens and not both_turns:
            # The higher kind stays; between equals, a heading opens what follows (keep the first), while a short
            # line or paragraph is more often the tail of what precedes ("[Exit.]", ".. versionadded::"): keep the second.
            new, old = KIND_PRIORITY[found[offset]], KIND_PRIORITY[kinds[-1]]
            if new < old or (new == old and kinds[-1] in _KEEP_FIRST):
                continue
            offsets.pop(), token_offsets.pop(), kinds.pop()
        offsets.append(offset)
        token_offsets.append(token)
        kinds.append(found[offset])
    return Candidates(doc_id=doc_id, offsets=offsets, token_offsets=token_offsets, kinds=kinds)


def mean_gap_tokens(candidates: Candidates, n_tokens: int) -> float:
    """Mean number of tokens between consecutive candidates (document start and end included)."""
    bounds = [0, *candidates.token_offsets, n_tokens]
    return mean(b - a for a, b in zip(bounds, bounds[1:]))
