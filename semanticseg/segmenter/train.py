"""Training recipe for the segmenter: setup, train (early stopping on validation), save, resume.

The sentence encoder is frozen, so unit embeddings are computed once per split and cached beside the
outputs (`cache/<split>.pt`; while embedding, the vectors so far in `cache/embeddings-*.sqlite`); only the
small BoundaryNet trains, which is minutes on a CPU. Positives (candidates that are reference cuts) are rare,
so the loss weights them by negatives / positives. With TrainConfig.heads > 1 the heads are trained one after another
with seeds seed, seed + 1, ... on the same cached embeddings, each with its own early stopping and checkpoint, and saved
as one ensemble (model.HeadEnsemble) whose averaged probabilities are decoded.
Early stopping and the kept weights follow the validation score the model is judged by, not the loss:
validation documents are decoded at the reference mean block length and scored boundary F1 - Pk
(the two can disagree, and a small validation set makes the loss a noisy proxy).
Each epoch ends with an atomic checkpoint (`checkpoint.pt`: model, optimiser, epoch, best state,
history, the torch generator that dropout draws from; the data order is replayed from the seed); rerunning the
same command resumes from it, and a run interrupted (crash, Ctrl-C) and resumed ends with the same model and
training record as one that was not (bit for bit on CPU; on a GPU as far as its kernels are deterministic).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from semanticseg.checkpoint import load_checkpoint
from semanticseg.errors import UserError
from semanticseg.io import atomic_path, fingerprint, write_json
from semanticseg.metrics import boundary_f1, pk
from semanticseg.schema import Instance
from semanticseg.segmenter.data import load_splits
from semanticseg.segmenter.decode import fit_bias, fit_section_count
from semanticseg.segmenter.model import BoundaryNet, HeadEnsemble, Segmenter, SegmenterConfig, decode_probabilities, log_odds
from semanticseg.segmenter.units import EmbeddingStore, Units, doc_units


@dataclass
class TrainConfig:
    """train-segmenter settings (dumped as train_config.json beside the model)."""

    data: str
    out: str
    extra_data: list[str] = field(default_factory=list)  # more releases whose train and validation splits are added
    encoder: str = "minilm"
    hidden: int = 128
    layers: int = 6
    dropout: float = 0.4  # heavy: the head overfits a few hundred documents within a few epochs
    max_unit_tokens: int = 32
    epochs: int = 40
    patience: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.1
    seed: int = 0
    device: str = "auto"
    encoding: str = "cl100k_base"
    max_documents: int | None = None  # per split at most this many documents (seeded sample): bounds the embedding time
    voter_target_tokens: int = 512  # the release recipe's blocks.target_tokens, where its annotators aimed; 0: no voter features
    feature_set: str = "basic"  # the per-unit features: SegmenterConfig.feature_set
    fit_bias: bool = False  # after training, fit a decoding bias per target on validation (SegmenterConfig.bias_by_target)
    prior_weight: float = 1.0  # the length prior's weight when decoding
    bias_band: float | None = None  # with fit_bias: SegmenterConfig.bias_band (the bias is fitted under it)
    heads: int = 1  # SegmenterConfig.heads: heads trained with seeds seed, seed + 1, ..., their probabilities averaged
    # After training, fit SegmenterConfig.section_count on validation (a document's block count follows its cuts
    # with P(boundary) above this threshold, never under section_floor x the fixed-length count); None: off.
    section_threshold: float | None = None
    section_floor: float = 1.0


# The settings a checkpoint must have been written with to be resumed (with the data, by its cache keys); epochs,
# patience and device may change between runs, and the decoding settings apply after training.
RESUME_SETTINGS = ("encoding", "hidden", "layers", "dropout", "lr", "weight_decay", "seed")


def instance_units(inst: Instance, encoding: str) -> tuple[Units, np.ndarray]:
    """Units of an instance and the 0/1 label of each candidate (1 = a reference cut starts there)."""
    units = doc_units(inst.text, inst.category, encoding)
    cuts = set(inst.cuts)
    return units, np.array([float(o in cuts) for o in units.offsets], dtype=np.float32)


def cache_key(instances: list[Instance], config: SegmenterConfig) -> str:
    """What a split's cached inputs depend on: the instances and the settings that shape the inputs."""
    layout = {} if config.feature_set == "basic" else {"feature_set": config.feature_set}  # "basic" keeps the keys of before
    return fingerprint({"items": "embeddings, features, voters, labels, positions", "encoder": config.encoder,
                        "max_unit_tokens": config.max_unit_tokens, "voter_target_tokens": config.voter_target_tokens,
                        "ids": [i.id for i in instances], "cuts": [i.cuts for i in instances]} | layout)


