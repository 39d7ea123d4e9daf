"""Issue 14's experiment: distilled student, block fine-tuning and the full-attention control over seeds, scored
per segmentation with the probes and the training-free peers.

Every run trains from the same teacher on the same windows for the same steps and batch size:
- block-ft: block fine-tuning (Ma et al.): final-block LM loss, no sinks, every context block isolated;
- distilled: the recipe's defaults (sinks, block dropout 0.9, token weighting, hard weight 0.5);
- full: the fair upper bound, `--mode full`: the distilled run's loss, positions and weights, full attention.
Then, per seed and test set, eval-blocks twice: on the set's own cuts (the main table; the seed's control as
control) and with --segmentation (the segmentation axis). Peers (APE chosen on --dev, selective recomputation)
are scored with one seed (--peers-seed; they do not train). summary.md: mean +- sd over seeds. Finished runs and
evaluations are skipped on a rerun; --deadline stops starting runs that would not finish in time. Seeds can run
in parallel processes (one GPU each) on the same --out; the last one's summary.md covers every result there.

--precut DIR scores segmentations whose cuts were made beforehand (DIR/<test set>/<method>/instances.parquet,
written by --write-precut with the segmenter, at each document's authored mean section length like the other
methods): the segmenter's sentence encoder then need not travel to the GPU machine.

    python bench/blockattn_experiment.py --train T --dev D --test heldout=H,ood-test=X --seeds 0,1,2 --out runs/exp
    python bench/blockattn_experiment.py --test heldout=H,ood-test=X --write-precut runs/precut    # CPU, shipped segmenter
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_ablations import BLOCK_FT, named_paths  # noqa: E402

RUNS = {"block-ft": BLOCK_FT, "distilled": {}, "full": {"mode": "full"}}
METRICS = ("nll_final", "acc_final", "kl_teacher", "kl_control", "gap_recovered", "gap_vs_control", "probe_acc", "probe_logp")


def train(base, out: Path, seeds: list[int], deadline: float) -> None:
    """Every (seed, run) not finished yet, while the time left exceeds the last run's duration."""
    from semanticseg.distill.recipe import run

    last = 0.0
    for seed in seeds:
        for name, overrides in RUNS.items():
            folder = out / f"{name}-s{seed}"
            if (folder / "model" / "config.json").exists():
                continue
            if deadline and time.time() + 1.2 * last > deadline:
                print(f"deadline: {folder.name} not started", flush=True)
                return
            started = time.time()
            run(replace(base, out=str(folder), seed=seed, **overrides))
            last = time.time() - started
            rows = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
            tokens = sum(r["tokens_per_s"] for r in rows[2:]) / max(1, len(rows[2:]))
            print(f"{folder.name}: {last:.0f} s, {tokens:,.0f} tokens/s, loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}", flush=True)


def evaluate_all(args: argparse.Namespace, out: Path, seeds: list[int], deadline: float) -> None:
    """eval-blocks per seed and test set: own cuts (+ peers and probes) and the segmentation axis."""
    from semanticseg.distill.evaluate import BlockEvalConfig, evaluate

    dev = named_paths(args.dev) if "=" in args.dev else {name: args.dev for name in named_paths(args.test)}
    for seed in seeds:
        models = {name: out / f"{name}-s{seed}" / "model" for name in RUNS}
        if not all((m / "config.json").exists() for m in models.values()):
            print(f"seed {seed}: not every run finished, not scored", flush=True)
            continue
        students = {"distilled": str(models["distilled"]), "block-ft": str(models["block-ft"])}
        for set_name, path in named_paths(args.test).items():
            kinds = [("own", [], path), ("seg", [m for m in args.segmentations.split(",") if m], path)]
            if args.precut:
                kinds += [(f"precut-{d.name}", [], str(d)) for d in sorted((Path(args.precut) / set_name).iterdir())]
            for kind, segs, data in kinds:
                folder = out / "eval" / set_name / f"{kind}-s{seed}"
                if (folder / "results.json").exists():
                    continue
                if deadline and time.time() > deadline:
                    print(f"deadline: {folder} not scored", flush=True)
                    return
                first = seed == args.peers_seed
                cfg = BlockEvalConfig(teacher=args.teacher, data=data, out=str(folder), students=students, control=str(models["full"]), segmentations=segs,
                                 max_windows=args.max_windows, probe_blocks=[int(n) for n in args.probe_blocks.split(",")] if kind == "own" else [],
                                 probes_per_cell=args.probes_per_cell, peers=first,
                                 ape_dev=dev.get(set_name, "") if first and kind == "own" else "", segmenter=args.segmenter)
                if first and kind != "own":  # the APE settings chosen on dev for this set's own-cuts run
                    chosen = json.loads((out / "eval" / set_name / f"own-s{seed}" / "results.json").read_text())["ape_chosen_on_dev"]
                    cfg = replace(cfg, ape_prefix=chosen["ape_prefix"], ape_temperature=chosen["ape_temperature"], ape_scale=chosen["ape_scale"])
                started = time.time()
                evaluate(cfg)
                print(f"scored {folder} in {time.time() - started:.0f} s", flush=True)


