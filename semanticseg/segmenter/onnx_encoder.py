"""The sentence encoder on ONNX Runtime: the same MiniLM, the same embeddings, less CPU time.

The transformer of a sentence-transformers model is exported once to ONNX (fp32, dynamic batch and
length) into the semanticseg cache; mean pooling and L2 normalisation are done here with numpy, as the
MiniLM's own Pooling and Normalize modules do. The embeddings equal the torch ones to float rounding
(tests/test_peers.py checks cosine on real text), so the segmenter uses this path whenever onnxruntime
and onnx are installed (the `fast` extra). int8 dynamic quantisation was tried and not kept: it moved
embeddings too far (README, Speed).

`OnnxEncoder` answers the part of SentenceTransformer's interface that `units.embed_units` uses
(`max_seq_length`, `encode`), so callers need not know which backend they hold. Once the export exists it opens
from the model folder alone (tokenizer.json through `tokenizers`, no torch, no transformers): the similarity
annotator's Ray actors start that way (annotators/similarity.py, backend "onnx").
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_available() -> bool:
    """Whether onnxruntime (to run) and onnx (to export) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def model_folder(model: Any) -> Path:
    """The folder a loaded SentenceTransformer's transformer was read from."""
    return Path(model[0].auto_model.name_or_path)


def export_path(folder: Path) -> Path:
    """Where the ONNX export of the sentence-transformers model in folder lives (keyed by the folder and its
    weights' names and sizes, so it is found without loading the model)."""
    from semanticseg.paths import cache_dir

    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    key = f"{folder.resolve()}|{[(w.name, w.stat().st_size) for w in weights]}"
    return cache_dir() / "onnx" / hashlib.sha256(key.encode()).hexdigest()[:16] / "model.onnx"


