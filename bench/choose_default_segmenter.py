"""How the default segmenter's recipe is chosen: variants of the build compared on the dev benchmark's
validation splits only (the test splits are scored once, by evaluate, after the choice).

    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose
    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose --retrain   # + head variants
    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose --retrain --variants voters,voters_1024
    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose --bands 0.1,0.2,0.3,0.5
    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose --rounded --priors 0.3
    python bench/choose_default_segmenter.py --base runs/base_validation --model semanticseg/segmenter/default \
        --embedding-cache runs/embeddings.sqlite --out runs/choose-bandfit --fit-in-band --by-category --bands 0.05,0.1 --priors 0.3
    python bench/choose_default_segmenter.py --base runs/default_segmenter --out runs/choose-layout --retrain --variants layout \
        --priors "" --baselines fixed,paragraph,recursive,texttiling,embedding,structure

The rule, fixed before any score was seen: the variant with the highest validation F1 - Pk over all validation
documents (authored and concatenation together, as training's early stopping scores them) wins; the authored
and concatenation columns are shown so a gain on one bought with a loss on the other is visible. With --bands
(written before any banded score was seen) the rule has a condition: among the variants whose mean block length
over all validation documents is within 10% of the target at 256, 512, 1024 and 2048, the highest validation
F1 - Pk wins (the granularity columns show it for every variant). A fitted bias puts the mean of the documents
it was fitted on on target by construction, so for the condition each of two halves of the validation documents
(alternate documents) is decoded with the biases fitted on the other half: the drift a fitted bias shows on
documents it has not seen, as on test. With --rounded (written before any score of it was seen) the candidates
are the plain decoding and the length-neutral bias variants only (the biases fitted to total tokens / target, banded
or not, were scored on test already and failed granularity there, so they cannot be chosen again); among those whose
out-of-fold mean block length is within 5% of the target at 256, 512, 1024 and 2048 (half the issue's 10%: the earlier
bias drifted about 10% further on test than out of fold), the highest validation F1 - Pk wins; a bias variant that
wins is then scored once on test. With --fit-in-band --by-category (written before any score of a bias fitted under
its band or of the by-category check was seen) the candidates are the plain decoding and the variants whose bias is
fitted under their band (--bands, at each of --priors; the biases fitted without a band were scored on test already);
the condition is the by-category out-of-fold mean block length over all validation documents within 5% of the target
at 256, 512, 1024 and 2048; among those passing, the highest validation F1 - Pk wins; a bias variant that wins is then
scored once on test. By category: each category's validation documents (authored and concatenation) are decoded with
the biases fitted on the other categories' documents, so the folds differ in their mix of categories as the test split
differs from validation (alternate documents keep the mix, and the earlier bias drifted on test with the mix).
With --variants layout and no --priors (written before any score of the layout head was seen) the candidates are the
shipped recipe (the base run: build_default_segmenter.RECIPE, 8 epochs, seed 0) and the same recipe with the layout
features (SegmenterConfig.feature_set "layout": each unit's first line read as a heading, speaker, list item, its
indentation and length; units.layout_features), trained on the same cached embeddings with the same epochs and seed;
both decode every document to round(n_tokens / target) blocks, so both keep granularity by construction (no length
condition); the highest validation F1 - Pk over all validation documents wins. The per-category table against the
baselines is shown as information, not part of the rule; the winner, if it is the layout head, is rebuilt with the one
build command and scored once on the fresh_test split (bench/authored_benchmark.py), the test split being spent.
A second table gives each variant's Pk / boundary F1 per category of the authored validation split next to the baselines'
(--baselines, tuned on validation as evaluate tunes them) and the categories where it beats them all on both:
shown, not part of the rule (one to sixteen documents per category).

Decoding variants (of the base run's trained head and of each head variant below):
- (plain): every document gets round(n_tokens / target) blocks (decode's per-document calibration);
- + bias: one bias per target fitted on validation (decode.fit_bias: the bias whose mean block length over the
  split is the target, so it fits granularity, not the score), so documents with many strong boundaries get
  more blocks, at the length prior's weight 1.0 and 0.3; fitted only at the targets enough validation documents
  are long enough for (train.MIN_FIT_DOCUMENTS);
- + length-neutral bias (--rounded): fitted so that the split's total block count is the sum of
  round(n_tokens / target), the count the plain decoding gives it (decode.fit_bias's `rounded`);
- + bias, band w (--bands): the same fitted bias, but each document's block count kept within a fraction w of
  round(n_tokens / target) (SegmenterConfig.bias_band), and round(n_tokens / target) blocks beyond the fitted targets;
- + bias fitted under band w (--fit-in-band): the bias fitted with the band (decode.fit_bias's `band`), so the
  split's mean block length is on target as the banded decoding gives it.
With --retrain, head variants (trained again on the base run's cached unit embeddings; the encoder is frozen):
- authored_only: without the concatenation instances;
- voters: the offline annotators' rules as inputs (voter_target_tokens 512);
- voters_1024: the same rules aimed at 1024 tokens (the structure rule then cuts only its strongest candidates);
- epochs_8: the recipe with up to 8 epochs (the recipe's 2 were a time budget; early stopping keeps the best);
- layout: the recipe with the layout features of each unit's first line (feature_set "layout").
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
from semanticseg.segmenter.baselines import get_methods  # noqa: E402
from semanticseg.segmenter.data import load_splits  # noqa: E402
from semanticseg.segmenter.evaluate import beats, mean_block_tokens, score, tune  # noqa: E402
from semanticseg.segmenter.model import Segmenter, SegmenterConfig  # noqa: E402
from semanticseg.segmenter.train import (  # noqa: E402
    MIN_FIT_DOCUMENTS,
    TrainConfig,
    bias_table,
    cache_key,
    prepare,
    train,
    validation_mean_block_tokens,
    validation_rows,
    validation_score,
)
from semanticseg.segmenter.units import EmbeddingStore, doc_units, unit_features  # noqa: E402
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


def _with_layout(items: list, instances: list) -> list:
    """The cached items with the layout feature set's unit features (the embeddings and labels as they are)."""
    return [(e, torch.from_numpy(unit_features(doc_units(inst.text, inst.category), "layout")), v, y, p)
            for (e, _, v, y, p), inst in zip(items, instances)]


