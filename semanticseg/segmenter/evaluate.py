"""One evaluation harness for every method: Pk, WindowDiff, boundary F1 and speed, per category and overall.

Granularity is matched before comparing: each method's target is tuned on the validation split (or a seeded
sample of it, `tune_documents`; the reference mean is always all of validation's; `test_documents` likewise
scores a seeded sample of the test split, for methods too slow for all of it) so its mean block length
is closest to the reference mean block length (a multiplier grid over the reference mean), then the method
runs once on the test split with that target, timed end to end. With `embedding_cache` every method keeps
its embeddings in one store, so a text is embedded once across tuning, test and later runs (tokens/s then
count the store's hits: compare speeds with bench/bench_segmenter.py). Metrics are
computed on token positions (cl100k_base), Pk and WindowDiff with k = half the mean reference block length
of each document, boundary F1 with a tolerance in tokens. Outputs: results.json, results.md (tables),
quality_vs_speed.png, eval_config.json.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semanticseg.io import atomic_path, write_json
from semanticseg.metrics import boundary_f1, pk, token_positions, window_diff
from semanticseg.schema import Instance
from semanticseg.segmenter.baselines import Method, get_methods
from semanticseg.segmenter.data import load_splits
from semanticseg.segmenter.units import EmbeddingStore
from semanticseg.tokens import token_starts

MULTIPLIERS = (0.4, 0.55, 0.7, 0.85, 1.0, 1.2, 1.45, 1.75, 2.1)
# "peers": the chunkers of the peers extra (semanticseg.segmenter.peers)
DEFAULT_METHODS = ["segmenter", "fixed", "paragraph", "recursive", "texttiling", "embedding", "structure", "peers"]
GRANULARITY_TARGETS = (256, 512, 1024, 2048, 4096)
LONG_TARGET = 4096  # targets from here on are measured on documents of at least 3x the target only


@dataclass
class SegmenterEvalConfig:
    """evaluate settings (dumped as eval_config.json beside the results)."""

    data: str
    out: str
    model: str | None = None
    split: str = "test"
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    tolerance_tokens: int = 20
    limit: int | None = None  # documents per split, for quick runs
    tune_documents: int | None = None  # tune on a seeded sample of this many validation documents (None: all of them)
    test_documents: int | None = None  # score a seeded sample of this many documents of the split (None: all of them)
    seed: int = 0
    embedding_cache: str | None = None  # sqlite file of embeddings by text, shared by methods, processes and runs


def sample(instances: list[Instance], n: int | None, seed: int) -> list[Instance]:
    """A seeded sample of n instances, in their order (all of them when n is None or not smaller).

    The first n of one seeded shuffle, so a larger sample holds every smaller one: a run on more documents
    finds the smaller run's embeddings in the store and pays only for the documents it adds.
    """
    if not n or n >= len(instances):
        return instances
    order = list(range(len(instances)))
    random.Random(seed).shuffle(order)
    return [instances[k] for k in sorted(order[:n])]


def mean_block_tokens(instances: list[Instance]) -> float:
    """Total tokens / total blocks over instances."""
    return sum(i.n_tokens for i in instances) / max(sum(len(i.cuts) + 1 for i in instances), 1)


def _mean_length(prepared: list[Any], method: Method, target: int, n_tokens: list[int]) -> float:
    blocks = sum(len(method.cut(p, target)) + 1 for p in prepared)
    return sum(n_tokens) / blocks


def tune(method: Method, validation: list[Instance], reference_mean: float) -> int:
    """The target whose mean block length on validation is closest to reference_mean."""
    prepared = [method.prepare(i.text, i.category) for i in validation]
    n_tokens = [i.n_tokens for i in validation]
    targets = [max(int(m * reference_mean), 16) for m in MULTIPLIERS]
    return min(targets, key=lambda t: abs(_mean_length(prepared, method, t, n_tokens) - reference_mean))


def score(inst: Instance, cuts: list[int], tolerance: int) -> dict[str, float]:
    """Pk, WindowDiff, boundary F1 of cuts against inst.cuts, on token positions."""
    starts = token_starts(inst.text)
    n = len(starts)
    ref, hyp = token_positions(inst.cuts, starts), token_positions(cuts, starts)
    return {"pk": pk(ref, hyp, n), "windowdiff": window_diff(ref, hyp, n), "f1": boundary_f1(ref, hyp, tolerance).f1,
            "blocks": len(hyp) + 1, "tokens": n}


def _aggregate(rows: list[dict[str, float]], seconds: float) -> dict[str, float]:
    tokens = sum(r["tokens"] for r in rows)
    return {"pk": statistics.mean(r["pk"] for r in rows), "windowdiff": statistics.mean(r["windowdiff"] for r in rows),
            "f1": statistics.mean(r["f1"] for r in rows), "mean_block_tokens": tokens / sum(r["blocks"] for r in rows),
            "tokens_per_s": tokens / seconds if seconds else float("inf"), "documents": len(rows)}


def granularity_documents(test: list[Instance], target: int) -> list[int]:
    """Indices of the test documents the granularity at target is measured on: all of them below LONG_TARGET,
    from there on those of at least 3x the target (a shorter one cannot hold one mean block)."""
    return [k for k, i in enumerate(test) if target < LONG_TARGET or i.n_tokens >= 3 * target]


def granularity(method: Method, prepared: list[Any], test: list[Instance], targets: tuple[int, ...] = GRANULARITY_TARGETS) -> dict[int, float]:
    """Mean block length on test for each target (how well the target is tracked), over granularity_documents."""
    out = {}
    for t in targets:
        if keep := granularity_documents(test, t):
            out[t] = _mean_length([prepared[k] for k in keep], method, t, [test[k].n_tokens for k in keep])
    return out


def evaluate(config: SegmenterEvalConfig, progress: Any = None) -> dict[str, Any]:
    """Tune every method on validation, score it on config.split; write results and the plot to config.out."""
    out = Path(config.out)
    write_json(out / "eval_config.json", asdict(config))
    splits = load_splits(config.data)
    for needed in ("validation", config.split):
        if needed not in splits:
            raise ValueError(f"{config.data}: no {needed!r} split (found {sorted(splits)})")
    validation, test = splits["validation"][: config.limit], splits[config.split][: config.limit]
    reference_mean = mean_block_tokens(validation)
    validation, test = sample(validation, config.tune_documents, config.seed), sample(test, config.test_documents, config.seed)
    methods = get_methods(config.methods, config.model)
    store = EmbeddingStore(config.embedding_cache) if config.embedding_cache else None
    for method in methods:
        method.store = store
    task = progress.add_task("evaluate", total=len(methods), info="") if progress else None
    results: dict[str, Any] = {"reference_mean_block_tokens": reference_mean, "tuned_on_documents": len(validation),
                               "test_documents": len(test), "methods": {}}
    for method in methods:
        if progress:
            progress.update(task, info=method.name)
        target = tune(method, validation, reference_mean)
        rows, seconds, per_cat_seconds, prepared = [], 0.0, {}, []
        for inst in test:
            began = time.perf_counter()
            prepared.append(method.prepare(inst.text, inst.category))
            cuts = method.cut(prepared[-1], target)
            spent = time.perf_counter() - began
            seconds += spent
            per_cat_seconds[inst.category] = per_cat_seconds.get(inst.category, 0.0) + spent
            rows.append(score(inst, cuts, config.tolerance_tokens) | {"category": inst.category})
        by_cat = {c: _aggregate([r for r in rows if r["category"] == c], s) for c, s in sorted(per_cat_seconds.items())}
        results["methods"][method.name] = {"target": target, "overall": _aggregate(rows, seconds), "categories": by_cat}
        if method.name == "segmenter":
            results["segmenter_granularity"] = granularity(method, prepared, test)
        if progress:
            progress.advance(task)
    results["wins"] = wins(results)
    write_json(out / "results.json", results)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(markdown(results))
    plot(results, out / "quality_vs_speed.png")
    return results


def beats(part: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether scores part ({"pk", "f1", ...}) beat other's on both: lower Pk and higher boundary F1."""
    return part["pk"] < other["pk"] and part["f1"] > other["f1"]


