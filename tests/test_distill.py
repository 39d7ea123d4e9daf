"""Block distillation: chunked losses equal unchunked ones, batches align teacher and student, loss falls."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from semanticseg.distill import losses
from semanticseg.distill.data import BlockedText, block_texts, collate


def test_chunked_kl_equals_full_logits_kl_and_has_gradients():
    torch.manual_seed(0)
    h_s, h_t = torch.randn(37, 8, requires_grad=True), torch.randn(37, 8)
    head = torch.randn(50, 8)
    weights = torch.rand(37) + 0.5
    chunked = losses.chunked_divergence(h_s, h_t, head, head, weights, "kl", chunk=10)
    logp_s, logp_t = F.log_softmax(h_s @ head.T, -1), F.log_softmax(h_t @ head.T, -1)
    full = ((logp_t.exp() * (logp_t - logp_s)).sum(-1) * weights).sum() / weights.sum()
    assert torch.allclose(chunked, full, atol=1e-5)
    chunked.backward()
    assert h_s.grad is not None and h_s.grad.abs().sum() > 0


def test_hard_weight_mixes_divergence_and_cross_entropy_per_token():
    torch.manual_seed(3)
    h_s, h_t, head = torch.randn(29, 8), torch.randn(29, 8), torch.randn(40, 8)
    targets, weights = torch.randint(0, 40, (29,)), torch.rand(29) + 0.5
    logp_s, logp_t = F.log_softmax(h_s @ head.T, -1), F.log_softmax(h_t @ head.T, -1)
    kl = (logp_t.exp() * (logp_t - logp_s)).sum(-1)
    ce = F.cross_entropy(h_s @ head.T, targets, reduction="none")
    expected = ((0.3 * kl + 0.7 * ce) * weights).sum() / weights.sum()
    mixed = losses.chunked_divergence(h_s, h_t, head, head, weights, "kl", chunk=8, targets=targets, hard_weight=0.7)
    assert torch.allclose(mixed, expected, atol=1e-5)
    pure_ce = losses.chunked_divergence(h_s, h_t, head, head, weights, "kl", targets=targets, hard_weight=1.0)
    assert torch.allclose(pure_ce, (ce * weights).sum() / weights.sum(), atol=1e-5)
    with pytest.raises(ValueError):
        losses.chunked_divergence(h_s, h_t, head, head, weights, hard_weight=0.5)  # no targets


def test_jsd_is_zero_for_equal_distributions_and_symmetric():
    torch.manual_seed(1)
    h, g, head, w = torch.randn(5, 4), torch.randn(5, 4), torch.randn(9, 4), torch.ones(5)
    assert float(losses.chunked_divergence(h, h, head, head, w, "jsd")) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.chunked_divergence(h, g, head, head, w, "jsd")) == pytest.approx(float(losses.chunked_divergence(g, h, head, head, w, "jsd")), rel=1e-5)


def test_token_weights_only_grow_where_blocking_hurts():
    weights = losses.token_weights(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0]), beta=0.5)
    assert weights.tolist() == [1.5, 1.0]


def test_chunked_target_logprobs_match_cross_entropy():
    torch.manual_seed(2)
    hidden, head, targets = torch.randn(23, 6), torch.randn(30, 6), torch.randint(0, 30, (23,))
    expected = -F.cross_entropy(hidden @ head.T, targets, reduction="none")
    assert torch.allclose(losses.chunked_target_logprobs(hidden, head, targets, chunk=7), expected, atol=1e-5)


def test_block_texts_rebuild_the_text():
    text = "alpha beta\n\ngamma delta\n\nepsilon"
    assert "".join(block_texts(text, [12, 25])) == text


def test_collate_aligns_teacher_and_student_targets():
    items = [BlockedText("a", [[10, 11], [12, 13, 14], [15]], [16, 17, 18]), BlockedText("b", [[20], [21, 22]], [23, 24])]
    batch = collate(items, sink_id=1, pad_id=0, length=16, block_sinks=True, block_dropout=1.0, rng=random.Random(0))
    assert torch.equal(batch.s_ids.flatten()[batch.s_pos + 1], batch.targets)
    assert torch.equal(batch.t_ids.flatten()[batch.t_pos + 1], batch.targets)
    assert batch.s_ids[0].tolist()[:9] == [1, 10, 11, 1, 12, 13, 14, 1, 15]
    # plain block attention: only final-block positions see other blocks
    assert batch.targets[batch.open_pred].tolist() == [17, 18, 24]
    assert batch.targets[batch.final].tolist() == [17, 18, 24]


@pytest.mark.slow
def test_distillation_smoke_loss_falls_and_eval_reports(tiny_llama_dir, stdlib_docs, tmp_path):
    """A few CPU steps on a tiny random Llama with real text: the distillation loss on a fixed batch falls."""
    from semanticseg.distill import recipe
    from semanticseg.distill.evaluate import BlockEvalConfig, evaluate

    cfg = recipe.DistillConfig(
        # block dropout 0.5, not the default 0.9: intermediate open blocks carry loss too, so both kinds are exercised
        teacher=str(tiny_llama_dir), data=str(stdlib_docs), out=str(tmp_path / "run"), steps=16, batch_size=2, lr=3e-3, block_dropout=0.5,
        warmup_steps=1, context_tokens=256, final_tokens=48, target_block_tokens=48, max_block_tokens=96, max_windows=6, save_every=4,
    )
    (tmp_path / "run").mkdir()
    state = recipe.setup(cfg)
    # a sharper teacher than random init, so full and block attention disagree measurably
    with torch.no_grad():
        for p in state.teacher.parameters():
            p.mul_(4.0)
        for p in state.student.parameters():
            p.mul_(4.0)
    fixed = recipe.next_batch(state)
    before = float(recipe.step_loss(state, fixed))
    recipe.train(state)
    after = float(recipe.step_loss(state, fixed))
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 16
    model_dir = recipe.save_model(state)
    assert json.loads((model_dir / "block_attention.json").read_text()) == {"block_sinks": True, "mode": "distill"}
    rows = evaluate(BlockEvalConfig(teacher=str(tiny_llama_dir), data=str(stdlib_docs), out=str(tmp_path / "eval"), students={"kd": str(model_dir)},
                               context_tokens=256, final_tokens=48, target_block_tokens=48, max_block_tokens=96, max_windows=4, probe_blocks=[4],
                               probes_per_cell=1, peers=False))
    assert [r.name for r in rows] == ["teacher-full", "teacher-block", "kd"]
    assert (tmp_path / "eval" / "results.png").stat().st_size > 0


@pytest.mark.slow
def test_out_of_domain_split_keeps_every_document_once_with_valid_cuts(stdlib_docs, tmp_path):
    """write_out_of_domain: every collected document lands in exactly one of ood-dev / ood-test, with structure cuts."""
    from semanticseg.distill.stdlib_corpus import write_out_of_domain
    from semanticseg.io import read_records
    from semanticseg.schema import Document, Instance

    sizes = write_out_of_domain([stdlib_docs], tmp_path)
    docs = {d.id: d for d in read_records(stdlib_docs, Document)}
    rows = [r for name in ("ood-dev", "ood-test") for r in read_records(tmp_path / name / "instances.parquet", Instance)]
    assert sum(sizes.values()) == len(docs) and sorted(r.id for r in rows) == sorted(docs)
    for row in rows:
        assert row.text == docs[row.id].text and row.category == docs[row.id].category
        assert row.cuts and row.cuts == sorted(set(row.cuts)) and 0 < row.cuts[0] and row.cuts[-1] < len(row.text)


def _distill(tmp_dir, tiny_llama_dir, stdlib_docs, out, processes: int, batch_size: int, steps: int):
    """`semanticseg distill` on CPU: plainly in one process, or under `torchrun --nproc-per-node N -m semanticseg` (FSDP2 over gloo)."""
    import os
    import subprocess
    import sys

    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] if processes > 1 else []
    command = [
        sys.executable, *launcher, "-m", "semanticseg", "distill", "--teacher", str(tiny_llama_dir), "--data", str(stdlib_docs), "--out", str(out),
        "--device", "cpu", "--steps", str(steps), "--batch-size", str(batch_size), "--warmup-steps", "1", "--lr", "3e-3", "--block-dropout", "0.5",
        "--context-tokens", "256", "--final-tokens", "48", "--gradient-checkpointing",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_dir, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_distill_on_two_processes_equals_one_process_and_resumes(tiny_llama_dir, stdlib_docs, tmp_path):
    """`torchrun --nproc-per-node 2 -m semanticseg distill` (FSDP2 over gloo, student and teacher sharded, activation
    checkpointing) with batch 1 per rank takes the same steps as one process with batch 2: same windows, same
    losses, also after an optimizer step; it resumes from its checkpoint, and only rank 0 writes files."""
    one = _distill(tmp_path, tiny_llama_dir, stdlib_docs, tmp_path / "one", 1, 2, 3)
    # the losses logged at steps 1-3 follow the updates of steps 1 and 2, whose learning rates (warmup 1: 0, then the
    # peak) a 2-step and a 3-step schedule share, so stopping at 2 and resuming to 3 must log what 3 at once logs
    two = _distill(tmp_path, tiny_llama_dir, stdlib_docs, tmp_path / "two", 2, 1, 2)
    saved = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 2 and any("layers.0" in name for name in saved["trainable"])  # whole, named weights
    two = _distill(tmp_path, tiny_llama_dir, stdlib_docs, tmp_path / "two", 2, 1, 3)  # resumes at step 3
    assert len(two) == 3 and one[2] != pytest.approx(one[1], rel=1e-3)
    assert two == pytest.approx(one, rel=1e-4), (one, two)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint.pt", "config.json", "model", "train_log.jsonl"]
    assert list(tmp_path.glob("*.tmp*")) == [] and (tmp_path / "two" / "model" / "config.json").exists()


@pytest.mark.slow
def test_documents_without_cuts_are_cut_by_a_given_segmenter(tiny_llama_dir, stdlib_docs, tmp_path):
    from typer.testing import CliRunner

    from semanticseg.cli import app
    from semanticseg.distill.data import block_texts, build_windows, load_texts, segmenter_cuts
    from semanticseg.models import load_tokenizer
    from semanticseg.segmenter.model import Segmenter, SegmenterConfig

    Segmenter(SegmenterConfig(hidden=16, layers=1)).save(tmp_path / "seg")  # untrained: its cuts still follow the target
    tokenizer = load_tokenizer(str(tiny_llama_dir))
    by_segmenter = build_windows(stdlib_docs, tokenizer, 256, 48, 128, 384, segmenter=str(tmp_path / "seg"))
    by_structure = build_windows(stdlib_docs, tokenizer, 256, 48, 128, 384)
    doc_id, text, _ = load_texts(stdlib_docs)[0]
    first_piece = block_texts(text, segmenter_cuts(Segmenter.load(tmp_path / "seg"), text, 128))[0]
    assert by_segmenter[0].doc_id == doc_id
    assert by_segmenter[0].blocks[0] == tokenizer(first_piece, add_special_tokens=False)["input_ids"][:384]
    assert [w.blocks for w in by_segmenter] != [w.blocks for w in by_structure]
    result = CliRunner().invoke(app, ["eval-blocks", "--data", str(stdlib_docs), "--segmenter", str(tmp_path), "--out", str(tmp_path / "e")])
    assert result.exit_code != 0 and "not a segmenter folder" in " ".join(result.output.split())


def test_hub_texts_reads_a_data_set_with_datasets_and_joins_fields(tmp_path):
    """The hub path (datasets.load_dataset) on local JSON lines shaped like long-context SFT data."""
    from semanticseg.distill.data import hub_texts, is_hub_id

    rows = [
        {"id": "a", "document": "Chapter one.\n\nChapter two.", "messages": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Ann."}]},
        {"id": "b", "document": "Only a document.", "messages": []},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = hub_texts(str(tmp_path), "document,messages")
    assert texts == [("a", "Chapter one.\n\nChapter two.\n\nWho?\n\nAnn.", None), ("b", "Only a document.", None)]
    with pytest.raises(ValueError, match="no field 'context'"):
        hub_texts(str(tmp_path), "context")
    assert is_hub_id("nvidia/ChatQA2-Long-SFT-data:long_sft") and not is_hub_id(str(tmp_path)) and not is_hub_id("a/b/c")



def test_segmentation_methods_cut_where_they_should():
    """authored = the text's own headings / top-level definitions; fixed and random follow the target; unknown fails."""
    from semanticseg.distill.data import authored_cuts, fixed_cuts, method_cuts, random_cuts

    doc = "Intro line.\n\nFirst section\n=============\n\nText one.\n\n# Second\n\nText two.\n"
    assert authored_cuts(doc) == [doc.index("First section"), doc.index("# Second")]
    code = "import os\n\n\ndef a():\n    return 1\n\n\n@staticmethod\ndef b():\n    return 2\n"
    assert authored_cuts(code) == [code.index("def a"), code.index("@staticmethod")]
    assert authored_cuts("no structure at all here.") == []
    text = " ".join(f"Sentence number {i} ends here." for i in range(200))
    assert len(fixed_cuts(text, 100)) == pytest.approx(len(text.split()) * 1.3 / 100, rel=0.5)
    cuts = random_cuts("doc", text, 100)
    assert cuts == sorted(cuts) and cuts == random_cuts("doc", text, 100) and 0 < len(cuts)
    with pytest.raises(ValueError, match="unknown segmentation"):
        method_cuts("nope", "doc", text, 100)


