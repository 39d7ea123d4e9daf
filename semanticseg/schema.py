"""The typed records that flow between stages, and their Arrow schemas.

Every stage reads and writes parquet files whose schema is fixed here, so a stage never guesses what
the previous one wrote. A *cut* is a character offset into the document's original text where a new
block starts; cuts are strictly inside the text (0 < cut < len(text)), sorted and unique. Block 0
always starts at offset 0, so it is never stored as a cut.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pyarrow as pa

from semanticseg.tokens import DEFAULT_ENCODING

LENGTH_BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("2-4k", 2_000, 4_000),
    ("4-8k", 4_000, 8_000),
    ("8-16k", 8_000, 16_000),
    ("16-32k", 16_000, 32_000),
)


def length_bucket(n_tokens: int) -> str:
    """Name of the length bucket (2-4k, 4-8k, 8-16k, 16-32k) that holds a document of n_tokens."""
    for name, low, high in LENGTH_BUCKETS:
        if low <= n_tokens < high:
            return name
    if n_tokens == LENGTH_BUCKETS[-1][2]:
        return LENGTH_BUCKETS[-1][0]
    return "<2k" if n_tokens < LENGTH_BUCKETS[0][1] else ">32k"


_CUTS = pa.list_(pa.int64())


@dataclass(slots=True)
class Document:
    """One collected text: the unit every later stage works on."""

    id: str  # stable content hash (document_id)
    category: str
    source: str  # where it came from: a package path or a hub data set id + row
    licence: str
    text: str
    n_chars: int
    n_tokens: int
    meta: dict[str, Any] = field(default_factory=dict)

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("id", pa.string()),
            ("category", pa.string()),
            ("source", pa.string()),
            ("licence", pa.string()),
            ("text", pa.large_string()),
            ("n_chars", pa.int64()),
            ("n_tokens", pa.int64()),
            ("meta", pa.string()),  # JSON object
        ]
    )

    @classmethod
    def from_text(cls, text: str, category: str = "unknown", encoding: str = DEFAULT_ENCODING) -> Document:
        """A document of text that did not come through collect (a file to segment, a method's input)."""
        from semanticseg.tokens import count_tokens

        return cls(document_id(category, text), category, "", "", text, len(text), count_tokens(text, encoding))


def document_id(category: str, text: str) -> str:
    """Stable content-hash id: sha256 of the category and the normalised text, first 16 hex digits."""
    return hashlib.sha256(f"{category}\n{text}".encode()).hexdigest()[:16]


@dataclass(slots=True)
class Candidates:
    """Positions where a block may start in one document (offset 0 excluded)."""

    doc_id: str
    offsets: list[int]  # char offsets, sorted, unique, 0 < offset < n_chars
    token_offsets: list[int]  # token index of the token that starts at each offset
    kinds: list[str]  # why each is a candidate: paragraph, line, sentence, heading, code, turn, session, ...

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("doc_id", pa.string()),
            ("offsets", _CUTS),
            ("token_offsets", _CUTS),
            ("kinds", pa.list_(pa.string())),
        ]
    )


@dataclass(slots=True)
class Proposal:
    """One annotator's cuts for one document, or the reason it has none."""

    doc_id: str
    annotator: str  # e.g. "structure", "similarity", "llm:<model>#<sample>"
    cuts: list[int]  # char offsets, each one of the document's candidate offsets
    status: str = "ok"  # "ok" or "failed"
    error: str = ""  # why it failed, empty when ok
    prompt_tokens: int = 0
    completion_tokens: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("doc_id", pa.string()),
            ("annotator", pa.string()),
            ("cuts", _CUTS),
            ("status", pa.string()),
            ("error", pa.string()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("meta", pa.string()),
        ]
    )


