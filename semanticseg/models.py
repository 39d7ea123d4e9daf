"""Loading causal LMs for block attention: a hub id, a local directory, or `smollm2` (the offline teacher)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

OFFLINE_TEACHER = "smollm2"


def smollm2_model_dir() -> Path:
    """The offline SmolLM2-135M-Instruct as a plain bf16 model directory (converted once from the GGUF)."""
    from semanticseg.servers.llm_server import ensure_model_dir

    return ensure_model_dir()


def resolve_model(name: str) -> str:
    """`smollm2` -> the converted offline directory; anything else (hub id or directory) unchanged."""
    return str(smollm2_model_dir()) if name == OFFLINE_TEACHER else name


def load_causal_lm(name: str, device: str = "cpu", dtype: str = "auto", attn_implementation: str = "sdpa") -> Any:
    """Load a Llama/Qwen2/Mistral-family causal LM for block attention (rotary positions required)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=torch_dtype, attn_implementation=attn_implementation)
    if not hasattr(model, "model") or not hasattr(model.model, "rotary_emb"):
        raise ValueError(f"{name}: block attention needs a decoder with rotary positions (Llama, Qwen2, Mistral families)")
    return model.to(device)


def load_tokenizer(name: str) -> Any:
    """The model's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name))


def last_hidden(model: Any, input_ids: Any, attention_mask: Any = None) -> Any:
    """The decoder's last hidden states [B, N, H] (no LM head: losses apply it in chunks).

    use_cache=False: otherwise transformers builds a KV cache of every layer on each training or scoring
    forward, which costs time and memory and makes compiled layers recompile per layer.
    """
    return model.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


def sink_token_id(tokenizer: Any) -> int:
    """The block sink token: the model's BOS, else its EOS (what a model sees first in pre-training)."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to use as block sink")
    return int(token)
