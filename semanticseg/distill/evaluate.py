"""eval-blocks: final-block quality of block-attention models against the full-attention teacher.

On held-out windows (context blocks + a final block) it scores (a) the teacher with full attention,
(b) the teacher with naive block attention (every context block isolated, no sinks), and any number of
trained students under plain block attention (with block sinks if they were trained with them): negative
log-likelihood and next-token accuracy on the final block and on every non-first block, and
gap recovered = (b - s) / (b - a) on the final block. A retrieval probe states a fact in one context
block and asks for it in the final block (log-probability and greedy accuracy of the answer tokens).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from semanticseg.blockattn.masks import attention_mask, default_implementation
from semanticseg.distill.data import BlockedText, build_windows, collate, padded_length
from semanticseg.distill.losses import chunked_argmax, chunked_target_logprobs
from semanticseg.io import write_json
from semanticseg.models import last_hidden, load_causal_lm, load_tokenizer, sink_token_id

PROBE_NAMES = ["amber", "basalt", "cobalt", "delta", "ember", "falcon", "granite", "harbor", "indigo", "juniper", "krypton", "lumen"]


@dataclass(slots=True)
class EvalConfig:
    """What eval-blocks scores and on which data; dumped as eval_config.json beside the results."""

    teacher: str = "smollm2"
    data: str = ""
    out: str = "runs/eval-blocks"
    students: dict[str, str] = field(default_factory=dict)  # name -> model dir written by distill
    context_tokens: int = 1536
    final_tokens: int = 256
    target_block_tokens: int = 128
    segmenter: str = ""  # a trained segmenter's folder: cuts documents that come without cuts (else structure cuts)
    text_fields: str = "text"  # for a hub data set: comma-separated fields that make a document's text
    max_block_tokens: int = 384
    max_windows: int = 64
    probes: int = 32
    batch_size: int = 4
    device: str = "auto"


@dataclass(slots=True)
class Scored:
    """One model configuration's figures."""

    name: str
    nll_final: float
    acc_final: float
    nll_nonfirst: float
    probe_logp: float
    probe_acc: float
    gap_recovered: float | None = None


def _sinks(model_dir: str) -> bool:
    path = Path(model_dir) / "block_attention.json"
    return bool(json.loads(path.read_text())["block_sinks"]) if path.exists() else False


@torch.no_grad()
def _score(model: Any, batches: list[Any], full: bool, implementation: str) -> dict[str, torch.Tensor]:
    """Per-target log-probs, greedy hits and flags over all batches (full attention or plain block attention)."""
    logp, hit, final, nonfirst = [], [], [], []
    head = model.lm_head.weight
    for batch in batches:
        ids, pos = (batch.t_ids, batch.t_pos) if full else (batch.s_ids, batch.s_pos)
        mask = None if full else attention_mask(batch.s_blocks, batch.s_open, implementation)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=ids.device.type == "cuda"):
            hidden = last_hidden(model, ids, mask).flatten(0, 1)[pos]
        logp.append(chunked_target_logprobs(hidden, head, batch.targets).float().cpu())
        hit.append((chunked_argmax(hidden, head) == batch.targets).cpu())
        final.append(batch.final.cpu())
        s_block = batch.s_blocks.flatten()[batch.s_pos]
        nonfirst.append((s_block > 0).cpu())
    return {"logp": torch.cat(logp), "hit": torch.cat(hit), "final": torch.cat(final), "nonfirst": torch.cat(nonfirst)}


def probe_windows(windows: list[BlockedText], tokenizer: Any, count: int, seed: int = 0) -> list[tuple[BlockedText, int]]:
    """Retrieval probes: a fact block replaces a middle context block; the final block asks for the fact.

    Returns (window, number of answer tokens at the end of its final block).
    """
    rng = random.Random(seed)

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    probes = []
    for window in rng.sample(windows, min(count, len(windows))):
        name, number = rng.choice(PROBE_NAMES), rng.randint(1000, 9999)
        fact = encode(f"\nNote: the access code for the {name} archive is {number}.\n")
        blocks = list(window.blocks)
        blocks[rng.randrange(1, len(blocks))] = fact
        answer = encode(f" {number}")
        question = encode(f"\nQuestion: What is the access code for the {name} archive?\nAnswer: The access code for the {name} archive is")
        probes.append((BlockedText(window.doc_id, blocks, question + answer), len(answer)))
    return probes


