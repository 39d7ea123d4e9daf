"""Rebuild the segmenter that ships inside the package (semanticseg/segmenter/default/) from the offline corpus.

    python bench/build_default_segmenter.py                          # benchmark if missing, train, ship
    python bench/build_default_segmenter.py --results runs/dev-test/results.md   # also put the test table in the card

1. The dev benchmark (bench/authored_benchmark.py, seeded) in bench_data/ unless it is there already.
2. train-segmenter on its authored train split plus the concatenation train split (RECIPE below: the settings
   chosen on the validation splits, see README), seeded; CPU, both cores to embed, one for the head.
3. The model's config.json, model.safetensors, training records and card into semanticseg/segmenter/default/.
Same data, same seed, same machine type: the same weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from authored_benchmark import write_benchmark  # noqa: E402

from semanticseg.segmenter.model import default_model_dir  # noqa: E402
from semanticseg.segmenter.train import TrainConfig, train  # noqa: E402

# The default model's training settings (chosen on validation; README "The default model" says how).
RECIPE = {
    "max_documents": None,  # every document of both train splits and both validation splits
    "voter_target_tokens": 0,  # annotator-rule inputs off: they model a release's consensus, not authored structure
    "feature_set": "layout",  # + each unit's first line's layout: the validation choice (docs/segmenter_choices.md)
    "hidden": 128,
    "layers": 6,
    "dropout": 0.4,
    "lr": 1e-3,
    "weight_decay": 0.1,
    "epochs": 8,  # the validation choice among the decodings that keep granularity (docs/segmenter_choices.md)
    "patience": 4,  # early stopping on the validation score keeps each head's best epoch
    "seed": 0,
    # A deep ensemble: heads trained with seeds 0, 1, 2, their probabilities averaged, decoded with the length prior at
    # weight 0.3 (still round(n_tokens / target) blocks per document): the validation choice of
    # bench/choose_ensemble.py (docs/segmenter_choices.md); one head's result was its seed's.
    "heads": 3,
    "prior_weight": 0.3,
    # A document's block count follows its own sections: round(n_tokens / target) scaled by its density of cuts with
    # P(boundary) > 0.75 over validation's, floored at 1.2 of that density (both rescaled so that the mean block length
    # stays on target: SegmenterConfig.section_count, fitted on validation after training), so a document keeps about
    # the fixed-length count unless it shows more sections: the validation choice of bench/choose_section_count.py
    # (docs/segmenter_choices.md).
    "section_threshold": 0.75,
    "section_floor": 1.2,
    "device": "cpu",
}
SHIPPED = ("config.json", "model.safetensors", "training.json", "train_config.json")
DESCRIPTION = ("the authored-boundary dev benchmark's train split (sections of the offline corpus: Wikipedia wikitext, GNU info "
               "manuals, the Python documentation, the Debian handbook, the aider website, licences, Shakespeare's plays, "
               "PARI/GP guides; headings removed from about half) plus its concatenation train split (topic junctions)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("bench_data"), help="dev benchmark folder (written if missing)")
    parser.add_argument("--work", type=Path, default=Path("runs/default_segmenter"), help="training folder (checkpoint, cache)")
    parser.add_argument("--results", type=Path, default=None, help="evaluate's results.md for the card's evaluation section")
    parser.add_argument("--card-only", action="store_true", help="only re-render the shipped model's card")
    args = parser.parse_args()
    from semanticseg.commands.common import progress_bar
    from semanticseg.segmenter.card import write_card

    target = default_model_dir()
    if not args.card_only:
        if not (args.data / "authored").is_dir() or not (args.data / "concat").is_dir():
            write_benchmark(args.data)
        config = TrainConfig(data=str(args.data / "authored"), extra_data=[str(args.data / "concat")], out=str(args.work), **RECIPE)
        began = time.time()
        with progress_bar() as progress:
            summary = train(config, progress)
        summary.update(description=DESCRIPTION, references="authored", train_time=f"{round(time.time() - began)} s, {summary['device']}",
                       command="python bench/build_default_segmenter.py")
        (args.work / "training.json").write_text(json.dumps(summary, indent=2))
        target.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED:
            shutil.copy(args.work / name, target / name)
        print(json.dumps({"epochs": summary["epochs"], "best_val_score": summary["best_val_score"], "time": summary["train_time"],
                          "config": asdict(config)}, indent=2))
    write_card(target, args.results)
    print(f"shipped: {target}")


if __name__ == "__main__":
    main()
