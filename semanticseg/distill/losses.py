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


def _divergence(h_s: torch.Tensor, h_t: torch.Tensor, w_s: torch.Tensor, w_t: torch.Tensor, kind: str, temperature: float) -> torch.Tensor:
    logp_s = F.log_softmax((h_s @ w_s.T).float() / temperature, dim=-1)
    logp_t = F.log_softmax((h_t @ w_t.T).float() / temperature, dim=-1)
    if kind == "kl":  # forward KL(teacher || student)
        return (logp_t.exp() * (logp_t - logp_s)).sum(-1)
    mix = torch.logsumexp(torch.stack([logp_s, logp_t]), dim=0) - torch.log(torch.tensor(2.0, device=h_s.device))
    return 0.5 * ((logp_t.exp() * (logp_t - mix)).sum(-1) + (logp_s.exp() * (logp_s - mix)).sum(-1))


def chunked_divergence(
    h_student: torch.Tensor,
    h_teacher: torch.Tensor,
    head_student: torch.Tensor,
    head_teacher: torch.Tensor,
    weights: torch.Tensor,
    kind: str = "kl",
    temperature: float = 1.0,
    chunk: int = 1024,
) -> torch.Tensor:
    """Weighted mean per-token divergence between teacher and student next-token distributions.

    h_*: [T, D] hidden states at the T selected positions (already aligned); head_*: [V, D] LM-head weights;
    weights: [T]. kind: "kl" (forward KL, teacher -> student) or "jsd". Scaled by temperature**2 as usual.
    """
    if kind not in ("kl", "jsd"):
        raise ValueError(f"unknown divergence {kind!r}: use kl or jsd")
    total = h_student.new_zeros((), dtype=torch.float32)
    for start in range(0, h_student.shape[0], chunk):
        part = slice(start, start + chunk)
        per_token = checkpoint(_divergence, h_student[part], h_teacher[part], head_student, head_teacher, kind, temperature, use_reentrant=False)
        total = total + (per_token * weights[part]).sum()
    return total * temperature**2 / weights.sum().clamp_min(1e-8)


def _target_logprobs(h: torch.Tensor, head: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = (h @ head.T).float()
    return logits.gather(-1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)


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
