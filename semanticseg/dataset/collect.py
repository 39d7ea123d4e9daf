"""sources -> documents: normalise, cut long texts at natural boundaries into the token window, dedup.

`collect(category, out_dir, ...)` reads the category's source (offline: text shipped in packages; online:
a streamed hub data set), normalises each text (Unicode NFC, \\n newlines), keeps a text whole when it fits
the window [min_tokens, max_tokens], cuts a longer one at its category's natural boundaries (headings,
top-level definitions, info nodes, scenes, blank lines) into several documents inside the window, drops
exact duplicates (content hash) and near duplicates (MinHash LSH over word 5-grams, datasketch), and
writes OUT/documents.parquet atomically with a completion marker. A rerun with the same settings skips.
"""

from __future__ import annotations

import random
import re
import unicodedata
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, ClassVar

from semanticseg.dataset.stage import Stage, StageContext, StageSummary, run_stage
from semanticseg.io import write_records
from semanticseg.recipes import CategoryRecipe, boundary_pattern, load_categories, load_category
from semanticseg.schema import LENGTH_BUCKETS, Document, document_id, length_bucket
from semanticseg.sources import RawText, Skipped
from semanticseg.tokens import DEFAULT_ENCODING, get_encoding

CATEGORIES: tuple[str, ...] = tuple(load_categories())
OUTPUT = "documents.parquet"
_VERSION = 1  # bump when cutting or dedup changes, so old outputs are not taken as complete

_FALLBACKS = (r"(?<=\n\n)(?=[^\n])", r"(?<=\n)(?=[^\n])")  # paragraph, then line (indented ones too)


TokenCounter = Callable[[str], int]  # a token counter


class EmptySource(ValueError):
    """The source gave no readable text, or nothing inside the token window."""


@dataclass(slots=True)
class CollectConfig:
    """Settings of one collect run (dumped beside its output as collect.config.json)."""

    category: str
    source: str = "offline"
    limit: int | None = None
    min_tokens: int = 2000
    max_tokens: int = 32000
    encoding: str = DEFAULT_ENCODING
    near_duplicate_jaccard: float = 0.8
    seed: int = 0


