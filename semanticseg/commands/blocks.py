"""Block-attention commands: distill, eval-blocks."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from semanticseg.commands.common import BLOCKS, console, fail, given, option, progress_bar, writable_folder

app = typer.Typer()  # this module's commands; cli.py merges them into the `semanticseg` app

# The configs the commands' defaults come from (imported only when a command runs or shows its help).
_DISTILL = "semanticseg.distill.recipe:DistillConfig"
_EVAL = "semanticseg.distill.evaluate:BlockEvalConfig"

_DATA_HELP = ("A release (folder or instances.parquet: text + cuts), documents.parquet, or a Hugging Face data set id "
              "(owner/name[:config], e.g. nvidia/ChatQA2-Long-SFT-data:long_sft; online); documents without cuts are cut by --segmenter, else by structure cuts.")
_TEXT_FIELD_HELP = "For a hub data set: the fields that make a document, comma-separated, joined in order (chat message lists become their contents)."
_TEACHER_HELP = "Teacher: a hub id (e.g. Qwen/Qwen3-4B-Instruct-2507), a local model folder, or smollm2 (offline SmolLM2-135M-Instruct)."
_SEGMENTATION_HELP = ("Cut every document by one method instead of its own cuts: fixed (every N tokens), structure (format rules), "
                      "segmenter (--segmenter, else the segmenter that ships with semanticseg), authored (the document's own headings / top-level definitions), random (random candidate positions).")
_SEGMENTER_HELP = "A trained segmenter's folder (semanticseg train-segmenter): cuts documents that come without cuts into blocks of ~128 tokens; without it, the structure annotator does."


def _check_segmenter(segmenter: Path | None) -> str:
    if segmenter is None:
        return ""
    from semanticseg.segmenter.model import check_segmenter_dir

    try:
        return str(check_segmenter_dir(segmenter))
    except FileNotFoundError as err:
        raise fail(f"--segmenter: {err}") from err


def _check_segmentations(spec: str, segmenter: Path | None, single: bool = False) -> list[str]:
    from semanticseg.distill.data import SEGMENTATIONS

    methods = [m for m in spec.split(",") if m]
    unknown = [m for m in methods if m not in SEGMENTATIONS]
    if unknown or (single and len(methods) > 1):
        raise fail(f"--segmentation {spec!r}: expected {'one' if single else 'a comma-separated list'} of {', '.join(SEGMENTATIONS)}")
    return methods


def _check_data(data: Path) -> None:
    from semanticseg.distill.data import is_hub_id

    if not data.exists() and not is_hub_id(str(data)):
        raise fail(f"{data}: no such file or folder ({_DATA_HELP})")


@app.command("distill", rich_help_panel=BLOCKS)
def distill_cmd(
    teacher: str | None = option(_DISTILL, "teacher", "--teacher", help=_TEACHER_HELP),
    data: Path = typer.Option(..., "--data", help=_DATA_HELP),
    segmenter: Path | None = typer.Option(None, "--segmenter", help=_SEGMENTER_HELP),
    text_field: str | None = option(_DISTILL, "text_fields", "--text-field", help=_TEXT_FIELD_HELP),
    out: Path = typer.Option(..., "--out", callback=writable_folder, help="Run folder: config.json, train_log.jsonl, checkpoint.pt (resumes), model/."),
    mode: str | None = option(_DISTILL, "mode", "--mode", help="distill (teacher -> block student), lm (block fine-tuning baseline of Ma et al.: final-block LM loss, no teacher; reproduce the docs' row with --no-block-sinks --block-dropout 1.0) or full (the fair upper bound: the same loss, positions and steps, full attention)."),
    segmentation: str | None = option(_DISTILL, "segmentation", "--segmentation", help=_SEGMENTATION_HELP),
    block_sinks: bool | None = option(_DISTILL, "block_sinks", "--block-sinks/--no-block-sinks", help="Put a sink token (BOS) at the head of every context block."),
    block_dropout: float | None = option(_DISTILL, "block_dropout", "--block-dropout", min=0.0, max=1.0, help="Probability that a context block is isolated each step (the rest attend to everything before them); 1.0 = every block isolated (no block dropout). 0.9 was chosen on dev sets (docs/distill_results.md)."),
    token_weighting: bool | None = option(_DISTILL, "token_weighting", "--token-weighting/--no-token-weighting", help="Weight tokens by 1 + beta*relu(logp_T(full) - logp_T(block))."),
    beta: float | None = option(_DISTILL, "beta", "--beta", help="Token-weighting scale."),
    hard_weight: float | None = option(_DISTILL, "hard_weight", "--hard-weight", min=0.0, max=1.0, help="Share of cross-entropy on the true next token in each token's loss, the rest is the divergence from the teacher (0 = pure distillation; docs/distill_results.md)."),
    divergence: str | None = option(_DISTILL, "divergence", "--divergence", help="kl (forward, teacher -> student) or jsd."),
    temperature: float | None = option(_DISTILL, "temperature", "--temperature", help="Softmax temperature of both distributions."),
    context_tokens: int | None = option(_DISTILL, "context_tokens", "--context-tokens", help="Model tokens of context blocks per training window."),
    final_tokens: int | None = option(_DISTILL, "final_tokens", "--final-tokens", help="Most tokens of the final block."),
    steps: int | None = option(_DISTILL, "steps", "--steps", min=1, help="Optimizer steps."),
    batch_size: int | None = option(_DISTILL, "batch_size", "--batch-size", min=1, help="Windows per micro-batch (per GPU)."),
    grad_accum: int | None = option(_DISTILL, "grad_accum", "--grad-accum", min=1, help="Micro-batches per optimizer step."),
    lr: float | None = option(_DISTILL, "lr", "--lr", help="Peak learning rate (cosine schedule with warmup)."),
    warmup_steps: int | None = option(_DISTILL, "warmup_steps", "--warmup-steps", help="Linear warmup steps."),
    lora: bool | None = option(_DISTILL, "lora", "--lora", help="Train LoRA adapters (peft) instead of all weights; merged on save."),
    lora_rank: int | None = option(_DISTILL, "lora_rank", "--lora-rank", help="LoRA rank."),
    gradient_checkpointing: bool | None = option(_DISTILL, "gradient_checkpointing", "--gradient-checkpointing", help="Recompute activations in backward (long sequences, big models)."),
    seed: int | None = option(_DISTILL, "seed", "--seed", help="Random seed."),
    device: str | None = option(_DISTILL, "device", "--device", help="auto (CUDA when present), cpu or cuda. Several GPUs: run under torchrun (FSDP2: student and teacher sharded; docs/scale.md)."),
    compile_model: bool | None = option(_DISTILL, "compile", "--compile/--no-compile", help="torch.compile the decoders on CUDA (faster steps after a minute of compiling)."),
) -> None:
    """Distill a block-attention student from a frozen full-attention teacher (or train the block fine-tuning baseline).

    Examples:
      semanticseg distill --data release/data --out runs/distill
      semanticseg distill --data work/web/documents.parquet --out runs/ft --mode lm
      semanticseg distill --data work/web/documents.parquet --segmenter models/segmenter --out runs/kd
      torchrun --nproc-per-node 8 -m semanticseg distill --teacher Qwen/Qwen3-4B-Instruct-2507 --data release/data --out runs/q3 --gradient-checkpointing
    """
    from semanticseg.distill.recipe import DistillConfig, run

    _check_data(data)
    config = DistillConfig(data=str(data), out=str(out), segmenter=_check_segmenter(segmenter), **given(
        teacher=teacher, segmentation=segmentation, text_fields=text_field, mode=mode, block_sinks=block_sinks,
        block_dropout=block_dropout, token_weighting=token_weighting, beta=beta, hard_weight=hard_weight, divergence=divergence,
        temperature=temperature, context_tokens=context_tokens, final_tokens=final_tokens, steps=steps, batch_size=batch_size,
        grad_accum=grad_accum, lr=lr, warmup_steps=warmup_steps, lora=lora, lora_rank=lora_rank,
        gradient_checkpointing=gradient_checkpointing, seed=seed, device=device, compile=compile_model,
    ))
    if config.mode not in ("distill", "lm", "full") or config.divergence not in ("kl", "jsd"):
        raise fail("--mode must be distill, lm or full, --divergence kl or jsd")
    _check_segmentations(config.segmentation, segmenter, single=True)
    with progress_bar() as progress:
        model_dir = run(config, progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        console.print(f"student saved to {model_dir}")


@app.command("eval-blocks", rich_help_panel=BLOCKS)
def eval_blocks_cmd(
    teacher: str | None = option(_EVAL, "teacher", "--teacher", help=_TEACHER_HELP),
    data: Path = typer.Option(..., "--data", help="Held-out documents. " + _DATA_HELP),
    segmenter: Path | None = typer.Option(None, "--segmenter", help=_SEGMENTER_HELP),
    text_field: str | None = option(_EVAL, "text_fields", "--text-field", help=_TEXT_FIELD_HELP),
    student: list[str] = typer.Option([], "--student", help="NAME=MODEL_DIR of a model written by distill; repeat for several."),
    out: Path = typer.Option(..., "--out", callback=writable_folder, help="Folder for results.json, results.md (table), results.png (plot), eval_config.json."),
    max_windows: int | None = option(_EVAL, "max_windows", "--max-windows", min=1, help="Held-out windows to score."),
    control: Path | None = typer.Option(None, "--control", help="MODEL_DIR of a `distill --mode full` run: the full-attention fine-tuned control (gap recovered and KL against it)."),
    segmentation: str | None = option(_EVAL, "segmentations", "--segmentation", help="Comma-separated methods to cut the held-out documents by, each at the same mean block length (fixed,structure,segmenter,authored,random; with authored: each document's own mean section length, documents without sections left out). Default: the data's own cuts."),
    probe_blocks: str | None = option(_EVAL, "probe_blocks", "--probe-blocks", help="Probe sizes in context blocks, comma-separated (empty: no probes)."),
    probes_per_cell: int | None = option(_EVAL, "probes_per_cell", "--probes-per-cell", min=1, help="Probes per (kind, number of blocks, fact position)."),
    peers: bool | None = option(_EVAL, "peers", "--peers/--no-peers", help="Also score the training-free peers on the teacher's cached blocks: APE and selective recomputation."),
    ape_dev: Path | None = typer.Option(None, "--ape-dev", help="Dev documents: choose APE's prefix, temperature and scale on them (final-block NLL) before scoring."),
    recompute_ratio: float | None = option(_EVAL, "recompute_ratio", "--recompute-ratio", min=0.0, max=1.0, help="Share of context tokens that selective recomputation recomputes."),
    context_tokens: int | None = option(_EVAL, "context_tokens", "--context-tokens", help="Model tokens of context blocks per window."),
    final_tokens: int | None = option(_EVAL, "final_tokens", "--final-tokens", help="Most tokens of the final block."),
    device: str | None = option(_EVAL, "device", "--device", help="auto (CUDA when present), cpu or cuda."),
) -> None:
    """Final-block NLL/accuracy, KL and gap recovered (vs teacher and control), probes: teacher full vs naive block vs control vs students vs APE / selective recomputation.

    Examples:
      semanticseg eval-blocks --data release/data/test --student distilled=runs/distill/model --out runs/eval
      semanticseg eval-blocks --data heldout/documents.parquet --student ft=runs/ft/model --student kd=runs/kd/model --out runs/eval
      semanticseg eval-blocks --data heldout/documents.parquet --segmenter models/segmenter --student kd=runs/kd/model --out runs/eval
      semanticseg eval-blocks --data heldout --segmentation fixed,structure,authored,random --control runs/full/model --student kd=runs/kd/model --ape-dev dev --out runs/eval
    """
    from semanticseg.distill.evaluate import BlockEvalConfig, evaluate

    _check_data(data)
    students = {}
    for spec in student:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            raise fail(f"--student {spec!r}: expected NAME=MODEL_DIR with an existing folder")
        students[name] = path
    if control is not None and not control.is_dir():
        raise fail(f"--control {control}: no such model folder")
    try:
        sizes = None if probe_blocks is None else [int(n) for n in probe_blocks.split(",") if n]
    except ValueError as err:
        raise fail(f"--probe-blocks {probe_blocks!r}: expected comma-separated integers") from err
    if ape_dev is not None:
        _check_data(ape_dev)
    methods = None if segmentation is None else _check_segmentations(segmentation, segmenter)
    config = BlockEvalConfig(data=str(data), segmenter=_check_segmenter(segmenter), out=str(out), students=students, control=str(control or ""),
                        ape_dev=str(ape_dev or ""), **given(
                            teacher=teacher, text_fields=text_field, segmentations=methods, context_tokens=context_tokens,
                            final_tokens=final_tokens, max_windows=max_windows, probe_blocks=sizes, probes_per_cell=probes_per_cell,
                            peers=peers, recompute_ratio=recompute_ratio, device=device))
    evaluate(config)
    console.print((out / "results.md").read_text())