def prepare(instances: list[Instance], segmenter: Segmenter, cache: Path, progress: Any = None,
            store: EmbeddingStore | None = None) -> list[tuple[Any, ...]]:
    """(embeddings, features, voter features, labels, token positions of the candidates then n_tokens) per
    instance with candidates, cached at cache; texts already in store are not embedded again."""
    import torch

    key = cache_key(instances, segmenter.config)
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        if saved["key"] == key:
            return saved["items"]
    items = []
    task = progress.add_task(f"embed {cache.stem}", total=len(instances), info="") if progress else None
    for inst in instances:
        units, labels = instance_units(inst, segmenter.config.encoding)
        if units.offsets:
            positions = torch.tensor([*units.token_offsets, units.n_tokens], dtype=torch.int64)
            items.append((*segmenter.inputs(units, store), torch.from_numpy(labels), positions))
        if progress:
            progress.advance(task)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        torch.save({"key": key, "items": items}, tmp)
    return items


def _loss(net: BoundaryNet, items: list, pos_weight: Any) -> Any:
    import torch

    losses = [torch.nn.functional.binary_cross_entropy_with_logits(net(e, f, v), y, pos_weight=pos_weight) for e, f, v, y, _ in items]
    return torch.stack(losses).mean()


# The targets a bias is fitted at: the ones granularity is checked at (256-2048) and above. Finer targets, like
# any without a fitted bias under SegmenterConfig.bias_band, get round(n_tokens / target) blocks per document.
BIAS_TARGETS = (256, 512, 1024, 2048, 4096, 8192)
# A target's bias is fitted only when this many documents hold at least 3 blocks of it: on shorter documents
# the fit only learns to give one block each (the bias runs to its bound).
MIN_FIT_DOCUMENTS = 20


def item_probabilities(net: BoundaryNet | HeadEnsemble, items: list) -> list[np.ndarray]:
    """The net's boundary probabilities for each cached item (pass them on to decode items many times)."""
    import torch

    with torch.no_grad():  # as Segmenter.probabilities gives them
        return [net.probabilities(e, f, v).cpu().numpy() for e, f, v, _, _ in items]


def validation_rows(net: BoundaryNet | HeadEnsemble, items: list, target_tokens: float, tolerance: int = 20,
                    bias_by_target: dict[str, float] | None = None, prior_weight: float = 1.0,
                    bias_band: float | None = None, section_count: dict[str, float] | None = None,
                    probabilities: list[np.ndarray] | None = None) -> list[tuple[float, float]]:
    """(boundary F1, Pk) per document (token positions) when decoded at target_tokens, as evaluate scores them
    (probabilities: item_probabilities(net, items) when already computed)."""
    rows = []
    for offsets, n_tokens, labels, hypothesis in _decoded(net, items, target_tokens, bias_by_target, prior_weight, bias_band, section_count,
                                                          probabilities):
        reference = [o for o, label in zip(offsets, labels.tolist()) if label]
        rows.append((boundary_f1(reference, hypothesis, tolerance).f1, pk(reference, hypothesis, n_tokens)))
    return rows


def validation_mean_block_tokens(net: BoundaryNet | HeadEnsemble, items: list, target_tokens: float, bias_by_target: dict[str, float] | None = None,
                                 prior_weight: float = 1.0, bias_band: float | None = None,
                                 section_count: dict[str, float] | None = None, probabilities: list[np.ndarray] | None = None) -> float:
    """Total tokens / total blocks over items when decoded at target_tokens (how well the target is tracked)."""
    decoded = list(_decoded(net, items, target_tokens, bias_by_target, prior_weight, bias_band, section_count, probabilities))
    return sum(n for _, n, _, _ in decoded) / sum(len(cuts) + 1 for *_, cuts in decoded)