@dataclass(slots=True)
class Consensus:
    """Adjudicated cuts for one document and how much the annotators agreed."""

    doc_id: str
    cuts: list[int]
    agreement: float  # mean pairwise boundary similarity between the annotators, in [0, 1]
    annotators: list[str]
    annotator_cuts: list[list[int]]  # aligned with annotators
    disputed: bool  # agreement under the threshold: goes to human review
    disputed_offsets: list[int] = field(default_factory=list)  # candidates some but not all annotators cut at
    human_reviewed: bool = False
    reviewer: str = ""  # the reviewers' e-mails, comma-separated
    human_agreement: float | None = None  # between the reviewers (HumanCuts.human_agreement); None under two

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("doc_id", pa.string()),
            ("cuts", _CUTS),
            ("agreement", pa.float64()),
            ("annotators", pa.list_(pa.string())),
            ("annotator_cuts", pa.list_(_CUTS)),
            ("disputed", pa.bool_()),
            ("disputed_offsets", _CUTS),
            ("human_reviewed", pa.bool_()),
            ("reviewer", pa.string()),
            ("human_agreement", pa.float64()),
        ]
    )


@dataclass(slots=True)
class HumanCuts:
    """The human decision for one document pulled from Label Studio: one reviewer's cuts, or the majority of several."""

    doc_id: str
    cuts: list[int]  # with several reviewers: cut by a majority of them within the adjudication tolerance
    reviewer: str  # the reviewers' e-mails, comma-separated
    task_id: int
    annotation_id: int  # the newest of the annotations
    lead_time_s: float  # summed over the reviewers
    annotated_at: str  # ISO 8601, the newest
    agreement_with: dict[str, float] = field(default_factory=dict)  # annotator -> boundary similarity with `cuts`
    reviewers: list[str] = field(default_factory=list)
    reviewer_cuts: list[list[int]] = field(default_factory=list)  # aligned with reviewers
    # Mean pairwise boundary similarity between the reviewers over the candidates they were shown; None under two.
    human_agreement: float | None = None

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("doc_id", pa.string()),
            ("cuts", _CUTS),
            ("reviewer", pa.string()),
            ("task_id", pa.int64()),
            ("annotation_id", pa.int64()),
            ("lead_time_s", pa.float64()),
            ("annotated_at", pa.string()),
            ("agreement_with", pa.string()),  # JSON object
            ("reviewers", pa.list_(pa.string())),
            ("reviewer_cuts", pa.list_(_CUTS)),
            ("human_agreement", pa.float64()),
        ]
    )


@dataclass(slots=True)
class Instance:
    """One row of the released SemanticSeg data set."""

    id: str
    category: str
    source: str
    licence: str
    text: str
    cuts: list[int]
    block_tokens: list[int]  # token length of each block, len(cuts) + 1 of them
    n_tokens: int
    annotators: list[str]
    annotator_cuts: list[list[int]]
    agreement: float
    human_reviewed: bool
    candidates: list[int] = field(default_factory=list)  # the candidate offsets the cuts were chosen from
    human_agreement: float | None = None  # between human reviewers of the document; None under two

    SCHEMA: ClassVar[pa.Schema] = pa.schema(
        [
            ("id", pa.string()),
            ("category", pa.string()),
            ("source", pa.string()),
            ("licence", pa.string()),
            ("text", pa.large_string()),
            ("cuts", _CUTS),
            ("block_tokens", _CUTS),
            ("n_tokens", pa.int64()),
            ("annotators", pa.list_(pa.string())),
            ("annotator_cuts", pa.list_(_CUTS)),
            ("agreement", pa.float64()),
            ("human_reviewed", pa.bool_()),
            ("candidates", _CUTS),
            ("human_agreement", pa.float64()),
        ]
    )


R = TypeVar("R")
_JSON_FIELDS = {"meta", "agreement_with"}


def to_table(records: list[Any], cls: type) -> pa.Table:
    """Records of one dataclass type -> an Arrow table with that type's SCHEMA."""
    columns: dict[str, list[Any]] = {f.name: [] for f in dataclasses.fields(cls)}
    for record in records:
        for name, values in columns.items():
            value = getattr(record, name)
            values.append(json.dumps(value, sort_keys=True) if name in _JSON_FIELDS else value)
    return pa.Table.from_pydict(columns, schema=cls.SCHEMA)


def from_table(table: pa.Table, cls: type[R]) -> list[R]:
    """An Arrow table -> records of the dataclass type cls (JSON columns decoded)."""
    # Columns added later (with defaults) may be missing from files written before them.
    rows = table.select([f.name for f in dataclasses.fields(cls) if f.name in table.column_names]).to_pylist()
    for row in rows:
        for name in _JSON_FIELDS & row.keys():
            row[name] = json.loads(row[name]) if row[name] else {}
    return [cls(**row) for row in rows]
