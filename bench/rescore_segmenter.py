"""Score a (new) segmenter alone against an earlier evaluation's baselines: the categories it wins, in minutes.

    python bench/rescore_segmenter.py --baselines runs/eval-fresh2/authored-all --out runs/eval-fresh2/authored-NEW \
        --model default --data bench_data_new/authored --split fresh_test --embedding-cache runs/embeddings.sqlite

Runs `semanticseg evaluate --methods segmenter` (tuned on the same validation split as the baselines were), puts its
scores in place of the segmenter's in BASELINES/results.json, and writes OUT/results.json and results.md with
evaluate's `wins` (lower Pk and higher boundary F1 than every baseline, overall and per category). The baselines are
not run again: pass the evaluation that scored them on the same data and split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from semanticseg.io import atomic_path, write_json
from semanticseg.segmenter.evaluate import markdown, wins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baselines", type=Path, required=True, help="an evaluate run's folder with the baselines' results.json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="fresh_test")
    parser.add_argument("--embedding-cache", default=None)
    args = parser.parse_args()
    config = json.loads((args.baselines / "eval_config.json").read_text())
    if Path(config["data"]).resolve() != Path(args.data).resolve() or config["split"] != args.split:
        sys.exit(f"{args.baselines} scored {config['data']} {config['split']}, not {args.data} {args.split}")
    alone = args.out / "segmenter"
    command = ["semanticseg", "evaluate", "--data", args.data, "--split", args.split, "--out", str(alone), "--model", args.model,
               "--methods", "segmenter"] + (["--embedding-cache", args.embedding_cache] if args.embedding_cache else [])
    alone.mkdir(parents=True, exist_ok=True)
    with open(alone / "evaluate.log", "w") as log:  # its own summary counts wins against no baseline: kept out of sight
        subprocess.run(command, check=True, stdout=log)
    results = json.loads((args.baselines / "results.json").read_text())
    new = json.loads((alone / "results.json").read_text())
    results["methods"] = {"segmenter": new["methods"]["segmenter"]} | {k: v for k, v in results["methods"].items() if k != "segmenter"}
    for key in ("segmenter_granularity",):
        if key in new:
            results[key] = new[key]
    results["wins"] = wins(results)
    write_json(args.out / "results.json", results)
    with atomic_path(args.out / "results.md") as tmp:
        tmp.write_text(markdown(results))
    won = results["wins"]
    print(f"overall won: {won['overall']}; categories won: {len(won['categories_won'])} of {won['categories']} "
          f"({', '.join(won['categories_won'])})")


if __name__ == "__main__":
    main()