def _decoded(net: BoundaryNet | HeadEnsemble, items: list, target_tokens: float, bias_by_target: dict[str, float] | None, prior_weight: float,
             bias_band: float | None, section_count: dict[str, float] | None = None,
             probabilities: list[np.ndarray] | None = None) -> Any:
    """(candidate offsets, n_tokens, labels, cut token positions) per item, decoded as Segmenter.cut_indices does."""
    for (*_, labels, positions), probs in zip(items, probabilities or item_probabilities(net, items)):
        offsets, n_tokens = positions[:-1].tolist(), int(positions[-1])
        cuts = decode_probabilities(offsets, n_tokens, probs, max(round(target_tokens), 1), bias_by_target=bias_by_target,
                                    prior_weight=prior_weight, bias_band=bias_band, section_count=section_count)
        yield offsets, n_tokens, labels, [offsets[i] for i in cuts]


def validation_score(net: BoundaryNet | HeadEnsemble, items: list, target_tokens: float, tolerance: int = 20,
                     bias_by_target: dict[str, float] | None = None, prior_weight: float = 1.0,
                     bias_band: float | None = None, section_count: dict[str, float] | None = None,
                     probabilities: list[np.ndarray] | None = None) -> float:
    """Mean over documents of boundary F1 - Pk (validation_rows), the score early stopping and model choice use."""
    rows = validation_rows(net, items, target_tokens, tolerance, bias_by_target, prior_weight, bias_band, section_count, probabilities)
    return float(np.mean([f1 - p for f1, p in rows]))


def section_count_table(net: BoundaryNet | HeadEnsemble, items: list, threshold: float, floor: float,
                        probabilities: list[np.ndarray] | None = None) -> dict[str, float]:
    """decode.fit_section_count on items (validation): SegmenterConfig.section_count."""
    probabilities = probabilities or item_probabilities(net, items)
    return fit_section_count([(probs, int(positions[-1])) for (*_, positions), probs in zip(items, probabilities)], threshold, floor)


def bias_table(net: BoundaryNet | HeadEnsemble, items: list, prior_weight: float = 1.0, targets: tuple[int, ...] = BIAS_TARGETS,
               min_documents: int = MIN_FIT_DOCUMENTS, rounded: bool = False, band: float | None = None) -> dict[str, float]:
    """decode.fit_bias (with its `rounded` and `band`) on items (validation) at each of targets that min_documents of them
    are long enough for (3 blocks): SegmenterConfig.bias_by_target."""
    docs = []
    for (*_, positions), probs in zip(items, item_probabilities(net, items)):
        docs.append((positions[:-1].tolist(), int(positions[-1]), log_odds(probs).tolist()))
    return {str(target): round(fit_bias(docs, target, prior_weight, rounded, band), 4) for target in targets
            if sum(n >= 3 * target for _, n, _ in docs) >= min_documents}


def _rng_state(device: str) -> dict[str, Any]:
    """The torch generators dropout draws from on device (the data order is replayed from the seed instead)."""
    import torch

    state = {"cpu": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: str) -> None:
    import torch

    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _check_resumes(checkpoint: Path, saved: dict | None, run: dict) -> None:
    """UserError unless saved (checkpoint's contents, None: none) was written by this run's data and settings."""
    if saved is not None and saved.get("run", run) != run:
        changed = ", ".join(name for name in run if saved["run"].get(name) != run[name])
        raise UserError(f"{checkpoint}: written by a run with other {changed}; rerun with those to resume, or delete it to start over")


@dataclass(frozen=True)
class HeadCheckpoint:
    """Where one head's training state is written each epoch, what it holds now (None: start afresh), and the run
    settings it belongs to (written beside it, checked on resume)."""

    path: Path
    saved: dict | None
    run: dict


