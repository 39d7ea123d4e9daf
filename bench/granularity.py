"""Granularity: a segmenter's mean block length against target_tokens on the test documents of benchmark folders.

    python bench/granularity.py --model default --data bench_data/authored,bench_data/concat,bench_data/long \\
        --embedding-cache runs/embeddings.sqlite

Each document is prepared (embedded) once and decoded at every target, with evaluate's own functions
(semanticseg.segmenter.evaluate.granularity: the figures `semanticseg evaluate` records as segmenter_granularity).
Below 4096 every document counts; from 4096 on only documents of at least 3x the target (a shorter one cannot
hold one mean block), so large targets need bench_data/long (documents of 12,288-32,768 tokens). With
--embedding-cache the embeddings are kept by text, so a rerun (say after a decoding change) only decodes.
Prints a markdown table: mean block tokens, error against the target, documents counted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semanticseg.segmenter.baselines import get_methods
from semanticseg.segmenter.data import load_splits
from semanticseg.segmenter.evaluate import GRANULARITY_TARGETS, LONG_TARGET, granularity, granularity_documents
from semanticseg.segmenter.units import EmbeddingStore


def measure(model: str, data: list[Path], targets: tuple[int, ...], split: str = "test",
            embedding_cache: Path | None = None) -> dict[str, dict[int, tuple[float, int]]]:
    """Per benchmark folder: target -> (mean block tokens, documents counted) of the model on its split."""
    from semanticseg.commands.common import progress_bar

    method = get_methods(["segmenter"], model)[0]
    method.store = EmbeddingStore(embedding_cache) if embedding_cache else None
    out = {}
    with progress_bar() as progress:
        for folder in data:
            splits = load_splits(folder)
            if split not in splits:
                raise ValueError(f"{folder}: no {split!r} split (found {sorted(splits)})")
            test = splits[split]
            task = progress.add_task(str(folder), total=len(test), info="")
            prepared = []
            for inst in test:
                prepared.append(method.prepare(inst.text, inst.category))
                progress.advance(task)
            means = granularity(method, prepared, test, targets)
            out[str(folder)] = {t: (mean, len(granularity_documents(test, t))) for t, mean in means.items()}
    return out


def markdown(results: dict[str, dict[int, tuple[float, int]]], targets: tuple[int, ...], split: str) -> str:
    """One row per target, one column per benchmark: mean block tokens (error, documents)."""
    names = list(results)
    text = "| target | " + " | ".join(f"{Path(n).name} {split}" for n in names) + " |\n"
    text += "|---|" + "---|" * len(names) + "\n"
    for t in targets:
        cells = [f"{r[t][0]:,.0f} ({100 * (r[t][0] - t) / t:+.1f}%, {r[t][1]} docs)" if t in r else "no document of 3x"
                 for r in results.values()]
        text += f"| {t} | " + " | ".join(cells) + " |\n"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="trained segmenter folder, or default (the shipped model)")
    parser.add_argument("--data", default="bench_data/authored,bench_data/concat,bench_data/long", help="comma-separated benchmark folders")
    parser.add_argument("--targets", default=",".join(map(str, GRANULARITY_TARGETS)), help="comma-separated target_tokens")
    parser.add_argument("--split", default="test")
    parser.add_argument("--embedding-cache", type=Path, default=None, help="sqlite store of embeddings by text (shared with evaluate)")
    args = parser.parse_args()
    try:
        targets = tuple(int(t) for t in args.targets.split(","))
        results = measure(args.model, [Path(d) for d in args.data.split(",")], targets, args.split, args.embedding_cache)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(f"Mean block tokens of {args.model} on {args.split} vs target_tokens (error, documents counted; from {LONG_TARGET} on only "
          f"documents of at least 3x the target):\n")
    print(markdown(results, targets, args.split))


if __name__ == "__main__":
    main()
