"""Time to first token: reused block KV caches + final-block prefill vs full prefill vs the training-free peers.

For each context length, the context is cut into blocks of --block tokens (each with its sink), the final
block has --final tokens. Paths, all to the logits of the first generated token:
- full: prefill the whole sequence (SDPA, causal);
- cached: our path: the blocks' caches are already in the BlockCache (a repeated request), so it costs the
  look-up, one concatenation straight into the bucket's preallocated buffer, one RoPE re-rotation and the final
  block's prefill (cache.CachedPrefill: cache.first_token_logits, one SDPA call per layer with a bottom-right
  causal mask, replayed from a CUDA graph captured once per (cached length, final length) bucket);
- cached-eager: the same without the CUDA graph (a fresh buffer per request, the prefill launched op by op);
- cached-hf: the same caches through transformers' forward with a DynamicCache (mask building, keys repeated
  per query head, the cache concatenated per layer: the overhead issue 14 measured);
- ape: the same cached blocks read with APE's temperature and scale (an additive mask, keys / T) after a
  one-token shared prefix;
- recompute: selective recomputation of --ratio of the context tokens over the same cached blocks (one
  full-attention layer over the context to choose them, then those tokens through every layer);
- cold: encode every block first, then as cached.
min / median / max of --repeats runs after a warm-up; random token ids (timing only). --profile prints where
the cached path's time goes at the longest length (torch.profiler).

    python bench/bench_ttft.py --lengths 2048 4096 8192               # CPU, SmolLM2-135M shape
    python bench/bench_ttft.py --device cuda --lengths 8192 16384 32768 --out ttft.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _smollm2_shape import smollm2_shaped  # noqa: E402

from semanticseg.blockattn.cache import BlockCache, CachedPrefill, encode_block, first_token_logits, prefill_final, stack_layers  # noqa: E402
from semanticseg.blockattn.peers import ape_prefill, recompute_prefill  # noqa: E402
from semanticseg.models import load_causal_lm  # noqa: E402

PATHS = ("full", "cached", "cached-eager", "cached-hf", "ape", "recompute", "cold")


def _timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def request(length: int, block: int, final: int) -> tuple[list[list[int]], list[int]]:
    """Random blocks (each headed by the sink, id 1) and a final block for one context length."""
    gen = torch.Generator().manual_seed(length)
    n_blocks = (length - final) // block
    blocks = [[1, *torch.randint(3, 49152, (block - 1,), generator=gen).tolist()] for _ in range(n_blocks)]
    return blocks, torch.randint(3, 49152, (final,), generator=gen).tolist()


@torch.no_grad()
def paths(model, blocks: list[list[int]], final_ids: list[int], device: str, ratio: float, temperature: float, scale: float) -> dict:
    """Each path as a function of no arguments (the BlockCache warmed first)."""
    full_ids = torch.tensor([[t for b in blocks for t in b] + final_ids], device=device)
    context_ids = full_ids[:, : -len(final_ids)]
    warm = BlockCache(model, "bench")
    warm.assemble(blocks)
    prefix = stack_layers([encode_block(model, [1])])
    ape_blocks = [b[1:] for b in blocks]  # the shared one-token prefix replaces each block's own sink
    warm.assemble(ape_blocks)
    graphed = CachedPrefill(warm)
    return {
        "full": lambda: model(input_ids=full_ids, logits_to_keep=1),
        "cached": lambda: graphed(blocks, final_ids),
        "cached-eager": lambda: first_token_logits(model, warm.buffer(blocks, len(final_ids)), context_ids.shape[1], final_ids),
        "cached-hf": lambda: prefill_final(model, warm.assemble(blocks), final_ids, logits_to_keep=1),
        "ape": lambda: ape_prefill(model, *warm.placed(ape_blocks, first=1), prefix, final_ids, temperature, scale, logits_to_keep=1),
        "recompute": lambda: recompute_prefill(model, *warm.placed(blocks), context_ids, final_ids, ratio, logits_to_keep=1),
        "cold": lambda: first_token_logits(model, BlockCache(model, "bench").buffer(blocks, len(final_ids)), context_ids.shape[1], final_ids),
    }


def measure(model, length: int, block: int, final: int, repeats: int, device: str, ratio: float, temperature: float, scale: float) -> dict:
    """min / median / max seconds to the first token's logits for every path."""
    blocks, final_ids = request(length, block, final)
    fns = paths(model, blocks, final_ids, device, ratio, temperature, scale)
    row: dict = {"length": len(blocks) * block + final, "errors": {}}
    for name, fn in list(fns.items()):  # warm-up (captures the CUDA graph); a path that fails is reported, the others run
        try:
            _timed(fn, device)
        except Exception as err:  # noqa: BLE001 - a benchmark row, not a program path
            row["errors"][name] = repr(err)
            del fns[name]
    if "cached" in fns and "cached-eager" in fns:  # the graph replays what the eager lean path computes
        row["cached_vs_eager_max_abs_diff"] = float((fns["cached"]().float().clone() - fns["cached-eager"]().float()).abs().max())
    if "cached" in fns and "cached-hf" in fns:  # and what transformers' forward computes over the same blocks (bf16 on GPU)
        row["cached_vs_hf_max_abs_diff"] = float((fns["cached"]().float().clone() - fns["cached-hf"]()[0][0, -1].float()).abs().max())
    for name, fn in fns.items():
        times = [_timed(fn, device) for _ in range(repeats)]
        row[name] = {"min": min(times), "median": statistics.median(times), "max": max(times)}
    for name in ("cached", "cached-eager", "cached-hf", "ape", "recompute"):
        if name in fns:
            row[f"full/{name}"] = {k: row["full"][k] / row[name][k] for k in ("min", "median", "max")}
    return row


