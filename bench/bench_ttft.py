"""Time to first token: reused block KV caches + final-block prefill vs full-attention prefill.

For each context length, the context is cut into blocks of --block tokens (each with its sink), the final
block has --final tokens. "full" prefills the whole sequence; "cached" assembles the blocks' caches (already
in the BlockCache, as on a repeated request: RoPE re-rotation and concatenation are timed) and prefills the
final block; "cold" also encodes every block first. Median of --repeats runs; random token ids (timing only).

    python bench/bench_ttft.py --lengths 2048 4096 8192               # CPU, SmolLM2-135M shape
    python bench/bench_ttft.py --model smollm2 --device cuda --out ttft.json
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

from semanticseg.blockattn.cache import BlockCache, prefill_final  # noqa: E402
from semanticseg.models import load_causal_lm  # noqa: E402


def _timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


@torch.no_grad()
def measure(model, length: int, block: int, final: int, repeats: int, device: str) -> dict[str, float]:
    """Median seconds to the first token's logits for full, cached and cold prefill."""
    gen = torch.Generator().manual_seed(length)
    n_blocks = (length - final) // block
    blocks = [[1, *torch.randint(3, 49152, (block - 1,), generator=gen).tolist()] for _ in range(n_blocks)]
    final_ids = torch.randint(3, 49152, (final,), generator=gen).tolist()
    full_ids = torch.tensor([[t for b in blocks for t in b] + final_ids], device=device)
    warm = BlockCache(model, "bench")
    warm.assemble(blocks)

    def full() -> None:
        model(input_ids=full_ids, logits_to_keep=1)

    def cached() -> None:
        prefill_final(model, warm.assemble(blocks), final_ids)

    def cold() -> None:
        prefill_final(model, BlockCache(model, "bench").assemble(blocks), final_ids)

    full(), cached()  # warm-up
    times = {name: statistics.median(_timed(fn, device) for _ in range(repeats)) for name, fn in (("full", full), ("cached", cached), ("cold", cold))}
    return {"length": n_blocks * block + final, **times, "speedup": times["full"] / times["cached"]}


def main() -> None:
    """Print a table of TTFT per context length and the full/cached ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="model dir / hub id / smollm2; default: SmolLM2-135M shape, random weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192], help="context lengths in tokens")
    parser.add_argument("--block", type=int, default=256, help="tokens per block (sink included)")
    parser.add_argument("--final", type=int, default=64, help="final-block tokens (the query)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per setting (median)")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    if args.model:
        model = load_causal_lm(args.model, args.device, "bf16" if args.device == "cuda" else "fp32", "sdpa").eval()
    else:
        model = smollm2_shaped("sdpa", dtype, args.device).eval()
    rows = [measure(model, n, args.block, args.final, args.repeats, args.device) for n in args.lengths]
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"TTFT on {name}, {args.model or 'SmolLM2-135M shape'}, blocks of {args.block}, final block {args.final} tokens")
    print(f"{'context':>8} {'full (ms)':>10} {'cached (ms)':>12} {'cold (ms)':>10} {'full/cached':>12}")
    for r in rows:
        print(f"{r['length']:8d} {1000 * r['full']:10.1f} {1000 * r['cached']:12.1f} {1000 * r['cold']:10.1f} {r['speedup']:11.1f}x")
    if args.out:
        args.out.write_text(json.dumps({"device": name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
