"""Documents + cuts -> block sequences -> training/eval batches aligned between teacher and student.

Input is either a release (Instance rows: text + cuts) or collected documents (Document rows), which are
cut by a trained segmenter when one is given, else by the `structure` annotator over the candidate cuts. A document becomes non-overlapping
windows of context blocks (up to `context_tokens` model tokens) followed by a final block (the next block,
at most `final_tokens`). The teacher sees the natural text (one leading BOS); the student sees the same
tokens with a block sink before every context block; the batch carries the index maps between the two.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from semanticseg.blockattn.positions import layout
from semanticseg.errors import UserError
from semanticseg.io import read_records
from semanticseg.schema import Document, Instance
from semanticseg.sources import field_text


@dataclass(slots=True)
class BlockedText:
    """Model token ids of a window: context blocks and the final block."""

    doc_id: str
    blocks: list[list[int]]
    final: list[int]


HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")  # owner/name, optionally :config


def is_hub_id(data: str) -> bool:
    """True for a Hugging Face data set id (owner/name[:config]) that is not a local path."""
    return not Path(data).exists() and HUB_ID.match(data) is not None


def hub_texts(name: str, text_fields: str = "text", split: str = "train") -> list[tuple[str, str, None]]:
    """(id, text, None) rows of a data set that `datasets.load_dataset` reads: a hub id, optionally with
    `:config` (e.g. nvidia/ChatQA2-Long-SFT-data:long_sft), or a local folder of data files. text_fields is a
    comma-separated list of fields joined by blank lines in that order (chat message lists become their contents)."""
    from datasets import load_dataset

    path, _, config = name.partition(":")
    fields = [f for f in text_fields.split(",") if f]
    rows = []
    for index, row in enumerate(load_dataset(path, config or None, split=split, streaming=True)):
        missing = [f for f in fields if f not in row]
        if missing:
            raise UserError(f"{name}: no field {missing[0]!r} (fields: {', '.join(row)}); choose them with --text-field")
        text = "\n\n".join(t for t in (field_text(row[f], roles=False, separator="\n\n") for f in fields) if t)
        if text:
            rows.append((str(row.get("id", f"{path}:{index}")), text, None))
    return rows


def load_texts(path: Path | str, text_fields: str = "text") -> list[tuple[str, str, list[int] | None]]:
    """(id, text, cuts or None) from instances.parquet / documents.parquet, a directory holding one, or a
    Hugging Face data set id (`hub_texts`, its text_fields)."""
    if is_hub_id(str(path)):
        return hub_texts(str(path), text_fields)
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("instances*.parquet")) or sorted(path.rglob("*.parquet"))
        if not found:
            raise FileNotFoundError(f"{path}: no parquet files inside")
        return [row for file in found for row in load_texts(file)]
    names = set(__import__("pyarrow.parquet", fromlist=["x"]).read_schema(path).names)
    if "cuts" in names:
        return [(r.id, r.text, list(r.cuts)) for r in read_records(path, Instance)]
    return [(d.id, d.text, None) for d in read_records(path, Document)]


def structure_cuts(doc_id: str, text: str, target_tokens: int, category: str = "web") -> list[int]:
    """Cuts from the `structure` annotator over the document's candidate cuts (no model, deterministic)."""
    from semanticseg.annotators.base import get_annotator
    from semanticseg.candidates import find_candidates
    from semanticseg.tokens import count_tokens

    candidates = find_candidates(doc_id, text, category)
    doc = Document(doc_id, category, "", "", text, len(text), count_tokens(text))
    return list(get_annotator("structure").propose(doc, candidates, target_tokens).cuts)


def segmenter_cuts(segmenter: Any, text: str, target_tokens: int) -> list[int]:
    """Cuts from a trained segmenter (semanticseg.Segmenter) at a mean block length of target_tokens."""
    return [block.start for block in segmenter.segment(text, target_tokens=target_tokens)[1:]]


SEGMENTATIONS = ("fixed", "structure", "segmenter", "authored", "random")
_ATX = re.compile(r"^#{1,6}\s+\S|^=+[^=\n]+=+\s*$", re.MULTILINE)  # Markdown headings, wikitext = Section =
_UNDERLINE = re.compile(r"^([=\-~*^#+`'\"])\1{2,}\s*$")  # reST / setext heading underline


def authored_cuts(text: str) -> list[int]:
    """The document's own section starts: Markdown and wikitext headings, reST/setext underlined headings, and
    for Python source its top-level class and function definitions (the author's units). No length target: this
    is the oracle segmentation where the author left one, empty where there is none."""
    import ast

    cuts: set[int] = {m.start() for m in _ATX.finditer(text)}
    start = 0
    lines = text.split("\n")
    for index, line in enumerate(lines):
        below = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and _UNDERLINE.match(below) and len(below.strip()) >= min(3, len(line.strip())):
            cuts.add(start)
        start += len(line) + 1
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        tree = None
    if tree is not None:
        line_starts = [0]
        for line in lines:
            line_starts.append(line_starts[-1] + len(line) + 1)
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
                cuts.add(line_starts[first])
    return sorted(c for c in cuts if 0 < c < len(text))


