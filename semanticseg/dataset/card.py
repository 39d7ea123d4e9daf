"""The data set card: statistics and plots computed from the actual release, rendered from cards/*.j2."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from semanticseg.io import atomic_path
from semanticseg.paths import package_data
from semanticseg.recipes import Recipe
from semanticseg.schema import LENGTH_BUCKETS, Instance, length_bucket

TEMPLATE = "cards/dataset_card.md.j2"


@dataclass(slots=True)
class Stats:
    """One row of a statistics table: a group of instances (a category, a split, or both)."""

    instances: int
    tokens: int
    mean_tokens: float
    blocks_per_instance: float
    mean_block_tokens: float
    median_block_tokens: float
    agreement: float
    human_reviewed: float  # share of instances whose cuts a human decided
    multi_reviewed: int = 0  # instances decided by two or more human reviewers
    human_agreement: float | None = None  # their mean agreement (None when there are none)


def stats(rows: list[Instance]) -> Stats:
    """Summary statistics of a group of instances (zeros for an empty group)."""
    if not rows:
        return Stats(0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    blocks = [b for r in rows for b in r.block_tokens]
    between_humans = [r.human_agreement for r in rows if r.human_agreement is not None]
    return Stats(
        instances=len(rows),
        tokens=sum(r.n_tokens for r in rows),
        mean_tokens=statistics.fmean(r.n_tokens for r in rows),
        blocks_per_instance=len(blocks) / len(rows),
        mean_block_tokens=statistics.fmean(blocks),
        median_block_tokens=float(statistics.median(blocks)),
        agreement=statistics.fmean(r.agreement for r in rows),
        human_reviewed=sum(r.human_reviewed for r in rows) / len(rows),
        multi_reviewed=len(between_humans),
        human_agreement=statistics.fmean(between_humans) if between_humans else None,
    )


def plot_histograms(rows_by_cat: dict[str, list[Instance]], out_dir: Path) -> list[Path]:
    """plots/lengths.png and plots/block_tokens.png: one histogram panel per category (log-x token axis)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import NullFormatter

    written = []
    for name, values_of, label in (
        ("lengths", lambda r: [r.n_tokens], "instance length (tokens)"),
        ("block_tokens", lambda r: r.block_tokens, "block length (tokens)"),
    ):
        cats = sorted(rows_by_cat)
        cols = min(4, len(cats))
        nrows = -(-len(cats) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
        for ax, cat in zip(axes.flat, cats):
            values = [v for r in rows_by_cat[cat] for v in values_of(r)]
            bins = np.logspace(np.log10(max(min(values), 1)), np.log10(max(values) + 1), 20)
            ax.hist(values, bins=bins, color="#4C72B0")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a log axis overlap at this size
            ax.set_title(f"{cat} (n={len(values)})", fontsize=9)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(cats) :]:
            ax.axis("off")
        fig.supxlabel(label, fontsize=9)
        fig.tight_layout()
        path = out_dir / "plots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def render_card(splits: dict[str, list[Instance]], recipe: Recipe) -> str:
    """The card's markdown (with the hub's YAML header) for a release split into `splits`."""
    import jinja2

    rows = [r for split_rows in splits.values() for r in split_rows]
    by_cat: dict[str, list[Instance]] = {}
    for r in rows:
        by_cat.setdefault(r.category, []).append(r)
    cats = sorted(by_cat)
    buckets = [name for name, _, _ in LENGTH_BUCKETS]
    built = Counter((r.category, length_bucket(r.n_tokens)) for r in rows)
    coverage = {c: {b: (built[c, b], recipe.target(c)[b]) for b in buckets} for c in cats}
    sources = {
        c: {
            "licences": Counter(r.licence for r in by_cat[c]).most_common(),
            "n_sources": len({r.source for r in by_cat[c]}),
            "examples": sorted({r.source for r in by_cat[c]})[:3],
        }
        for c in cats
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(package_data(TEMPLATE).parent)),
        undefined=jinja2.StrictUndefined,  # a missing statistic fails loudly instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(Path(TEMPLATE).name).render(
        recipe=recipe,
        splits=list(splits),
        total=stats(rows),
        by_split={s: stats(r) for s, r in splits.items()},
        by_cat={c: stats(by_cat[c]) for c in cats},
        by_cat_split={c: {s: stats([r for r in splits[s] if r.category == c]) for s in splits} for c in cats},
        coverage=coverage,
        buckets=buckets,
        sources=sources,
        annotators=sorted({a.split("#")[0] for r in rows for a in r.annotators}),
        size_category="n<1K" if len(rows) < 1000 else ("1K<n<10K" if len(rows) < 10_000 else "10K<n<100K"),
    )


def write_dataset_card(out_dir: Path, splits: dict[str, list[Instance]], recipe: Recipe) -> list[Path]:
    """Write README.md (the card) and its plots into a release folder; return the paths written."""
    by_cat: dict[str, list[Instance]] = {}
    for rows in splits.values():
        for r in rows:
            by_cat.setdefault(r.category, []).append(r)
    plots = plot_histograms(by_cat, out_dir)
    card = out_dir / "README.md"
    with atomic_path(card) as tmp:
        tmp.write_text(render_card(splits, recipe))
    return [card, *plots]
