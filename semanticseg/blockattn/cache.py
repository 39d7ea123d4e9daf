"""KV-cache reuse: encode each block once, assemble the caches, prefill only the final block.

A block's cache is computed alone from position 0 (its sink first) and stored under the content hash of
the block's token ids and the model's name, so the same block is never encoded twice for the same model,
whatever request or position it appears in. Assembly rotates each block's keys to the block's global
start (positions.rotate_keys) and concatenates them; the final block is then prefilled over the assembled
cache with contiguous positions, exactly what the block-attention forward pass computes for it.
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass, field
from typing import Any

import torch

from semanticseg.blockattn.positions import rotate_keys, rotation

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [1, H_kv, L, D]


def block_key(model_name: str, token_ids: list[int]) -> str:
    """Content hash of one block for one model: the cache key."""
    digest = hashlib.sha256(model_name.encode())
    digest.update(array("q", token_ids).tobytes())
    return digest.hexdigest()


@torch.no_grad()
def encode_block(model: Any, token_ids: list[int]) -> KV:
    """Run one block alone from position 0 and return its per-layer keys and values."""
    ids = torch.tensor([token_ids], device=model.device)
    cache = _empty_cache()
    model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in cache.layers]


def stack_layers(parts: list[KV]) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks' per-layer caches -> keys and values [layers, 1, H, L, D], blocks concatenated along L."""
    keys = torch.cat([torch.stack([k for k, _ in part]) for part in parts], dim=-2)
    values = torch.cat([torch.stack([v for _, v in part]) for part in parts], dim=-2)
    return keys, values


def final_mask(bias: torch.Tensor, n_final: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [1, 1, n, L + n] for a final block of n tokens after L cached keys: bias [L] on the cached
    columns (0 = plain attention), causal over the final block itself."""
    device = bias.device
    causal = torch.full((n_final, n_final), torch.finfo(dtype).min, device=device).triu(1)
    return torch.cat([bias.to(dtype).expand(n_final, -1), causal.to(dtype)], dim=1)[None, None]


def _empty_cache() -> Any:
    from transformers import DynamicCache

    return DynamicCache()


@dataclass
class BlockCache:
    """Block KV caches of one model, keyed by content hash (an in-memory store; hits and misses counted).

    Each block is stored as one tensor [2, layers, 1, H, L, D] (keys and values of every layer), so a request
    costs one concatenation and one rotation whatever the number of blocks and layers: per-block or per-layer
    work would be hundreds of small GPU launches, more than the final block's prefill itself.
    """

    model: Any
    model_name: str
    store: dict[str, torch.Tensor] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, token_ids: list[int]) -> torch.Tensor:
        """The block's stacked cache, encoding it on first use."""
        key = block_key(self.model_name, token_ids)
        if key in self.store:
            self.hits += 1
        else:
            self.misses += 1
            self.store[key] = torch.stack(stack_layers([encode_block(self.model, token_ids)]))
        return self.store[key]

    def assemble(self, blocks: list[list[int]]) -> Any:
        """One DynamicCache holding every block (sinks included in the token lists) at its global position."""
        return layer_cache(*self.placed(blocks))

    def placed(self, blocks: list[list[int]], first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [layers, 1, H, L, D] of the blocks one after another from position `first`."""
        kv = torch.cat([self.get(block) for block in blocks], dim=-2)
        lengths = [len(b) for b in blocks]
        starts = [first]
        for n in lengths[:-1]:
            starts.append(starts[-1] + n)
        # every cached token moves by its block's start offset: one rotation for all blocks and layers
        offsets = torch.repeat_interleave(torch.tensor(starts), torch.tensor(lengths)).to(kv.device, non_blocking=True)
        cos, sin = rotation(offsets, self.model.model.rotary_emb)
        return rotate_keys(kv[0], cos, sin), kv[1]


def layer_cache(keys: torch.Tensor, values: torch.Tensor) -> Any:
    """A DynamicCache over stacked keys and values [layers, 1, H, L, D] (views, no copy)."""
    cache = _empty_cache()
    for layer in range(keys.shape[0]):
        cache.update(keys[layer], values[layer], layer)
    return cache


@torch.no_grad()
def prefill_final(model: Any, cache: Any, final_ids: list[int], logits_to_keep: int = 0) -> tuple[torch.Tensor, Any]:
    """Prefill the final block over an assembled cache; returns (logits [1, n, V] (the last logits_to_keep when
    > 0), the grown cache)."""
    start = cache.get_seq_length()
    ids = torch.tensor([final_ids], device=model.device)
    positions = torch.arange(start, start + len(final_ids), device=model.device)[None]
    out = model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=logits_to_keep)
    return out.logits, cache


@torch.no_grad()
def generate(block_cache: BlockCache, blocks: list[list[int]], final_ids: list[int], max_new_tokens: int = 32, eos_id: int | None = None) -> list[int]:
    """Greedy generation after reusing the blocks' caches and prefilling only the final block."""
    model = block_cache.model
    logits, cache = prefill_final(model, block_cache.assemble(blocks), final_ids)
    produced: list[int] = []
    for _ in range(max_new_tokens):
        token = int(logits[0, -1].argmax())
        if token == eos_id:
            break
        produced.append(token)
        logits, cache = prefill_final(model, cache, [token])
    return produced
