"""The tables and probe plot of docs/distill_results.md (issue 14) from a blockattn_experiment.py folder.

Per test set: the main table (own cuts; mean +- sd over seeds), the segmentation axis (naive block attention and
the distilled student per method, with each method's mean block length), probe accuracy by number of blocks,
and probes.png (accuracy and answer log-p by number of context blocks, mean over seeds).

    python bench/issue14_tables.py docs/distill_run/h200_issue14/s2 > tables.md
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

MODELS = ("teacher-full", "teacher-block", "ape", "recompute-15%", "control-full", "control-block", "block-ft", "distilled")


def _ms(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    values = [scale * v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def _load(folder: Path, set_name: str, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "eval" / set_name).glob(f"{kind}-s*/results.json"))]


def main_table(results: list[dict]) -> list[str]:
    lines = ["| model | seeds | final-block NLL | acc | KL(teacher-full) | KL(control-full) | gap recovered vs control | vs frozen teacher | probe acc | probe log-p |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in MODELS:
        rows = [r for res in results for r in res["rows"] if r["name"] == name]
        if rows:
            cells = [_ms([r["nll_final"] for r in rows], digits=4), _ms([r["acc_final"] for r in rows], digits=4), _ms([r["kl_teacher"] for r in rows]),
                     _ms([r["kl_control"] for r in rows]), _ms([r["gap_vs_control"] for r in rows], 100, 1) + "%", _ms([r["gap_recovered"] for r in rows], 100, 1) + "%",
                     _ms([r["probe_acc"] for r in rows]), _ms([r["probe_logp"] for r in rows], digits=2)]
            lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return lines


def segmentation_table(seg: list[dict], precut: dict[str, list[dict]]) -> list[str]:
    by_method: dict[str, list[dict]] = {}
    for res in seg:
        for method in res["sets"]:
            by_method.setdefault(method, []).append({"sets": {method: res["sets"][method]}, "rows": [r for r in res["rows"] if r["segmentation"] == method]})
    for method, results in precut.items():
        by_method[method] = [{"sets": {method: res["sets"]["given"]}, "rows": res["rows"]} for res in results]
    lines = ["| segmentation | windows | mean block (model tokens) | naive: NLL block - full | naive: KL(teacher-full) | distilled: KL(teacher-full) | distilled: gap vs control | distilled: gap vs teacher | block-ft: gap vs control |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method in ("fixed", "random", "structure", "segmenter", "authored"):
        if method not in by_method:
            continue
        results = by_method[method]
        st = results[0]["sets"][method]

        def rows(name: str, results: list[dict] = results) -> list[dict]:
            return [r for res in results for r in res["rows"] if r["name"] == name]

        full, block = rows("teacher-full")[0], rows("teacher-block")[0]
        dist, ft = rows("distilled"), rows("block-ft")
        lines.append(f"| {method} | {st['windows']} | {st['mean_block_tokens']:.0f} | {block['nll_final'] - full['nll_final']:.4f} | {block['kl_teacher']:.4f} | "
                     f"{_ms([r['kl_teacher'] for r in dist], digits=4)} | {_ms([r['gap_vs_control'] for r in dist], 100, 1)}% | {_ms([r['gap_recovered'] for r in dist], 100, 1)}% | "
                     f"{_ms([r['gap_vs_control'] for r in ft], 100, 1)}% |")
    return lines


def probe_cells(results: list[dict]) -> dict[tuple[str, str, int], list[tuple[float, float]]]:
    cells: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for res in results:
        for name, rows in res["probes"].items():
            for row in rows:
                if row["position"] is None:
                    cells.setdefault((name, row["kind"], row["n_blocks"]), []).append((row["accuracy"], row["answer_logp"]))
    return cells


def probe_table(results: list[dict]) -> list[str]:
    cells = probe_cells(results)
    sizes = sorted({k[2] for k in cells})
    lines = []
    for kind in ("retrieval", "two-hop"):
        lines += [f"| {kind}: accuracy (answer log-p) | " + " | ".join(f"{n} blocks" for n in sizes) + " |", "| --- |" + " ---: |" * len(sizes)]
        for name in MODELS:
            if (name, kind, sizes[0]) in cells:
                lines.append(f"| {name} | " + " | ".join(
                    f"{statistics.mean(a for a, _ in cells[(name, kind, n)]):.2f} ({statistics.mean(p for _, p in cells[(name, kind, n)]):.1f})" for n in sizes) + " |")
        lines.append("")
    return lines


def plot(sets: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
    for ax, (set_name, results) in zip(axes[0], sets.items(), strict=True):
        cells = probe_cells(results)
        sizes = sorted({k[2] for k in cells})
        for colour, name in enumerate(MODELS):  # one colour per model, solid = retrieval, dotted = two-hop
            for kind, style in (("retrieval", "-"), ("two-hop", ":")):
                if (name, kind, sizes[0]) in cells:
                    ax.plot(sizes, [statistics.mean(a for a, _ in cells[(name, kind, n)]) for n in sizes], style, marker="o", color=f"C{colour}",
                            label=f"{name} ({kind})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.axhline(0.9, color="grey", linewidth=0.5)
        ax.set_title(f"{set_name}: probe accuracy (mean over seeds)")
        ax.set_xlabel("context blocks")
        ax.set_ylabel("answer exactly right (greedy)")
    axes[0][-1].legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    """Print the tables and write probes.png beside the experiment's summary.md."""
    folder = Path(sys.argv[1])
    sets = sorted(p.name for p in (folder / "eval").iterdir())
    own = {s: _load(folder, s, "own") for s in sets}
    for s in sets:
        precut = {p.name.removeprefix("precut-").rsplit("-s", 1)[0] for p in (folder / "eval" / s).glob("precut-*")}
        print(f"### {s}: own cuts\n\n" + "\n".join(main_table(own[s])) + "\n")
        print(f"### {s}: segmentation axis\n\n" + "\n".join(segmentation_table(_load(folder, s, "seg"), {m: _load(folder, s, f"precut-{m}") for m in precut})) + "\n")
        print(f"### {s}: probes\n\n" + "\n".join(probe_table(own[s])))
    plot(own, folder / "probes.png")


if __name__ == "__main__":
    main()