def fixed_cuts(text: str, target_tokens: int) -> list[int]:
    """Fixed-length chunks: a cut every target_tokens cl100k tokens, wherever it falls (the segmenter's `fixed` baseline)."""
    from semanticseg.segmenter.baselines import FixedWindows

    method = FixedWindows()
    return method.cut(method.prepare(text, "web"), target_tokens)


def random_cuts(doc_id: str, text: str, target_tokens: int) -> list[int]:
    """As many cuts as target_tokens asks for, drawn uniformly (seeded by the document id) among the candidate
    cut positions: the same positions the other methods choose from, none of their judgement."""
    from semanticseg.candidates import find_candidates
    from semanticseg.tokens import count_tokens

    positions = [c for c in find_candidates(doc_id, text, "web").offsets if 0 < c < len(text)]
    n_cuts = min(len(positions), max(0, round(count_tokens(text) / target_tokens) - 1))
    return sorted(random.Random(doc_id).sample(positions, n_cuts))


def method_cuts(method: str, doc_id: str, text: str, target_tokens: int, segmenter: Any = None) -> list[int]:
    """Cuts of one segmentation method (SEGMENTATIONS) at a mean block length of target_tokens (authored has none)."""
    if method == "fixed":
        return fixed_cuts(text, target_tokens)
    if method == "structure":
        return structure_cuts(doc_id, text, target_tokens)
    if method == "segmenter":
        if segmenter is None:  # the segmenter that ships with the package
            from semanticseg.segmenter.model import Segmenter

            segmenter = Segmenter.load()
        return segmenter_cuts(segmenter, text, target_tokens)
    if method == "authored":
        return authored_cuts(text)
    if method == "random":
        return random_cuts(doc_id, text, target_tokens)
    raise UserError(f"unknown segmentation {method!r}: use one of {', '.join(SEGMENTATIONS)}")


def block_texts(text: str, cuts: list[int]) -> list[str]:
    """Split text at cut offsets (the pieces join back to the text exactly)."""
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def windows(
    doc_id: str,
    pieces: list[str],
    encode: Callable[[str], list[int]],
    context_tokens: int,
    final_tokens: int,
    max_block_tokens: int,
    min_blocks: int = 2,
) -> list[BlockedText]:
    """Non-overlapping windows: context blocks up to context_tokens, then the next block as the final block."""
    blocks: list[list[int]] = []
    for piece in pieces:
        ids = encode(piece)
        blocks.extend(ids[s : s + max_block_tokens] for s in range(0, len(ids), max_block_tokens))
    out: list[BlockedText] = []
    context: list[list[int]] = []
    for block in blocks:
        full = context and sum(map(len, context)) + len(block) > context_tokens
        if full and len(context) >= min_blocks and len(block) >= 16:
            out.append(BlockedText(doc_id, context, block[:final_tokens]))
            context = []
            continue
        context.append(block)
        while sum(map(len, context)) > context_tokens:
            context.pop(0)
    return out


