"""The summary figure of docs/distill_results.md: gap recovered and retrieval-probe log-p per model, every test set.

Reads the eval/<set>/results.json files that bench/distill_ablations.py writes.

    python bench/plot_distill_results.py docs/distill_run/final/eval docs/distill_results.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    """One row of bars per metric, one bar group per model, one bar per test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("eval_dir", type=Path, help="folder with one sub-folder per test set, each with results.json")
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args()
    sets = {p.parent.name: json.loads(p.read_text())["rows"] for p in sorted(args.eval_dir.glob("*/results.json"))}
    if not sets:
        raise SystemExit(f"{args.eval_dir}: no */results.json")
    models = [row["name"] for row in next(iter(sets.values()))]
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    width = 0.8 / len(sets)
    for offset, (name, rows) in enumerate(sets.items()):
        by_model = {row["name"]: row for row in rows}
        xs = [i + (offset - (len(sets) - 1) / 2) * width for i in range(len(models))]
        axes[0].bar(xs, [100 * (by_model[m]["gap_recovered"] or 0.0) for m in models], width, label=name)
        axes[1].bar(xs, [by_model[m]["probe_logp"] for m in models], width, label=name)
    axes[0].axhline(80, color="black", linestyle="--", linewidth=1)
    axes[0].set_ylabel("final-block NLL gap recovered (%)\n(dashed: the 80% target)")
    axes[1].set_ylabel("retrieval probe: answer log-p\n(higher is better)")
    axes[1].set_xticks(range(len(models)), models, rotation=25, ha="right")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
