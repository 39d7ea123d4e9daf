"""Segmenter training data: Instance splits from a release, or a concatenation benchmark from documents.

`load_splits(path)` reads a release in either form the release stage writes: a directory of parquet
files named after their split (`train*.parquet`, `validation*.parquet`, `test*.parquet`, also inside
`data/`), or a saved `datasets.DatasetDict` directory.

`concat_instances(documents, ...)` builds references that no annotator produced, for use before a
release exists: each instance joins passages of 300-1500 tokens taken at paragraph starts from
*different* documents of one category (Choi's 2000 benchmark design), and the junctions are the cuts.
Structure-annotator cuts would make the comparison with the structure baseline circular; junctions
between unrelated passages are a true "new self-contained block starts here" signal (though an easier
one than the subtler boundaries inside one document, and any method may also cut elsewhere).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Sequence

from semanticseg.schema import Document, Instance, from_table
from semanticseg.tokens import count_tokens, token_starts

SPLITS = ("train", "validation", "test")
# Held-out splits a benchmark may add (bench/authored_benchmark.py): read when present, never made by split_instances.
HELD_OUT = ("fresh_test",)


def load_splits(path: str | Path) -> dict[str, list[Instance]]:
    """Instances per split from a parquet release directory or a saved DatasetDict directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory (expected a release: parquet splits or a DatasetDict)")
    if (path / "dataset_dict.json").exists():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        return {name: from_table(dataset[name].data.table, Instance) for name in dataset}
    out: dict[str, list[Instance]] = {}
    for split in (*SPLITS, *HELD_OUT):
        files = sorted(path.glob(f"{split}*.parquet")) + sorted(path.glob(f"data/{split}*.parquet"))
        if files:
            table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
            out[split] = from_table(table, Instance)
    if not out:
        raise FileNotFoundError(f"{path}: no train/validation/test parquet files and no dataset_dict.json")
    return out


def _passages(doc: Document, rng: random.Random, low: int, high: int, encoding: str) -> list[str]:
    """Passages of low..high tokens starting at paragraph starts of doc, in document order."""
    starts = [0] + [m.end() for m in re.finditer(r"\n\s*\n", doc.text)]
    tokens = token_starts(doc.text, encoding)
    out, i = [], 0
    while i < len(starts):
        want = rng.randint(low, high)
        begin = starts[i]
        j = i + 1
        while j < len(starts) and _span(tokens, begin, starts[j]) < want:
            j += 1
        end = starts[j] if j < len(starts) else len(doc.text)
        if low <= _span(tokens, begin, end) <= 2 * high:
            out.append(doc.text[begin:end].strip("\n") + "\n")
        i = j + rng.randint(0, 3)  # skip a little so neighbouring passages are less alike
    return out


def _span(starts: list[int], begin: int, end: int) -> int:
    import bisect

    return bisect.bisect_left(starts, end) - bisect.bisect_left(starts, begin)


def concat_instances(
    documents: Sequence[Document],
    per_category: int = 12,
    passages_per_instance: tuple[int, int] = (4, 10),
    passage_tokens: tuple[int, int] = (300, 1500),
    seed: int = 0,
    encoding: str = "cl100k_base",
) -> list[Instance]:
    """Up to per_category instances per category, each the junction of passages from different documents."""
    from semanticseg.candidates import find_candidates

    rng = random.Random(seed)
    by_category: dict[str, list[tuple[Document, str]]] = {}
    for doc in documents:
        for passage in _passages(doc, rng, *passage_tokens, encoding):
            by_category.setdefault(doc.category, []).append((doc, passage))
    instances = []
    for category, pool in sorted(by_category.items()):
        rng.shuffle(pool)
        for k in range(per_category):
            if len(pool) < 2:
                break
            chosen: list[tuple[Document, str]] = []
            want = rng.randint(*passages_per_instance)
            single = len({d.id for d, _ in pool}) == 1
            for item in list(pool):
                # Neighbours come from different documents unless the category has only one left.
                if not chosen or single or item[0].id != chosen[-1][0].id:
                    chosen.append(item)
                    pool.remove(item)
                if len(chosen) == want:
                    break
            if len(chosen) < 2:
                break
            text = "\n".join(p for _, p in chosen)
            junctions, at = [], 0
            for _, passage in chosen[:-1]:
                at += len(passage) + 1
                junctions.append(at)
            cands = find_candidates(f"{category}-{k}", text, category, encoding=encoding)
            cuts = sorted(set(junctions) & set(cands.offsets))
            bounds = [0, *cuts, len(text)]
            instances.append(
                Instance(
                    id=f"concat-{category}-{k}",
                    category=category,
                    source="concat:" + ",".join(d.id for d, _ in chosen),
                    licence=";".join(sorted({d.licence for d, _ in chosen})),
                    text=text,
                    cuts=cuts,
                    block_tokens=[count_tokens(text[a:b], encoding) for a, b in zip(bounds, bounds[1:])],
                    n_tokens=count_tokens(text, encoding),
                    annotators=["concat"],
                    annotator_cuts=[cuts],
                    agreement=1.0,
                    human_reviewed=False,
                    candidates=cands.offsets,
                )
            )
    return instances


def split_instances(instances: Sequence[Instance], fractions: tuple[float, float] = (0.6, 0.2), seed: int = 0) -> dict[str, list[Instance]]:
    """Per category: the first share to train, the next to validation, the rest to test (seeded shuffle)."""
    rng = random.Random(seed)
    out: dict[str, list[Instance]] = {s: [] for s in SPLITS}
    by_category: dict[str, list[Instance]] = {}
    for inst in instances:
        by_category.setdefault(inst.category, []).append(inst)
    for items in by_category.values():
        items = sorted(items, key=lambda i: i.id)
        rng.shuffle(items)
        n_train = max(1, round(fractions[0] * len(items)))
        n_val = max(1, round(fractions[1] * len(items))) if len(items) > 2 else 0
        out["train"] += items[:n_train]
        out["validation"] += items[n_train : n_train + n_val]
        out["test"] += items[n_train + n_val :]
    return out


def write_splits(splits: dict[str, list[Instance]], out_dir: str | Path) -> list[Path]:
    """Write each split as OUT/<split>.parquet (the parquet release layout load_splits reads)."""
    from semanticseg.io import write_records

    out_dir = Path(out_dir)
    paths = []
    for split, items in splits.items():
        paths.append(out_dir / f"{split}.parquet")
        write_records(paths[-1], items, Instance)
    return paths
