"""Block attention: the mask rule, FlexAttention == dense SDPA, RoPE re-rotation, KV-cache reuse == masked forward."""

from __future__ import annotations

import warnings

import pytest
import torch

from semanticseg.blockattn import cache, flex, masks, positions

# fp32 on CPU: cached and recomputed paths differ only by summation order.
ATOL = 1e-4


def _tiny(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()


def test_dense_mask_rule():
    block_ids = torch.tensor([[0, 0, 1, 1, 2, 2]])
    open_blocks = torch.tensor([[False, False, True]])
    mask = masks.dense_mask(block_ids, open_blocks)[0, 0]
    assert mask[3].tolist() == [False, False, True, True, False, False]  # closed block: itself only, causal
    assert mask[5].tolist() == [True] * 6  # open final block: everything before it
    assert not mask[2, 3]  # causal inside a block


def test_flex_block_mask_equals_dense_sdpa():
    from torch.nn.attention.flex_attention import flex_attention
    from torch.nn.functional import scaled_dot_product_attention

    torch.manual_seed(0)
    n = 256  # two 128-token tiles, blocks crossing the tile edge
    block_ids = torch.tensor([[0] * 50 + [1] * 90 + [2] * 60 + [3] * 56])
    open_blocks = torch.tensor([[True, False, True, True]])
    q, k, v = (torch.randn(1, 2, n, 16) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention warns that it is unfused
        flex = flex_attention(q, k, v, block_mask=masks.flex_mask(block_ids, open_blocks))
    dense = scaled_dot_product_attention(q, k, v, attn_mask=masks.dense_mask(block_ids, open_blocks))
    assert torch.allclose(flex, dense, atol=1e-5)


@pytest.mark.slow
def test_block_flex_attention_function_equals_dense_sdpa(tiny_llama_dir):
    """Our registered attention function (eager FlexAttention on CPU, GQA kept) == dense-mask SDPA: logits of the
    block-masked model, full attention without a mask, and cache-reuse prefill (CPU FlexAttention has no backward;
    bench_flex checks the CUDA path's logits before timing its training steps)."""
    from transformers import AutoModelForCausalLM

    implementation = flex.register()
    models = {name: AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32, attn_implementation=name) for name in ("sdpa", implementation)}
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 256))
    block_ids = torch.tensor([[0] * 50 + [1] * 90 + [2] * 60 + [3] * 56, [0] * 100 + [1] * 100 + [2] * 56 + [3] * 0])
    open_blocks = torch.tensor([[True, False, True, True], [True, False, True, False]])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention warns that it is unfused
        logits = {name: model(input_ids=ids, attention_mask=masks.attention_mask(block_ids, open_blocks, name)).logits for name, model in models.items()}
        assert torch.allclose(logits[implementation], logits["sdpa"], atol=ATOL)
        blocked = logits["sdpa"][0, 60:140]  # block 1 is closed: different from what full attention gives
        full = {name: model(input_ids=ids).logits for name, model in models.items()}
        assert torch.allclose(full[implementation], full["sdpa"], atol=ATOL) and not torch.allclose(full["sdpa"][0, 60:140], blocked, atol=1e-3)
        blocks = [[1, *range(100, 130)], [1, *range(200, 222)]]
        prefill = {name: cache.prefill_final(model, cache.BlockCache(model, name).assemble(blocks), list(range(300, 310)))[0] for name, model in models.items()}
    assert torch.allclose(prefill[implementation], prefill["sdpa"], atol=ATOL)


def test_layout_sinks_and_positions():
    lay = positions.layout([[5, 6], [7]], [8, 9], sink_id=1)
    assert lay.input_ids == [1, 5, 6, 1, 7, 8, 9]
    assert lay.block_ids == [0, 0, 0, 1, 1, 2, 2]
    assert lay.block_starts == [0, 3, 5]
    plain = positions.layout([[5, 6], [7]], [8, 9], sink_id=1, block_sinks=False)
    assert plain.input_ids == [1, 5, 6, 7, 8, 9]


