"""Block layout of a sequence (block sink tokens, block ids, positions) and RoPE re-rotation of cached keys.

Positions (the paper is silent; we follow Block-Attention): the block-attention forward pass uses the
ordinary contiguous positions 0..N-1, sinks included, and the final block continues right after the last
context block. A closed block only sees itself, and rotary attention only depends on position
differences, so its keys and values computed alone from position 0 equal those at its global position
once the keys are rotated by the block's start offset: a block's KV cache is position independent and
can be computed once and reused anywhere. Training and inference therefore use the same positions.

Block sink tokens: every context block starts with the same sink token (the model's BOS, else EOS), so an
isolated block keeps the attention sink a model expects at the start of its context. The first block's
sink is the sequence's ordinary BOS, so without extra sinks the sequence is exactly the teacher's input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class Layout:
    """One sequence laid out for block attention (lists of length N, plain ints)."""

    input_ids: list[int]
    block_ids: list[int]  # context blocks 0..k-1, final block k
    is_sink: list[bool]  # True at block sink tokens (the leading BOS included)
    block_starts: list[int]  # start offset of each block (final block last)

    @property
    def final_block(self) -> int:
        """Index of the final block."""
        return len(self.block_starts) - 1


def layout(blocks: list[list[int]], final: list[int], sink_id: int, block_sinks: bool = True) -> Layout:
    """Lay out context blocks + a final block: [sink] b0 [sink] b1 ... final (inner sinks if block_sinks)."""
    ids: list[int] = []
    block_ids: list[int] = []
    is_sink: list[bool] = []
    starts: list[int] = []
    for index, block in enumerate(blocks):
        starts.append(len(ids))
        if index == 0 or block_sinks:
            ids.append(sink_id)
            block_ids.append(index)
            is_sink.append(True)
        ids.extend(block)
        block_ids.extend([index] * len(block))
        is_sink.extend([False] * len(block))
    starts.append(len(ids))
    ids.extend(final)
    block_ids.extend([len(blocks)] * len(final))
    is_sink.extend([False] * len(final))
    return Layout(ids, block_ids, is_sink, starts)


def rotation(offsets: torch.Tensor, rotary: torch.nn.Module, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [1, 1, L, D] that move each cached key i by offsets[i] positions (computed once for all layers).

    Rotations compose (R(p) R(d) = R(p + d)) for every RoPE variant with fixed frequencies, so one extra
    rotation by a block's start offset moves the block. `rotary` is the model's rotary embedding module
    (model.model.rotary_emb), so the model's own (possibly scaled) frequencies are used.
    """
    cos, sin = rotary(torch.zeros(1, device=offsets.device, dtype=dtype), offsets[None])
    scale = float(getattr(rotary, "attention_scaling", 1.0))  # YaRN-style scaling is already in the keys
    return (cos / scale)[:, None].to(dtype), (sin / scale)[:, None].to(dtype)


def rotate_keys(keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply the extra rotation (from `rotation`) to RoPE-encoded keys [B, H, L, D]."""
    k = keys.to(cos.dtype)
    half = k.shape[-1] // 2
    rotated_half = torch.cat((-k[..., half:], k[..., :half]), dim=-1)
    return (k * cos + rotated_half * sin).to(keys.dtype)


def rotate_keys_(keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """`rotate_keys` in place and in the keys' own dtype, as the model applies RoPE itself: a 32k-token cache is
    ~400 MB of keys, and float32 temporaries of it cost more GPU time than the final block's whole prefill.
    Needs the usual RoPE layout (cos and sin repeat their first half in the second)."""
    half = keys.shape[-1] // 2
    cos, sin = cos[..., :half].to(keys.dtype), sin[..., :half].to(keys.dtype)
    first, second = keys[..., :half], keys[..., half:]
    new_first = first * cos - second * sin
    second.mul_(cos).addcmul_(first, sin)
    first.copy_(new_first)
