"""How the default segmenter's recipe is chosen: variants of the build compared on the dev benchmark's
validation splits only (the test splits are scored once, by evaluate, after the choice).

    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose
    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose --retrain   # + head variants

The rule, fixed before any score was seen: the variant with the highest validation F1 - Pk over all validation
documents (authored and concatenation together, as training's early stopping scores them) wins; the authored
and concatenation columns are shown so a gain on one bought with a loss on the other is visible.

Decoding variants (the base run's trained head, nothing retrained):
- base: every document gets round(n_tokens / target) blocks (decode's per-document calibration);
- bias: one bias per target fitted on validation (decode.fit_bias), so documents with many strong boundaries
  get more blocks, at the length prior's weight 1.0 and 0.3.
With --retrain, head variants (trained again on the base run's cached unit embeddings; the encoder is frozen):
- authored_only: without the concatenation instances;
- voters: the offline annotators' rules as inputs (voter_target_tokens 512).
Each score decodes the split at its reference mean block length, as evaluate tunes every method to.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_default_segmenter import RECIPE  # noqa: E402

from semanticseg.io import atomic_path  # noqa: E402
from semanticseg.segmenter.data import load_splits  # noqa: E402
from semanticseg.segmenter.model import Segmenter, SegmenterConfig  # noqa: E402
from semanticseg.segmenter.train import TrainConfig, bias_table, cache_key, train, validation_score  # noqa: E402
from semanticseg.segmenter.units import doc_units  # noqa: E402
from semanticseg.segmenter.voters import voter_features  # noqa: E402


def _seed_cache(path: Path, instances: list, config: SegmenterConfig, items: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"key": cache_key(instances, config), "items": items}, tmp)


def _with_voters(items: list, instances: list, target: int) -> list:
    out = []
    for (e, f, _, y, p), inst in zip(items, instances):
        units = doc_units(inst.text, inst.category)
        v = voter_features(e.numpy(), units.kinds, units.token_offsets, units.n_tokens, target)
        out.append((e, f, torch.from_numpy(v), y, p))
    return out


def _reference_mean(items: list) -> float:
    return sum(int(p[-1]) for *_, p in items) / sum(int(y.sum()) + 1 for *_, y, _ in items)


def _scores(net: torch.nn.Module, parts: dict[str, list], bias: dict[str, float] | None = None, prior_weight: float = 1.0) -> dict[str, float]:
    return {name: validation_score(net, items, _reference_mean(items), bias_by_target=bias, prior_weight=prior_weight)
            for name, items in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("bench_data"))
    parser.add_argument("--base", type=Path, default=Path("runs/default_segmenter"), help="the build's training folder (model + cache)")
    parser.add_argument("--model", type=Path, default=None, help="the head to decode (default: the one in --base)")
    parser.add_argument("--out", type=Path, default=Path("runs/choose"))
    parser.add_argument("--retrain", action="store_true", help="also train the head variants (minutes each)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    authored, concat = load_splits(args.data / "authored"), load_splits(args.data / "concat")
    base_train = torch.load(args.base / "cache" / "train.pt", weights_only=True)["items"]
    base_val = torch.load(args.base / "cache" / "validation.pt", weights_only=True)["items"]
    n_train, n_val = len(authored["train"]), len(authored["validation"])
    parts = {"all": base_val, "authored": base_val[:n_val], "concat": base_val[n_val:]}
    net = Segmenter.load(args.model or args.base).net
    results = {"base": _scores(net, parts)}
    print("base", results["base"], flush=True)
    for weight in (1.0, 0.3):
        table = bias_table(net, base_val, weight, targets=(256, 512, 1024, 2048))  # around the references' means
        results[f"bias, prior {weight}"] = _scores(net, parts, table, weight) | {"bias_by_target": table}
        print(f"bias, prior {weight}", results[f"bias, prior {weight}"], flush=True)
    if args.retrain:
        base_cfg = SegmenterConfig(voter_target_tokens=0)
        variants = {"authored_only": ([], 0), "voters": ([str(args.data / "concat")], 512)}
        for name, (extra, voters) in variants.items():
            out = args.out / name
            config = TrainConfig(data=str(args.data / "authored"), extra_data=extra, out=str(out), **(RECIPE | {"voter_target_tokens": voters}))
            train_inst = authored["train"] + (concat["train"] if extra else [])
            val_inst = authored["validation"] + (concat["validation"] if extra else [])
            train_items = base_train if extra else base_train[:n_train]
            val_items = base_val if extra else base_val[:n_val]
            if voters:
                train_items = _with_voters(train_items, train_inst, voters)
                val_items = _with_voters(val_items, val_inst, voters)
            _seed_cache(out / "cache" / "train.pt", train_inst, replace(base_cfg, voter_target_tokens=voters), train_items)
            _seed_cache(out / "cache" / "validation.pt", val_inst, replace(base_cfg, voter_target_tokens=voters), val_items)
            train(config)
            scored = _with_voters(base_val, authored["validation"] + concat["validation"], voters) if voters else base_val
            results[name] = _scores(Segmenter.load(out).net, {"all": scored, "authored": scored[:n_val], "concat": scored[n_val:]})
            print(name, results[name], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choice.json").write_text(json.dumps(results, indent=2))
    best = max(results, key=lambda name: results[name]["all"])
    print("| variant | validation F1 - Pk, all | authored | concatenation |\n|---|---|---|---|")
    for name, r in results.items():
        mark = "**" if name == best else ""
        print(f"| {mark}{name}{mark} | {r['all']:.3f} | {r['authored']:.3f} | {r['concat']:.3f} |")
    print(f"chosen (highest F1 - Pk over all validation documents): {best}")


if __name__ == "__main__":
    main()
