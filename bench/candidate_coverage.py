"""Share of reference cuts that are candidate cuts, per category and per layout style (every method can only cut
at candidates, so this caps every method's recall).

    python bench/candidate_coverage.py --data bench_data/authored
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from semanticseg.candidates import find_candidates
from semanticseg.segmenter.data import load_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("bench_data/authored"))
    args = parser.parse_args()
    total, hit = Counter(), Counter()
    for split in load_splits(args.data).values():
        for inst in split:
            candidates = set(find_candidates(inst.id, inst.text, inst.category).offsets)
            styles = [a.split(":", 1)[1].split(",")[0] for a in inst.annotators if a.startswith("style:")]
            for key in (inst.category, *(f"style: {s}" for s in styles), "all"):
                total[key] += len(inst.cuts)
                hit[key] += sum(c in candidates for c in inst.cuts)
    print("| part | reference cuts | at a candidate |\n|---|---:|---:|")
    for key in sorted(total, key=lambda k: (k == "all", k.startswith("style"), k)):
        print(f"| {key} | {total[key]} | {100 * hit[key] / total[key]:.1f}% |")


if __name__ == "__main__":
    main()
