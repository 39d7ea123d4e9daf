"""The block-distillation experiment: baseline, full recipe and one ablation per component, then eval-blocks.

Every run trains from the same teacher on the same windows for the same number of steps and batch size
(equal training tokens): block fine-tuning (Ma et al.; LM loss on the final block, no sinks, no teacher),
the full distillation recipe, and the recipe without block sinks / block dropout / token weighting. Then all
are scored on held-out windows. Runs in one process so FlexAttention kernels compile once.

    python bench/distill_ablations.py --train T --heldout H --out runs/ablations --steps 300
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

RUNS = {
    "block-ft": {"mode": "lm", "block_sinks": False, "block_dropout": 1.0, "token_weighting": False},
    "distilled": {},
    "distilled-no-sinks": {"block_sinks": False},
    "distilled-no-dropout": {"block_dropout": 1.0},
    "distilled-no-weighting": {"token_weighting": False},
}


def calibrated_steps(base, out: Path, budget: float, n_runs: int, per_run_overhead: float = 20.0, eval_seconds: float = 60.0) -> int:
    """Steps per run that fit the budget, from the step time of a short run of the full (costliest) recipe."""
    from semanticseg.distill.recipe import run

    started = time.perf_counter()
    run(replace(base, out=str(out), steps=12, warmup_steps=1))
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    step = sum(r["seconds"] for r in rows[4:]) / len(rows[4:])
    left = budget - (time.perf_counter() - started) - n_runs * per_run_overhead - eval_seconds
    return int(max(30, min(800, left / (n_runs * step))))


def main() -> None:
    """Train every run (skipping finished ones), evaluate, print the table."""
    from semanticseg.distill.evaluate import EvalConfig, evaluate
    from semanticseg.distill.recipe import DistillConfig, run

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="smollm2", help="teacher model (hub id, dir, smollm2)")
    parser.add_argument("--train", required=True, help="training documents / release")
    parser.add_argument("--heldout", required=True, help="held-out documents / release")
    parser.add_argument("--out", type=Path, required=True, help="one sub-folder per run + eval/")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per step")
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated subset of: " + ", ".join(RUNS))
    parser.add_argument("--time-budget", type=float, default=0, help="seconds for all runs + eval: a 12-step calibration run of the full recipe sets --steps")
    parser.add_argument("--max-windows", type=int, default=64, help="held-out windows to score")
    args = parser.parse_args()
    base = DistillConfig(teacher=args.teacher, data=args.train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, save_every=10**9)
    names = args.runs.split(",")
    if args.time_budget:
        base = replace(base, steps=calibrated_steps(base, args.out / "calibration", args.time_budget, len(names)))
        print(f"calibrated: {base.steps} steps per run", flush=True)
    students, timings = {}, {}
    for name in names:
        cfg = replace(base, out=str(args.out / name), **RUNS[name])
        started = time.perf_counter()
        students[name] = str(run(cfg)) if not (args.out / name / "model" / "config.json").exists() else str(args.out / name / "model")
        timings[name] = time.perf_counter() - started
        rows = [json.loads(line) for line in (args.out / name / "train_log.jsonl").read_text().splitlines()]
        tokens = sum(r["tokens_per_s"] for r in rows) / len(rows)
        print(f"{name}: {timings[name]:.0f} s, mean {tokens:,.0f} tokens/s, loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}", flush=True)
    started = time.perf_counter()
    evaluate(EvalConfig(teacher=args.teacher, data=args.heldout, out=str(args.out / "eval"), students=students, max_windows=args.max_windows))
    timings["eval"] = time.perf_counter() - started
    (args.out / "timings.json").write_text(json.dumps(timings, indent=2))
    print((args.out / "eval" / "results.md").read_text())


if __name__ == "__main__":
    main()
