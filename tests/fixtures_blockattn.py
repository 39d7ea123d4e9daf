"""Fixtures for block attention and distillation: a tiny random Llama with SmolLM2's real tokenizer, real texts."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama (hidden 64) saved with the SmolLM2 tokenizer: a model dir like any other."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from semanticseg.models import smollm2_model_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_model_dir())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def stdlib_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """documents.parquet with three real pydoc topics (Python's own reference text)."""
    from semanticseg.distill.stdlib_corpus import stdlib_documents
    from semanticseg.io import write_records
    from semanticseg.schema import Document

    docs = [d for d in stdlib_documents(min_tokens=2000) if d.source.startswith("pydoc:")][:3]
    path = tmp_path_factory.mktemp("docs") / "documents.parquet"
    write_records(path, docs, Document)
    return path
