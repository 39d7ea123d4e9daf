"""Qwen3-4B-Instruct-2507's architecture with random weights (config values only, no download): speed and memory do
not depend on the weights' values. TINY is the same architecture shrunk, for rehearsing on CPU."""

from __future__ import annotations

from typing import Any

# Qwen/Qwen3-4B-Instruct-2507 config.json (Qwen3ForCausalLM, ~4.0B parameters, tied embeddings)
QWEN3_4B = dict(
    vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
    head_dim=128, max_position_embeddings=262144, rope_theta=5000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
    hidden_act="silu", bos_token_id=151643, eos_token_id=151645,
)
TINY = {**QWEN3_4B, "vocab_size": 2048, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "bos_token_id": 1, "eos_token_id": 2}
SHAPES = {"qwen3-4b": QWEN3_4B, "tiny": TINY}


def qwen3_shaped(shape: str, attn_implementation: str, dtype: Any, device: Any, seed: int = 0) -> Any:
    """A Qwen3ForCausalLM of the named shape, randomly initialised directly on device (no full-size CPU copy)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**SHAPES[shape])
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ForCausalLM._from_config(config, attn_implementation=attn_implementation, dtype=dtype)
    return model
