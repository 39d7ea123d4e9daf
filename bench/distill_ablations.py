"""The block-distillation experiment: baseline, recipe candidates chosen on dev sets, ablations, test tables.

Every run trains from the same teacher on the same windows for the same number of steps and batch size
(equal training tokens). In order:
1. block fine-tuning (Ma et al.; LM loss on the final block, no sinks, no teacher), the recipe without block
   dropout (every context block isolated) and the full recipe at each candidate block-dropout rate;
2. with --dev: every candidate is scored on the dev sets and the one with the best mean final-block gap
   recovered over them becomes the full recipe (the test sets are never looked at to choose);
3. the ablations of the chosen recipe (without block sinks, without token weighting, without the hard-target
   cross-entropy, i.e. pure distillation);
4. every model is scored on each test set (eval/<set>/results.md).
Runs in one process so FlexAttention kernels compile once; finished runs are skipped on a rerun.

    python bench/distill_ablations.py --train T --dev dev=D,ood-dev=O --test heldout=H,ood-test=X --out runs/abl
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

BLOCK_FT = {"mode": "lm", "block_sinks": False, "block_dropout": 1.0, "token_weighting": False}
ABLATIONS = {
    "distilled-no-sinks": {"block_sinks": False},
    "distilled-no-weighting": {"token_weighting": False},
    "distilled-no-hard": {"hard_weight": 0.0},
}


def calibrated_steps(base, out: Path, budget: float, n_runs: int, eval_seconds: float, per_run_overhead: float = 15.0) -> int:
    """Steps per run that fit the budget, from the step time of a short run of the full (costliest) recipe."""
    from semanticseg.distill.recipe import run

    started = time.perf_counter()
    run(replace(base, out=str(out), steps=12, warmup_steps=1))
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    step = sum(r["seconds"] for r in rows[4:]) / len(rows[4:])
    left = budget - (time.perf_counter() - started) - n_runs * per_run_overhead - eval_seconds
    return int(max(30, min(2000, left / (n_runs * step))))


def named_paths(spec: str) -> dict[str, str]:
    """"name=path,name=path" -> {name: path}."""
    return dict(item.split("=", 1) for item in spec.split(",") if item)


def train_all(base, out: Path, runs: dict[str, dict], students: dict[str, str], timings: dict[str, float]) -> None:
    """Train each run (or reuse its finished model) and print its throughput and loss."""
    from semanticseg.distill.recipe import run

    for name, overrides in runs.items():
        cfg = replace(base, out=str(out / name), **overrides)
        started = time.perf_counter()
        if (out / name / "model" / "config.json").exists():  # finished in an earlier call: keep its timing
            students[name] = str(out / name / "model")
        else:
            students[name] = str(run(cfg))
            timings[name] = time.perf_counter() - started
            (out / "timings.json").write_text(json.dumps({"seconds": timings}, indent=2))  # a call cut short keeps them
        rows = [json.loads(line) for line in (out / name / "train_log.jsonl").read_text().splitlines()]
        tokens = sum(r["tokens_per_s"] for r in rows[2:]) / max(1, len(rows[2:]))
        print(f"{name}: {timings.get(name, 0):.0f} s, mean {tokens:,.0f} tokens/s, loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}", flush=True)


def score(teacher: str, sets: dict[str, str], students: dict[str, str], out: Path, max_windows: int, probes: int) -> dict[str, dict[str, float]]:
    """eval-blocks on each named set; returns {set: {model: final-block gap recovered}}."""
    from semanticseg.distill.evaluate import BlockEvalConfig, evaluate

    gaps = {}
    for name, path in sets.items():
        rows = evaluate(BlockEvalConfig(teacher=teacher, data=path, out=str(out / name), students=students, max_windows=max_windows, probes_per_cell=max(1, probes // 8)))
        gaps[name] = {r.name: r.gap_recovered for r in rows}
        print(f"== {name}\n" + (out / name / "results.md").read_text(), flush=True)
    return gaps


def main() -> None:
    """Train, choose on dev, ablate, test; writes selection.json and timings.json beside the runs."""
    from semanticseg.distill.recipe import DistillConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="smollm2", help="teacher model (hub id, dir, smollm2)")
    parser.add_argument("--train", required=True, help="training documents / release")
    parser.add_argument("--dev", default="", help="name=path,... dev sets that choose the block-dropout rate (none: the default rate)")
    parser.add_argument("--test", required=True, help="name=path,... held-out test sets, scored once at the end")
    parser.add_argument("--out", type=Path, required=True, help="one sub-folder per run + eval/ and dev/")
    parser.add_argument("--dropouts", default="", help="comma-separated candidate block-dropout rates (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per step")
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    parser.add_argument("--time-budget", type=float, default=0, help="seconds for everything: a 12-step calibration run of the full recipe sets --steps")
    parser.add_argument("--eval-seconds", type=float, default=200, help="seconds set aside for evaluation when calibrating")
    parser.add_argument("--max-windows", type=int, default=96, help="windows per test set (evenly spaced; dev sets use half)")
    parser.add_argument("--max-steps", type=int, default=2000, help="cap on calibrated steps")
    args = parser.parse_args()
    base = DistillConfig(teacher=args.teacher, data=args.train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, save_every=10**9)
    rates = [float(r) for r in args.dropouts.split(",")] if args.dropouts else [base.block_dropout]
    candidates = {f"distilled-d{rate:g}": {"block_dropout": rate} for rate in rates}
    first = {"block-ft": BLOCK_FT, "distilled-no-dropout": {"block_dropout": 1.0}, **candidates}
    if args.time_budget:
        steps = calibrated_steps(replace(base, block_dropout=rates[0]), args.out / "calibration", args.time_budget, len(first) + len(ABLATIONS), args.eval_seconds)
        base = replace(base, steps=min(steps, args.max_steps))
        print(f"calibrated: {base.steps} steps per run", flush=True)
    students: dict[str, str] = {}
    previous = args.out / "timings.json"
    timings: dict[str, float] = json.loads(previous.read_text())["seconds"] if previous.exists() else {}
    train_all(base, args.out, first, students, timings)
    chosen = rates[0]
    if args.dev and len(rates) > 1:
        started = time.perf_counter()
        dev_gaps = score(args.teacher, named_paths(args.dev), {n: students[n] for n in candidates}, args.out / "dev", args.max_windows // 2, 16)
        timings["dev-eval"] = time.perf_counter() - started
        mean_gap = {n: sum(g[n] or 0.0 for g in dev_gaps.values()) / len(dev_gaps) for n in candidates}
        chosen = candidates[max(mean_gap, key=mean_gap.get)]["block_dropout"]
        (args.out / "selection.json").write_text(json.dumps({"dev_gap_recovered": dev_gaps, "mean": mean_gap, "chosen_block_dropout": chosen}, indent=2))
        print(f"chosen on dev: block dropout {chosen:g} (mean dev gap recovered {mean_gap})", flush=True)
    train_all(replace(base, block_dropout=chosen), args.out, ABLATIONS, students, timings)
    started = time.perf_counter()
    score(args.teacher, named_paths(args.test), students, args.out / "eval", args.max_windows, 32)
    timings["test-eval"] = time.perf_counter() - started
    (args.out / "timings.json").write_text(json.dumps({"steps_per_run": base.steps, "chosen_block_dropout": chosen, "seconds": timings}, indent=2))


if __name__ == "__main__":
    main()
