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

    def buffer(self, blocks: list[list[int]], room: int) -> torch.Tensor:
        """Keys and values [2, layers, 1, H, L + room, D] of the blocks at their global positions, with `room`
        free slots after them that `first_token_logits` fills in place (no copy of the whole cache per token)."""
        keys, values = self.placed(blocks)
        pad = keys.new_zeros(*keys.shape[:-2], room, keys.shape[-1])
        return torch.stack([torch.cat([keys, pad], dim=-2), torch.cat([values, pad], dim=-2)])


def layer_cache(keys: torch.Tensor, values: torch.Tensor) -> Any:
    """A DynamicCache over stacked keys and values [layers, 1, H, L, D] (views, no copy)."""
    cache = _empty_cache()
    for layer in range(keys.shape[0]):
        cache.update(keys[layer], values[layer], layer)
    return cache


@torch.no_grad()
def first_token_logits(model: Any, kv: torch.Tensor, length: int, final_ids: list[int]) -> torch.Tensor:
    """The final block's prefill over a cache buffer (BlockCache.buffer) with `length` cached tokens: the logits
    [V] of the first generated token, the final block's keys and values written into the buffer's free slots.

    The same computation as the model's forward with a cache (tests/test_blockattn.py checks it), written as a
    plain loop over the decoder's modules for Llama-family models: one SDPA call per layer with a bottom-right
    causal mask and grouped KV heads (the fused kernel, no boolean mask, no copy of the keys per query head),
    and no per-layer cache concatenation. Through transformers' generic path the same prefill spent most of its
    time in mask building, repeated keys and cache copies (docs/distill_results.md)."""
    from torch.nn.attention.bias import causal_lower_right
    from torch.nn.functional import scaled_dot_product_attention

    lm = model.model
    n = len(final_ids)
    ids = torch.tensor([final_ids], device=kv.device)
    positions = torch.arange(length, length + n, device=kv.device)[None]
    hidden = lm.embed_tokens(ids)
    cos, sin = lm.rotary_emb(hidden, positions)
    cos, sin = cos[:, None], sin[:, None]
    mask = causal_lower_right(n, length + n)
    for index, layer in enumerate(lm.layers):
        attn = layer.self_attn
        x = layer.input_layernorm(hidden)
        q = attn.q_proj(x).view(1, n, -1, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(1, n, -1, attn.head_dim).transpose(1, 2)
        if hasattr(attn, "q_norm"):  # Qwen3-style per-head norms before the rotation
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = rotate_keys(q, cos, sin), rotate_keys(k, cos, sin)  # the same rotation as the model's, for queries too
        kv[0, index, ..., length : length + n, :] = k
        kv[1, index, ..., length : length + n, :] = attn.v_proj(x).view(1, n, -1, attn.head_dim).transpose(1, 2)
        out = scaled_dot_product_attention(q, kv[0, index, ..., : length + n, :], kv[1, index, ..., : length + n, :], attn_mask=mask,
                                           scale=attn.scaling, enable_gqa=True)
        hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(1, n, -1))
        hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
    return model.lm_head(lm.norm(hidden[:, -1]))[0]


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
