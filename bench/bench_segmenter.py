"""Throughput (tokens/s) of the segmenter beside every baseline, measured in the same run on this machine.

Each method segments the same documents end to end (candidates, embeddings, decoding) at the same target;
the segmenter must not be slower than the embedding-similarity baseline, which embeds the same units.

    python bench/bench_segmenter.py --model models/segmenter --data release/data --split test --docs 12
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from semanticseg.segmenter.baselines import get_methods
from semanticseg.segmenter.data import load_splits
from semanticseg.segmenter.evaluate import DEFAULT_METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained segmenter folder")
    parser.add_argument("--data", required=True, help="release folder (parquet splits or DatasetDict)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--docs", type=int, default=12, help="documents to segment per method")
    parser.add_argument("--target-tokens", type=int, default=512)
    args = parser.parse_args()

    docs = load_splits(args.data)[args.split][: args.docs]
    methods = get_methods(DEFAULT_METHODS, args.model)
    # Warm up once per method (model loading, nltk import, first encoder call) outside the timing.
    for method in methods:
        method.cut(method.prepare(docs[0].text, docs[0].category), args.target_tokens)
    tokens = sum(d.n_tokens for d in docs)
    rates = {}
    for method in methods:
        began = time.perf_counter()
        for doc in docs:
            method.cut(method.prepare(doc.text, doc.category), args.target_tokens)
        rates[method.name] = tokens / (time.perf_counter() - began)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {len(docs)} documents, {tokens:,} tokens")
    print(f"{'method':<12} {'tokens/s':>12} {'segmenter / method':>20}")
    for name, rate in rates.items():
        print(f"{name:<12} {rate:>12,.0f} {rates['segmenter'] / rate:>20.2f}")
    ratio = rates["segmenter"] / rates["embedding"]
    print(f"segmenter vs embedding-similarity baseline: {ratio:.2f}x ({'OK' if ratio >= 1 else 'SLOWER'})")


if __name__ == "__main__":
    main()