@pytest.mark.slow
def test_closed_blocks_match_blocks_run_alone(tiny_llama_dir):
    """Reference: each closed block run alone at its global positions gives the masked forward's logits."""
    model = _tiny(tiny_llama_dir)
    lay = positions.layout([list(range(100, 120)), list(range(200, 231)), list(range(300, 317))], list(range(400, 410)), sink_id=1)
    ids = torch.tensor([lay.input_ids])
    open_blocks = torch.tensor([[False, False, False, True]])
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=masks.dense_mask(torch.tensor([lay.block_ids]), open_blocks)).logits[0]
        for start, end in zip(lay.block_starts[:-1], lay.block_starts[1:], strict=True):
            alone = model(input_ids=ids[:, start:end], position_ids=torch.arange(start, end)[None]).logits[0]
            assert torch.allclose(masked[start:end], alone, atol=ATOL)


@pytest.mark.slow
def test_rotate_keys_moves_a_block(tiny_llama_dir):
    model = _tiny(tiny_llama_dir)
    ids = torch.tensor([list(range(500, 530))])
    with torch.no_grad():
        at_zero = model(input_ids=ids, use_cache=True).past_key_values.layers[1].keys
        at_77 = model(input_ids=ids, position_ids=torch.arange(77, 107)[None], use_cache=True).past_key_values.layers[1].keys
    cos, sin = positions.rotation(torch.full((30,), 77), model.model.rotary_emb)
    assert torch.allclose(positions.rotate_keys(at_zero, cos, sin), at_77, atol=ATOL)


@pytest.mark.slow
def test_cache_reuse_equals_block_masked_forward(tiny_llama_dir):
    """Cached blocks + final-block prefill == the block-masked forward pass (fp32, atol 1e-4), reuse hits."""
    model = _tiny(tiny_llama_dir)
    shared = list(range(1000, 1040))
    requests = [([list(range(100, 133)), shared], list(range(700, 712))), ([shared, list(range(2000, 2025)), list(range(3000, 3007))], list(range(800, 809)))]
    store = cache.BlockCache(model, "tiny")
    for blocks, final in requests:
        lay = positions.layout(blocks, final, sink_id=1)
        open_blocks = torch.zeros(1, len(blocks) + 1, dtype=torch.bool)
        open_blocks[0, -1] = True
        with torch.no_grad():
            masked = model(input_ids=torch.tensor([lay.input_ids]), attention_mask=masks.dense_mask(torch.tensor([lay.block_ids]), open_blocks)).logits
        with_sinks = [lay.input_ids[a:b] for a, b in zip(lay.block_starts[:-1], lay.block_starts[1:], strict=True)]
        logits, _ = cache.prefill_final(model, store.assemble(with_sinks), final)
        assert torch.allclose(logits[0], masked[0, lay.block_starts[-1] :], atol=ATOL)
    assert store.hits == 1 and store.misses == 4  # the shared block was encoded once, at two positions
    produced = cache.generate(store, with_sinks, final, max_new_tokens=3)
    assert len(produced) <= 3 and store.hits == 1 + len(with_sinks)


def _block_and_full_logits(model, blocks, final):
    """Final-block logits under plain block attention (no inner sinks) and under full attention."""
    lay = positions.layout(blocks, final, sink_id=1, block_sinks=False)
    open_blocks = torch.zeros(1, len(blocks) + 1, dtype=torch.bool)
    open_blocks[0, -1] = True
    ids = torch.tensor([lay.input_ids])
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=masks.dense_mask(torch.tensor([lay.block_ids]), open_blocks)).logits[0, lay.block_starts[-1] :]
        full = model(input_ids=ids).logits[0, lay.block_starts[-1] :]
    return [lay.input_ids[a:b] for a, b in zip(lay.block_starts[:-1], lay.block_starts[1:], strict=True)], masked, full


