"""The block-distillation recipe, torchtune style: setup -> train -> save_checkpoint -> cleanup.

A frozen full-attention teacher and a block-attention student initialised from it see the same text; the
student sees it through the block mask (with block sinks and block dropout) and is trained to match the
teacher's next-token distributions (forward KL, chunked over hidden states) and, with hard_weight, the true next
tokens too, weighted towards tokens whose teacher prediction changes most when cross-block attention is removed. mode="lm" is the block fine-tuning
baseline of Ma et al. instead: the student's language-modelling loss on the final block, no teacher.

Single process by default; under `torchrun` both models are sharded with FSDP2 (distill/parallel.py), every rank
draws the same global batch and trains on its share of it, and losses are normalised over the global batch, so
N processes with batch B each take the same steps as one process with batch N x B. bf16 autocast on CUDA with
fp32 master weights; FlexAttention on CUDA (our `block_flex` attention function, blockattn/flex.py), dense-mask
SDPA on CPU. Rank 0 alone writes files.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from semanticseg.blockattn.masks import attention_mask, default_implementation
from semanticseg.checkpoint import load_checkpoint
from semanticseg.distill import parallel
from semanticseg.distill.data import Batch, BlockedText, build_windows, collate, padded_length
from semanticseg.distill.losses import BETA, chunked_divergence, chunked_target_logprobs, token_weights
from semanticseg.errors import UserError
from semanticseg.io import atomic_path, write_json
from semanticseg.models import last_hidden, load_causal_lm, load_tokenizer, sink_token_id


@dataclass(slots=True)
class DistillConfig:
    """Everything a distillation (or block fine-tuning) run depends on; dumped as config.json beside it."""

    teacher: str = "smollm2"  # hub id, local model dir, or "smollm2" (offline)
    data: str = ""  # a release dir / instances.parquet, or documents.parquet (cut by structure cuts)
    out: str = "runs/distill"
    mode: str = "distill"  # "distill", "lm" (block fine-tuning baseline: final-block LM loss, no teacher) or "full" (control below)
    block_sinks: bool = True
    block_dropout: float = 0.9  # probability that a context block is isolated; 1.0 = plain block attention (chosen on dev sets)
    token_weighting: bool = True
    beta: float = BETA
    hard_weight: float = 0.5  # share of cross-entropy on the true next token in each token's loss (0 = pure distillation)
    divergence: str = "kl"  # "kl" (forward, teacher -> student) or "jsd"
    temperature: float = 1.0
    context_tokens: int = 1536  # model tokens of context blocks per window
    final_tokens: int = 256
    target_block_tokens: int = 128  # mean block size of segmenter / structure cuts (cl100k tokens)
    segmenter: str = ""  # a trained segmenter's folder: cuts documents that come without cuts (else structure cuts)
    segmentation: str = ""  # cut every document by this method (data.SEGMENTATIONS) instead of its own cuts
    text_fields: str = "text"  # for a hub data set: comma-separated fields that make a document's text
    max_block_tokens: int = 384  # longer blocks are split
    max_windows: int = 0  # 0 = all
    steps: int = 200
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 5e-5
    warmup_steps: int = 20
    weight_decay: float = 0.0
    lora: bool = False
    lora_rank: int = 16
    gradient_checkpointing: bool = False
    loss_chunk: int = 1024
    save_every: int = 100
    seed: int = 0
    device: str = "auto"
    compile: bool = True  # torch.compile the student's and teacher's decoders on CUDA (fuses norms, rotary, MLP; docs/distill_results.md)


class HiddenAndHead(torch.nn.Module):
    """The student as FSDP sees it: its forward runs the decoder and `loss(hidden [B*N, H], head weight)`, so the
    LM head (applied in chunks by the loss) is used inside the forward, while FSDP has its weights gathered."""

    def __init__(self, lm: Any):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, mask: Any, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return loss(last_hidden(self.lm, input_ids, mask).flatten(0, 1), self.lm.lm_head.weight)


@dataclass
class State:
    """What setup builds and train/save_checkpoint use."""

    cfg: DistillConfig
    device: torch.device
    implementation: str
    rank: int
    world: int
    tokenizer: Any  # None when the windows come as token ids (bench)
    sink_id: int
    pad_id: int
    windows: list[BlockedText]
    length: int
    student: Any  # the trainable LM (a peft model under LoRA)
    wrapped: torch.nn.Module  # HiddenAndHead, FSDP-sharded under torchrun
    teacher: Any
    teacher_head: torch.Tensor | None  # the teacher's LM-head weight, whole on every rank
    optimizer: torch.optim.Optimizer
    scheduler: Any
    rng: random.Random
    step: int = 0


def setup(cfg: DistillConfig) -> State:
    """Process group, tokenizer, windows, teacher, student, optimizer, schedule; resume from a checkpoint."""
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    rank, world, device = parallel.init_distributed(device)
    checkpoint = Path(cfg.out) / "checkpoint.pt"
    saved = load_checkpoint(checkpoint, map_location="cpu") if checkpoint.exists() else None  # before the models: a bad file fails fast
    torch.manual_seed(cfg.seed)
    implementation = default_implementation(device)
    tokenizer = load_tokenizer(cfg.teacher)
    windows = build_windows(Path(cfg.data), tokenizer, cfg.context_tokens, cfg.final_tokens, cfg.target_block_tokens, cfg.max_block_tokens,
                            cfg.segmenter, cfg.text_fields, cfg.segmentation)
    if cfg.max_windows:
        windows = windows[: cfg.max_windows]
    if not windows:
        raise UserError(f"{cfg.data}: no document gives a window of >= 2 context blocks and a final block")
    student = load_causal_lm(cfg.teacher, str(device), "fp32", implementation)
    teacher = None
    if cfg.mode in ("distill", "full"):
        teacher = load_causal_lm(cfg.teacher, str(device), "auto", implementation).eval().requires_grad_(False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    state = assemble(cfg, student, teacher, windows, sink_token_id(tokenizer), pad, device, implementation, rank, world, tokenizer)
    if saved is not None:
        if not isinstance(saved.get("rng"), tuple):
            raise UserError(f"{checkpoint}: written by an older semanticseg (one sampler per rank); delete it to start the run over")
        parallel.load_full_state(state.student, state.optimizer, saved["trainable"], saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        state.rng.setstate(saved["rng"])
        state.step = saved["step"]
    return state


def assemble(cfg: DistillConfig, student: Any, teacher: Any, windows: list[BlockedText], sink_id: int, pad_id: int, device: torch.device,
             implementation: str, rank: int = 0, world: int = 1, tokenizer: Any = None) -> State:
    """Loaded models + windows -> a State ready to train: LoRA, activation checkpointing, FSDP2 sharding under
    torchrun, compiled decoders on CUDA, optimizer and schedule. bench/bench_distill_scale.py calls it with
    randomly initialised models and synthetic windows."""
    from transformers import get_cosine_schedule_with_warmup

    if len(windows) < world:
        raise UserError(f"{len(windows)} training windows for {world} processes: every process needs at least one")
    if cfg.gradient_checkpointing:
        student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # FSDP2 composes with the non-reentrant form
    if cfg.lora:
        from peft import get_peft_model

        student = get_peft_model(student, _lora_config(cfg))
    lm = student.base_model.model if cfg.lora else student
    wrapped = HiddenAndHead(lm)
    teacher_head = None if teacher is None else teacher.lm_head.weight.detach()
    if parallel.is_sharded():
        parallel.shard_student(wrapped, lm.model.layers, device)
        if teacher is not None:
            teacher_head = parallel.shard_teacher(teacher)
    if cfg.compile and device.type == "cuda":
        for model in (lm, teacher):
            if model is None:
                continue
            if parallel.is_sharded():
                parallel.compile_layers(model)  # per layer: FSDP's hooks run between layers, outside the graphs
            else:
                model.model.compile()  # in place: parameter names, checkpoints and save_pretrained are unchanged
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.steps)
    return State(cfg, device, implementation, rank, world, tokenizer, sink_id, pad_id, windows, padded_length(windows), student, wrapped, teacher,
                 teacher_head, optimizer, scheduler, random.Random(cfg.seed))


def _lora_config(cfg: DistillConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def _hidden(model: Any, ids: torch.Tensor, mask: Any = None) -> torch.Tensor:
    return last_hidden(model, ids, mask).flatten(0, 1)


def step_loss(state: State, batch: Batch) -> torch.Tensor:
    """The loss of one micro-batch: distillation (weighted divergence) or the final-block LM loss.

    Normalised over the global batch (every rank's tokens), times the number of ranks: FSDP averages the ranks'
    gradients, so their mean is the gradient of the one-process loss over the same windows.

    mode "full" is the fair upper bound: the same loss, positions and token weights as distillation, but the
    student reads the teacher's natural text with full attention (a full-attention fine-tune on the same data).
    """
    cfg = state.cfg
    mask = attention_mask(batch.s_blocks, batch.s_open, state.implementation)
    if cfg.mode == "lm":
        keep = batch.final
        s_pos, targets = batch.s_pos[keep], batch.targets[keep]
        count = parallel.global_sum(keep.sum().float()).clamp_min(1) / state.world

        def lm_loss(hidden: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
            return -chunked_target_logprobs(hidden[s_pos], head, targets, cfg.loss_chunk).sum() / count

        return state.wrapped(batch.s_ids, mask, lm_loss)
    keep = batch.open_pred
    s_pos, t_pos, targets = batch.s_pos[keep], batch.t_pos[keep], batch.targets[keep]
    teacher_head = state.teacher_head
    with torch.no_grad():
        h_teacher = _hidden(state.teacher, batch.t_ids)[t_pos]
        weights = torch.ones(len(targets), device=h_teacher.device)
        if cfg.token_weighting:
            h_block = _hidden(state.teacher, batch.s_ids, mask)[s_pos]
            full = chunked_target_logprobs(h_teacher, teacher_head, targets, cfg.loss_chunk)
            block = chunked_target_logprobs(h_block, teacher_head, targets, cfg.loss_chunk)
            weights = token_weights(full, block, cfg.beta)
    denominator = parallel.global_sum(weights.sum()) / state.world
    full_attention = cfg.mode == "full"
    positions = t_pos if full_attention else s_pos

    def distill_loss(hidden: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        return chunked_divergence(hidden[positions], h_teacher, head, teacher_head, weights, cfg.divergence, cfg.temperature, cfg.loss_chunk,
                                  targets, cfg.hard_weight, denominator)

    return state.wrapped(batch.t_ids, None, distill_loss) if full_attention else state.wrapped(batch.s_ids, mask, distill_loss)


def next_batch(state: State) -> Batch:
    """This rank's share of a random global batch of batch_size x world windows.

    Every rank draws the same global batch from the same generator, and each window's block dropout from its own
    seed, so a window is laid out the same whichever rank (or how many ranks) takes it.
    """
    cfg = state.cfg
    picked = state.rng.sample(state.windows, min(cfg.batch_size * state.world, len(state.windows)))
    rngs = [random.Random(state.rng.getrandbits(64)) for _ in picked]
    mine = slice(state.rank * len(picked) // state.world, (state.rank + 1) * len(picked) // state.world)
    return collate(picked[mine], state.sink_id, state.pad_id, state.length, cfg.block_sinks, cfg.block_dropout, rngs[mine]).to(state.device)


def train_step(state: State) -> dict[str, float]:
    """One optimizer step (grad_accum micro-batches); its log row: global loss and student tokens/s over all ranks."""
    cfg = state.cfg
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=state.device.type == "cuda")
    started, tokens, total = time.perf_counter(), 0, 0.0
    for _ in range(cfg.grad_accum):
        batch = next_batch(state)
        with autocast:
            loss = step_loss(state, batch) / cfg.grad_accum
        loss.backward()
        total += loss.item()
        tokens += int((batch.s_blocks < batch.s_open.shape[1] - 1).sum())
    torch.nn.utils.clip_grad_norm_([p for p in state.student.parameters() if p.requires_grad], 1.0)
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    summed = parallel.global_sum(torch.tensor([total, tokens], dtype=torch.float64, device=state.device))
    seconds = time.perf_counter() - started
    loss_value, tokens = float(summed[0]) / state.world, int(summed[1])
    return {"step": state.step, "loss": loss_value, "lr": state.scheduler.get_last_lr()[0], "tokens_per_s": tokens / seconds, "seconds": seconds}


def train(state: State, progress: Any = None) -> list[dict[str, float]]:
    """Run the remaining steps; returns the log rows (also appended to OUT/train_log.jsonl on rank 0)."""
    cfg = state.cfg
    log_path = Path(cfg.out) / "train_log.jsonl"
    task = progress.add_task(cfg.mode, total=cfg.steps, completed=state.step, info="") if progress and state.rank == 0 else None
    if state.step == 0 and state.rank == 0:
        log_path.unlink(missing_ok=True)  # a run started over (no checkpoint) starts its log over too
    rows: list[dict[str, float]] = []
    while state.step < cfg.steps:
        row = train_step(state)
        rows.append(row)
        if state.rank == 0:
            with log_path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            if task is not None:
                progress.update(task, completed=state.step, info=f"loss {row['loss']:.4f}  {row['tokens_per_s']:,.0f} tok/s")
        if state.step % cfg.save_every == 0 or state.step == cfg.steps:
            save_checkpoint(state)
    return rows


def save_checkpoint(state: State) -> None:
    """Atomically save trainable weights, optimizer, schedule, step and the sampler (whole tensors, from rank 0)."""
    trainable, optimizer = parallel.full_state(state.student, state.optimizer)
    if state.rank != 0:
        return
    saved = {"trainable": trainable, "optimizer": optimizer, "scheduler": state.scheduler.state_dict(), "rng": state.rng.getstate(), "step": state.step}
    with atomic_path(Path(state.cfg.out) / "checkpoint.pt") as tmp:
        torch.save(saved, tmp)


def save_model(state: State) -> Path:
    """The trained student as a plain model directory (LoRA merged), loadable by eval-blocks."""
    out = Path(state.cfg.out) / "model"
    model = state.student
    if parallel.is_sharded():  # gather the whole weights into an unsharded CPU copy on rank 0
        weights, _ = parallel.full_state(state.student, trainable_only=False)
        if state.rank != 0:
            return out
        model = load_causal_lm(state.cfg.teacher, "cpu", "fp32")
        if state.cfg.lora:
            from peft import get_peft_model

            model = get_peft_model(model, _lora_config(state.cfg))
        model.load_state_dict(weights)
    if state.rank == 0:
        model = model.merge_and_unload() if state.cfg.lora else model
        model.to(torch.bfloat16).save_pretrained(out)
        state.tokenizer.save_pretrained(out)
        write_json(out / "block_attention.json", {"block_sinks": state.cfg.block_sinks and state.cfg.mode != "full", "mode": state.cfg.mode})
    return out


def cleanup(state: State) -> None:
    """Tear down the process group."""
    if parallel.is_sharded():
        torch.distributed.destroy_process_group()


def run(cfg: DistillConfig, progress: Any = None) -> Path:
    """setup -> train -> save -> cleanup; writes config.json first (rank 0). Returns the model directory."""
    if os.environ.get("RANK", "0") == "0":
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(cfg.out) / "config.json", asdict(cfg))
    state = setup(cfg)
    try:
        train(state, progress)
        return save_model(state)
    finally:
        cleanup(state)
