"""Training-free peers of block distillation, on the same cached blocks: APE and selective recomputation.

Both start from the blocks' KV caches computed alone from position 0 (cache.encode_block) and moved to their
place by RoPE re-rotation, exactly as our cached path does; they differ only in how the final block reads them.

- APE (Yang et al., ICLR 2025, "adaptive parallel encoding"): every block is encoded after a shared prefix (its
  cache kept once), and the final block's attention to context tokens gets a temperature T (scores / T) and a
  scaling factor S (their weights x S before normalisation). Here T divides the context keys (a key only enters
  q.k) and log S is an additive mask on context columns, so the model runs unchanged. T = S = 1 with an empty
  prefix is plain block attention.
- Selective recomputation (CacheBlend, Yao et al., EuroSys 2025): layer 0 is run with full attention over the
  whole context, the tokens whose layer-1 values deviate most from their cached values are chosen (a share
  `ratio` of the context), and only those are recomputed through every layer, attending to the other tokens'
  reused caches; then the final block is prefilled. (CacheBlend refines the choice layer by layer; we choose once.)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from semanticseg.blockattn.cache import (
    BlockCache,
    block_offsets,
    encode_block,
    encode_blocks,
    final_mask,
    layer_cache,
    stack_layers,
)
from semanticseg.blockattn.positions import rotate_keys, rotation


@torch.no_grad()
def ape_prefill(model: Any, keys: torch.Tensor, values: torch.Tensor, prefix: tuple[torch.Tensor, torch.Tensor] | None, final: list[int],
                temperature: float = 1.0, scale: float = 1.0, logits_to_keep: int = 0) -> torch.Tensor:
    """APE's final-block logits [n, V] over placed context keys/values [layers, 1, H, L, D] (positions after the
    prefix's) and the prefix's own stacked cache (or None)."""
    keys = keys / temperature if temperature != 1.0 else keys
    n_prefix = 0 if prefix is None else prefix[0].shape[-2]
    if prefix is not None:
        keys, values = torch.cat([prefix[0], keys], dim=-2), torch.cat([prefix[1], values], dim=-2)
    bias = torch.zeros(keys.shape[-2], device=keys.device)
    bias[n_prefix:] = math.log(scale)
    length = keys.shape[-2]
    ids = torch.tensor([final], device=keys.device)
    positions = torch.arange(length, length + len(final), device=keys.device)[None]
    out = model(input_ids=ids, position_ids=positions, attention_mask=final_mask(bias, len(final), keys.dtype), past_key_values=layer_cache(keys, values),
                use_cache=True, logits_to_keep=logits_to_keep)
    return out.logits[0]


@torch.no_grad()
def ape_context(model: Any, blocks: list[list[int]], prefix: list[int]) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """APE's context: blocks (token ids, the first one holding the sequence's BOS when the prefix is empty) each
    encoded after `prefix` and placed one after another (keys/values [layers, 1, H, L, D]), and the prefix's own
    stacked cache (or None). Independent of temperature and scale, so a grid over them encodes once."""
    n_prefix = len(prefix)
    kv = torch.cat([kv[..., n_prefix:, :] for kv in encode_blocks(model, [prefix + block for block in blocks])], dim=-2)
    cos, sin = rotation(block_offsets(blocks, 0, kv.device), model.model.rotary_emb)  # each was encoded after the prefix: moves by its start
    return rotate_keys(kv[0], cos, sin), kv[1], stack_layers([encode_block(model, prefix)]) if prefix else None


@torch.no_grad()
def ape_final_logits(model: Any, blocks: list[list[int]], final: list[int], prefix: list[int], temperature: float = 1.0,
                     scale: float = 1.0) -> torch.Tensor:
    """Final-block logits [n, V] under APE (ape_context, then the final block read with temperature and scale)."""
    return ape_prefill(model, *ape_context(model, blocks, prefix), final, temperature, scale)


@torch.no_grad()
def recompute_prefill(model: Any, keys: torch.Tensor, values: torch.Tensor, context_ids: torch.Tensor, final: list[int], ratio: float = 0.15,
                      logits_to_keep: int = 0) -> torch.Tensor:
    """Final-block logits [n, V] after recomputing the `ratio` share of the context tokens (ids [1, L]) whose
    placed caches (keys/values [layers, 1, H, L, D]) deviate most at layer 1 from a full-attention layer 0."""
    lm = model.model
    device = keys.device
    length = context_ids.shape[1]
    positions = torch.arange(length, device=device)[None]
    chosen = torch.arange(0, device=device)
    n_chosen = math.ceil(ratio * length)
    if n_chosen and len(lm.layers) > 1:
        hidden = lm.embed_tokens(context_ids)
        hidden = lm.layers[0](hidden, attention_mask=None, position_ids=positions, position_embeddings=lm.rotary_emb(hidden, positions))
        if isinstance(hidden, tuple):
            hidden = hidden[0]
        attn = lm.layers[1].self_attn
        fresh = attn.v_proj(lm.layers[1].input_layernorm(hidden))[0].view(length, -1, attn.head_dim)  # [L, H, D]
        deviation = (fresh - values[1, 0].transpose(0, 1)).float().norm(dim=(-2, -1))
        chosen = deviation.topk(n_chosen).indices.sort().values
    keep = torch.ones(length, dtype=torch.bool, device=device)
    keep[chosen] = False
    kept = keep.nonzero()[:, 0]
    cache = layer_cache(keys[..., kept, :], values[..., kept, :])
    if len(chosen):
        # each recomputed token sees every earlier context token: the reused ones and the recomputed ones
        allowed = torch.cat([kept[None, :] < chosen[:, None], chosen[None, :] <= chosen[:, None]], dim=1)
        model(input_ids=context_ids[:, chosen], position_ids=chosen[None], attention_mask=allowed[None, None], past_key_values=cache, use_cache=True,
              logits_to_keep=1)
    mask = final_mask(torch.zeros(length, device=device), len(final), keys.dtype)
    out = model(input_ids=torch.tensor([final], device=device), position_ids=torch.arange(length, length + len(final), device=device)[None],
                attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=logits_to_keep)
    return out.logits[0]


@torch.no_grad()
def recompute_final_logits(model: Any, blocks: list[list[int]], final: list[int], ratio: float = 0.15) -> torch.Tensor:
    """Final-block logits [n, V] with selective recomputation over the blocks' own caches (CacheBlend-style)."""
    keys, values = BlockCache(model, "recompute").placed(blocks)
    ids = torch.tensor([[t for block in blocks for t in block]], device=keys.device)
    return recompute_prefill(model, keys, values, ids, final, ratio)