def profile_cached(model, length: int, block: int, final: int, device: str) -> str:
    """torch.profiler table of the cached path (CPU and GPU time per op) at one length."""
    from torch.profiler import ProfilerActivity, profile

    blocks, final_ids = request(length, block, final)
    fn = paths(model, blocks, final_ids, device, 0.15, 1.0, 1.0)["cached"]
    _timed(fn, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            _timed(fn, device)
    return prof.key_averages().table(sort_by="cpu_time_total", row_limit=25)


def main() -> None:
    """Print a table of TTFT per context length and path, and the ratios full / path (min, median, max)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model dir / hub id / smollm2; default: SmolLM2-135M shape, random weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192], help="context lengths in tokens")
    parser.add_argument("--block", type=int, default=256, help="tokens per block (sink included)")
    parser.add_argument("--final", type=int, default=64, help="final-block tokens (the query)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path and length (min / median / max)")
    parser.add_argument("--ratio", type=float, default=0.15, help="share of context tokens selective recomputation recomputes")
    parser.add_argument("--temperature", type=float, default=0.8, help="APE attention temperature (timing does not depend on it)")
    parser.add_argument("--scale", type=float, default=0.9, help="APE scaling factor")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of the cached path at the longest length")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    if args.model:
        model = load_causal_lm(args.model, args.device, "bf16" if args.device == "cuda" else "fp32", "sdpa").eval()
    else:
        model = smollm2_shaped("sdpa", dtype, args.device).eval()
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows = []
    for n in args.lengths:
        rows.append(measure(model, n, args.block, args.final, args.repeats, args.device, args.ratio, args.temperature, args.scale))
        if args.out:
            args.out.write_text(json.dumps({"device": name, "repeats": args.repeats, "rows": rows}, indent=2))
    print(f"TTFT on {name}, {args.model or 'SmolLM2-135M shape'}, blocks of {args.block}, final block {args.final} tokens, "
          f"min / median / max of {args.repeats} runs (ms)")
    for r in rows:
        cells = "  ".join(f"{p} {1000 * r[p]['min']:.1f}/{1000 * r[p]['median']:.1f}/{1000 * r[p]['max']:.1f}" for p in PATHS if p in r)
        ratios = "  ".join(f"{p} {r[p]['min']:.1f}/{r[p]['median']:.1f}/{r[p]['max']:.1f}x" for p in r if p.startswith("full/"))
        print(f"{r['length']:6d}  {cells}\n        {ratios}\n        cached vs eager / vs transformers max |logit diff| {r.get('cached_vs_eager_max_abs_diff')} / {r.get('cached_vs_hf_max_abs_diff')}  errors {r['errors']}")
    if args.profile:
        print(profile_cached(model, max(args.lengths), args.block, args.final, args.device))


if __name__ == "__main__":
    main()
