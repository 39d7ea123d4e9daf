"""Whether the default segmenter should be a deep ensemble of heads: chosen on the dev benchmark's validation splits
only (the test splits are scored once, by evaluate, after the choice).

    python bench/choose_ensemble.py --base runs/layout_build1 --out runs/choose-ensemble --train --groups 0   # train
    python bench/choose_ensemble.py --base runs/layout_build1 --out runs/choose-ensemble                      # score

The rule, written and committed before any score of an ensemble was seen: the candidates are the shipped recipe
(build_default_segmenter.RECIPE as it was then: layout features, 8 epochs, patience 4) as one head at seeds 0, 1 and 2, and the same
recipe as an ensemble of 3 heads (TrainConfig.heads 3, the heads' probabilities averaged) at seed groups {0, 1, 2},
{3, 4, 5} and {6, 7, 8}; each of the two also decoded with the length prior's weight 0.3 instead of 1.0. All four
keep the plain decoding (every document gets round(n_tokens / target) blocks, so granularity holds by construction;
the prior's weight only moves where the cuts go). A candidate's score is its validation F1 - Pk over all validation
documents (authored and concatenation together, decoded at their reference mean block length, as training's early
stopping scores them), averaged over its three seeds or seed groups; the highest mean wins. Shown, not part of the
rule: the standard deviation over the three, the authored and concatenation parts (each at its own reference mean),
and per seed or group the authored validation categories where it beats every baseline (--baselines, each tuned on
the authored validation split to its reference mean block length) on both Pk and boundary F1. The winner ships (an
ensemble: RECIPE's heads 3 with seed group 0; prior 0.3: RECIPE's prior_weight) and is then scored once on test for
each of its three seeds or groups.

Every head trains on the build's cached unit embeddings (--base's cache/{train,validation}.pt, copied into each
group's folder after their cache key is checked against RECIPE, so nothing is embedded again). The one-head
candidates are the heads of group {0, 1, 2}: head k of an ensemble is the model a one-head run with seed + k trains
(checked here for seed 0 against the shipped head). The heads train with RECIPE's early stopping; the prior weight
is a decoding setting, applied when scoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_default_segmenter import RECIPE  # noqa: E402
from choose_default_segmenter import _baselines_by_category, _by_category, _categories_won, _reference_mean  # noqa: E402

from semanticseg.segmenter.data import load_splits  # noqa: E402
from semanticseg.segmenter.model import Segmenter  # noqa: E402
from semanticseg.segmenter.train import (  # noqa: E402
    TrainConfig,
    cache_key,
    segmenter_config,
    train,
    validation_rows,
    validation_score,
)

HEADS = 3
PRIORS = (1.0, 0.3)


def _checked_cache(base: Path, split: str, instances: list) -> Path:
    """base's cached split, if its key is the one RECIPE's inputs give (else training would embed again)."""
    config = segmenter_config(TrainConfig(data="", out="", **RECIPE))
    path = base / "cache" / f"{split}.pt"
    if torch.load(path, weights_only=True)["key"] != cache_key(instances, config):
        raise SystemExit(f"{path}: not the cache of RECIPE's inputs for this benchmark")
    return path


def _train_group(args: argparse.Namespace, seed: int, splits: dict[str, list]) -> None:
    out = args.out / f"group{seed}"
    for split, instances in splits.items():
        target = out / "cache" / f"{split}.pt"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(_checked_cache(args.base, split, instances), target)
    train(TrainConfig(data=str(args.data / "authored"), extra_data=[str(args.data / "concat")], out=str(out),
                      **(RECIPE | {"heads": HEADS, "seed": seed, "prior_weight": 1.0})))


def _row(net: torch.nn.Module, parts: dict[str, list], target: float, categories: list[str], prior: float) -> dict:
    scores = {name: validation_score(net, items, _reference_mean(items), prior_weight=prior) for name, items in parts.items()}
    rows = validation_rows(net, parts["authored"], target, prior_weight=prior)
    return scores | {"per_category": _by_category(rows, categories)}


def _mean_sd(runs: dict[str, dict], key: str) -> str:
    values = [r[key] for r in runs.values()]
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("bench_data"))
    parser.add_argument("--base", type=Path, default=Path("runs/layout_build1"), help="the build's training folder (its cache)")
    parser.add_argument("--out", type=Path, default=Path("runs/choose-ensemble"))
    parser.add_argument("--train", action="store_true", help="train the --groups' ensembles (one after another), no scores")
    parser.add_argument("--groups", default="0,3,6", help="the seed groups' first seeds")
    parser.add_argument("--baselines", default="fixed,paragraph,recursive,texttiling,embedding,structure,chonkie-recursive")
    args = parser.parse_args()
    authored, concat = load_splits(args.data / "authored"), load_splits(args.data / "concat")
    splits = {split: authored[split] + concat[split] for split in ("train", "validation")}  # as training orders them
    groups = [int(g) for g in args.groups.split(",")]
    if args.train:
        for seed in groups:
            _train_group(args, seed, splits)
        return
    torch.set_num_threads(1)
    items = torch.load(args.out / f"group{groups[0]}" / "cache" / "validation.pt", weights_only=True)["items"]
    n_val = len(authored["validation"])
    parts = {"all": items, "authored": items[:n_val], "concat": items[n_val:]}
    categories = [i.category for i in authored["validation"]]
    target = _reference_mean(parts["authored"])
    ensembles = {seed: Segmenter.load(args.out / f"group{seed}").net for seed in groups}
    shipped = Segmenter.load().net.state_dict()
    head0 = ensembles[groups[0]].heads[0].state_dict()
    print("seed 0's head is the shipped head:", all(torch.equal(head0[k], shipped[k]) for k in shipped), flush=True)
    members = {"one head": {f"seed {groups[0] + k}": ensembles[groups[0]].heads[k] for k in range(HEADS)},
               f"{HEADS}-head ensemble": {f"seeds {s}-{s + HEADS - 1}": net for s, net in ensembles.items()}}
    results = {}
    for kind, nets in members.items():
        for prior in PRIORS:
            name = f"{kind}, prior {prior}"
            results[name] = {label: _row(net, parts, target, categories, prior) for label, net in nets.items()}
            print(name, {label: round(r["all"], 4) for label, r in results[name].items()}, flush=True)
    cached = args.out / "baselines.json"
    if not cached.exists():
        cached.write_text(json.dumps(_baselines_by_category(args.baselines.split(","), authored["validation"]), indent=2))
    baselines = json.loads(cached.read_text())
    cats = sorted(set(categories))
    for runs in results.values():
        for r in runs.values():
            r["won"] = _categories_won(r["per_category"], baselines)
    means = {name: statistics.mean(r["all"] for r in runs.values()) for name, runs in results.items()}
    best = max(means, key=means.get)
    (args.out / "choice.json").write_text(json.dumps({"results": results, "means": means, "chosen": best, "baselines": baselines}, indent=2))
    print(f"\n| candidate | validation F1 - Pk, all (mean +- sd of 3) | each | authored | concatenation | authored validation "
          f"categories won against {len(baselines)} baselines (of {len(cats)}) |\n|---|---|---|---|---|---|")
    for name, runs in results.items():
        mark = "**" if name == best else ""
        alls = [r["all"] for r in runs.values()]
        print(f"| {mark}{name}{mark} | {mark}{statistics.mean(alls):.4f} +- {statistics.stdev(alls):.4f}{mark} | "
              f"{' / '.join(f'{a:.4f}' for a in alls)} | {_mean_sd(runs, 'authored')} | {_mean_sd(runs, 'concat')} | "
              f"{' / '.join(str(len(r['won'])) for r in runs.values())} |")
    print(f"\nchosen (highest mean validation F1 - Pk over all validation documents): {best}")
    for name, runs in results.items():
        for label, r in runs.items():
            print(f"{name}, {label}: {', '.join(r['won'])}")


if __name__ == "__main__":
    main()
