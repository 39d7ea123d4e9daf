"""Losses over hidden states, computed in chunks so a long sequence's vocabulary logits never all exist.

Each chunk projects a slice of hidden states through the LM head, computes its loss and is recomputed in
backward (torch.utils.checkpoint), so peak memory holds one chunk's logits, not N x V. This is the idea of
Liger's fused linear JSD written in plain PyTorch (no Triton kernel needed, runs on CPU in tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

BETA = 0.5  # token-weight scale of the authors' InComeS code


def token_weights(logp_full: torch.Tensor, logp_block: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """w = 1 + beta * relu(logp_T(y | full) - logp_T(y | block)): extra weight where blocking hurts the teacher.

    The 1 keeps every token in the loss (InComeS adds the weighted term to the plain one); the relu term
    focuses the loss on tokens whose teacher prediction depends on cross-block context.
    """
    return 1.0 + beta * torch.relu(logp_full - logp_block)


def _logprob_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per row, without the full log-softmax."""
    return logits.gather(-1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)


def _divergence(h_s: torch.Tensor, h_t: torch.Tensor, w_s: torch.Tensor, w_t: torch.Tensor, kind: str, temperature: float,
                targets: torch.Tensor | None = None, hard_weight: float = 0.0) -> torch.Tensor:
    logits_s = (h_s @ w_s.T).float()
    logp_s = F.log_softmax(logits_s / temperature, dim=-1)
    logp_t = F.log_softmax((h_t @ w_t.T).float() / temperature, dim=-1)
    if kind == "kl":  # forward KL(teacher || student)
        soft = (logp_t.exp() * (logp_t - logp_s)).sum(-1)
    else:
        mix = torch.logsumexp(torch.stack([logp_s, logp_t]), dim=0) - torch.log(torch.tensor(2.0, device=h_s.device))
        soft = 0.5 * ((logp_t.exp() * (logp_t - mix)).sum(-1) + (logp_s.exp() * (logp_s - mix)).sum(-1))
    soft = soft * temperature**2
    if targets is None or not hard_weight:
        return soft
    hard = -_logprob_of(logits_s, targets)  # cross-entropy at temperature 1
    return (1.0 - hard_weight) * soft + hard_weight * hard


def chunked_divergence(
    h_student: torch.Tensor,
    h_teacher: torch.Tensor,
    head_student: torch.Tensor,
    head_teacher: torch.Tensor,
    weights: torch.Tensor,
    kind: str = "kl",
    temperature: float = 1.0,
    chunk: int = 1024,
    targets: torch.Tensor | None = None,
    hard_weight: float = 0.0,
    denominator: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean per-token distillation loss between teacher and student next-token distributions.

    h_*: [T, D] hidden states at the T selected positions (already aligned); head_*: [V, D] LM-head weights;
    weights: [T]. kind: "kl" (forward KL, teacher -> student) or "jsd", scaled by temperature**2 as usual.
    With targets [T] and hard_weight h > 0 each token's loss is (1 - h) * divergence + h * cross-entropy on the
    true next token (Hinton's soft + hard targets; Liger's chunked distillation losses weigh them 0.5 / 0.5).
    denominator replaces weights.sum() (data parallelism: the weights of the whole global batch).
    """
    if kind not in ("kl", "jsd"):
        raise ValueError(f"unknown divergence {kind!r}: use kl or jsd")
    if not 0.0 <= hard_weight <= 1.0 or (hard_weight and targets is None):
        raise ValueError("hard_weight must be in [0, 1] and needs targets")
    total = h_student.new_zeros((), dtype=torch.float32)
    for start in range(0, h_student.shape[0], chunk):
        part = slice(start, start + chunk)
        part_targets = None if targets is None else targets[part]
        per_token = checkpoint(_divergence, h_student[part], h_teacher[part], head_student, head_teacher, kind, temperature,
                               part_targets, hard_weight, use_reentrant=False)
        total = total + (per_token * weights[part]).sum()
    return total / (weights.sum() if denominator is None else denominator).clamp_min(1e-8)


def _target_logprobs(h: torch.Tensor, head: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _logprob_of((h @ head.T).float(), targets)


def chunked_target_logprobs(hidden: torch.Tensor, head: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """log p(target) at each of T positions ([T, D] hidden, [T] targets) -> [T], chunked over T."""
    parts = [
        checkpoint(_target_logprobs, hidden[s : s + chunk], head, targets[s : s + chunk], use_reentrant=False)
        for s in range(0, hidden.shape[0], chunk)
    ]
    return torch.cat(parts) if parts else hidden.new_zeros(0)


def _argmax(hidden: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return (hidden @ head.T).argmax(-1)


@torch.no_grad()
def chunked_argmax(hidden: torch.Tensor, head: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Greedy next-token prediction at each of T positions, chunked over T (for accuracy)."""
    return torch.cat([_argmax(hidden[s : s + chunk], head) for s in range(0, hidden.shape[0], chunk)])
