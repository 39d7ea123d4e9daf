"""FlexAttention vs dense-mask SDPA: block-attention training tokens/s and peak memory (GPU).

One training step = forward + backward of a SmolLM2-135M-shaped model (random weights, fp32 master weights,
bf16 autocast) over one sequence of --length tokens cut into blocks of --block tokens (context blocks
isolated, the final block open), with the chunked LM loss over every position. The same model, mask rule
and loss run with attn_implementation="flex_attention" (BlockMask) and "sdpa" (dense boolean mask).

    python bench/bench_flex.py --length 8192 --out bench_flex.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _smollm2_shape import smollm2_shaped  # noqa: E402

from semanticseg.blockattn.masks import attention_mask  # noqa: E402
from semanticseg.distill.losses import chunked_target_logprobs  # noqa: E402


def measure(implementation: str, length: int, block: int, steps: int, warmup: int) -> dict[str, float]:
    """Tokens/s and peak GPU memory of training steps with one attention implementation."""
    model = smollm2_shaped(implementation, torch.float32, "cuda").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, 49152, (1, length), device="cuda")
    block_ids = (torch.arange(length, device="cuda") // block)[None]
    n_blocks = int(block_ids.max()) + 1
    open_blocks = torch.zeros(1, n_blocks, dtype=torch.bool, device="cuda")
    open_blocks[0, -1] = True
    positions = torch.arange(length - 1, device="cuda")

    def step() -> None:
        mask = attention_mask(block_ids, open_blocks, implementation)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[0]
            loss = -chunked_target_logprobs(hidden[positions], model.lm_head.weight, ids[0, 1:]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    result = {"tokens_per_s": steps * length / elapsed, "step_ms": 1000 * elapsed / steps, "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    del model, optimizer
    torch.cuda.empty_cache()
    return result


def measure_attention(implementation: str, length: int, block: int, steps: int = 20) -> dict[str, float]:
    """The attention op alone (9 query / 3 KV heads, d=64, bf16, forward + backward) and its mask build time."""
    from torch.nn.attention.flex_attention import flex_attention
    from torch.nn.functional import scaled_dot_product_attention

    block_ids = (torch.arange(length, device="cuda") // block)[None]
    open_blocks = torch.zeros(1, int(block_ids.max()) + 1, dtype=torch.bool, device="cuda")
    open_blocks[0, -1] = True
    q = torch.randn(1, 9, length, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, 3, length, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    compiled = torch.compile(flex_attention)

    def build():
        return attention_mask(block_ids, open_blocks, implementation)

    def run(mask):
        if implementation == "flex_attention":
            out = compiled(q, k, v, block_mask=mask, enable_gqa=True)
        else:
            out = scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        out.sum().backward()

    mask = build()
    for _ in range(3):
        run(mask), build()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        build()
    torch.cuda.synchronize()
    build_ms = 1000 * (time.perf_counter() - started) / steps
    started = time.perf_counter()
    for _ in range(steps):
        run(mask)
    torch.cuda.synchronize()
    return {"attention_fwd_bwd_ms": 1000 * (time.perf_counter() - started) / steps, "mask_build_ms": build_ms}


@torch.no_grad()
def check_equal(length: int = 1024, block: int = 200) -> float:
    """Max |logit difference| between the FlexAttention and dense-SDPA paths (fp32, same random model)."""
    model = smollm2_shaped("sdpa", torch.float32, "cuda")
    ids = torch.randint(0, 49152, (1, length), device="cuda")
    block_ids = (torch.arange(length, device="cuda") // block)[None]
    open_blocks = torch.zeros(1, int(block_ids.max()) + 1, dtype=torch.bool, device="cuda")
    open_blocks[0, -1] = True
    dense = model(input_ids=ids, attention_mask=attention_mask(block_ids, open_blocks, "sdpa")).logits
    model.set_attn_implementation("flex_attention")
    flex = model(input_ids=ids, attention_mask=attention_mask(block_ids, open_blocks, "flex_attention")).logits
    return float((flex - dense).abs().max())


def main() -> None:
    """Measure both implementations in one process and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=8192, help="sequence length in tokens")
    parser.add_argument("--block", type=int, default=512, help="block length in tokens")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_flex needs a CUDA GPU (FlexAttention has no fast CPU kernel)")
    print(f"max |logits(FlexAttention) - logits(dense SDPA)| in fp32: {check_equal():.2e}", flush=True)
    results = {impl: measure(impl, args.length, args.block, args.steps, args.warmup) for impl in ("flex_attention", "sdpa")}
    for impl in ("flex_attention", "sdpa"):
        results[impl].update(measure_attention(impl, args.length, args.block))
    results["speedup"] = results["flex_attention"]["tokens_per_s"] / results["sdpa"]["tokens_per_s"]
    results["attention_speedup"] = results["sdpa"]["attention_fwd_bwd_ms"] / results["flex_attention"]["attention_fwd_bwd_ms"]
    results["setup"] = {"length": args.length, "block": args.block, "device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for impl in ("flex_attention", "sdpa"):
        r = results[impl]
        print(f"{impl:15s} {r['tokens_per_s']:10,.0f} tokens/s  {r['step_ms']:8.1f} ms/step  peak {r['peak_gib']:.2f} GiB  "
              f"attention op fwd+bwd {r['attention_fwd_bwd_ms']:.2f} ms/layer  mask build {r['mask_build_ms']:.2f} ms")
    print(f"FlexAttention / dense-mask SDPA: training tokens/s {results['speedup']:.2f}x, attention op {results['attention_speedup']:.2f}x at {args.length} tokens")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