def test_probe_suite_sweeps_positions_and_hides_facts_among_distractors():
    from semanticseg.distill.probes import POSITIONS, probe_suite, summarise
    from semanticseg.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2")
    filler = [list(range(1000 + 50 * i, 1050 + 50 * i)) for i in range(10)]
    probes = probe_suite(filler, tokenizer, n_blocks=(8, 16), per_cell=1, block_tokens=32)
    assert len(probes) == 2 * len(POSITIONS) * 2
    for probe in probes:
        assert len(probe.window.blocks) == probe.n_blocks
        text = tokenizer.decode([t for b in probe.window.blocks for t in b])
        answer = tokenizer.decode(probe.window.final[-probe.answer_tokens :]).strip()
        assert text.count("access code") >= 2 and answer in text  # the asked fact and at least one distractor
        target = round(probe.position * (probe.n_blocks - 1))
        assert f" {answer}." in tokenizer.decode(probe.window.blocks[target])
    rows = summarise(probes, [-1.0] * len(probes), [True, False] * (len(probes) // 2))
    assert {r["n_blocks"] for r in rows} == {8, 16} and all(0 <= r["accuracy"] <= 1 for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("teacher", ["tiny", "smollm2"])
def test_full_attention_control_and_eval_blocks_with_segmentations_probes_and_peers(teacher, tiny_llama_dir, stdlib_docs, tmp_path):
    """distill --mode full trains with full attention; eval-blocks scores every segmentation, the control, probes,
    APE and selective recomputation end to end (CLI), with a tiny random Llama and with the shipped SmolLM2."""
    from typer.testing import CliRunner

    from semanticseg.cli import app

    runner = CliRunner()
    common = ["--teacher", str(tiny_llama_dir) if teacher == "tiny" else teacher, "--data", str(stdlib_docs), "--context-tokens", "256", "--final-tokens", "48"]
    result = runner.invoke(app, ["distill", *common, "--out", str(tmp_path / "full"), "--mode", "full", "--steps", "2", "--batch-size", "1", "--warmup-steps", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "full" / "model" / "block_attention.json").read_text()) == {"block_sinks": False, "mode": "full"}
    # at the authored mean section length blocks are long (up to 384 tokens): the windows need room for two
    common[-3] = "1024"
    result = runner.invoke(app, ["eval-blocks", *common, "--out", str(tmp_path / "eval"), "--control", str(tmp_path / "full" / "model"),
                                 "--segmentation", "fixed,structure,segmenter,authored,random", "--max-windows", "2", "--probe-blocks", "4", "--probes-per-cell", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(report["sets"]) == {"fixed", "structure", "segmenter", "authored", "random"}  # segmenter: the shipped default
    names = {r["name"] for r in report["rows"]}
    assert names == {"teacher-full", "teacher-block", "ape", "recompute-15%", "control-full", "control-block"}
    for row in report["rows"]:
        assert row["kl_control"] is not None and row["kl_teacher"] >= -1e-6
        if row["name"] == "control-full":
            assert row["gap_vs_control"] == pytest.approx(1.0)
    assert {r["kind"] for r in report["probes"]["teacher-block"]} == {"retrieval", "two-hop"}
    bad = runner.invoke(app, ["eval-blocks", *common, "--out", str(tmp_path / "e2"), "--segmentation", "segmenter,nope"])
    assert bad.exit_code != 0 and "--segmentation" in " ".join(bad.output.split())


@pytest.mark.slow
def test_gpu_scale_session_rehearses_on_cpu(tmp_path):
    """bench/gpu_scale_session.sh, the one device call of docs/scale.md, runs end to end on CPU (gloo, Qwen3's
    architecture shrunk): the 1- and 2-process launches of bench_distill_scale.py, then the table with the scaling line."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OUT": str(tmp_path), "SHAPE": "tiny", "DEVICE": "cpu", "L1": "512", "L2": "512 1024", "FINAL": "128",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(["bash", "bench/gpu_scale_session.sh"], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "scale.json").read_text())
    assert summary["longest_ok"] == {"1": 512, "2": 1024}
    assert [s["length"] for s in summary["scaling"]] == [512] and summary["scaling"][0]["speedup_median"] > 0
    assert "scaling at 512 tokens" in (tmp_path / "scale_table.md").read_text()
    runs = summary["launches"][1]["runs"]
    assert all(len(run["peak_gib_per_gpu"]) == 2 and run["tokens_per_s"]["min"] <= run["tokens_per_s"]["median"] <= run["tokens_per_s"]["max"] for run in runs)
