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

from semanticseg.blockattn.positions import rotate_keys, rotate_keys_, rotation

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


@torch.no_grad()
def encode_blocks(model: Any, blocks: list[list[int]], max_tokens: int = 16384) -> list[torch.Tensor]:
    """Each block run alone from position 0, many per forward: per block its stacked cache [2, layers, 1, H, len, D].

    Blocks are right-padded into one batch (up to max_tokens tokens per forward): under causal attention no
    token sees the padding after it, so each block's keys and values are those of `encode_block`, at one forward
    per batch instead of one per block (a window of 64 blocks was 64 forwards)."""
    out: list[torch.Tensor] = []
    start = 0
    while start < len(blocks):
        longest, stop = 0, start
        while stop < len(blocks) and (stop == start or max(longest, len(blocks[stop])) * (stop - start + 1) <= max_tokens):
            longest = max(longest, len(blocks[stop]))
            stop += 1
        batch = blocks[start:stop]
        ids = torch.zeros(len(batch), longest, dtype=torch.long)
        for row, block in enumerate(batch):
            ids[row, : len(block)] = torch.tensor(block)
        cache = _empty_cache()
        model(input_ids=ids.to(model.device), past_key_values=cache, use_cache=True, logits_to_keep=1)
        kv = torch.stack([torch.stack([layer.keys for layer in cache.layers]), torch.stack([layer.values for layer in cache.layers])])
        out.extend(kv[:, :, row : row + 1, :, : len(block)] for row, block in enumerate(batch))
        start = stop
    return out


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

    def fill(self, blocks: list[list[int]]) -> list[torch.Tensor]:
        """The blocks' stacked caches, encoding those not stored yet together in batched forwards (encode_blocks)."""
        keys = [block_key(self.model_name, block) for block in blocks]
        missing: dict[str, list[int]] = {}
        for key, block in zip(keys, blocks, strict=True):
            if key in self.store or key in missing:
                self.hits += 1
            else:
                self.misses += 1
                missing[key] = block
        if missing:
            self.store.update(zip(missing, encode_blocks(self.model, list(missing.values())), strict=True))
        return [self.store[key] for key in keys]

    def get(self, token_ids: list[int]) -> torch.Tensor:
        """The block's stacked cache, encoding it on first use."""
        return self.fill([token_ids])[0]

    def assemble(self, blocks: list[list[int]]) -> Any:
        """One DynamicCache holding every block (sinks included in the token lists) at its global position."""
        return layer_cache(*self.placed(blocks))

    def placed(self, blocks: list[list[int]], first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [layers, 1, H, L, D] of the blocks one after another from position `first`."""
        kv = torch.cat(self.fill(blocks), dim=-2)
        cos, sin = rotation(block_offsets(blocks, first, kv.device), self.model.model.rotary_emb)
        return rotate_keys(kv[0], cos, sin), kv[1]

    def buffer(self, blocks: list[list[int]], room: int) -> torch.Tensor:
        """Keys and values [2, layers, 1, H, L + room, D] of the blocks at their global positions, with `room`
        free slots after them that `first_token_logits` fills in place (no copy of the whole cache per token)."""
        parts = self.fill(blocks)
        kv = parts[0].new_empty(*parts[0].shape[:-2], sum(p.shape[-2] for p in parts) + room, parts[0].shape[-1])
        self._write(blocks, parts, kv)
        return kv

    def assemble_into(self, blocks: list[list[int]], kv: torch.Tensor) -> int:
        """Write the blocks' caches at their global positions into the front of a preallocated buffer kv
        [2, layers, 1, H, >= L, D] and return L: one concatenation straight into the buffer and the keys' RoPE
        re-rotation, no other copy of the cache (at 32k tokens each copy of a 135M model's cache is ~750 MB)."""
        return self._write(blocks, self.fill(blocks), kv)

    def _write(self, blocks: list[list[int]], parts: list[torch.Tensor], kv: torch.Tensor) -> int:
        length = sum(p.shape[-2] for p in parts)
        torch.cat(parts, dim=-2, out=kv[..., :length, :])
        cos, sin = rotation(block_offsets(blocks, 0, kv.device), self.model.model.rotary_emb)
        rotate_keys_(kv[0, ..., :length, :], cos, sin)
        return length


def block_offsets(blocks: list[list[int]], first: int, device: torch.device) -> torch.Tensor:
    """Every cached token's move: its block's start (blocks one after another from `first`)."""
    import numpy as np

    lengths = np.array([len(b) for b in blocks])
    starts = first + np.concatenate([[0], np.cumsum(lengths[:-1])])
    # numpy on the host: torch.repeat_interleave on CPU tensors took ~2 ms per call at 32k tokens
    return torch.from_numpy(np.repeat(starts, lengths)).to(device, non_blocking=True)


def layer_cache(keys: torch.Tensor, values: torch.Tensor) -> Any:
    """A DynamicCache over stacked keys and values [layers, 1, H, L, D] (views, no copy)."""
    cache = _empty_cache()
    for layer in range(keys.shape[0]):
        cache.update(keys[layer], values[layer], layer)
    return cache


@torch.no_grad()
def first_token_logits(model: Any, kv: torch.Tensor, length: int, final_ids: list[int] | torch.Tensor) -> torch.Tensor:
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
    ids = torch.as_tensor(final_ids, device=kv.device)[None]
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


class PrefillGraph:
    """`first_token_logits` for one bucket (cached length, final-block length) on static buffers: on CUDA captured
    once in a CUDA graph and replayed, so a request costs one launch instead of a thousand (a 30-layer prefill
    of a 64-token block is bound by kernel-launch host time, not by the GPU); elsewhere the same function on the
    same buffers, eagerly. Fill `kv` (e.g. BlockCache.assemble_into), then call with the final block's ids.
    The logits returned are a static tensor, overwritten by the next call."""

    def __init__(self, model: Any, length: int, n_final: int) -> None:
        attn = model.model.layers[0].self_attn
        heads = model.config.num_key_value_heads
        self.model, self.length, self.n_final = model, length, n_final
        self.kv = torch.zeros(2, len(model.model.layers), 1, heads, length + n_final, attn.head_dim, dtype=model.dtype, device=model.device)
        self.ids = torch.zeros(n_final, dtype=torch.long, device=model.device)
        self.graph: Any = None
        self.logits = self._forward()
        if self.kv.is_cuda:
            self._capture()

    def _forward(self) -> torch.Tensor:
        return first_token_logits(self.model, self.kv, self.length, self.ids)

    @torch.no_grad()
    def _capture(self) -> None:
        stream = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graphs asks
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._forward()

    def __call__(self, final_ids: list[int] | torch.Tensor) -> torch.Tensor:
        """Logits [V] of the first generated token after the final block (ids of length n_final)."""
        self.ids.copy_(torch.as_tensor(final_ids), non_blocking=True)
        if self.graph is None:
            self.logits = self._forward()
        else:
            self.graph.replay()
        return self.logits


@dataclass
class CachedPrefill:
    """The cached TTFT path: a BlockCache and one PrefillGraph per (cached length, final length) bucket."""

    block_cache: BlockCache
    graphs: dict[tuple[int, int], PrefillGraph] = field(default_factory=dict)

    def __call__(self, blocks: list[list[int]], final_ids: list[int]) -> torch.Tensor:
        """Logits [V] of the first generated token: the blocks' caches assembled into the bucket's buffer, then
        the final block's prefill replayed."""
        key = (sum(map(len, blocks)), len(final_ids))
        if key not in self.graphs:
            self.graphs[key] = PrefillGraph(self.block_cache.model, *key)
        graph = self.graphs[key]
        self.block_cache.assemble_into(blocks, graph.kv)
        return graph(final_ids)


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
