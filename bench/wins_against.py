"""Where a segmenter scored alone (`semanticseg evaluate --methods segmenter`) beats every method of another run of the
same split (its baselines and peers; that run's own segmenter row is replaced), by evaluate's `wins`: overall and per
category, lower Pk and higher boundary F1 than each.

    python bench/wins_against.py runs/eval-ens/authored-g0 runs/eval-test/authored-all runs/eval-test/merged-authored-89
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from semanticseg.segmenter.evaluate import wins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("segmenter", type=Path, help="the evaluate run whose segmenter row is compared")
    parser.add_argument("others", type=Path, nargs="+", help="evaluate runs (or merged ones) of the same split")
    args = parser.parse_args()
    mine = json.loads((args.segmenter / "results.json").read_text())["methods"]["segmenter"]
    print(f"{args.segmenter}: Pk {mine['overall']['pk']:.3f}, WindowDiff {mine['overall']['windowdiff']:.3f}, F1 {mine['overall']['f1']:.3f}")
    for run in args.others:
        results = json.loads((run / "results.json").read_text())
        results["methods"]["segmenter"] = mine
        won = wins(results)
        print(f"against {run} ({len(results['methods']) - 1} methods): overall {'won' if won['overall'] else 'not won'}, "
              f"{len(won['categories_won'])} of {won['categories']} categories ({', '.join(won['categories_won'])})")


if __name__ == "__main__":
    main()
