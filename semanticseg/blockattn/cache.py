"""KV-cache reuse: encode each block once, assemble the caches, prefill only the final block.

A block's cache is computed alone from position 0 (its sink first) and stored under the content hash of
the block's token ids and the model's name, so the same block is never encoded twice for the same model,
whatever request or position it appears in. Assembly rotates each block's keys to the block's global
start (positions.rotate_keys) and concatenates them; the final block is then prefilled over the assembled
cache with contiguous positions, exactly what the block-attention forward pass computes for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from semanticseg.blockattn.positions import rotate_keys, rotation

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [1, H_kv, L, D]


def block_key(model_name: str, token_ids: list[int]) -> str:
    """Content hash of one block for one model: the cache key."""
    digest = hashlib.sha256(model_name.encode())
    digest.update(torch.tensor(token_ids, dtype=torch.int64).numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def encode_block(model: Any, token_ids: list[int]) -> KV:
    """Run one block alone from position 0 and return its per-layer keys and values."""
    ids = torch.tensor([token_ids], device=model.device)
    out = model(input_ids=ids, use_cache=True)
    return [(layer.keys, layer.values) for layer in out.past_key_values.layers]


@dataclass
class BlockCache:
    """Block KV caches of one model, keyed by content hash (an in-memory store; hits and misses counted)."""

    model: Any
    model_name: str
    store: dict[str, KV] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get(self, token_ids: list[int]) -> KV:
        """The block's cache, encoding it on first use."""
        key = block_key(self.model_name, token_ids)
        if key in self.store:
            self.hits += 1
        else:
            self.misses += 1
            self.store[key] = encode_block(self.model, token_ids)
        return self.store[key]

    def assemble(self, blocks: list[list[int]]) -> Any:
        """One DynamicCache holding every block (sinks included in the token lists) at its global position."""
        from transformers import DynamicCache

        parts = [self.get(block) for block in blocks]
        # every cached token moves by its block's start offset: one rotation for all blocks and layers
        starts = torch.tensor([sum(len(b) for b in blocks[:i]) for i in range(len(blocks))], device=self.model.device)
        offsets = torch.repeat_interleave(starts, torch.tensor([len(b) for b in blocks], device=starts.device))
        cos, sin = rotation(offsets, self.model.model.rotary_emb)
        cache = DynamicCache()
        for layer in range(len(parts[0])):
            keys = torch.cat([p[layer][0] for p in parts], dim=-2)
            values = torch.cat([p[layer][1] for p in parts], dim=-2)
            cache.update(rotate_keys(keys, cos, sin), values, layer)
        return cache


@torch.no_grad()
def prefill_final(model: Any, cache: Any, final_ids: list[int]) -> tuple[torch.Tensor, Any]:
    """Prefill the final block over an assembled cache; returns (logits [1, n, V], the grown cache)."""
    start = cache.get_seq_length()
    ids = torch.tensor([final_ids], device=model.device)
    positions = torch.arange(start, start + len(final_ids), device=model.device)[None]
    out = model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True)
    return out.logits, out.past_key_values


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
