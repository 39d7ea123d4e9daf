"""Merge `semanticseg evaluate` runs into one results.json / results.md, as one run over everything would write
them: runs of the same data with different --methods, and runs of one method over parts of a test split (each
part with the same validation split, so the same tuned target), e.g. run in parallel on a shared machine.

    python bench/merge_evaluations.py OUT RUN [RUN ...]

Token counts come from each run's own data (its eval_config.json). Means over
documents are merged weighted by documents, mean block length as total tokens / total blocks, tokens/s as
total tokens / total seconds (each run's own: compare speeds in bench/bench_segmenter.py instead).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from semanticseg.io import atomic_path, write_json
from semanticseg.segmenter.data import load_splits
from semanticseg.segmenter.evaluate import GRANULARITY_TARGETS, LONG_TARGET, markdown, sample, wins


def _merge(parts: list[dict]) -> dict:
    docs = sum(p["documents"] for p in parts)
    tokens = [p["mean_block_tokens"] * p["blocks"] for p in parts]
    out = {k: sum(p[k] * p["documents"] for p in parts) / docs for k in ("pk", "windowdiff", "f1")}
    out["mean_block_tokens"] = sum(tokens) / sum(p["blocks"] for p in parts)
    out["tokens_per_s"] = sum(tokens) / sum(t / p["tokens_per_s"] for t, p in zip(tokens, parts))
    out["documents"] = docs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    args = parser.parse_args()
    by_method: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    merged: dict = {"methods": {}}
    granularity = []
    for run in args.runs:
        results = json.loads((run / "results.json").read_text())
        config = json.loads((run / "eval_config.json").read_text())
        # The documents the run scored: its seeded sample of the split when it took one (--test-documents).
        test = load_splits(config["data"])[config["split"]][: config.get("limit")]
        test = sample(test, config.get("test_documents"), config.get("seed", 0))
        tokens: dict[str, int] = defaultdict(int)
        for inst in test:
            tokens[inst.category] += inst.n_tokens
        merged.setdefault("reference_mean_block_tokens", results["reference_mean_block_tokens"])
        for name, method in results["methods"].items():
            by_method[name].append((method, tokens))
        if "segmenter_granularity" in results:
            granularity.append((results["segmenter_granularity"], test))
    for name, runs in by_method.items():
        cats = defaultdict(list)
        for method, tokens in runs:
            for cat, part in method["categories"].items():
                cats[cat].append(part | {"blocks": tokens[cat] / part["mean_block_tokens"]})
        categories = {cat: _merge(parts) for cat, parts in sorted(cats.items())}
        flat = [part for parts in cats.values() for part in parts]
        merged["methods"][name] = {"target": runs[0][0]["target"], "overall": _merge(flat), "categories": categories}
    if granularity:
        merged["segmenter_granularity"] = {}
        for target in GRANULARITY_TARGETS:
            tokens_blocks = []
            for means, test in granularity:
                if str(target) in means:
                    n = sum(i.n_tokens for i in test if target < LONG_TARGET or i.n_tokens >= 3 * target)
                    tokens_blocks.append((n, n / means[str(target)]))
            if tokens_blocks:
                merged["segmenter_granularity"][target] = sum(t for t, _ in tokens_blocks) / sum(b for _, b in tokens_blocks)
    merged["wins"] = wins(merged)
    write_json(args.out / "results.json", merged)
    with atomic_path(args.out / "results.md") as tmp:
        tmp.write_text(markdown(merged))
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
