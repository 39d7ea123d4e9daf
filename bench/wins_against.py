"""Where a segmenter scored alone (`semanticseg evaluate --methods segmenter`) beats every method of another run of the
same split (its baselines and peers; that run's own segmenter row is replaced), by evaluate's `wins`: overall and per
category, lower Pk and higher boundary F1 than each.

    python bench/wins_against.py runs/eval-ens/authored-g0 runs/eval-test/authored-all runs/eval-test/merged-authored-89
    python bench/wins_against.py runs/eval-ens/authored-g0 runs/eval-test/authored-all --out runs/eval-ens/authored-g0-all

With --out (one other run): that run with this segmenter's row and granularity, its results.json and results.md
(evaluate's tables and `wins`), as one evaluate over all the methods would write them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from semanticseg.io import atomic_path, write_json
from semanticseg.segmenter.evaluate import markdown, wins


def _scored(run: Path) -> tuple[str, str] | None:
    """(data folder as benchmark/part, split) an evaluate run scored, from its eval_config.json (None for a merged run,
    which has none)."""
    path = run / "eval_config.json"
    if not path.exists():
        return None
    config = json.loads(path.read_text())
    return "/".join(Path(config["data"]).parts[-2:]), config["split"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("segmenter", type=Path, help="the evaluate run whose segmenter row is compared")
    parser.add_argument("others", type=Path, nargs="+", help="evaluate runs (or merged ones) of the same split")
    parser.add_argument("--out", type=Path, default=None, help="write the combined run here (one other run only)")
    args = parser.parse_args()
    if args.out and len(args.others) != 1:
        parser.error("--out takes one other run")
    mine_config = _scored(args.segmenter)
    for run in args.others:  # a count against another split's baselines would look valid and mean nothing
        if None not in (theirs := _scored(run), mine_config) and theirs != mine_config:
            parser.error(f"{run} scored {theirs}, {args.segmenter} scored {mine_config}: not the same data and split")
    scored = json.loads((args.segmenter / "results.json").read_text())
    mine = scored["methods"]["segmenter"]
    print(f"{args.segmenter}: Pk {mine['overall']['pk']:.3f}, WindowDiff {mine['overall']['windowdiff']:.3f}, F1 {mine['overall']['f1']:.3f}")
    for run in args.others:
        results = json.loads((run / "results.json").read_text())
        results["methods"] = {"segmenter": mine} | {m: r for m, r in results["methods"].items() if m != "segmenter"}  # first, as evaluate writes it
        results["segmenter_granularity"] = scored["segmenter_granularity"]
        won = results["wins"] = wins(results)
        print(f"against {run} ({len(results['methods']) - 1} methods): overall {'won' if won['overall'] else 'not won'}, "
              f"{len(won['categories_won'])} of {won['categories']} categories ({', '.join(won['categories_won'])})")
        if args.out:
            write_json(args.out / "results.json", results)
            with atomic_path(args.out / "results.md") as tmp:
                tmp.write_text(markdown(results))


if __name__ == "__main__":
    main()