def summarise(out: Path) -> str:
    """summary.md: per set, kind and segmentation, each model's metrics as mean +- sd over the seeds scored."""
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for results in sorted((out / "eval").glob("*/*/results.json")):
        set_name, kind = results.parent.parent.name, results.parent.name.rsplit("-s", 1)[0]
        for row in json.loads(results.read_text())["rows"]:
            seg = row["segmentation"]
            if kind.startswith("precut-"):  # cut beforehand: a method of the segmentation axis
                seg = kind.removeprefix("precut-")
            groups.setdefault((set_name, "seg" if kind.startswith("precut-") else kind, seg, row["name"]), []).append(row)
    lines = ["| set | cuts | segmentation | model | seeds | " + " | ".join(METRICS) + " |", "| --- | --- | --- | --- | ---: |" + " ---: |" * len(METRICS)]
    for (set_name, kind, seg, name), rows in groups.items():
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in rows if r[metric] is not None]
            scale = 100 if metric.startswith("gap") else 1
            if not values:
                cells.append("")
            elif len(values) == 1:
                cells.append(f"{scale * values[0]:.3f}")
            else:
                cells.append(f"{scale * statistics.mean(values):.3f} +- {scale * statistics.stdev(values):.3f}")
        lines.append(f"| {set_name} | {kind} | {seg} | {name} | {len(rows)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def write_precut(test: dict[str, str], out: Path, segmenter: str) -> None:
    """Each test set cut by the segmenter (the shipped one without --segmenter) at each document's authored mean
    section length, documents without sections left out, as eval-blocks --segmentation segmenter,authored cuts
    them: out/<set>/segmenter/instances.parquet."""
    from semanticseg.distill.data import authored_targets, method_cuts
    from semanticseg.io import read_records, write_records
    from semanticseg.schema import Instance
    from semanticseg.segmenter.model import Segmenter
    from semanticseg.tokens import count_tokens

    model = Segmenter.load(segmenter or None)
    for name, path in test.items():
        targets = authored_targets(path)
        files = sorted(Path(path).rglob("instances*.parquet")) if Path(path).is_dir() else [Path(path)]
        rows = []
        for inst in (r for f in files for r in read_records(f, Instance)):
            if inst.id in targets:
                cuts = method_cuts("segmenter", inst.id, inst.text, targets[inst.id], model)
                bounds = [0, *cuts, len(inst.text)]
                lengths = [count_tokens(inst.text[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
                rows.append(replace(inst, cuts=cuts, block_tokens=lengths, annotators=["segmenter"], annotator_cuts=[cuts]))
        write_records(out / name / "segmenter" / "instances.parquet", rows, Instance)
        print(f"{name}: {len(rows)} documents cut by the segmenter, mean block {sum(map(sum, (r.block_tokens for r in rows))) / max(1, sum(len(r.block_tokens) for r in rows)):.0f} tokens")


def main() -> None:
    """Train the runs of every seed, score them, write summary.md."""
    from semanticseg.distill.recipe import DistillConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="smollm2", help="teacher model (hub id, dir, smollm2)")
    parser.add_argument("--train", default="", help="training documents / release")
    parser.add_argument("--dev", default="", help="dev documents that choose APE's settings: one path, or name=path,... per test set")
    parser.add_argument("--test", required=True, help="name=path,... held-out test sets")
    parser.add_argument("--out", type=Path, default=Path("runs/blockattn-experiment"), help="one folder per run + eval/ + summary.md")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=180, help="optimizer steps per run")
    parser.add_argument("--segmentations", default="fixed,structure,segmenter,authored,random", help="the segmentation axis")
    parser.add_argument("--segmenter", default="", help="a trained segmenter's folder (default: the shipped one)")
    parser.add_argument("--precut", default="", help="folder of test sets cut beforehand (--write-precut), scored as more segmentations")
    parser.add_argument("--write-precut", type=Path, default=None, help="only cut the --test sets by the segmenter into this folder, then stop")
    parser.add_argument("--peers-seed", type=int, default=None, help="the seed whose evaluation also scores the peers (default: the first)")
    parser.add_argument("--max-windows", type=int, default=96, help="windows per test set and segmentation")
    parser.add_argument("--probe-blocks", default="16,32,64", help="probe sizes in context blocks")
    parser.add_argument("--probes-per-cell", type=int, default=3, help="probes per (kind, number of blocks, position): 30 per kind and size")
    parser.add_argument("--no-compile", action="store_true", help="train with eager decoders (no minute of compiling per kind of run)")
    parser.add_argument("--phase", default="all", choices=("train", "eval", "all"), help="what to run")
    parser.add_argument("--deadline", type=float, default=0, help="seconds from now after which nothing new starts (0: none)")
    args = parser.parse_args()
    if args.write_precut:
        write_precut(named_paths(args.test), args.write_precut, args.segmenter)
        return
    deadline = time.time() + args.deadline if args.deadline else 0.0
    seeds = [int(s) for s in args.seeds.split(",")]
    args.peers_seed = seeds[0] if args.peers_seed is None else args.peers_seed
    base = DistillConfig(teacher=args.teacher, data=args.train, steps=args.steps, save_every=10**9, compile=not args.no_compile)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "experiment.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "base": asdict(base)}, indent=2))
    if args.phase in ("train", "all"):
        train(base, args.out, seeds, deadline)
    if args.phase in ("eval", "all"):
        evaluate_all(args, args.out, seeds, deadline)
    if (args.out / "eval").exists():
        print(summarise(args.out))


if __name__ == "__main__":
    main()