def export(model: Any, path: Path) -> Path:
    """Export the transformer of a SentenceTransformer to path (atomically: a crash leaves no half file).

    Needs torch and the onnx package (torch's TorchScript exporter reads its output back with onnx); running the
    export needs only onnxruntime.
    """
    import torch

    from semanticseg.io import atomic_path

    transformer = model[0].auto_model.eval()

    class Hidden(torch.nn.Module):  # positional inputs in, last hidden state out
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    sample = model.tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "length"} for name in (*INPUTS, "last_hidden_state")}
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notes on indexing and deprecation
        torch.onnx.export(Hidden(), tuple(sample[k] for k in INPUTS), str(tmp), input_names=list(INPUTS),
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def ensure_export(folder: Path, model: Any = None) -> Path:
    """The ONNX export of the model in folder, made now if the cache lacks it (needs torch and sentence-transformers;
    model: the SentenceTransformer already loaded from folder, else it is loaded here). A no-op when cached: a
    driver calls it before starting the workers that open the export with `OnnxEncoder(folder)`."""
    path = export_path(folder)
    if not path.exists():
        if model is None:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(folder), device="cpu")
        export(model, path)
    return path


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _check_folder(folder: Path) -> dict[str, Any]:
    """The sentence_bert_config.json of folder, if its modules are what `encode` computes (transformer, mean pooling,
    normalisation); else ValueError."""
    modules = _read_json(folder / "modules.json")
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules] if isinstance(modules, list) else []
    pooling = _read_json(folder / (modules[1].get("path", "") if len(kinds) > 1 else "") / "config.json") if kinds else {}
    means = pooling.get("pooling_mode") == "mean" or (pooling.get("pooling_mode_mean_tokens") and not any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"))
    if kinds != ["Transformer", "Pooling", "Normalize"] or not means:
        raise ValueError("only mean-pooled, normalised sentence-transformers models run on ONNX here")
    if not (folder / "tokenizer.json").exists():  # the fast tokenizer's file is what `tokenizers` reads
        raise ValueError(f"{folder} has no tokenizer.json: its model runs on torch only")
    return _read_json(folder / "sentence_bert_config.json")


class OnnxEncoder:
    """A sentence-transformers model's embeddings (mean pooled, normalised) computed by ONNX Runtime, from its folder
    and its ONNX export (`ensure_export`) alone: neither torch nor transformers is imported, so a worker that only
    encodes starts in well under a second. `from_model` makes it from a loaded SentenceTransformer (exporting first)."""

    def __init__(self, folder: Path, max_seq_length: int | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = _check_folder(folder)
        path = export_path(folder)
        if not path.exists():
            raise FileNotFoundError(f"no ONNX export of {folder} in the cache: make it first (onnx_encoder.ensure_export)")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # As many threads as torch would take: OMP_NUM_THREADS where set (a Ray actor's CPUs), else every core (0).
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS") or 0)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        # The fast tokenizer's own file, set as sentence-transformers calls it: special tokens, truncation at
        # max_seq_length (set per call, callers change it), no padding (batches are padded in `encode`).
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        special = _read_json(folder / "special_tokens_map.json").get("pad_token", "[PAD]")
        self.pad_id = self.tokenizer.token_to_id(special["content"] if isinstance(special, dict) else special) or 0
        self.max_seq_length = int(max_seq_length or config.get("max_seq_length") or 512)
        self.lower = bool(config.get("do_lower_case"))
        self.name_or_path = str(folder)  # as a SentenceTransformer's tokenizer names it (embedding caches key on it)

    @classmethod
    def from_model(cls, model: Any) -> OnnxEncoder:
        """The encoder of a loaded SentenceTransformer (its max_seq_length), exported first if the cache lacks it."""
        folder = model_folder(model)
        _check_folder(folder)  # before the export (a minute of work): __init__ checks again, for callers with a folder only
        ensure_export(folder, model)
        return cls(folder, model.max_seq_length)

    def tokenize(self, texts: list[str]) -> list[Any]:
        """The tokenizers Encodings of texts, as the SentenceTransformer's tokenizer gives them (stripped, truncated
        to max_seq_length with the special tokens counted, not padded)."""
        self.tokenizer.enable_truncation(self.max_seq_length)
        return self.tokenizer.encode_batch([t.strip().lower() if self.lower else t.strip() for t in texts])

    def encode(self, texts: list[str], batch_size: int = 64, normalize_embeddings: bool = True, **_: Any) -> np.ndarray:
        """Embeddings of texts (n, dim): tokenised once, then run in batches of similar token length
        (`length_batches`), so little of the encoder's work goes to padding."""
        encoded = self.tokenize(texts)
        out: np.ndarray | None = None
        for index in length_batches([len(e.ids) for e in encoded], batch_size):
            width = max(len(encoded[j].ids) for j in index)
            batch = {k: np.zeros((len(index), width), np.int64) for k in INPUTS}
            batch["input_ids"][:] = self.pad_id
            for row, j in enumerate(index):  # right padding: pad id, attention 0, type 0
                n = len(encoded[j].ids)
                batch["input_ids"][row, :n] = encoded[j].ids
                batch["attention_mask"][row, :n] = encoded[j].attention_mask
                batch["token_type_ids"][row, :n] = encoded[j].type_ids
            hidden = self.session.run(None, batch)[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            vectors = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            if normalize_embeddings:
                vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), np.float32)
            out[index] = vectors
        return out if out is not None else np.zeros((0, 0), np.float32)


# What one more encoder call costs, in padded tokens' worth of work (session start-up, thread hand-offs): a batch is
# split where the padding it saves outweighs that.
CALL_TOKENS = 16


def length_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices of inputs by batch, longest first, at most batch_size each: consecutive runs of the inputs sorted by
    length, chosen by dynamic programming to minimise padded tokens plus CALL_TOKENS per batch (the encoder's work
    grows with batch size x longest length)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    ranked = np.asarray(lengths)[order]
    n = len(order)
    best = np.zeros(n + 1)  # best[i]: cost of the first i inputs
    start = np.zeros(n + 1, dtype=np.int64)  # where the last batch of the first i inputs begins
    for i in range(1, n + 1):
        first = np.arange(max(i - batch_size, 0), i)
        cost = best[first] + CALL_TOKENS + (i - first) * ranked[first]
        k = int(np.argmin(cost))
        best[i], start[i] = cost[k], first[k]
    batches, i = [], n
    while i > 0:
        batches.append(order[start[i] : i])
        i = int(start[i])
    return batches[::-1]
