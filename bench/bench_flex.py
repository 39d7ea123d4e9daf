"""FlexAttention vs dense-mask SDPA: block-attention training tokens/s and peak memory (GPU).

One training step = forward + backward of a SmolLM2-135M-shaped model (random weights, fp32 master weights,
bf16 autocast) over one sequence of --length tokens cut into blocks of --block tokens (context blocks
isolated, the final block open), with the chunked LM loss over every position. The same model, mask rule
and loss run with three attention paths: attn_implementation="block_flex" (ours: one compiled flex_attention
call per layer, GQA kept, the BlockMask built once per step), "flex_attention" (transformers' integration)
and "sdpa" (dense boolean mask). Per part: the attention op alone (fwd + bwd) and the mask build, so
step - layers x op is the time outside attention. --compile also times ours and SDPA compiled: `layers` compiles
each decoder layer, `model` the whole decoder in one graph (fused norms, rotary and MLP, no per-layer dispatch;
what `semanticseg distill` does on CUDA), the way FlexAttention models are usually trained.

    python bench/bench_flex.py --length 8192 --blocks 512,128 --compile layers,model --out bench_flex.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _smollm2_shape import smollm2_shaped  # noqa: E402

from semanticseg.blockattn.flex import flex_kernel, register  # noqa: E402
from semanticseg.blockattn.masks import attention_mask  # noqa: E402
from semanticseg.distill.losses import chunked_target_logprobs  # noqa: E402
from semanticseg.models import last_hidden  # noqa: E402

PATHS = ("block_flex", "flex_attention", "sdpa")
LAYERS = 30


def measure(implementation: str, length: int, block: int, steps: int, warmup: int, compile_mode: str = "") -> dict[str, float]:
    """Tokens/s and peak GPU memory of training steps with one attention implementation (compile_mode: "", layers, model)."""
    model = smollm2_shaped(implementation, torch.float32, "cuda").train()
    if compile_mode == "layers":
        for layer in model.model.layers:
            layer.compile()
    elif compile_mode == "model":
        model.model.compile()
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
            hidden = last_hidden(model, ids, mask)[0]
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
    model = optimizer = None  # frees the GPU memory before empty_cache (the step closure holds them too)
    torch.cuda.empty_cache()
    return result


def measure_attention(implementation: str, length: int, block: int, steps: int = 20) -> dict[str, float]:
    """The attention op alone (9 query / 3 KV heads, d=64, bf16, forward + backward) and its mask build time."""
    from torch.nn.attention.flex_attention import AuxRequest
    from torch.nn.functional import scaled_dot_product_attention

    block_ids = (torch.arange(length, device="cuda") // block)[None]
    open_blocks = torch.zeros(1, int(block_ids.max()) + 1, dtype=torch.bool, device="cuda")
    open_blocks[0, -1] = True
    q = torch.randn(1, 9, length, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, 3, length, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    compiled = flex_kernel("cuda")

    def build():
        return attention_mask(block_ids, open_blocks, implementation)

    def run(mask):
        if implementation == "block_flex":
            out = compiled(q, k, v, block_mask=mask, enable_gqa=True)
        elif implementation == "flex_attention":  # what transformers does for 9 query heads: repeat K/V, ask for the LSE
            out = compiled(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), block_mask=mask, return_aux=AuxRequest(lse=True))[0]
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
def check_equal(implementation: str, length: int = 1024, block: int = 200) -> float:
    """Max |logit difference| between a FlexAttention path and the dense-SDPA path (fp32, same random model)."""
    model = smollm2_shaped("sdpa", torch.float32, "cuda")
    ids = torch.randint(0, 49152, (1, length), device="cuda")
    block_ids = (torch.arange(length, device="cuda") // block)[None]
    open_blocks = torch.zeros(1, int(block_ids.max()) + 1, dtype=torch.bool, device="cuda")
    open_blocks[0, -1] = True
    dense = model(input_ids=ids, attention_mask=attention_mask(block_ids, open_blocks, "sdpa")).logits
    model.set_attn_implementation(implementation)
    flex = model(input_ids=ids, attention_mask=attention_mask(block_ids, open_blocks, implementation)).logits
    return float((flex - dense).abs().max())


def _print(results: dict, compiled: str = "") -> None:
    prefix = f"{compiled}_compiled_" if compiled else ""
    for impl in PATHS:
        r = results[impl]
        if f"{prefix}tokens_per_s" not in r:
            continue
        line = f"{impl:15s} {r[prefix + 'tokens_per_s']:10,.0f} tokens/s  {r[prefix + 'step_ms']:7.1f} ms/step  peak {r[prefix + 'peak_gib']:.2f} GiB"
        if not compiled:
            line += (f"  attention op {r['attention_fwd_bwd_ms']:.2f} ms/layer  outside attention {r['outside_attention_ms']:.1f} ms"
                     f"  mask build {r['mask_build_ms']:.2f} ms")
        print(line, flush=True)
    for impl in ("block_flex", "flex_attention"):
        if f"{impl}_{prefix}speedup" in results:
            op = "" if compiled else f", attention op {results[f'{impl}_attention_speedup']:.2f}x"
            print(f"{impl} / dense-mask SDPA{f' ({compiled} compiled)' if compiled else ''}: training tokens/s {results[f'{impl}_{prefix}speedup']:.2f}x{op}", flush=True)


def bench_block(args: argparse.Namespace, block: int, results: dict, save: Any) -> None:
    """Every path at one block size, into results: training steps, attention op, mask build, time outside attention."""
    results.update({impl: {} for impl in PATHS})
    print(f"--- {args.length} tokens, blocks of {block}")
    if not args.no_eager:
        results.update({impl: measure(impl, args.length, block, args.steps, args.warmup) for impl in PATHS})
        for impl in PATHS:
            results[impl].update(measure_attention(impl, args.length, block))
            results[impl]["outside_attention_ms"] = results[impl]["step_ms"] - LAYERS * results[impl]["attention_fwd_bwd_ms"]
        for impl in ("block_flex", "flex_attention"):
            results[f"{impl}_speedup"] = results[impl]["tokens_per_s"] / results["sdpa"]["tokens_per_s"]
            results[f"{impl}_attention_speedup"] = results["sdpa"]["attention_fwd_bwd_ms"] / results[impl]["attention_fwd_bwd_ms"]
        _print(results)
        save()
    for mode in args.compile.split(",") if args.compile else []:
        prefix = f"{mode}_compiled_"
        ratios = []
        for run in range(args.runs):  # alternate the paths; later runs reuse the compiled code
            for impl in ("sdpa", "block_flex"):
                try:
                    compiled = measure(impl, args.length, block, args.steps, args.warmup, compile_mode=mode)
                    results[impl].update({prefix + key: value for key, value in compiled.items()})
                    results[impl].setdefault(prefix + "runs", []).append(compiled)
                except Exception as error:  # report it, keep the other figures
                    results[impl][prefix + "error"] = f"{type(error).__name__}: {error}"[:300]
                    print(f"{impl} with {mode} compiled failed: {results[impl][prefix + 'error']}", flush=True)
                save()
            if prefix + "tokens_per_s" in results["block_flex"] and prefix + "tokens_per_s" in results["sdpa"]:
                ratios.append(results["block_flex"][prefix + "tokens_per_s"] / results["sdpa"][prefix + "tokens_per_s"])
                results[f"block_flex_{prefix}speedup"] = ratios[-1]
                print(f"run {run + 1}:", end=" ")
                _print(results, compiled=mode)
        if ratios:
            results[f"block_flex_{prefix}speedup_runs"] = {"min": min(ratios), "median": sorted(ratios)[len(ratios) // 2], "max": max(ratios), "all": ratios}
            print(f"block_flex / dense-mask SDPA ({mode} compiled), {len(ratios)} runs: min {min(ratios):.2f}x, median "
                  f"{sorted(ratios)[len(ratios) // 2]:.2f}x, max {max(ratios):.2f}x", flush=True)
            save()


def main() -> None:
    """Measure every path in one process, per block size, and print the ratios against dense-mask SDPA."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=8192, help="sequence length in tokens")
    parser.add_argument("--blocks", default="512", help="comma-separated block lengths in tokens (one run each)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    parser.add_argument("--compile", default="", help="also time ours and SDPA compiled: comma-separated from layers (each decoder layer), model (the whole decoder)")
    parser.add_argument("--runs", type=int, default=1, help="compiled measurements per path (min / median / max of the ratio)")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager paths (only the --compile ones)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_flex needs a CUDA GPU (FlexAttention has no fast CPU kernel)")
    register()
    results: dict = {"max_abs_logit_diff_fp32": {impl: check_equal(impl) for impl in ("block_flex", "flex_attention")}}
    print(f"max |logits(FlexAttention) - logits(dense SDPA)| in fp32: {results['max_abs_logit_diff_fp32']}", flush=True)
    results["setup"] = {"length": args.length, "blocks": args.blocks, "device": torch.cuda.get_device_name(), "torch": torch.__version__}

    def save() -> None:  # after every measurement, so a run cut short by a time limit keeps what it measured
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))

    for block in (int(b) for b in args.blocks.split(",")):
        results[f"block_{block}"] = {}
        bench_block(args, block, results[f"block_{block}"], save)
    save()


if __name__ == "__main__":
    main()
