"""Container formats some packages ship their text in, parsed into (source suffix, text) entries.

Each parser takes a decoded file and returns its entries in order. The text inside is the package's own;
where a format has no plain-text rendering (a YAML list of conversation turns) the parser lays the
turns out one per line with a speaker label, and says so here.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

Entries = list[tuple[str, str]]


def whole(text: str) -> Entries:
    """The whole file is one unit."""
    return [("", text)]


def lines(text: str) -> Entries:
    """One unit per non-empty line (corpora that store one article per line, e.g. gensim's Lee corpus)."""
    return [(f"#L{i + 1}", line.strip()) for i, line in enumerate(text.split("\n")) if line.strip()]


def front_matter(text: str) -> Entries:
    """A file whose text follows a YAML front matter block between `---` lines (ScanCode's licence files): the text."""
    match = re.match(r"---\n.*?\n---\n", text, re.DOTALL)
    return [("", text[match.end():] if match else text)]


def info_manual(text: str) -> Entries:
    """A GNU info file: drop the 0x1f node separators and NUL-framed tags (`File: ..., Node: ...` lines stay)."""
    text = re.sub("\x00\x08\\[[^\x00]*\x00\x08\\]", "", text)  # NUL-framed tags such as [index]
    return [("", text.replace("\x1f\n", "\n").replace("\x1f", ""))]


def chatterbot_yaml(text: str) -> Entries:
    """A chatterbot-corpus YAML file: each conversation's turns alternate between two speakers.

    The corpus stores turns as bare strings; we label them "A:"/"B:" so the turn structure survives.
    A heading with the file's categories opens it (it is the session topic in multi-session documents).
    """
    import yaml

    data = yaml.safe_load(text) or {}
    topic = ", ".join(str(c) for c in data.get("categories", []))
    convs = []
    for conv in data.get("conversations", []):
        turns = [t for t in (conv if isinstance(conv, list) else [conv]) if isinstance(t, str)]
        convs.append("\n".join(f"{'AB'[i % 2]}: {turn.strip()}" for i, turn in enumerate(turns)))
    body = "\n\n".join(c for c in convs if c)
    return [("", f"## {topic}\n\n{body}" if topic else body)] if body else []


_NS = re.compile(r"^\{[^}]*\}")


def mediawiki_xml(text: str) -> Entries:
    """A MediaWiki XML dump: one unit per main-namespace, non-redirect page (title heading + wikitext)."""
    entries: Entries = []
    root = ET.fromstring(text)
    for page in root.iter():
        if _NS.sub("", page.tag) != "page":
            continue
        fields = {_NS.sub("", el.tag): el for el in page.iter()}
        if (fields.get("ns") is not None and fields["ns"].text != "0") or "redirect" in fields:
            continue
        title, body = fields.get("title"), fields.get("text")
        if title is None or body is None or not body.text:
            continue
        entries.append((f"#{title.text}", f"= {title.text} =\n\n{body.text}"))
    return entries


# Publican (DocBook) pages wrap each section in a banner, a title bar and prev/next navigation lists.
_PUBLICAN_CHROME = re.compile(
    r'<div id="banner">.*?</div>|<p id="title">.*?</p>|<ul class="docnav[^"]*">.*?</ul>', re.DOTALL
)


def docbook_html(text: str) -> Entries:
    """A Publican/DocBook HTML page as Markdown (html2text), without the navigation chrome around it."""
    import html2text

    converter = html2text.HTML2Text()
    converter.body_width = 0  # keep paragraphs on one line: line breaks would be ours, not the book's
    converter.ignore_images = converter.ignore_links = True
    return [("", converter.handle(_PUBLICAN_CHROME.sub("", text)).strip())]


FORMATS: dict[str, Callable[[str], Entries]] = {
    "docbook_html": docbook_html,
    "text": whole,
    "front_matter": front_matter,
    "lines": lines,
    "info": info_manual,
    "chatterbot_yaml": chatterbot_yaml,
    "mediawiki_xml": mediawiki_xml,
}
