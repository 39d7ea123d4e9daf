"""Distillation on several processes: FSDP2 (`fully_shard`) for the student and the frozen teacher.

Under `torchrun` every rank holds 1/world of each model's weights (and of the student's gradients and AdamW
state); each decoder layer is one FSDP unit, all-gathered just before it runs and freed after, so a step holds
one layer unsharded at a time besides the sharded rest. The student keeps fp32 master weights and computes in
bf16 on CUDA (FSDP's mixed precision: bf16 all-gathers, fp32 gradient reduction). The teacher's LM head is kept
whole on every rank (it is read outside the teacher's forward, by the chunked losses); everything else of it
is sharded like the student. gloo on CPU (tests), NCCL on CUDA.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch


def init_distributed(device: torch.device, timeout_s: float = 600.0) -> tuple[int, int, torch.device]:
    """(rank, world, device): a process group under torchrun (even with one process, so one GPU runs the same
    sharded code as several), else (0, 1, device) with none."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s), device_id=device if device.type == "cuda" else None)
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), device


def is_sharded() -> bool:
    """True under torchrun (a process group exists): models are sharded with FSDP2."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def global_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of a tensor over all ranks (itself, detached, in one process)."""
    value = value.detach().clone()
    if is_sharded():
        torch.distributed.all_reduce(value)
    return value


def shard_student(root: torch.nn.Module, layers: Any, device: torch.device) -> None:
    """Shard the trainable student: one FSDP unit per decoder layer, the rest (embeddings, tied head, norm) in root's.

    root must be the module whose forward runs the whole student, LM head included (recipe.HiddenAndHead), so
    that every parameter is gathered while it is used and every gradient is reduced.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if device.type == "cuda" else MixedPrecisionPolicy()
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(root, mp_policy=policy)


def shard_teacher(teacher: Any) -> torch.Tensor:
    """Shard the frozen teacher's decoder (teacher.model: embeddings, layers, norm); returns its LM-head weight,
    kept whole on every rank because the losses read it outside the teacher's forward."""
    from torch.distributed.fsdp import fully_shard

    head = teacher.lm_head.weight.detach()  # taken before sharding: with tied embeddings it is the embedding matrix
    for layer in teacher.model.layers:
        fully_shard(layer, reshard_after_forward=True)
    fully_shard(teacher.model, reshard_after_forward=True)  # no backward follows: free the root's weights after forward too
    return head


def compile_layers(model: Any) -> None:
    """torch.compile each decoder layer in place (FSDP's hooks stay outside the compiled graphs, which one
    compilation of the layer serves for every layer)."""
    for layer in model.model.layers:
        layer.compile()


def _options(**kwargs: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, trainable_only: bool = True) -> tuple[dict, dict]:
    """(model state, optimizer state) as whole CPU tensors keyed by parameter name, on rank 0 (empty elsewhere).

    A collective under torchrun: every rank must call it. The same format in one process, so a run checkpointed on
    N GPUs resumes on any other number.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    options = _options(cpu_offload=True, ignore_frozen_params=trainable_only)
    weights = get_model_state_dict(model, options=options)
    optim = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else {}
    return weights, optim


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, weights: dict, optim: dict) -> None:
    """Load full_state's output into a (possibly sharded) model and its optimizer, on every rank."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, weights, options=_options(strict=False))
    set_optimizer_state_dict(model, optimizer, optim, options=_options())
