"""Write the dev benchmark of human-authored boundaries, in the release format `semanticseg evaluate --data` reads.

    python bench/authored_benchmark.py --out bench_data        # authored/, concat/ and long/, each train/validation/test parquet

authored/: documents from the offline corpus whose references are their authors' sections
(semanticseg.segmenter.authored: headings removed from about half, coarse references in annotator_cuts),
split train / validation / test by source group (file, wiki page, manual, handbook chapter), none in two
splits. concat/: the concatenation benchmark (topic junctions between passages of different documents of
one category), built from each split's own authored documents, so it is held out the same way. long/: documents
of 12,288-32,768 tokens (for granularity at large targets), each consecutive authored documents of one split and
category joined, the junctions added to the authored cuts (semanticseg.segmenter.authored.long_instances); its pool is
every document the packing makes from that split's source groups, not only the few per group kept in authored/, and
it is drawn after authored/ and concat/ with its own seeded generators, so those two do not change. fresh_test (in
authored/ and concat/): a second test split drawn last, from the source groups that no other split (nor long/) uses, with
the same caps per category and per group (semanticseg.segmenter.authored.fresh_instances), so the splits above do not
change; the test split was used to compare several variants, fresh_test is for one scoring of the one chosen on
validation. `bash scripts/install_corpus.sh --fresh` adds held-out packages that only fresh_test reads
(semanticseg.segmenter.authored.fresh_sources: R vignettes, licence texts, Django and SQLAlchemy docs, FAQs, two
documentation websites), so it covers more categories; without them it holds the unused groups alone. Seeded: the same
command writes the same files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from semanticseg.schema import Document, Instance
from semanticseg.segmenter.authored import (
    authored_instances,
    drop_repeats,
    fresh_instances,
    fresh_root,
    fresh_sources,
    long_instances,
    split_by_group,
)
from semanticseg.segmenter.data import concat_instances, write_splits

FRESH = "fresh_test"  # the held-out split of unused source groups (semanticseg.segmenter.authored.fresh_instances)


def _concat(items: list[Instance], per_category: int, split: str, seed: int) -> list[Instance]:
    """The concatenation instances of one split's authored documents (with cuts), their ids suffixed by the split."""
    docs = [Document(i.id, i.category, i.source, i.licence, i.text, len(i.text), i.n_tokens) for i in items]
    out = [i for i in concat_instances(docs, per_category=per_category, seed=seed) if i.cuts]
    for inst in out:
        inst.id = f"{inst.id}-{split}"
    return out


def _fresh_source_pool(seed: int) -> list[Instance]:
    """Every document of the held-out sources (authored.fresh_sources) but those repeating a training source's text
    (authored.drop_repeats), none when `install_corpus.sh --fresh` has not
    been run (fresh_test then holds only the corpus's unused groups, as the summary's fresh_sources says)."""
    from semanticseg.commands.common import progress_bar
    from semanticseg.sources.offline import SourceMissing

    if not fresh_root().is_dir():
        print(f"{fresh_root()} is missing: fresh_test gets no held-out sources (bash scripts/install_corpus.sh --fresh)", file=sys.stderr)
        return []
    try:
        with progress_bar() as progress:
            return drop_repeats(authored_instances(fresh_sources(), per_category=None, per_group=None, seed=seed, progress=progress))
    except SourceMissing as err:
        raise SystemExit(f"{err}\nthe fresh corpus in {fresh_root()} is incomplete: run bash scripts/install_corpus.sh --fresh") from None


def write_benchmark(out: Path, per_category: int = 80, per_group: int = 4, concat_per_category: int = 12, seed: int = 0) -> dict:
    """Write OUT/authored, OUT/concat and OUT/long (train/validation/test parquet; authored and concat also fresh_test)
    and OUT/summary.json; return the summary."""
    from semanticseg.commands.common import progress_bar

    with progress_bar() as progress:
        instances = authored_instances(per_category=per_category, per_group=per_group, seed=seed, progress=progress)
    splits = split_by_group(instances, seed=seed)
    write_splits(splits, out / "authored")
    concat = {name: _concat(items, concat_per_category if name != "train" else 3 * concat_per_category, name, seed)
              for name, items in splits.items()}
    write_splits(concat, out / "concat")
    with progress_bar() as progress:
        pool = authored_instances(per_category=None, per_group=None, seed=seed, progress=progress)
    long = long_instances(pool, splits, seed=seed)
    write_splits(long, out / "long")
    # Drawn last, from the groups none of the above uses, so the splits above stay as they were; with the held-out
    # packages when installed (their groups are in no split by construction: only this draw reads them).
    fresh_pool = pool + _fresh_source_pool(seed)
    fresh = {FRESH: fresh_instances(fresh_pool, [*splits.values(), *long.values()], per_category, per_group, seed)}
    write_splits(fresh, out / "authored")
    concat_fresh = {FRESH: _concat(fresh[FRESH], concat_per_category, FRESH, seed)}
    write_splits(concat_fresh, out / "concat")
    splits, concat = splits | fresh, concat | concat_fresh
    summary = {
        kind: {name: {"documents": len(items), "groups": len({i.source for i in items}), "tokens": sum(i.n_tokens for i in items),
                      "categories": dict(sorted(Counter(i.category for i in items).items()))} for name, items in parts.items()}
        for kind, parts in (("authored", splits), ("concat", concat), ("long", long))
    }
    summary["fresh_sources"] = sorted({i.source.split(":")[0] for i in fresh[FRESH]} - {i.source.split(":")[0] for i in pool})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench_data"))
    parser.add_argument("--per-category", type=int, default=80, help="most documents per category")
    parser.add_argument("--per-group", type=int, default=4, help="most documents per source group")
    parser.add_argument("--concat-per-category", type=int, default=12, help="concatenation instances per category and split (train: 3x)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = write_benchmark(args.out, args.per_category, args.per_group, args.concat_per_category, args.seed)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
