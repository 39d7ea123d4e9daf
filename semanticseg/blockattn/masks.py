"""Block ids per token -> the block-attention mask.

The rule (Block-Attention, Ma et al.; block dropout of the block distillation paper): token i may attend to
token j <= i when both lie in the same block, or when i's block is *open* (attends to every earlier token).
The final block is always open; in plain block attention every other block is closed (isolated), block
dropout opens a random subset. Padding gets a block of its own, so it never leaks into real tokens.

On CUDA the mask is a FlexAttention BlockMask (only the non-empty 128x128 tiles are computed), built once per
step and shared by every layer through our `block_flex` attention function (blockattn/flex.py); on CPU, where
FlexAttention has no fast kernel, the same rule becomes a dense boolean mask for SDPA. Both are handed to a
Hugging Face model as its `attention_mask`: transformers passes a 4D mask or a BlockMask through unchanged.
"""

from __future__ import annotations

from typing import Any

import torch


def mask_rule(block_ids: torch.Tensor, open_blocks: torch.Tensor, b: Any, q: Any, kv: Any) -> Any:
    """The one rule both mask kinds use: causal, and same block or an open query block."""
    q_block = block_ids[b, q]
    same = q_block == block_ids[b, kv]
    return (kv <= q) & (same | open_blocks[b, q_block])


def dense_mask(block_ids: torch.Tensor, open_blocks: torch.Tensor) -> torch.Tensor:
    """Boolean mask [B, 1, N, N] (True = may attend) for SDPA.

    block_ids: [B, N] long, block index of each token (0..n_blocks-1); open_blocks: [B, n_blocks] bool.
    """
    batch, n = block_ids.shape
    b = torch.arange(batch, device=block_ids.device)[:, None, None]
    q = torch.arange(n, device=block_ids.device)[None, :, None]
    kv = torch.arange(n, device=block_ids.device)[None, None, :]
    return mask_rule(block_ids, open_blocks, b, q, kv)[:, None]


def flex_mask(block_ids: torch.Tensor, open_blocks: torch.Tensor) -> Any:
    """FlexAttention BlockMask with the same rule, built on block_ids' device (CUDA for speed)."""
    from torch.nn.attention.flex_attention import create_block_mask

    batch, n = block_ids.shape
    if open_blocks.shape[1] < n:  # one shape per (batch, length), so the compiled kernels never recompile for it
        open_blocks = torch.nn.functional.pad(open_blocks, (0, n - open_blocks.shape[1]))

    def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return mask_rule(block_ids, open_blocks, b, q, kv)

    # compiled mask construction on CUDA: the eager path evaluates the rule on the whole N x N grid
    return create_block_mask(mask_mod, B=batch, H=None, Q_LEN=n, KV_LEN=n, device=block_ids.device, _compile=block_ids.is_cuda)


def attention_mask(block_ids: torch.Tensor, open_blocks: torch.Tensor, implementation: str) -> Any:
    """The mask object for a model loaded with attn_implementation `block_flex`, `flex_attention` or `sdpa`/`eager`."""
    if implementation in ("block_flex", "flex_attention"):
        return flex_mask(block_ids, open_blocks)
    return dense_mask(block_ids, open_blocks)


def default_implementation(device: torch.device | str) -> str:
    """Our FlexAttention function on CUDA (registered with transformers here), SDPA with a dense mask elsewhere."""
    if torch.device(device).type != "cuda":
        return "sdpa"
    from semanticseg.blockattn.flex import register

    return register()