def test_ape_at_temperature_1_scale_1_empty_prefix_is_plain_block_attention(tiny_llama_dir):
    """APE's neutral settings give exactly the block-masked forward pass; other settings change the final block."""
    from semanticseg.blockattn import peers

    model = _tiny(tiny_llama_dir)
    blocks, masked, _ = _block_and_full_logits(model, [list(range(100, 130)), list(range(200, 221)), list(range(300, 317))], list(range(700, 710)))
    assert torch.allclose(peers.ape_final_logits(model, blocks, list(range(700, 710)), [], 1.0, 1.0), masked, atol=ATOL)
    sharpened = peers.ape_final_logits(model, blocks, list(range(700, 710)), [], 0.7, 0.9)
    assert (sharpened - masked).abs().max() > 10 * ATOL
    with_prefix = peers.ape_final_logits(model, [blocks[0][1:], *blocks[1:]], list(range(700, 710)), [1], 1.0, 1.0)
    assert with_prefix.shape == masked.shape and (with_prefix - masked).abs().max() > 10 * ATOL  # every block now sees the BOS


def test_selective_recompute_spans_block_attention_to_full_attention(tiny_llama_dir):
    """Recomputing no context token is plain block attention; recomputing all of them is full attention."""
    from semanticseg.blockattn import peers

    model = _tiny(tiny_llama_dir)
    final = list(range(700, 710))
    blocks, masked, full = _block_and_full_logits(model, [list(range(100, 130)), list(range(200, 221)), list(range(300, 317))], final)
    assert torch.allclose(peers.recompute_final_logits(model, blocks, final, 0.0), masked, atol=ATOL)
    assert torch.allclose(peers.recompute_final_logits(model, blocks, final, 1.0), full, atol=ATOL)
    partial = peers.recompute_final_logits(model, blocks, final, 0.15)
    assert (partial - full).abs().mean() < (masked - full).abs().mean()


def test_first_token_logits_equal_the_models_cached_prefill(tiny_llama_dir):
    """The lean TTFT path (cache buffer + one SDPA per layer) computes what the model's forward with a cache does."""
    model = _tiny(tiny_llama_dir)
    blocks = [[1, *range(100, 130)], [1, *range(200, 221)], [1, *range(300, 317)]]
    final = list(range(700, 712))
    store = cache.BlockCache(model, "tiny")
    expected, _ = cache.prefill_final(model, store.assemble(blocks), final)
    kv = store.buffer(blocks, room=len(final))
    length = sum(map(len, blocks))
    assert torch.allclose(cache.first_token_logits(model, kv, length, final), expected[0, -1], atol=ATOL)
    grown = store.assemble(blocks)
    cache.prefill_final(model, grown, final)
    assert torch.allclose(kv[0, 1, ..., : length + len(final), :], grown.layers[1].keys, atol=ATOL)  # the final block's keys landed in the buffer


def test_cached_prefill_buckets_equal_the_eager_lean_path(tiny_llama_dir):
    """The CUDA-graph runner's plumbing (static buffers per (cached length, final length) bucket, the cache
    assembled in place) gives the eager lean path's logits, also when a bucket is reused for other blocks."""
    model = _tiny(tiny_llama_dir)
    store = cache.BlockCache(model, "tiny")
    runner = cache.CachedPrefill(store)
    requests = [([[1, *range(100, 130)], [1, *range(200, 221)]], list(range(700, 712))),
                ([[1, *range(300, 320)], [1, *range(400, 431)]], list(range(800, 812))),  # same bucket (53, 12), other blocks
                ([[1, *range(100, 130)]], list(range(900, 905)))]
    for blocks, final in requests:
        expected, _ = cache.prefill_final(model, store.assemble(blocks), final)
        assert torch.allclose(runner(blocks, final), expected[0, -1], atol=ATOL)
        kv = store.buffer(blocks, room=len(final))
        assert torch.allclose(cache.first_token_logits(model, kv, sum(map(len, blocks)), torch.tensor(final)), expected[0, -1], atol=ATOL)
    assert sorted(runner.graphs) == [(31, 5), (53, 12)]