def _reference_mean(items: list) -> float:
    return sum(int(p[-1]) for *_, p in items) / sum(int(y.sum()) + 1 for *_, y, _ in items)


GRANULARITY = (256, 512, 1024, 2048)  # the targets whose mean block length on validation the rule checks


def _scores(net: torch.nn.Module, parts: dict[str, list], bias: dict[str, float] | None = None, prior_weight: float = 1.0,
            band: float | None = None, folds: list[tuple[list, dict | None]] | None = None) -> dict:
    """F1 - Pk per part at its reference mean block length, and the mean block length over all validation documents
    per target, each fold's documents decoded with its table (fitted on other documents: the docstring says why)."""
    out = {name: validation_score(net, items, _reference_mean(items), bias_by_target=bias, prior_weight=prior_weight, bias_band=band)
           for name, items in parts.items()}
    lengths = {}
    for t in GRANULARITY:
        tokens = blocks = 0.0
        for items, table in folds or [(parts["all"], None)]:
            mean = validation_mean_block_tokens(net, items, t, table, prior_weight, band)
            tokens += sum(int(p[-1]) for *_, p in items)
            blocks += sum(int(p[-1]) for *_, p in items) / mean
        lengths[t] = tokens / blocks
    return out | {"granularity": {str(t): m / t - 1 for t, m in lengths.items()}}


def _halves(items: list) -> tuple[list, list]:
    """Alternate documents: both halves hold authored and concatenation documents of every length."""
    return items[0::2], items[1::2]


