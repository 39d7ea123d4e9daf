"""How the default segmenter's recipe was chosen: variants trained on the dev benchmark's train splits and
compared on its validation splits only (the test split is scored once, by evaluate, after the choice).

    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose

Variants (all seeded, the rest of bench/build_default_segmenter.py's RECIPE unchanged):
- base: authored + concatenation train splits, annotator-rule ("voter") inputs off (the build's own run, reused);
- authored_only: without the concatenation instances;
- voters: base + the offline annotators' rules as inputs (voter_target_tokens 512).
Each is scored on the authored and the concatenation validation splits separately (boundary F1 - Pk, decoded at
the split's reference mean block length, as training's early stopping scores). The base run's cached unit
embeddings are reused (the encoder is frozen), so only the head trains again.
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
from semanticseg.segmenter.train import TrainConfig, cache_key, train, validation_score  # noqa: E402
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


def _score(model_dir: Path, items: list) -> float:
    net = Segmenter.load(model_dir).net
    reference = sum(int(p[-1]) for *_, p in items) / sum(int(y.sum()) + 1 for *_, y, _ in items)
    with torch.no_grad():
        return validation_score(net, items, reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("bench_data"))
    parser.add_argument("--base", type=Path, default=Path("runs/default_segmenter"), help="the build's training folder (model + cache)")
    parser.add_argument("--out", type=Path, default=Path("runs/choose"))
    args = parser.parse_args()
    authored, concat = load_splits(args.data / "authored"), load_splits(args.data / "concat")
    base_train = torch.load(args.base / "cache" / "train.pt", weights_only=True)["items"]
    base_val = torch.load(args.base / "cache" / "validation.pt", weights_only=True)["items"]
    n_train, n_val = len(authored["train"]), len(authored["validation"])
    val_sets = {"authored": base_val[:n_val], "concat": base_val[n_val:]}
    base_cfg = SegmenterConfig(voter_target_tokens=0)
    results = {"base": {name: _score(args.base, items) for name, items in val_sets.items()}}
    print("base", results["base"], flush=True)
    variants = {
        "authored_only": ([], 0, base_train[:n_train], base_val[:n_val]),
        "voters": ([str(args.data / "concat")], 512, None, None),
    }
    for name, (extra, voters, train_items, val_items) in variants.items():
        out = args.out / name
        config = TrainConfig(data=str(args.data / "authored"), extra_data=extra, out=str(out), **(RECIPE | {"voter_target_tokens": voters}))
        seg_cfg = replace(base_cfg, voter_target_tokens=voters)
        train_inst = authored["train"] + (concat["train"] if extra else [])
        val_inst = authored["validation"] + (concat["validation"] if extra else [])
        if voters:
            train_items = _with_voters(base_train, train_inst, voters)
            val_items = _with_voters(base_val, val_inst, voters)
        _seed_cache(out / "cache" / "train.pt", train_inst, seg_cfg, train_items)
        _seed_cache(out / "cache" / "validation.pt", val_inst, seg_cfg, val_items)
        train(config)
        scored = {"authored": val_items[:n_val], "concat": val_items[n_val:] if extra else None}
        if not extra:
            scored["concat"] = _with_voters(val_sets["concat"], concat["validation"], voters) if voters else val_sets["concat"]
        results[name] = {k: _score(out, items) for k, items in scored.items()}
        print(name, results[name], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choice.json").write_text(json.dumps(results, indent=2))
    print("| variant | authored validation F1 - Pk | concatenation validation F1 - Pk |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['authored']:.3f} | {r['concat']:.3f} |")


if __name__ == "__main__":
    main()
