"""eval-blocks: final-block quality of block-attention models against full attention, per segmentation.

On held-out windows (context blocks + a final block), cut by each requested segmentation method at the same mean
block length, it scores (a) the teacher with full attention, (b) the teacher with naive block attention (every
context block isolated, no sinks), the full-attention fine-tuned control (`distill --mode full`) with full and
with block attention, any number of trained students under plain block attention (with block sinks if trained
with them), and the training-free peers on the teacher's cached blocks (APE, selective recomputation).
Per model: negative log-likelihood and next-token accuracy on the final block (and on every non-first block for
masked models), KL(teacher-full || model) and KL(control-full || model) on the final block, and gap recovered
(b - s) / (b - a) against the frozen teacher and (b - s) / (b - c) against the control c. Probes (probes.py) give
answer accuracy and log-p by kind, number of blocks and position.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from semanticseg.blockattn.masks import attention_mask
from semanticseg.distill.data import BlockedText, authored_targets, build_windows, collate, padded_length
from semanticseg.distill.losses import chunked_target_logprobs
from semanticseg.distill.probes import Probe, probe_suite, summarise
from semanticseg.errors import UserError
from semanticseg.io import write_json
from semanticseg.models import last_hidden, load_causal_lm, load_tokenizer, sink_token_id


@dataclass(slots=True)
class BlockEvalConfig:
    """What eval-blocks scores and on which data; dumped as eval_config.json beside the results."""

    teacher: str = "smollm2"
    data: str = ""
    out: str = "runs/eval-blocks"
    students: dict[str, str] = field(default_factory=dict)  # name -> model dir written by distill
    control: str = ""  # model dir written by `distill --mode full`: the fair upper bound
    segmentations: list[str] = field(default_factory=list)  # data.SEGMENTATIONS; empty = the data's own cuts
    context_tokens: int = 1536
    final_tokens: int = 256
    target_block_tokens: int = 128  # mean block length of every method (with "authored": each document's own)
    segmenter: str = ""  # a trained segmenter's folder: the "segmenter" method, and cuts for documents without cuts
    text_fields: str = "text"  # for a hub data set: comma-separated fields that make a document's text
    max_block_tokens: int = 384
    max_windows: int = 64
    probe_blocks: list[int] = field(default_factory=lambda: [16, 32, 64])
    probes_per_cell: int = 4  # probes per (kind, number of blocks, position)
    probe_block_tokens: int = 96
    peers: bool = True  # APE and selective recomputation on the teacher's cached blocks
    ape_prefix: str | None = None  # None: no shared prefix; else BOS + this text
    ape_temperature: float = 1.0
    ape_scale: float = 1.0
    ape_dev: str = ""  # a dev set: choose ape_prefix / temperature / scale on it (final-block NLL) first
    recompute_ratio: float = 0.15
    batch_size: int = 4
    device: str = "auto"


@dataclass(slots=True)
class Scored:
    """One model configuration's figures on one segmentation."""

    name: str
    segmentation: str
    nll_final: float
    acc_final: float
    nll_nonfirst: float | None
    kl_teacher: float
    kl_control: float | None
    probe_logp: float | None = None
    probe_acc: float | None = None
    gap_recovered: float | None = None  # against the frozen full-attention teacher
    gap_vs_control: float | None = None  # against the full-attention fine-tuned control


def _meta(model_dir: str) -> dict[str, Any]:
    path = Path(model_dir) / "block_attention.json"
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class _Harness:
    """Tokenizer, device and padding shared by every scoring pass."""

    cfg: BlockEvalConfig
    device: torch.device
    implementation: str
    sink: int
    pad: int

    def batches(self, windows: list[BlockedText], sinks: bool) -> list[Any]:
        """Batches in order, each padded to its own longest window (probes of 16 blocks are not padded to 64)."""
        rng = random.Random(0)
        chunks = [windows[i : i + self.cfg.batch_size] for i in range(0, len(windows), self.cfg.batch_size)]
        return [collate(chunk, self.sink, self.pad, padded_length(chunk), sinks, 1.0, rng).to(self.device) for chunk in chunks]


