"""Collect throughput on the offline corpus: documents/s and tokens/s per category.

Baseline measured in the same run: reading every raw text of the category and counting its tokens once
(the floor any collector pays). The ratio says what normalising, cutting and dedup cost on top of it.

    python bench/bench_collect.py                       # every category, full offline corpus
    python bench/bench_collect.py --categories code,news --limit 50
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from semanticseg.dataset.collect import CATEGORIES, collect, raw_texts
from semanticseg.recipes import load_category
from semanticseg.sources import RawText
from semanticseg.tokens import count_tokens


def baseline_seconds(category: str) -> float:
    """Seconds to read the category's raw texts and count their tokens once."""
    start = time.perf_counter()
    for raw in raw_texts(load_category(category), "offline"):
        if isinstance(raw, RawText):
            count_tokens(raw.text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated categories")
    parser.add_argument("--limit", type=int, default=None, help="documents per category (default: all)")
    args = parser.parse_args()
    table = Table(title="collect throughput, offline corpus (cl100k_base, window 2k-32k tokens)")
    for column in ("category", "documents", "tokens", "2-4k", "4-8k", "8-16k", "16-32k", "dropped",
                   "seconds", "docs/s", "tokens/s", "baseline s", "collect/baseline"):
        table.add_column(column, justify="left" if column == "category" else "right")
    total_docs = total_tokens = 0
    total_s = total_base = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for category in args.categories.split(","):
            base = baseline_seconds(category) if args.limit is None else float("nan")
            start = time.perf_counter()
            summary = collect(category, Path(tmp) / category, limit=args.limit, force=True)
            seconds = time.perf_counter() - start
            docs, tokens = summary["documents"], summary["tokens"]
            total_docs, total_tokens, total_s, total_base = total_docs + docs, total_tokens + tokens, total_s + seconds, total_base + base
            table.add_row(
                category, f"{docs:,}", f"{tokens:,}", *(f"{n:,}" for n in summary["buckets"].values()),
                f"{sum(summary['dropped'].values()):,}", f"{seconds:.1f}", f"{docs / seconds:.1f}",
                f"{tokens / seconds:,.0f}", f"{base:.1f}", f"{seconds / base:.2f}",
            )
    table.add_row("all", f"{total_docs:,}", f"{total_tokens:,}", "", "", "", "", "", f"{total_s:.1f}",
                  f"{total_docs / total_s:.1f}", f"{total_tokens / total_s:,.0f}", f"{total_base:.1f}",
                  f"{total_s / total_base:.2f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
