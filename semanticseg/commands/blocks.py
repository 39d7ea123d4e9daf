"""Block-attention commands: distill, eval-blocks."""

from __future__ import annotations

from pathlib import Path

import typer

from semanticseg.cli import app
from semanticseg.commands.common import console, fail, progress_bar, writable_folder

_DATA_HELP = ("A release (folder or instances.parquet: text + cuts), documents.parquet, or a Hugging Face data set id "
              "(owner/name[:config], e.g. nvidia/ChatQA2-Long-SFT-data:long_sft; online); documents without cuts are cut by --segmenter, else by structure cuts.")
_TEXT_FIELD_HELP = "For a hub data set: the fields that make a document, comma-separated, joined in order (chat message lists become their contents)."
_TEACHER_HELP = "Teacher: a hub id (e.g. Qwen/Qwen3-4B-Instruct-2507), a local model folder, or smollm2 (offline SmolLM2-135M-Instruct)."
_SEGMENTER_HELP = "A trained segmenter's folder (semanticseg train-segmenter): cuts documents that come without cuts into blocks of ~128 tokens; without it, the structure annotator does."


def _check_segmenter(segmenter: Path | None) -> str:
    if segmenter is None:
        return ""
    from semanticseg.segmenter.model import check_segmenter_dir

    try:
        return str(check_segmenter_dir(segmenter))
    except FileNotFoundError as err:
        raise fail(f"--segmenter: {err}") from err


def _check_data(data: Path) -> None:
    from semanticseg.distill.data import is_hub_id

    if not data.exists() and not is_hub_id(str(data)):
        raise fail(f"{data}: no such file or folder ({_DATA_HELP})")


