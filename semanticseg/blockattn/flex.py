"""Our FlexAttention attention function for Hugging Face models (attn_implementation="block_flex").

Why not transformers' own `flex_attention` integration: it repeats the keys and values to every query head when
the head count is not a power of two (SmolLM2: 9 query / 3 KV heads, so three copies per layer, forward and
backward), wraps every call in a score_mod and returns the log-sum-exp (its attention op: 1.01 ms per layer
fwd + bwd at 8k tokens on an H100, ours 0.77 ms; docs/distill_results.md), and under autocast it passes on
whatever dtypes arrive: with fp32 master weights the rotary step leaves queries and keys in fp32. This function
casts q, k, v to the autocast dtype, as autocast does for SDPA, and calls one compiled
`flex_attention(q, k, v, block_mask=..., enable_gqa=True)` directly with the BlockMask that the caller built
once per step and that every layer shares.

Anything that is not a BlockMask (no mask: the teacher's full attention, or cache-reuse prefill, whose 4D
mask transformers builds with its SDPA mask function registered under the same name) goes to transformers'
SDPA function, so causal full attention keeps the fused flash kernel.
"""

from __future__ import annotations

from typing import Any

import torch

IMPLEMENTATION = "block_flex"
_COMPILED: dict[str, Any] = {}


def flex_kernel(device_type: str) -> Any:
    """flex_attention compiled once per process on CUDA (the fused Triton kernel); eager elsewhere (CPU tests)."""
    from torch.nn.attention.flex_attention import flex_attention

    if device_type != "cuda":
        return flex_attention
    if "cuda" not in _COMPILED:
        _COMPILED["cuda"] = torch.compile(flex_attention)
    return _COMPILED["cuda"]


def block_flex_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: q [B, Hq, N, D], k/v [B, Hkv, M, D] -> ([B, N, Hq, D], None)."""
    from torch.nn.attention.flex_attention import BlockMask
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not isinstance(attention_mask, BlockMask):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if dropout:
        raise ValueError("block_flex attention has no attention dropout: set the config's attention_dropout to 0")
    device = query.device.type
    if torch.is_autocast_enabled(device):
        # autocast lowers SDPA's inputs but not flex_attention's: with fp32 master weights the rotary step leaves q and
        # k in fp32, and the kernel would run in fp32
        dtype = torch.get_autocast_dtype(device)
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    out = flex_kernel(device)(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register `block_flex` with transformers (attention function + SDPA mask builder); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, block_flex_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return IMPLEMENTATION