def _train_head(config: TrainConfig, seed: int, seg_config: SegmenterConfig, train_items: list, val_items: list, pos_weight: Any,
                reference_mean: float, checkpoint: HeadCheckpoint, device: str, progress: Any, name: str) -> tuple[Any, dict]:
    """One head trained with seed, stopped early on the validation score, resuming from checkpoint. Returns the head
    with the best epoch's weights and the training state (epochs, best score, history)."""
    import torch

    saved = checkpoint.saved
    torch.manual_seed(seed)  # the head's initial weights and dropout draws
    # A one-head run (every run before ensembles) drew its weights after the untrained net of train()'s Segmenter had
    # drawn its own (with the default embed_dim): drawn here too, so that a one-head model trains to the bytes it did
    # and head k of an ensemble is the one-head model of seed + k.
    BoundaryNet(replace(seg_config, embed_dim=SegmenterConfig.embed_dim, heads=1))
    net = BoundaryNet(seg_config).to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = {"epoch": 0, "best_score": -float("inf"), "best_state": None, "bad_epochs": 0, "history": []}
    if saved is not None:
        net.load_state_dict(saved["model"]), optimiser.load_state_dict(saved["optimiser"])
        state = saved["state"]
        if "rng" in saved:  # checkpoints from before it was kept resume without it (not bit for bit)
            _set_rng_state(saved["rng"], device)
    task = progress.add_task(name, total=config.epochs, completed=state["epoch"], info="") if progress else None
    order = list(range(len(train_items)))
    rng = random.Random(seed)
    for _ in range(state["epoch"]):  # replay the finished epochs' shuffles: a resumed run sees the same data order
        rng.shuffle(order)
    batches = range(0, len(order), 8)  # mini-batches of 8 documents
    while state["epoch"] < config.epochs and state["bad_epochs"] < config.patience:
        net.train()
        rng.shuffle(order)
        for start in batches:
            optimiser.zero_grad()
            _loss(net, [train_items[i] for i in order[start : start + 8]], pos_weight).backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            if progress:
                progress.advance(task, 1 / len(batches))
        net.eval()
        with torch.no_grad():
            val_loss = float(_loss(net, val_items, pos_weight))
            val_score = validation_score(net, val_items, reference_mean)
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], "val_loss": val_loss, "val_score": val_score})
        if val_score > state["best_score"]:
            state.update(best_score=val_score, bad_epochs=0, best_state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        with atomic_path(checkpoint.path) as tmp:
            torch.save({"model": net.state_dict(), "optimiser": optimiser.state_dict(), "state": state, "rng": _rng_state(device),
                        "run": checkpoint.run}, tmp)
        if progress:
            progress.update(task, completed=state["epoch"], info=f"val F1-Pk {val_score:.3f} (best {state['best_score']:.3f}), loss {val_loss:.3f}")
    net.load_state_dict(state["best_state"])
    return net, state


def segmenter_config(config: TrainConfig) -> SegmenterConfig:
    """The model config a run with these settings trains (before the fitted decoding settings); its inputs part
    decides the cache keys of the embedded splits (cache_key)."""
    return SegmenterConfig(encoder=config.encoder, hidden=config.hidden, layers=config.layers, dropout=config.dropout,
                           max_unit_tokens=config.max_unit_tokens, encoding=config.encoding,
                           voter_target_tokens=config.voter_target_tokens, feature_set=config.feature_set, heads=config.heads)


def train(config: TrainConfig, progress: Any = None) -> dict[str, Any]:
    """Train on config.data's train split, stop early on the validation score, save the best model to config.out."""
    import torch

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "train_config.json", asdict(config))
    random.seed(config.seed), np.random.seed(config.seed), torch.manual_seed(config.seed)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    splits = load_splits(config.data)
    if "train" not in splits or "validation" not in splits:
        raise ValueError(f"{config.data}: needs train and validation splits, found {sorted(splits)}")
    for extra in config.extra_data:
        more = load_splits(extra)
        for name in ("train", "validation"):
            splits[name] = splits[name] + more.get(name, [])
    if config.max_documents:
        for name in ("train", "validation"):
            if len(splits[name]) > config.max_documents:
                keep = set(random.Random(config.seed).sample(range(len(splits[name])), config.max_documents))
                splits[name] = [inst for k, inst in enumerate(splits[name]) if k in keep]
    checkpoint = out / "checkpoint.pt"
    saved = load_checkpoint(checkpoint) if checkpoint.exists() else None  # before the slow embedding: a bad file fails fast
    seg = Segmenter(segmenter_config(config))
    # One store for both splits (the concatenation instances are passages of the authored ones, so most of their
    # units are embedded once), on disk while embedding: a run interrupted there keeps what it embedded, and the rerun
    # embeds the rest in the batches an uninterrupted run would (the encoder's low bits depend on the batch). Named by
    # the data, so a store left by other data never changes the batches; removed once both splits are cached.
    keys = {"train data": cache_key(splits["train"], seg.config), "validation data": cache_key(splits["validation"], seg.config)}
    # A checkpoint resumes only the run that wrote it: other data or settings would give a model of neither.
    run = {**keys, **{name: getattr(config, name) for name in RESUME_SETTINGS}}
    _check_resumes(checkpoint, saved, run)
    store_path = out / "cache" / f"embeddings-{fingerprint(keys)}.sqlite"
    store = EmbeddingStore(store_path)
    train_items = prepare(splits["train"], seg, out / "cache" / "train.pt", progress, store)
    val_items = prepare(splits["validation"], seg, out / "cache" / "validation.pt", progress, store)
    store.db.close()
    store_path.unlink()
    if device == "cpu":
        # After embedding (the encoder's large matrix products use every core): the head's operations are
        # small, intra-op threads mostly wait for each other, and on a shared 2-core machine an epoch took
        # 30x longer with 2 threads than with 1 (measured).
        torch.set_num_threads(1)
    if not train_items or not val_items:
        raise ValueError(f"{config.data}: the train and validation splits need documents with candidate cuts")
    seg.config.embed_dim = int(train_items[0][0].shape[1])
    train_items = [tuple(t.to(device) for t in item) for item in train_items]
    val_items = [tuple(t.to(device) for t in item) for item in val_items]
    positives = sum(float(y.sum()) for *_, y, _ in train_items)
    negatives = sum(len(y) for *_, y, _ in train_items) - positives
    # The reference mean block length on validation: the granularity evaluate tunes every method to.
    reference_mean = sum(int(p[-1]) for *_, p in val_items) / sum(int(y.sum()) + 1 for *_, y, _ in val_items)
    pos_weight = torch.tensor(negatives / max(positives, 1.0), device=device)
    heads = []
    for k in range(seg.config.heads):
        # Head k is the model a one-head run with seed + k trains (the same data, draws and early stopping), with its
        # own checkpoint: a resumed ensemble skips the heads already done.
        path = checkpoint if k == 0 else out / f"checkpoint-head{k}.pt"
        head_saved = saved if k == 0 else (load_checkpoint(path) if path.exists() else None)
        head_run = run | {"seed": config.seed + k}
        _check_resumes(path, head_saved, head_run)
        task = "train" if seg.config.heads == 1 else f"train head {k + 1}/{seg.config.heads}"
        heads.append(_train_head(config, config.seed + k, seg.config, train_items, val_items, pos_weight, reference_mean,
                                 HeadCheckpoint(path, head_saved, head_run), device, progress, task))
    nets = [net.cpu().eval() for net, _ in heads]
    seg.net = nets[0] if len(nets) == 1 else HeadEnsemble(seg.config, nets).eval()
    seg.config.prior_weight = config.prior_weight
    seg.config.bias_band = config.bias_band
    cpu_val_items = [tuple(x.cpu() for x in item) for item in val_items]
    if config.fit_bias:
        seg.config.bias_by_target = bias_table(seg.net, cpu_val_items, config.prior_weight, band=config.bias_band)  # fitted as it will decode: under the band
    # Read by the section count's fit and the ensemble's score: computed once, and only when one of them runs.
    val_probabilities = item_probabilities(seg.net, cpu_val_items) if config.section_threshold is not None or len(heads) > 1 else None
    if config.section_threshold is not None:
        seg.config.section_count = section_count_table(seg.net, cpu_val_items, config.section_threshold, config.section_floor,
                                                       val_probabilities)
    seg.save(out)
    n_params = sum(p.numel() for p in seg.net.parameters())
    records = [{"seed": config.seed + k, "epochs": state["epoch"], "best_val_score": state["best_score"], "history": state["history"]}
               for k, (_, state) in enumerate(heads)]
    if len(heads) == 1:
        summary = {key: records[0][key] for key in ("epochs", "best_val_score", "history")}
    else:  # each head's record, and the score of their averaged probabilities decoded as the model will decode them
        summary = {"heads": records, "epochs": [r["epochs"] for r in records],
                   "best_val_score": validation_score(seg.net, cpu_val_items, reference_mean, bias_by_target=seg.config.bias_by_target,
                                                      prior_weight=config.prior_weight, bias_band=config.bias_band,
                                                      section_count=seg.config.section_count, probabilities=val_probabilities)}
    summary |= {"device": device, "train_documents": len(train_items), "validation_documents": len(val_items), "pos_weight": float(pos_weight),
                "head_parameters": n_params, "data": str(config.data)}
    write_json(out / "training.json", summary)
    return summary
