"""Throughput (tokens/s) of the segmenter beside every baseline and peer, measured in the same run on this machine.

Each method segments the same documents end to end (candidates, embeddings, decoding) at the same target,
`--runs` times; the methods take turns within each run, so a change in machine load hits them alike.
Printed: tokens/s and the segmenter's speed ratio to each method, min / median / max over the runs (the
ratio is taken within each run). Rows: `segmenter` (its encoder on ONNX Runtime when the `fast` extra is
installed), `segmenter-torch` (the same model on the torch encoder, to show what ONNX buys), the baselines,
and the peers (the `peers` extra). The checks of issue 13: the segmenter at least 2x the embedding
baseline, and at least as fast as chonkie's SemanticChunker with the same MiniLM.

    python bench/bench_segmenter.py --model models/segmenter --data release/data --split test --docs 4 --runs 3
    python bench/bench_segmenter.py --model models/segmenter --data release/data --methods segmenter,embedding,chonkie-semantic
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from semanticseg.segmenter.baselines import TrainedSegmenter, get_methods
from semanticseg.segmenter.data import load_splits
from semanticseg.segmenter.evaluate import DEFAULT_METHODS


def spread(values: list[float], fmt: str) -> str:
    """min / median / max of values."""
    return " / ".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained segmenter folder")
    parser.add_argument("--data", required=True, help="release folder (parquet splits or DatasetDict)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--docs", type=int, default=4, help="documents to segment per method and run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs (ratios are min / median / max over them)")
    parser.add_argument("--target-tokens", type=int, default=512)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated methods ('peers' is every peer)")
    args = parser.parse_args()

    docs = load_splits(args.data)[args.split][: args.docs]
    methods = get_methods([m for m in args.methods.split(",") if m], args.model)
    for method in list(methods):
        if isinstance(method, TrainedSegmenter) and method.model.backend != "torch":
            torch_row = TrainedSegmenter(args.model)
            torch_row.model.backend, torch_row.name = "torch", "segmenter-torch"
            methods.insert(methods.index(method) + 1, torch_row)
    # Warm up once per method and document (model loading, ONNX export, the first encoder call, and the imports a
    # category's rules make on first use, e.g. nltk's punkt for prose) outside the timing: one-time costs that would
    # otherwise land in whichever timed run first meets them.
    for method in methods:
        for doc in docs:
            method.cut(method.prepare(doc.text, doc.category), args.target_tokens)
    tokens = sum(d.n_tokens for d in docs)
    rates: dict[str, list[float]] = {m.name: [] for m in methods}
    for _ in range(args.runs):
        for method in methods:
            began = time.perf_counter()
            for doc in docs:
                method.cut(method.prepare(doc.text, doc.category), args.target_tokens)
            rates[method.name].append(tokens / (time.perf_counter() - began))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"{len(docs)} documents, {tokens:,} tokens, {args.runs} runs (min / median / max)")
    print(f"{'method':<20} {'tokens/s':>30} {'segmenter / method':>26}")
    ratios = {}
    for name, values in rates.items():
        if "segmenter" in rates:
            ratios[name] = [s / v for s, v in zip(rates["segmenter"], values)]
        ratio = spread(ratios[name], ".2f") if name in ratios else "-"
        print(f"{name:<20} {spread(values, ',.0f'):>30} {ratio:>26}")
    for other, needed in (("embedding", 2.0), ("chonkie-semantic", 1.0)):
        if other in ratios:
            low = min(ratios[other])
            print(f"segmenter vs {other}: {spread(ratios[other], '.2f')}x, needed >= {needed:g}x: "
                  f"{'OK' if low >= needed else 'NOT MET'} (on the slowest ratio)")


if __name__ == "__main__":
    main()