@app.command("distill")
def distill_cmd(
    teacher: str = typer.Option("smollm2", "--teacher", help=_TEACHER_HELP),
    data: Path = typer.Option(..., "--data", help=_DATA_HELP),
    segmenter: Path | None = typer.Option(None, "--segmenter", help=_SEGMENTER_HELP),
    text_field: str = typer.Option("text", "--text-field", help=_TEXT_FIELD_HELP),
    out: Path = typer.Option(..., "--out", callback=writable_folder, help="Run folder: config.json, train_log.jsonl, checkpoint.pt (resumes), model/."),
    mode: str = typer.Option("distill", "--mode", help="distill (teacher -> block student) or lm (block fine-tuning baseline: final-block LM loss, no teacher)."),
    block_sinks: bool = typer.Option(True, "--block-sinks/--no-block-sinks", help="Put a sink token (BOS) at the head of every context block."),
    block_dropout: float = typer.Option(0.9, "--block-dropout", min=0.0, max=1.0, help="Probability that a context block is isolated each step (the rest attend to everything before them); 1.0 = every block isolated (no block dropout). 0.9 was chosen on dev sets (docs/distill_results.md)."),
    token_weighting: bool = typer.Option(True, "--token-weighting/--no-token-weighting", help="Weight tokens by 1 + beta*relu(logp_T(full) - logp_T(block))."),
    beta: float = typer.Option(0.5, "--beta", help="Token-weighting scale."),
    hard_weight: float = typer.Option(0.5, "--hard-weight", min=0.0, max=1.0, help="Share of cross-entropy on the true next token in each token's loss, the rest is the divergence from the teacher (0 = pure distillation; docs/distill_results.md)."),
    divergence: str = typer.Option("kl", "--divergence", help="kl (forward, teacher -> student) or jsd."),
    temperature: float = typer.Option(1.0, "--temperature", help="Softmax temperature of both distributions."),
    context_tokens: int = typer.Option(1536, "--context-tokens", help="Model tokens of context blocks per training window."),
    final_tokens: int = typer.Option(256, "--final-tokens", help="Most tokens of the final block."),
    steps: int = typer.Option(200, "--steps", min=1, help="Optimizer steps."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Windows per micro-batch (per GPU)."),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1, help="Micro-batches per optimizer step."),
    lr: float = typer.Option(5e-5, "--lr", help="Peak learning rate (cosine schedule with warmup)."),
    warmup_steps: int = typer.Option(20, "--warmup-steps", help="Linear warmup steps."),
    lora: bool = typer.Option(False, "--lora", help="Train LoRA adapters (peft) instead of all weights; merged on save."),
    lora_rank: int = typer.Option(16, "--lora-rank", help="LoRA rank."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Recompute activations in backward (long sequences, big models)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda. Multi-GPU: run under torchrun."),
    compile_model: bool = typer.Option(True, "--compile/--no-compile", help="torch.compile the decoders on CUDA (faster steps after a minute of compiling)."),
) -> None:
    """Distill a block-attention student from a frozen full-attention teacher (or train the block fine-tuning baseline).

    Examples:
      semanticseg distill --data release/data --out runs/distill
      semanticseg distill --data work/web/documents.parquet --out runs/ft --mode lm
      semanticseg distill --data work/web/documents.parquet --segmenter models/segmenter --out runs/kd
      torchrun --nproc-per-node 8 --no-python semanticseg distill --teacher Qwen/Qwen3-4B-Instruct-2507 --data release/data --out runs/q3 --lora
    """
    from semanticseg.distill.recipe import DistillConfig, run

    _check_data(data)
    if mode not in ("distill", "lm") or divergence not in ("kl", "jsd"):
        raise fail("--mode must be distill or lm, --divergence kl or jsd")
    config = DistillConfig(
        teacher=teacher, data=str(data), segmenter=_check_segmenter(segmenter), text_fields=text_field, out=str(out), mode=mode, block_sinks=block_sinks, block_dropout=block_dropout,
        token_weighting=token_weighting, beta=beta, hard_weight=hard_weight, divergence=divergence, temperature=temperature, context_tokens=context_tokens,
        final_tokens=final_tokens, steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, warmup_steps=warmup_steps,
        lora=lora, lora_rank=lora_rank, gradient_checkpointing=gradient_checkpointing, seed=seed, device=device,
        compile=compile_model,
    )
    with progress_bar() as progress:
        model_dir = run(config, progress)
    console.print(f"student saved to {model_dir}")


@app.command("eval-blocks")
def eval_blocks_cmd(
    teacher: str = typer.Option("smollm2", "--teacher", help=_TEACHER_HELP),
    data: Path = typer.Option(..., "--data", help="Held-out documents. " + _DATA_HELP),
    segmenter: Path | None = typer.Option(None, "--segmenter", help=_SEGMENTER_HELP),
    text_field: str = typer.Option("text", "--text-field", help=_TEXT_FIELD_HELP),
    student: list[str] = typer.Option([], "--student", help="NAME=MODEL_DIR of a model written by distill; repeat for several."),
    out: Path = typer.Option(..., "--out", callback=writable_folder, help="Folder for results.json, results.md (table), results.png (plot), eval_config.json."),
    max_windows: int = typer.Option(64, "--max-windows", min=1, help="Held-out windows to score."),
    probes: int = typer.Option(32, "--probes", min=1, help="Retrieval probes (a fact in one block, asked in the final block)."),
    context_tokens: int = typer.Option(1536, "--context-tokens", help="Model tokens of context blocks per window."),
    final_tokens: int = typer.Option(256, "--final-tokens", help="Most tokens of the final block."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda."),
) -> None:
    """Final-block NLL/accuracy, gap recovered and a retrieval probe: teacher full vs naive block vs students.

    Examples:
      semanticseg eval-blocks --data release/data/test --student distilled=runs/distill/model --out runs/eval
      semanticseg eval-blocks --data heldout/documents.parquet --student ft=runs/ft/model --student kd=runs/kd/model --out runs/eval
      semanticseg eval-blocks --data heldout/documents.parquet --segmenter models/segmenter --student kd=runs/kd/model --out runs/eval
    """
    from semanticseg.distill.evaluate import EvalConfig, evaluate

    _check_data(data)
    students = {}
    for spec in student:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            raise fail(f"--student {spec!r}: expected NAME=MODEL_DIR with an existing folder")
        students[name] = path
    config = EvalConfig(teacher=teacher, data=str(data), segmenter=_check_segmenter(segmenter), text_fields=text_field, out=str(out), students=students, context_tokens=context_tokens,
                        final_tokens=final_tokens, max_windows=max_windows, probes=probes, device=device)
    evaluate(config)
    console.print((out / "results.md").read_text())