def _folds(net: torch.nn.Module, items: list, categories: list[str] | None, table: dict[str, float], weight: float,
           rounded: bool, band: float | None) -> list[tuple[list, dict]]:
    """(documents, the bias table fitted on the others) per fold: alternate halves, or (categories given) one fold per
    category, its table fitted at the full table's targets on the other categories' documents."""
    if categories is None:
        halves = _halves(items)
        # Each half as dense in long documents as the whole: half the documents needed per target.
        tables = [bias_table(net, half, weight, min_documents=MIN_FIT_DOCUMENTS // 2, rounded=rounded, band=band) for half in halves]
        return [(halves[0], tables[1]), (halves[1], tables[0])]
    targets = tuple(int(t) for t in table)
    return [([i for i, c in zip(items, categories) if c == cat],
             bias_table(net, [i for i, c in zip(items, categories) if c != cat], weight, targets, 0, rounded, band))
            for cat in sorted(set(categories))]


# Head variants: (concatenation instances too, voter_target_tokens, epochs, feature_set); None keeps the recipe's.
VARIANTS = {"authored_only": (False, 0, None, "basic"), "voters": (True, 512, None, "basic"), "voters_1024": (True, 1024, None, "basic"),
            "epochs_8": (True, 0, 8, "basic"), "layout": (True, 0, None, "layout")}


def _by_category(rows: list[tuple[float, float]], categories: list[str]) -> dict[str, dict[str, float]]:
    """Mean Pk and boundary F1 per category of (F1, Pk) rows."""
    out = {}
    for cat in sorted(set(categories)):
        mine = [r for r, c in zip(rows, categories) if c == cat]
        out[cat] = {"pk": sum(p for _, p in mine) / len(mine), "f1": sum(f for f, _ in mine) / len(mine), "documents": len(mine)}
    return out


def _categories_won(mine: dict[str, dict[str, float]], baselines: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The categories (sorted) where mine (_by_category) beats every baseline's on both Pk and F1 (evaluate's rule)."""
    return [c for c in sorted(mine) if all(beats(mine[c], b[c]) for b in baselines.values())]


def _baselines_by_category(names: list[str], validation: list) -> dict[str, dict[str, dict[str, float]]]:
    """Each baseline tuned on validation to its reference mean block length, then scored on it, per category."""
    out = {}
    for method in get_methods(names):
        target = tune(method, validation, mean_block_tokens(validation))
        rows = [score(i, method.cut(method.prepare(i.text, i.category), target), 20) for i in validation]
        out[method.name] = _by_category([(r["f1"], r["pk"]) for r in rows], [i.category for i in validation])
    return out


def _decodings(name: str, net: torch.nn.Module, parts: dict[str, list], target: float, categories: list[str],
               bands: tuple[float, ...] = (), priors: tuple[float, ...] = (1.0, 0.3), rounded: bool = False,
               fit_in_band: bool = False, fold_categories: list[str] | None = None) -> tuple[dict, dict]:
    """Overall scores and authored per-category Pk / F1 of a head with each decoding variant (fold_categories: the
    category of each of parts["all"], for the by-category length check)."""
    results = {name: _scores(net, parts)}
    per_category = {name: _by_category(validation_rows(net, parts["authored"], target), categories)}
    for weight in priors:
        table = folds = None
        for band in bands if fit_in_band else (None, *bands):
            if table is None or fit_in_band:  # train.BIAS_TARGETS, as the build fits them
                table = bias_table(net, parts["all"], weight, rounded=rounded, band=band if fit_in_band else None)
                folds = _folds(net, parts["all"], fold_categories, table, weight, rounded, band if fit_in_band else None)
            variant = (f"{name} + {'length-neutral ' if rounded else ''}bias, prior {weight}"
                       + ("" if band is None else f", {'fitted under ' if fit_in_band else ''}band {band}"))
            results[variant] = _scores(net, parts, table, weight, band, folds) | {"bias_by_target": table, "prior_weight": weight,
                                                                                  "bias_band": band, "fold_bias": [t for _, t in folds]}
            rows = validation_rows(net, parts["authored"], target, bias_by_target=table, prior_weight=weight, bias_band=band)
            per_category[variant] = _by_category(rows, categories)
            print(variant, results[variant], flush=True)
    return results, per_category


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("bench_data"))
    parser.add_argument("--base", type=Path, default=Path("runs/default_segmenter"), help="the build's training folder (model + cache)")
    parser.add_argument("--model", type=Path, default=None, help="the head to decode (default: the one in --base)")
    parser.add_argument("--out", type=Path, default=Path("runs/choose"))
    parser.add_argument("--retrain", action="store_true", help="also train the head variants (minutes each)")
    parser.add_argument("--variants", default="authored_only,voters", help=f"head variants to train, of {', '.join(VARIANTS)}")
    parser.add_argument("--baselines", default="fixed,paragraph,recursive,structure", help="baselines of the per-category table")
    parser.add_argument("--bands", default="", help="band widths to try around round(n_tokens / target) blocks, e.g. 0.1,0.2")
    parser.add_argument("--priors", default="1.0,0.3", help="the length prior's weights to fit biases at (\"\": no bias variants)")
    parser.add_argument("--rounded", action="store_true", help="fit length-neutral biases (the plain decoding's block count)")
    parser.add_argument("--fit-in-band", action="store_true", help="fit each banded variant's bias under its band (--bands)")
    parser.add_argument("--by-category", action="store_true", help="the out-of-fold length check by category, not alternate halves")
    parser.add_argument("--embedding-cache", type=Path, default=None,
                        help="without --base's cache/validation.pt: embed the validation splits through this store into it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    authored, concat = load_splits(args.data / "authored"), load_splits(args.data / "concat")
    segmenter = Segmenter.load(args.model or args.base)
    net = segmenter.net
    validation = authored["validation"] + concat["validation"]  # as the build's training orders them
    store = EmbeddingStore(args.embedding_cache) if args.embedding_cache else None
    base_val = prepare(validation, segmenter, args.base / "cache" / "validation.pt", store=store)  # the build's cache when there
    if len(base_val) != len(validation):
        raise SystemExit("a validation document without candidates: the parts below would be misaligned")
    n_train, n_val = len(authored["train"]), len(authored["validation"])
    parts = {"all": base_val, "authored": base_val[:n_val], "concat": base_val[n_val:]}
    categories = [i.category for i in authored["validation"]]
    fold_categories = [i.category for i in validation] if args.by_category else None
    target = _reference_mean(parts["authored"])
    bands = tuple(float(b) for b in args.bands.split(",") if b)
    priors = tuple(float(w) for w in args.priors.split(",") if w)  # "": the plain decoding only
    results, per_category = _decodings("base", net, parts, target, categories, bands, priors, args.rounded, args.fit_in_band,
                                       fold_categories)
    if args.retrain:
        base_train = torch.load(args.base / "cache" / "train.pt", weights_only=True)["items"]
        base_cfg = SegmenterConfig(voter_target_tokens=0)
        for name in args.variants.split(","):
            with_concat, voters, epochs, feature_set = VARIANTS[name]
            extra = [str(args.data / "concat")] if with_concat else []
            out = args.out / name
            recipe = RECIPE | {"voter_target_tokens": voters, "feature_set": feature_set} | ({"epochs": epochs} if epochs else {})
            config = TrainConfig(data=str(args.data / "authored"), extra_data=extra, out=str(out), **recipe)
            train_inst = authored["train"] + (concat["train"] if extra else [])
            val_inst = authored["validation"] + (concat["validation"] if extra else [])
            train_items = base_train if extra else base_train[:n_train]
            val_items = base_val if extra else base_val[:n_val]
            if voters:
                train_items = _with_voters(train_items, train_inst, voters)
                val_items = _with_voters(val_items, val_inst, voters)
            if feature_set != "basic":
                train_items, val_items = _with_layout(train_items, train_inst), _with_layout(val_items, val_inst)
            cfg = replace(base_cfg, voter_target_tokens=voters, feature_set=feature_set)
            _seed_cache(out / "cache" / "train.pt", train_inst, cfg, train_items)
            _seed_cache(out / "cache" / "validation.pt", val_inst, cfg, val_items)
            train(config)
            # Every variant is scored on all validation documents (with its own features).
            scored = val_items if extra else base_val
            more, more_per_category = _decodings(name, Segmenter.load(out).net, {"all": scored, "authored": scored[:n_val],
                                                                                 "concat": scored[n_val:]}, target, categories, bands,
                                                    priors, args.rounded, args.fit_in_band, fold_categories)
            results, per_category = results | more, per_category | more_per_category
    baselines = _baselines_by_category(args.baselines.split(","), authored["validation"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choice.json").write_text(json.dumps({"overall": results, "per_category": per_category, "baselines": baselines}, indent=2))
    limit = 0.05 if args.rounded or args.by_category else 0.10
    checked = bands or args.rounded or args.by_category
    eligible = [name for name in results if all(abs(d) <= limit for d in results[name]["granularity"].values()) or not checked]
    best = max(eligible, key=lambda name: results[name]["all"])
    folds = "by category" if args.by_category else "alternate halves"
    print(f"| variant | validation F1 - Pk, all | authored | concatenation | length vs {GRANULARITY[0]} (out of fold, {folds}) | "
          + " | ".join(str(t) for t in GRANULARITY[1:])
          + " |\n|---|---|---|---|" + "---|" * len(GRANULARITY))
    for name, r in results.items():
        mark = "**" if name == best else ""
        drift = " | ".join(f"{r['granularity'][str(t)]:+.1%}" for t in GRANULARITY)
        print(f"| {mark}{name}{mark} | {r['all']:.3f} | {r['authored']:.3f} | {r['concat']:.3f} | {drift} |")
    rule = f"within {limit:.0%} of the target at " + ", ".join(map(str, GRANULARITY)) + ", then " if checked else ""
    print(f"chosen ({rule}highest F1 - Pk over all validation documents): {best}")
    cats = sorted(set(categories))
    print("\nAuthored validation, Pk / boundary F1 per category (decoded at the reference mean block length):\n")
    print("| category (documents) | " + " | ".join([*baselines, *per_category]) + " |\n" + "|---" * (1 + len(baselines) + len(per_category)) + "|")
    for cat in cats:
        cells = [f"{m[cat]['pk']:.3f} / {m[cat]['f1']:.3f}" for m in [*baselines.values(), *per_category.values()]]
        print(f"| {cat} ({per_category['base'][cat]['documents']}) | " + " | ".join(cells) + " |")
    for name, mine in per_category.items():
        won = _categories_won(mine, baselines)
        print(f"{name}: beats {', '.join(baselines)} on both in {len(won)} of {len(cats)} categories ({', '.join(won)})")


if __name__ == "__main__":
    main()
