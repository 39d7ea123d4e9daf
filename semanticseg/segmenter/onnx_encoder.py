"""The sentence encoder on ONNX Runtime: the same MiniLM, the same embeddings, less CPU time.

The transformer of a sentence-transformers model is exported once to ONNX (fp32, dynamic batch and
length) into the semanticseg cache; mean pooling and L2 normalisation are done here with numpy, as the
MiniLM's own Pooling and Normalize modules do. The embeddings equal the torch ones to float rounding
(tests/test_peers.py checks cosine on real text), so the segmenter uses this path whenever onnxruntime
and onnx are installed (the `fast` extra). int8 dynamic quantisation was tried and not kept: it moved
embeddings too far (README, Speed).

`OnnxEncoder` answers the part of SentenceTransformer's interface that `units.embed_units` uses
(`max_seq_length`, `encode`), so callers need not know which backend they hold.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_available() -> bool:
    """Whether onnxruntime (to run) and onnx (to export) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def export_path(model: Any) -> Path:
    """Where the ONNX export of a loaded SentenceTransformer lives (keyed by its folder and weights)."""
    from semanticseg.paths import cache_dir

    folder = Path(model[0].auto_model.name_or_path)
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    key = f"{folder.resolve()}|{[(w.name, w.stat().st_size) for w in weights]}"
    return cache_dir() / "onnx" / hashlib.sha256(key.encode()).hexdigest()[:16] / "model.onnx"


def export(model: Any, path: Path) -> Path:
    """Export the transformer of a SentenceTransformer to path (atomically: a crash leaves no half file)."""
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


class OnnxEncoder:
    """A SentenceTransformer's embeddings (mean pooled, normalised) computed by ONNX Runtime."""

    def __init__(self, model: Any) -> None:
        import onnxruntime

        if [type(m).__name__ for m in model] != ["Transformer", "Pooling", "Normalize"] or model[1].get_config_dict().get("pooling_mode") != "mean":
            raise ValueError("only mean-pooled, normalised sentence-transformers models run on ONNX here")
        path = export_path(model)
        if not path.exists():
            export(model, path)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = model.tokenizer
        self.max_seq_length = model.max_seq_length

    def encode(self, texts: list[str], batch_size: int = 64, normalize_embeddings: bool = True, **_: Any) -> np.ndarray:
        """Embeddings of texts (n, dim): tokenised once, then run in batches of similar token length
        (`length_batches`), so little of the encoder's work goes to padding."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        out: np.ndarray | None = None
        for index in length_batches([len(ids) for ids in encoded["input_ids"]], batch_size):
            padded = self.tokenizer.pad({k: [encoded[k][j] for j in index] for k in INPUTS}, return_tensors="np")
            batch = {k: padded[k].astype(np.int64) for k in INPUTS}
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