def padded_length(items: list[BlockedText], multiple: int = 128) -> int:
    """A fixed sequence length that fits every window with a sink per block (fixed shapes: one compile)."""
    longest = max(sum(map(len, item.blocks)) + len(item.blocks) + len(item.final) for item in items)
    return -(-longest // multiple) * multiple


def authored_targets(path: Path | str, text_fields: str = "text") -> dict[str, int]:
    """Per document with at least one authored section start: its mean authored section length in cl100k tokens.

    Every segmentation cuts such a document at this target, so methods are compared at the same mean block
    length as the authors' own sections; documents without sections are left out of the comparison.
    """
    from semanticseg.tokens import count_tokens

    targets = {}
    for doc_id, text, _ in load_texts(path, text_fields):
        n_sections = len(authored_cuts(text)) + 1
        if n_sections > 1:
            targets[doc_id] = max(1, round(count_tokens(text) / n_sections))
    return targets


def build_windows(
    path: Path, tokenizer: Any, context_tokens: int, final_tokens: int, target_block_tokens: int, max_block_tokens: int,
    segmenter: str = "",
    text_fields: str = "text",
    segmentation: str = "",
    doc_targets: dict[str, int] | None = None,
) -> list[BlockedText]:
    """All windows of the documents at path. Cut by `segmentation` (one of SEGMENTATIONS) when given; else by
    their release cuts, else by the segmenter saved in the folder `segmenter` (when given), else by structure
    cuts. doc_targets (document id -> mean block tokens, e.g. authored_targets) keeps only those documents and
    cuts each at its own target instead of target_block_tokens."""
    model = None
    if segmenter or segmentation == "segmenter":  # without a folder: the shipped default segmenter, loaded once
        from semanticseg.segmenter.model import Segmenter

        model = Segmenter.load(segmenter or None)

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    result: list[BlockedText] = []
    for doc_id, text, cuts in load_texts(path, text_fields):
        if doc_targets is not None and doc_id not in doc_targets:
            continue
        target = doc_targets[doc_id] if doc_targets is not None else target_block_tokens
        if segmentation:
            cuts = method_cuts(segmentation, doc_id, text, target, model)
        elif cuts is None:
            cuts = segmenter_cuts(model, text, target) if model else structure_cuts(doc_id, text, target)
        pieces = block_texts(text, cuts)
        result.extend(windows(doc_id, pieces, encode, context_tokens, final_tokens, max_block_tokens))
    return result


@dataclass(slots=True)
class Batch:
    """Student and teacher inputs for B windows padded to one length, plus aligned prediction positions.

    Positions are flat indices into [B * L]; each selected target y is predicted by the student at s_pos and
    by the teacher (natural text) at t_pos. `open_pred` says whether the predicting student position lies in
    an open block other than the first (it sees another block); `final` marks targets inside the final block
    whose predicting position is in the final block too.
    """

    s_ids: torch.Tensor  # [B, L]
    s_blocks: torch.Tensor  # [B, L]
    s_open: torch.Tensor  # [B, n_blocks]
    t_ids: torch.Tensor  # [B, L]
    s_pos: torch.Tensor  # [T]
    t_pos: torch.Tensor  # [T]
    targets: torch.Tensor  # [T]
    open_pred: torch.Tensor  # [T] bool
    final: torch.Tensor  # [T] bool

    def to(self, device: torch.device | str) -> Batch:
        """The batch on device."""
        return Batch(*(getattr(self, name).to(device) for name in self.__slots__))


def collate(
    items: Iterable[BlockedText], sink_id: int, pad_id: int, length: int, block_sinks: bool, block_dropout: float,
    rng: random.Random | Sequence[random.Random],
) -> Batch:
    """Lay out windows for student and teacher; each context block is closed with probability block_dropout.

    block_dropout=1.0 is plain block attention (every context block isolated, the final block open). rng: one
    generator for every window, or one per window (so a window's dropout does not depend on its batch-mates).
    """
    items = list(items)
    rngs = list(rng) if isinstance(rng, Sequence) else [rng] * len(items)
    n_blocks = max(len(item.blocks) for item in items) + 2  # + final + padding block
    s_ids = torch.full((len(items), length), pad_id)
    t_ids = torch.full((len(items), length), pad_id)
    s_blocks = torch.full((len(items), length), n_blocks - 1)
    s_open = torch.zeros(len(items), n_blocks, dtype=torch.bool)
    columns: list[list[int]] = [[], [], [], [], []]
    for row, item in enumerate(items):
        student = layout(item.blocks, item.final, sink_id, block_sinks)
        teacher = layout(item.blocks, item.final, sink_id, block_sinks=False)
        if len(student.input_ids) > length:
            raise ValueError(f"window of {len(student.input_ids)} tokens does not fit length {length}")
        s_ids[row, : len(student.input_ids)] = torch.tensor(student.input_ids)
        t_ids[row, : len(teacher.input_ids)] = torch.tensor(teacher.input_ids)
        s_blocks[row, : len(student.block_ids)] = torch.tensor(student.block_ids)
        for block in range(len(item.blocks)):
            s_open[row, block] = block == 0 or rngs[row].random() >= block_dropout
        s_open[row, student.final_block] = True
        s_text = [i for i, sink in enumerate(student.is_sink) if not sink]
        t_text = [i for i, sink in enumerate(teacher.is_sink) if not sink]
        for s, t in zip(s_text, t_text, strict=True):
            pred_block = student.block_ids[s - 1]
            columns[0].append(row * length + s - 1)
            columns[1].append(row * length + t - 1)
            columns[2].append(student.input_ids[s])
            columns[3].append(pred_block > 0 and bool(s_open[row, pred_block]))
            columns[4].append(pred_block == student.final_block and student.block_ids[s] == student.final_block)
    s_pos, t_pos, targets = (torch.tensor(c, dtype=torch.long) for c in columns[:3])
    open_pred, final = (torch.tensor(c, dtype=torch.bool) for c in columns[3:])
    return Batch(s_ids, s_blocks, s_open, t_ids, s_pos, t_pos, targets, open_pred, final)