def wins(results: dict[str, Any]) -> dict[str, Any]:
    """Where the segmenter beats every baseline on both Pk (lower) and boundary F1 (higher)."""
    methods = results["methods"]
    if "segmenter" not in methods:
        return {}
    others = [m for m in methods if m != "segmenter"]
    seg = methods["segmenter"]
    cats = sorted(seg["categories"])
    won = [c for c in cats if all(beats(seg["categories"][c], methods[o]["categories"][c]) for o in others)]
    return {"overall": all(beats(seg["overall"], methods[o]["overall"]) for o in others), "categories_won": won,
            "categories": len(cats)}


def markdown(results: dict[str, Any]) -> str:
    """The overall table, one table per category, and the segmenter's granularity tracking."""
    methods = results["methods"]
    head = "| method | target | Pk ↓ | WindowDiff ↓ | boundary F1 ↑ | mean block tokens | tokens/s |\n|---|---|---|---|---|---|---|\n"

    def line(name: str, part: dict[str, Any], target: Any) -> str:
        return (f"| {name} | {target} | {part['pk']:.3f} | {part['windowdiff']:.3f} | {part['f1']:.3f} | "
                f"{part['mean_block_tokens']:.0f} | {part['tokens_per_s']:.0f} |\n")

    text = f"Reference mean block length (validation): {results['reference_mean_block_tokens']:.0f} tokens.\n\n### Overall\n\n" + head
    text += "".join(line(n, m["overall"], m["target"]) for n, m in methods.items())
    cats = sorted({c for m in methods.values() for c in m["categories"]})
    text += "\n### Pk / boundary F1 per category (best of each in bold)\n\n| category (documents) | " + " | ".join(methods) + " |\n"
    text += "|---|" + "---|" * len(methods) + "\n"
    for cat in cats:
        parts = {n: m["categories"][cat] for n, m in methods.items() if cat in m["categories"]}
        best_pk, best_f1 = min(p["pk"] for p in parts.values()), max(p["f1"] for p in parts.values())

        def cell(part: dict[str, Any] | None) -> str:
            if part is None:
                return "-"
            pk_text, f1_text = f"{part['pk']:.3f}", f"{part['f1']:.3f}"
            return (f"**{pk_text}**" if part["pk"] == best_pk else pk_text) + " / " + (f"**{f1_text}**" if part["f1"] == best_f1 else f1_text)

        docs = max(p["documents"] for p in parts.values())
        text += f"| {cat} ({docs}) | " + " | ".join(cell(parts.get(n)) for n in methods) + " |\n"
    for cat in cats:
        text += f"\n### {cat}\n\n" + head
        text += "".join(line(n, m["categories"][cat], m["target"]) for n, m in methods.items() if cat in m["categories"])
    if "segmenter_granularity" in results:
        text += "\n### Segmenter: mean block length vs target_tokens\n\n| target | mean block tokens | error |\n|---|---|---|\n"
        for target, mean in results["segmenter_granularity"].items():
            text += f"| {target} | {mean:.0f} | {100 * (mean - int(target)) / int(target):+.1f}% |\n"
    if results.get("wins"):
        w = results["wins"]
        text += (f"\nSegmenter beats every baseline on both Pk and boundary F1: overall {'yes' if w['overall'] else 'no'}; "
                 f"in {len(w['categories_won'])} of {w['categories']} categories.\n")
    return text


def plot(results: dict[str, Any], path: Path) -> None:
    """Quality (Pk, lower is better) against speed (tokens/s, log scale), one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m in results["methods"].items():
        x, y = m["overall"]["tokens_per_s"], m["overall"]["pk"]
        ax.scatter([x], [y])
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4))
    ax.set_xscale("log")
    ax.set_xlabel("tokens/s (log)")
    ax.set_ylabel("Pk (lower is better)")
    ax.set_title("Quality vs speed")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