@torch.no_grad()
def masked_final(h: _Harness, model: Any, windows: list[BlockedText], full: bool, sinks: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per window: final-block log-probs [n - 1, V] (full or plain block attention); and the non-first-block
    log-probs of the true tokens (all windows)."""
    per_window, nonfirst = [], []
    head = model.lm_head.weight
    counts = [len(w.final) - 1 for w in windows]
    for index, batch in enumerate(h.batches(windows, sinks)):
        ids, pos = (batch.t_ids, batch.t_pos) if full else (batch.s_ids, batch.s_pos)
        mask = None if full else attention_mask(batch.s_blocks, batch.s_open, h.implementation)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=ids.device.type == "cuda"):
            hidden = last_hidden(model, ids, mask).flatten(0, 1)[pos]
        first = (batch.s_blocks.flatten()[batch.s_pos] == 0)
        nonfirst.append(chunked_target_logprobs(hidden[~first], head, batch.targets[~first]).float().cpu())
        final = torch.log_softmax((hidden[batch.final] @ head.T).float(), dim=-1)
        n = counts[index * h.cfg.batch_size : (index + 1) * h.cfg.batch_size]
        per_window.extend(final.split(n))
    return per_window, torch.cat(nonfirst)


def cached_final(h: _Harness, peer: Any, windows: list[BlockedText]) -> list[torch.Tensor]:
    """Per window: final-block log-probs [n - 1, V] from a cached-block peer (teacher layout: BOS on block 0)."""
    out = []
    for w in windows:
        logits = peer([[h.sink, *w.blocks[0]], *w.blocks[1:]], w.final)
        out.append(torch.log_softmax(logits[:-1].float(), dim=-1))
    return out


def _kl(ref: list[torch.Tensor], logp: list[torch.Tensor]) -> float:
    total = sum(float((r.float().exp() * (r.float() - m)).sum()) for r, m in zip(ref, logp, strict=True))
    return total / sum(len(m) for m in logp)


def _reference(logp: list[torch.Tensor]) -> list[torch.Tensor]:
    """Log-probs kept for KL: half precision on the GPU (a test set's final blocks x 49k vocab), fp32 on CPU."""
    return [x.half() if x.is_cuda else x for x in logp]


def _row(name: str, seg: str, windows: list[BlockedText], logp: list[torch.Tensor], nonfirst: torch.Tensor | None, refs: dict[str, list[torch.Tensor]]) -> Scored:
    targets = [torch.tensor(w.final[1:], device=x.device) for w, x in zip(windows, logp, strict=True)]
    true = torch.cat([x.gather(1, t[:, None])[:, 0] for x, t in zip(logp, targets, strict=True)])
    hits = torch.cat([(x.argmax(-1) == t) for x, t in zip(logp, targets, strict=True)])
    return Scored(name, seg, float(-true.mean()), float(hits.float().mean()), None if nonfirst is None else float(-nonfirst.mean()),
                  _kl(refs["teacher"], logp), _kl(refs["control"], logp) if "control" in refs else None)


def _probe_scores(probes: list[Probe], logp: list[torch.Tensor]) -> tuple[list[float], list[bool]]:
    logps, hits = [], []
    for probe, x in zip(probes, logp, strict=True):
        n = probe.answer_tokens
        answer = torch.tensor(probe.window.final[-n:], device=x.device)
        logps.append(float(x[-n:].gather(1, answer[:, None]).sum()))
        hits.append(bool((x[-n:].argmax(-1) == answer).all()))
    return logps, hits


APE_GRID = {"ape_prefix": (None, ""), "ape_temperature": (0.7, 0.85, 1.0), "ape_scale": (0.8, 0.9, 1.0)}


def choose_ape(h: _Harness, model: Any, windows: list[BlockedText], tokenizer: Any) -> dict[str, Any]:
    """APE's shared prefix (none, or the BOS alone), temperature and scale with the lowest final-block NLL on dev
    windows (APE_GRID). Each window's blocks are encoded once per prefix; only the final block's prefill runs
    per setting."""
    from semanticseg.blockattn.peers import ape_context, ape_prefill

    totals: dict[tuple[Any, float, float], float] = {}
    n_targets = sum(len(w.final) - 1 for w in windows)
    for prefix in APE_GRID["ape_prefix"]:
        ids = [] if prefix is None else [h.sink, *tokenizer(prefix, add_special_tokens=False)["input_ids"]]
        for w in windows:
            blocks = [[h.sink, *w.blocks[0]], *w.blocks[1:]]
            context = ape_context(model, [blocks[0][1:], *blocks[1:]] if ids else blocks, ids)
            target = torch.tensor(w.final[1:], device=h.device)[:, None]
            for temperature in APE_GRID["ape_temperature"]:
                for scale in APE_GRID["ape_scale"]:
                    logp = torch.log_softmax(ape_prefill(model, *context, w.final, temperature, scale)[:-1].float(), dim=-1)
                    key = (prefix, temperature, scale)
                    totals[key] = totals.get(key, 0.0) - float(logp.gather(1, target).sum())
    (prefix, temperature, scale), total = min(totals.items(), key=lambda kv: kv[1])
    return {"ape_prefix": prefix, "ape_temperature": temperature, "ape_scale": scale, "dev_nll": total / n_targets}


def _ape_peer(model: Any, prefix: list[int], temperature: float, scale: float, fn: Any) -> Any:
    def peer(blocks: list[list[int]], final: list[int]) -> torch.Tensor:
        if prefix:  # the prefix holds the BOS that block 0 carries otherwise
            blocks = [blocks[0][1:], *blocks[1:]]
        return fn(model, blocks, final, prefix, temperature, scale)
    return peer


def evaluate(cfg: BlockEvalConfig) -> list[Scored]:
    """Score every model on every segmentation and on the probes; write results.json, results.md, results.png."""
    from semanticseg.blockattn.peers import ape_final_logits, recompute_final_logits

    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = load_tokenizer(cfg.teacher)
    # dense-mask SDPA also on the GPU: windows and probes come in many lengths, and each would recompile FlexAttention
    h = _Harness(cfg, device, "sdpa", sink_token_id(tokenizer),
                 tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    sets = _window_sets(cfg, tokenizer)
    filler = [b for ws in sets.values() for w in ws for b in w.blocks]
    probes = probe_suite(filler, tokenizer, tuple(cfg.probe_blocks), cfg.probes_per_cell, cfg.probe_block_tokens) if cfg.probe_blocks else []
    probe_windows = [p.window for p in probes]
    refs: dict[tuple[str, str], dict[str, list[torch.Tensor]]] = {(seg, "x"): {} for seg in sets}

    def load(path: str) -> Any:
        return load_causal_lm(path, str(device), "auto", h.implementation).eval()

    # references first: the frozen teacher and the control, both with full attention
    for ref, path in (("teacher", cfg.teacher), ("control", cfg.control)):
        if path:
            model = load(path)
            for seg, windows in sets.items():
                refs[(seg, "x")][ref] = _reference(masked_final(h, model, windows, True, False)[0])
            del model
    results: list[Scored] = []
    probe_rows: dict[str, list[dict[str, Any]]] = {}
    chosen_ape: dict[str, Any] = {}

    def score(name: str, model: Any, full: bool = False, sinks: bool = False, peer: Any = None) -> None:
        for seg, windows in sets.items():
            if peer is None:
                logp, nonfirst = masked_final(h, model, windows, full, sinks)
            else:
                logp, nonfirst = cached_final(h, peer, windows), None
            results.append(_row(name, seg, windows, logp, nonfirst, refs[(seg, "x")]))
        if probes:
            logp = masked_final(h, model, probe_windows, full, sinks)[0] if peer is None else cached_final(h, peer, probe_windows)
            logps, hits = _probe_scores(probes, logp)
            probe_rows[name] = summarise(probes, logps, hits)
            for row in results[-len(sets):]:
                row.probe_logp, row.probe_acc = sum(logps) / len(logps), sum(hits) / len(hits)

    teacher = load(cfg.teacher)
    score("teacher-full", teacher, full=True)
    score("teacher-block", teacher)
    if cfg.peers:
        settings = {"ape_prefix": cfg.ape_prefix, "ape_temperature": cfg.ape_temperature, "ape_scale": cfg.ape_scale}
        if cfg.ape_dev:
            dev = build_windows(Path(cfg.ape_dev), tokenizer, cfg.context_tokens, cfg.final_tokens, cfg.target_block_tokens, cfg.max_block_tokens,
                                cfg.segmenter, cfg.text_fields)[: max(1, cfg.max_windows // 2)]
            chosen_ape = settings = choose_ape(h, teacher, dev, tokenizer)
        prefix = [] if settings["ape_prefix"] is None else [h.sink, *tokenizer(settings["ape_prefix"], add_special_tokens=False)["input_ids"]]
        score("ape", teacher, peer=_ape_peer(teacher, prefix, settings["ape_temperature"], settings["ape_scale"], ape_final_logits))
        ratio = cfg.recompute_ratio
        score(f"recompute-{round(100 * ratio)}%", teacher, peer=lambda blocks, final, model=teacher: recompute_final_logits(model, blocks, final, ratio))
    del teacher
    if cfg.control:
        control = load(cfg.control)
        score("control-full", control, full=True)
        score("control-block", control)
        del control
    for name, model_dir in cfg.students.items():
        model = load(model_dir)
        score(name, model, sinks=bool(_meta(model_dir).get("block_sinks", False)))
        del model
    for seg in sets:
        rows = [r for r in results if r.segmentation == seg]
        by_name = {r.name: r for r in rows}
        full_nll, block_nll = by_name["teacher-full"].nll_final, by_name["teacher-block"].nll_final
        control_nll = by_name["control-full"].nll_final if "control-full" in by_name else None
        for row in rows:
            row.gap_recovered = (block_nll - row.nll_final) / (block_nll - full_nll) if block_nll != full_nll else None
            if control_nll is not None and block_nll != control_nll:
                row.gap_vs_control = (block_nll - row.nll_final) / (block_nll - control_nll)
    write_report(cfg, results, sets, probe_rows, chosen_ape)
    return results


def _window_sets(cfg: BlockEvalConfig, tokenizer: Any) -> dict[str, list[BlockedText]]:
    """Held-out windows per segmentation ("given" = the data's own cuts), evenly thinned to max_windows."""
    targets = authored_targets(cfg.data, cfg.text_fields) if "authored" in cfg.segmentations else None
    sets = {}
    for seg in cfg.segmentations or [""]:
        windows = build_windows(Path(cfg.data), tokenizer, cfg.context_tokens, cfg.final_tokens, cfg.target_block_tokens, cfg.max_block_tokens,
                                cfg.segmenter, cfg.text_fields, seg, targets)
        if len(windows) > cfg.max_windows:  # evenly spaced, so every document group (e.g. category) is represented
            windows = [windows[i * len(windows) // cfg.max_windows] for i in range(cfg.max_windows)]
        if not windows:
            raise UserError(f"{cfg.data}: no held-out window with >= 2 context blocks and a final block{f' when cut by {seg}' if seg else ''}")
        sets[seg or "given"] = windows
    return sets


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def write_report(cfg: BlockEvalConfig, results: list[Scored], sets: dict[str, list[BlockedText]], probe_rows: dict[str, list[dict[str, Any]]],
                 chosen_ape: dict[str, Any]) -> None:
    """results.json, results.md (one table per segmentation, probe tables) and results.png (NLL by segmentation,
    probe accuracy by number of blocks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(cfg.out)
    write_json(out / "eval_config.json", asdict(cfg))
    stats = {seg: {"windows": len(ws), "final_tokens": sum(len(w.final) - 1 for w in ws),
                   "mean_block_tokens": sum(len(b) for w in ws for b in w.blocks) / sum(len(w.blocks) for w in ws)} for seg, ws in sets.items()}
    write_json(out / "results.json", {"sets": stats, "rows": [asdict(r) for r in results], "probes": probe_rows, "ape_chosen_on_dev": chosen_ape})
    lines = []
    if chosen_ape:
        lines += [f"APE settings chosen on the dev set: {chosen_ape}", ""]
    for seg, st in stats.items():
        lines += [
            f"### Segmentation: {seg} ({st['windows']} windows, {st['final_tokens']} final-block targets, mean context block {st['mean_block_tokens']:.1f} model tokens)",
            "",
            "| model | final-block NLL | final-block acc | non-first-block NLL | KL(teacher-full) | KL(control-full) | gap recovered vs teacher | vs control | probe acc | probe log-p |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in (r for r in results if r.segmentation == seg):
            lines.append(f"| {r.name} | {r.nll_final:.4f} | {r.acc_final:.4f} | {_num(r.nll_nonfirst)} | {r.kl_teacher:.4f} | {_num(r.kl_control)} | "
                         f"{_pct(r.gap_recovered)} | {_pct(r.gap_vs_control)} | {_num(r.probe_acc, 3)} | {_num(r.probe_logp, 3)} |")
        lines.append("")
    if probe_rows:
        sizes = sorted({row["n_blocks"] for rows in probe_rows.values() for row in rows})
        for kind in ("retrieval", "two-hop"):
            lines += [f"### Probes, {kind}: accuracy / answer log-p by number of context blocks", "",
                      "| model | " + " | ".join(f"{n} blocks" for n in sizes) + " |", "| --- |" + " ---: |" * len(sizes)]
            for name, rows in probe_rows.items():
                cells = {row["n_blocks"]: row for row in rows if row["kind"] == kind and row["position"] is None}
                lines.append(f"| {name} | " + " | ".join(f"{cells[n]['accuracy']:.2f} / {cells[n]['answer_logp']:.2f}" for n in sizes) + " |")
            positions = sorted({row["position"] for rows in probe_rows.values() for row in rows if row["position"] is not None})
            lines += ["", f"{kind}, {sizes[-1]} blocks, accuracy by position of the asked fact's block:", "",
                      "| model | " + " | ".join(f"{p:g}" for p in positions) + " |", "| --- |" + " ---: |" * len(positions)]
            for name, rows in probe_rows.items():
                cells = {row["position"]: row for row in rows if row["kind"] == kind and row["n_blocks"] == sizes[-1] and row["position"] is not None}
                lines.append(f"| {name} | " + " | ".join(f"{cells[p]['accuracy']:.2f}" for p in positions) + " |")
            lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(dict.fromkeys(r.name for r in results))
    segs = list(sets)
    for name in names:
        left.plot(segs, [next(r.nll_final for r in results if r.name == name and r.segmentation == seg) for seg in segs], marker="o", label=name)
    left.set_ylabel("final-block NLL (nats/token, lower is better)")
    left.set_xlabel("segmentation")
    left.legend(fontsize=7)
    for name, rows in probe_rows.items():
        for kind, style in (("retrieval", "-"), ("two-hop", ":")):
            cells = sorted((row["n_blocks"], row["accuracy"]) for row in rows if row["kind"] == kind and row["position"] is None)
            right.plot([c[0] for c in cells], [c[1] for c in cells], style, marker="o", label=f"{name} ({kind})")
    right.set_xscale("log", base=2)
    right.set_xlabel("context blocks")
    right.set_ylabel("probe accuracy")
    right.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)
    plt.close(fig)
