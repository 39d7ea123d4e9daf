"""Block distillation on 1 and N GPUs at Qwen3-4B's size: student tokens/s, scaling efficiency, peak memory per GPU,
the longest context that fits.

Runs the distill recipe's own training step (recipe.assemble + recipe.train_step: FSDP2 for the student and the frozen
teacher, activation checkpointing, FlexAttention block masks, the default loss with token weighting) with a randomly
initialised model of Qwen3-4B-Instruct-2507's shape (bench/_qwen3_4b_shape.py) as teacher and student, over synthetic
windows of random token ids: context blocks of --block tokens (sink included) and a final block of --final tokens,
exactly --lengths tokens per sequence, --batch-size sequences per GPU. Each length: --warmup steps (compiling), then
--steps timed steps, min / median / max of student tokens/s over all GPUs (every non-padding token the student trains
on, per second of a whole optimizer step); peak memory per GPU (max_memory_allocated). Lengths run in increasing order
until one does not fit (out of memory: the launch ends there, and the table says so) or --deadline is near.

One launch per GPU count, the same code (under torchrun one GPU runs sharded too); each writes its JSON, and --report
merges them into the table (scaling efficiency = median tokens/s on N GPUs / median tokens/s on 1 at the same length):

    torchrun --nproc-per-node 1 bench/bench_distill_scale.py --lengths 8192 --out scale_1.json
    torchrun --nproc-per-node 2 bench/bench_distill_scale.py --lengths 8192 16384 32768 65536 --out scale_2.json
    python bench/bench_distill_scale.py --report scale_1.json scale_2.json --out scale.json

CPU rehearsal (gloo, the same architecture shrunk): add --shape tiny --device cpu --lengths 512 1024 --final 128.
bench/gpu_scale_session.sh runs the whole GPU session in one call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _qwen3_4b_shape import SHAPES, qwen3_shaped  # noqa: E402

from semanticseg.blockattn.masks import default_implementation  # noqa: E402
from semanticseg.distill import parallel, recipe  # noqa: E402
from semanticseg.distill.data import BlockedText, padded_length  # noqa: E402

GIB = 2**30


def synthetic_windows(length: int, block: int, final: int, vocab: int, count: int, seed: int = 0) -> list[BlockedText]:
    """count windows of random token ids, each exactly `length` tokens once every block has its sink."""
    gen = torch.Generator().manual_seed(seed + length)
    n_blocks = (length - final) // block
    if n_blocks < 2:
        raise SystemExit(f"--lengths {length}: too short for 2 context blocks of {block} tokens and a final block of {final}")

    def ids(n: int) -> list[int]:
        return torch.randint(3, vocab, (n,), generator=gen).tolist()

    return [BlockedText(f"synthetic-{i}", [ids(block - 1) for _ in range(n_blocks)], ids(final)) for i in range(count)]


def _write(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)


def measure(args: argparse.Namespace) -> None:
    """One launch (any number of processes): every length in turn; rank 0 writes the JSON after each."""
    started = time.perf_counter()
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world, device = parallel.init_distributed(device, timeout_s=args.collective_timeout)
    implementation = default_implementation(device)
    teacher_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    student = qwen3_shaped(args.shape, implementation, torch.float32, device)
    teacher = qwen3_shaped(args.shape, implementation, teacher_dtype, device).eval().requires_grad_(False)
    vocab = SHAPES[args.shape]["vocab_size"]
    cfg = recipe.DistillConfig(teacher=f"random {args.shape}", data="synthetic", out=tempfile.mkdtemp(), steps=10**6, warmup_steps=0,
                               batch_size=args.batch_size, gradient_checkpointing=True, compile=args.compile, device=device.type, lr=1e-5)
    count = args.batch_size * world
    windows = synthetic_windows(min(args.lengths), args.block, args.final, vocab, count)
    state = recipe.assemble(cfg, student, teacher, windows, sink_id=1, pad_id=0, device=device, implementation=implementation, rank=rank, world=world)
    result = {
        "shape": args.shape, "parameters": sum(p.numel() for p in student.parameters()), "world": world, "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "", "batch_per_gpu": args.batch_size, "block": args.block,
        "final": args.final, "compile": args.compile and device.type == "cuda", "torch": torch.__version__, "setup_s": time.perf_counter() - started,
        "runs": [],
    }
    out = Path(args.out)
    previous: tuple[int, float] | None = None  # (length, median step seconds) of the last length that ran
    for index, length in enumerate(sorted(args.lengths)):
        warmup = args.warmup if index == 0 else 1  # later lengths only recompile for the new shape
        if previous is not None:
            # steps grow a little faster than the length (attention); a new shape may recompile
            estimate = previous[1] * 1.3 * length / previous[0] * (warmup + args.steps) + (45 if result["compile"] else 5)
            if time.perf_counter() - started + estimate > args.deadline:
                result["runs"].append({"length": length, "status": "skipped: deadline"})
                break
        run = {"length": length, "status": "did not finish (out of memory or out of time: see the log)"}  # until it does
        result["runs"].append(run)
        if rank == 0:
            _write(out, result)
        state.windows = synthetic_windows(length, args.block, args.final, vocab, count)
        state.length = padded_length(state.windows)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rows = []
        try:
            for step in range(warmup + args.steps):
                rows.append(recipe.train_step(state))
                if rank == 0:
                    print(f"{world} x {length}: step {step + 1}/{warmup + args.steps} {rows[-1]['seconds']:.2f} s, "
                          f"{rows[-1]['tokens_per_s']:,.0f} tok/s, loss {rows[-1]['loss']:.3f}", flush=True)
        except torch.OutOfMemoryError:
            print(f"rank {rank}: out of memory at {length} tokens per sequence", flush=True)
            sys.stdout.flush()
            os._exit(3)  # the other ranks wait in a collective: torchrun ends them when this process exits
        peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else 0.0
        peaks: list[float] = [peak] * world
        if world > 1:
            torch.distributed.all_gather_object(peaks, peak)
        timed = [row["tokens_per_s"] for row in rows[warmup:]]
        step_s = statistics.median(row["seconds"] for row in rows[warmup:])
        run.update(status="ok", tokens_per_s={"min": min(timed), "median": statistics.median(timed), "max": max(timed)}, step_s_median=step_s,
                   warmup_s=sum(row["seconds"] for row in rows[:warmup]), peak_gib_per_gpu=peaks, loss=rows[-1]["loss"],
                   tokens_per_step=state.length * args.batch_size * world)
        previous = (length, step_s)
        if rank == 0:
            _write(out, result)
    recipe.cleanup(state)


def _fmt_peaks(peaks: list[float]) -> str:
    return " / ".join(f"{p:.1f}" for p in peaks) if any(peaks) else "-"


def report(paths: list[str], out: str) -> str:
    """The table of one or several launches' JSONs, with scaling efficiency against the 1-GPU launch; writes out."""
    missing = [p for p in paths if not Path(p).exists()]
    launches = sorted((json.loads(Path(p).read_text()) for p in paths if Path(p).exists()), key=lambda r: r["world"])
    if not launches:
        return f"no results: {', '.join(missing)} missing (the launches failed before their first length; see their logs)"
    lines = [f"{p}: missing (that launch failed before its first length; see its log)" for p in missing] + ["| GPUs | tokens / sequence | student tokens/s min / median / max | s / step (median) | peak GiB per GPU | status |",
             "| --- | --- | --- | --- | --- | --- |"]
    for launch in launches:
        for run in launch["runs"]:
            if run["status"] == "ok":
                t = run["tokens_per_s"]
                lines.append(f"| {launch['world']} | {run['length']} | {t['min']:,.0f} / {t['median']:,.0f} / {t['max']:,.0f} | "
                             f"{run['step_s_median']:.2f} | {_fmt_peaks(run['peak_gib_per_gpu'])} | ok |")
            else:
                lines.append(f"| {launch['world']} | {run['length']} | - | - | - | {run['status'].split(' (')[0]} |")
    summary = {"launches": launches, "scaling": [], "longest_ok": {}}
    base = next((launch for launch in launches if launch["world"] == 1), None)
    for launch in launches:
        ok = [run for run in launch["runs"] if run["status"] == "ok"]
        summary["longest_ok"][launch["world"]] = max((run["length"] for run in ok), default=None)
        if base is None or launch is base:
            continue
        base_runs = {run["length"]: run for run in base["runs"] if run["status"] == "ok"}
        for run in ok:
            if run["length"] in base_runs:
                one, many = base_runs[run["length"]]["tokens_per_s"], run["tokens_per_s"]
                ratio = many["median"] / one["median"]
                summary["scaling"].append({"world": launch["world"], "length": run["length"], "speedup_median": ratio,
                                           "speedup_range": [many["min"] / one["max"], many["max"] / one["min"]]})
                lines.append(f"\nscaling at {run['length']} tokens: {ratio:.2f}x on {launch['world']} GPUs vs 1 (median tokens/s; "
                             f"range {many['min'] / one['max']:.2f}-{many['max'] / one['min']:.2f}x; efficiency {ratio / launch['world']:.0%})")
    for world, length in summary["longest_ok"].items():
        lines.append(f"longest context that ran on {world} GPU(s), batch {launches[0]['batch_per_gpu']} per GPU: {length} tokens")
    first = launches[0]
    lines.append(f"\nmodel: {first['shape']} shape, {first['parameters'] / 1e6:,.0f}M parameters, random weights, teacher and student; "
                 f"blocks of {first['block']} tokens, final block {first['final']}; {first['gpu'] or first['device']}, torch {first['torch']}, "
                 f"decoder layers {'compiled' if first['compile'] else 'eager'}, "
                 f"{'FlexAttention compiled' if first['device'] == 'cuda' else 'SDPA with a dense mask (CPU)'}")
    table = "\n".join(lines)
    Path(out).write_text(json.dumps(summary, indent=1))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-4b")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32768, 65536], help="Tokens per sequence, tried in increasing order.")
    parser.add_argument("--batch-size", type=int, default=1, help="Sequences per GPU.")
    parser.add_argument("--block", type=int, default=128, help="Tokens per context block, its sink included.")
    parser.add_argument("--final", type=int, default=256, help="Tokens of the final block.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps at the first length (compiling); 1 at each later one.")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per length.")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="torch.compile the decoder layers on CUDA.")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu.")
    parser.add_argument("--deadline", type=float, default=1e9, help="Seconds from the start after which no longer length is begun (estimated from the last).")
    parser.add_argument("--collective-timeout", type=float, default=300.0, help="Seconds a rank waits in a collective before failing.")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="Merge these launches' JSONs into the table instead of measuring.")
    parser.add_argument("--out", required=True, help="JSON to write.")
    args = parser.parse_args()
    if args.report:
        print(report(args.report, args.out))
    else:
        measure(args)


if __name__ == "__main__":
    main()