def _probe(model: Any, batches: list[Any], answer_lengths: list[int], full: bool, implementation: str) -> tuple[float, float]:
    """Mean answer log-prob and greedy accuracy (every answer token right) over the probes."""
    logps, hits = [], []
    for batch, n in zip(batches, answer_lengths, strict=True):
        scored = _score(model, [batch], full, implementation)
        logps.append(float(scored["logp"][-n:].sum()))
        hits.append(bool(scored["hit"][-n:].all()))
    return sum(logps) / len(logps), sum(hits) / len(hits)


def evaluate(cfg: EvalConfig) -> list[Scored]:
    """Score teacher full, teacher naive block and every student; write results.json, results.md, plot."""
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    implementation = default_implementation(device)
    tokenizer = load_tokenizer(cfg.teacher)
    windows = build_windows(Path(cfg.data), tokenizer, cfg.context_tokens, cfg.final_tokens, cfg.target_block_tokens, cfg.max_block_tokens,
                            cfg.segmenter, cfg.text_fields)
    if len(windows) > cfg.max_windows:  # evenly spaced, so every document group (e.g. category) is represented
        windows = [windows[i * len(windows) // cfg.max_windows] for i in range(cfg.max_windows)]
    if not windows:
        raise ValueError(f"{cfg.data}: no held-out window with >= 2 context blocks and a final block")
    probes = probe_windows(windows, tokenizer, cfg.probes)
    length = max(padded_length(windows), padded_length([p for p, _ in probes]))
    sink, pad = sink_token_id(tokenizer), tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def batches(sinks: bool) -> tuple[list[Any], list[Any]]:
        rng = random.Random(0)
        main = [collate(windows[i : i + cfg.batch_size], sink, pad, length, sinks, 1.0, rng).to(device) for i in range(0, len(windows), cfg.batch_size)]
        probe = [collate([p], sink, pad, length, sinks, 1.0, rng).to(device) for p, _ in probes]
        return main, probe

    answer_lengths = [n for _, n in probes]
    results: list[Scored] = []

    def add(name: str, model: Any, full: bool, sinks: bool) -> None:
        main, probe = batches(sinks)
        scored = _score(model, main, full, implementation)
        probe_logp, probe_acc = _probe(model, probe, answer_lengths, full, implementation)
        final, nonfirst = scored["final"], scored["nonfirst"]
        results.append(
            Scored(name, float(-scored["logp"][final].mean()), float(scored["hit"][final].float().mean()), float(-scored["logp"][nonfirst].mean()), probe_logp, probe_acc)
        )

    teacher = load_causal_lm(cfg.teacher, str(device), "auto", implementation).eval()
    add("teacher-full", teacher, True, False)
    add("teacher-block", teacher, False, False)
    del teacher
    for name, model_dir in cfg.students.items():
        model = load_causal_lm(model_dir, str(device), "auto", implementation).eval()
        add(name, model, False, _sinks(model_dir))
        del model
    full_nll, block_nll = results[0].nll_final, results[1].nll_final
    for row in results:
        row.gap_recovered = (block_nll - row.nll_final) / (block_nll - full_nll) if block_nll != full_nll else None
    write_report(cfg, results, len(windows), sum(len(w.final) for w in windows), len(probes))
    return results


def write_report(cfg: EvalConfig, results: list[Scored], n_windows: int, final_tokens: int, n_probes: int) -> None:
    """results.json, results.md (a table) and results.png (final-block NLL and probe accuracy per model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(cfg.out)
    write_json(out / "eval_config.json", asdict(cfg))
    write_json(out / "results.json", {"windows": n_windows, "final_tokens": final_tokens, "probes": n_probes, "rows": [asdict(r) for r in results]})
    lines = [
        f"Held-out windows: {n_windows} (final-block tokens: {final_tokens}); retrieval probes: {n_probes}.",
        "",
        "| model | final-block NLL | final-block acc | non-first-block NLL | gap recovered | probe log-p | probe acc |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        gap = "" if r.gap_recovered is None else f"{100 * r.gap_recovered:.1f}%"
        lines.append(f"| {r.name} | {r.nll_final:.4f} | {r.acc_final:.4f} | {r.nll_nonfirst:.4f} | {gap} | {r.probe_logp:.3f} | {r.probe_acc:.3f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r.name for r in results]
    left.barh(names, [r.nll_final for r in results], color="tab:blue")
    left.set_xlim(min(r.nll_final for r in results) * 0.98, max(r.nll_final for r in results) * 1.01)
    left.set_xlabel("final-block NLL (nats/token, lower is better)")
    left.invert_yaxis()
    right.barh(names, [r.probe_acc for r in results], color="tab:green")
    right.set_xlabel("retrieval probe accuracy")
    right.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)
    plt.close(fig)
