"""SmolLM2-135M's architecture with random weights: speed does not depend on the weights' values."""

from __future__ import annotations

from typing import Any


def smollm2_shaped(attn_implementation: str, dtype: Any, device: str) -> Any:
    """A LlamaForCausalLM of SmolLM2-135M's shape (30 layers, d=576, 9 heads, 3 KV heads, vocab 49152)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, attn_implementation=attn_implementation, dtype=dtype)
    return model.to(device)