def normalise(text: str) -> str:
    """Unicode NFC, \\r\\n and \\r -> \\n, surrounding blank space stripped."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _split_at(text: str, pattern: str) -> list[str]:
    starts = sorted({m.start() for m in re.finditer(pattern, text)} - {0})
    bounds = [0, *starts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def sections(text: str, boundary: str, max_tokens: int, count: TokenCounter) -> list[tuple[str, int, int]]:
    """Text split at its boundaries, over-long sections split again at paragraphs then lines.

    Concatenating the sections gives the text back exactly. Returns (section, tokens, level) triples,
    level = how many fallback splits made the section; a section still over max_tokens (one enormous
    line) stays as it is and is dropped by the caller.
    """
    out: list[tuple[str, int, int]] = []
    todo = deque((piece, 0) for piece in _split_at(text, boundary_pattern(boundary)))
    while todo:
        piece, level = todo.popleft()
        n = count(piece)
        if n > max_tokens and level < len(_FALLBACKS):
            todo.extendleft(reversed([(p, level + 1) for p in _split_at(piece, _FALLBACKS[level])]))
        else:
            out.append((piece, n, level))
    return out


def cut(text: str, boundary: str, min_tokens: int, max_tokens: int, count: TokenCounter, seed: str) -> Iterator[str]:
    """Documents inside [min_tokens, max_tokens] cut from one text at natural boundaries.

    A text that fits the window is kept whole. A longer one is packed section by section up to a target
    length drawn log-uniformly from the window (seeded by the text's source, so reruns cut the same way):
    documents spread over the length buckets instead of all piling up just under max_tokens. A piece can
    still fall outside the window (a short tail, one enormous line); the caller drops and counts those.
    """
    if count(text) <= max_tokens:
        yield text
        return
    rng = random.Random(seed)
    target = lambda: int(min_tokens * (max_tokens / min_tokens) ** rng.random())  # noqa: E731
    goal, parts, size = target(), [], 0
    queue = deque(sections(text, boundary, max_tokens, count))
    while queue:
        piece, n, level = queue.popleft()
        if parts and size < min_tokens and size + n > max_tokens and level < len(_FALLBACKS):
            # The document so far is too short and the next section too long to add whole: add it by
            # its paragraphs (then lines) instead of closing a document that would be dropped.
            finer = _split_at(piece, _FALLBACKS[level])
            if len(finer) > 1:
                queue.extendleft(reversed([(p, count(p), level + 1) for p in finer]))
                continue
        if parts and (size + n > max_tokens or (size >= min_tokens and size + n > goal)):
            yield "".join(parts).strip()
            goal, parts, size = target(), [], 0
        parts.append(piece)
        size += n
    if parts:
        yield "".join(parts).strip()


class NearDuplicates:
    """MinHash LSH over word 5-gram shingles (datasketch): has a similar text been seen?"""

    def __init__(self, threshold: float, num_perm: int = 64) -> None:
        from datasketch import MinHashLSH

        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)

    def seen(self, key: str, text: str) -> bool:
        """True if a near-duplicate of text was added before; otherwise remember text and return False."""
        from datasketch import MinHash

        words = text.split()
        # crc32 (C, deterministic across runs) hashes the shingles; datasketch's default sha1 per shingle
        # made this the slowest step of collect.
        shingles = {zlib.crc32(" ".join(words[i : i + 5]).encode()) for i in range(max(len(words) - 4, 1))}
        mh = MinHash(num_perm=self.num_perm, seed=1, hashfunc=int)
        mh.update_batch(list(shingles))
        if self.lsh.query(mh):
            return True
        self.lsh.insert(key, mh)
        return False


def raw_texts(recipe: CategoryRecipe, source: str) -> Iterator[RawText | Skipped]:
    """The category's raw texts from its offline or online source."""
    if source == "offline":
        from semanticseg.sources.offline import read_offline

        return read_offline(recipe.offline.reader, recipe.offline.params, recipe.offline.extra)
    if source in {"online", "hub"}:
        from semanticseg.sources.online import stream_online

        return stream_online(recipe.online)
    raise ValueError(f"unknown source {source!r}: use offline or online")


def cut_text(raw: RawText | Skipped, boundary: str, config: CollectConfig) -> list[tuple[str, int]]:
    """One raw text normalised and cut into pieces, each with its token count (collect's per-text work)."""
    if isinstance(raw, Skipped):
        return []
    enc = get_encoding(config.encoding)
    # Cached: a text kept whole is counted by cut() and again here; the cache makes that one encode.
    count = lru_cache(maxsize=8)(lambda s: len(enc.encode(s, disallowed_special=())))
    pieces = cut(normalise(raw.text), boundary, config.min_tokens, config.max_tokens, count, f"{config.seed}:{raw.source}")
    return [(piece, count(piece)) for piece in pieces]


def build_documents(
    texts: Iterable[RawText | Skipped], config: CollectConfig, recipe: CategoryRecipe, licence: str, on_text=None,
    imap: Callable[..., Iterator[Any]] = map,
) -> tuple[list[Document], dict[str, Any]]:
    """Normalise, cut, dedup: the documents of a collect run and its summary (dropped counts by reason).

    imap(fn, texts) runs the per-text cutting (an executor's imap; the builtin map here). Dedup and the limit
    stay in this process, in the texts' order, so every executor keeps the same documents.
    """
    near = NearDuplicates(config.near_duplicate_jaccard)
    docs: list[Document] = []
    seen_ids: set[str] = set()
    dropped: Counter[str] = Counter()
    n_texts = 0
    read: deque[RawText | Skipped] = deque()  # the texts handed to imap whose pieces have not come back yet

    def reading() -> Iterator[RawText | Skipped]:
        for raw in texts:
            read.append(raw)
            yield raw

    results = imap(partial(cut_text, boundary=recipe.boundary, config=config), reading())
    for cut_pieces in results:
        raw = read.popleft()
        if isinstance(raw, Skipped):
            dropped[f"file {raw.reason}"] += 1
            continue
        n_texts += 1
        for part, (piece, n_tokens) in enumerate(cut_pieces):
            if n_tokens < config.min_tokens:
                dropped["shorter than min_tokens"] += 1
                continue
            if n_tokens > config.max_tokens:
                dropped["longer than max_tokens (no boundary)"] += 1
                continue
            doc_id = document_id(config.category, piece)
            if doc_id in seen_ids:
                dropped["exact duplicate"] += 1
                continue
            seen_ids.add(doc_id)
            if near.seen(doc_id, piece):
                dropped["near duplicate"] += 1
                continue
            meta = {"origin": raw.source, "part": part, "parts": len(cut_pieces), **raw.meta}
            docs.append(Document(doc_id, config.category, raw.source, licence, piece, len(piece), n_tokens, meta))
            if config.limit is not None and len(docs) >= config.limit:
                break
        if on_text is not None:
            on_text(len(docs), raw.source)
        if config.limit is not None and len(docs) >= config.limit:
            break
    if hasattr(results, "close"):
        results.close()  # stop a distributed imap early: the limit is reached, queued texts are not needed
    if n_texts == 0:
        raise EmptySource(f"{config.category}: the {config.source} source gave no readable text ({dict(dropped)})")
    if not docs:
        raise EmptySource(
            f"{config.category}: no document inside [{config.min_tokens}, {config.max_tokens}] tokens "
            f"from {n_texts} texts ({dict(dropped)})"
        )
    return docs, _summary(docs, dropped, n_texts)


def _summary(docs: list[Document], dropped: Counter[str], n_texts: int) -> dict[str, Any]:
    buckets = Counter(length_bucket(d.n_tokens) for d in docs)
    return {
        "documents": len(docs),
        "tokens": sum(d.n_tokens for d in docs),
        "texts_read": n_texts,
        "buckets": {name: buckets.get(name, 0) for name, _, _ in LENGTH_BUCKETS},
        "dropped": dict(sorted(dropped.items())),
    }


@dataclass(slots=True)
class CollectStage(Stage):
    """sources -> WORK/<category>/documents.parquet for one category."""

    config: CollectConfig
    on_text: Callable[[int, str], None] | None = None  # called after each raw text: (documents so far, source)

    name: ClassVar[str] = "collect"
    output: ClassVar[str] = OUTPUT
    version: ClassVar[int] = _VERSION

    def __post_init__(self) -> None:
        if self.config.min_tokens > self.config.max_tokens:
            raise ValueError(f"--min-tokens {self.config.min_tokens} is greater than --max-tokens {self.config.max_tokens}")
        if self.config.min_tokens < 1:
            raise ValueError("--min-tokens must be at least 1")

    def settings(self) -> dict[str, Any]:
        recipe = load_category(self.config.category)
        return {"config": asdict(self.config), "recipe": {k: v for k, v in asdict(recipe).items() if k != "path"}}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        config, recipe = self.config, load_category(self.config.category)
        task = ctx.progress.add_task(f"collect {config.category}", total=config.limit, info="")

        def on_text(n_docs: int, origin: str) -> None:
            ctx.progress.update(task, completed=n_docs, info=origin[-60:])
            if self.on_text is not None:
                self.on_text(n_docs, origin)

        licence = recipe.offline.licence if config.source == "offline" else recipe.online.licence
        docs, summary = build_documents(raw_texts(recipe, config.source), config, recipe, licence, on_text, ctx.executor.imap)
        write_records(ctx.path(OUTPUT), docs, Document)
        return summary


def collect(
    category: str,
    out_dir: Path,
    source: str = "offline",
    limit: int | None = None,
    min_tokens: int = 2000,
    max_tokens: int = 32000,
    encoding: str = DEFAULT_ENCODING,
    near_duplicate_jaccard: float = 0.8,
    force: bool = False,
    on_text=None,
    progress: Any = None,
) -> StageSummary:
    """Collect one category's documents into out_dir/documents.parquet (CollectStage through the runner).

    Skips (summary["skipped"]) when the output is already complete for the same settings.
    Raises ValueError for an unknown category or min_tokens > max_tokens, EmptySource for an empty source.
    on_text(documents_so_far, source) is called after each raw text.
    """
    config = CollectConfig(category, source, limit, min_tokens, max_tokens, encoding, near_duplicate_jaccard)
    return run_stage(CollectStage(config, on_text), Path(out_dir), progress, force)
