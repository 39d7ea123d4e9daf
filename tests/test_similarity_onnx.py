"""The similarity annotator's onnx backend: the torch-free tokenizer gives the SentenceTransformer's ids, the
encoder its embeddings, the annotator its proposals, and loading it imports neither torch nor sentence-transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from semanticseg.annotators import get_annotator
from semanticseg.annotators.similarity import model_dir
from semanticseg.dataset.propose import ProposeStage
from semanticseg.io import read_records
from semanticseg.schema import Candidates, Proposal
from tests.fixtures_llm import make_work

pytest.importorskip("onnxruntime")

LICENCES = ("GPL-3", "LGPL-2.1", "GFDL-1.3", "MPL-2.0", "Apache-2.0", "Artistic")
REPO = Path(__file__).resolve().parents[1]


def _texts() -> list[str]:
    """Varied real text: prose, code, unicode, whitespace, empty, and longer than the model's 256 tokens."""
    gpl = Path("/usr/share/common-licenses/GPL-3").read_text()
    code = Path(sys.modules["semanticseg.annotators.base"].__file__).read_text()
    card = (model_dir() / "README.md").read_text()
    return [gpl[:3000], gpl[5000:5400], "  leading and trailing\twhitespace \n", "", code[:1500], code[2000:2300],
            card[:2000], "naïve café, Zürich — 東京の天気は晴れ。 Ελληνικά 🙂 ﬁ ligature", "x" * 2000, "a\n\n\nb"]


@pytest.fixture(scope="module")
def encoders():
    from semanticseg.annotators.similarity import load_encoder
    from semanticseg.segmenter.onnx_encoder import OnnxEncoder, ensure_export

    torch_model = load_encoder("cpu", "torch")
    ensure_export(model_dir(), torch_model)
    return torch_model, OnnxEncoder(model_dir())


@pytest.mark.slow
def test_the_torch_free_tokenizer_gives_the_sentence_transformers_ids(encoders):
    torch_model, onnx_encoder = encoders
    texts = _texts()
    ours = [e.ids for e in onnx_encoder.tokenize(texts)]
    theirs = torch_model.tokenize(texts)  # what SentenceTransformer.encode feeds its transformer (padded)
    unpadded = [list(ids[mask.bool()].tolist()) for ids, mask in zip(theirs["input_ids"], theirs["attention_mask"])]
    assert ours == unpadded
    assert max(len(ids) for ids in ours) == torch_model.max_seq_length  # the long texts were truncated, as there


@pytest.mark.slow
def test_the_torch_free_encoder_gives_the_torch_embeddings(encoders):
    torch_model, onnx_encoder = encoders
    texts = _texts()
    ours = onnx_encoder.encode(texts, batch_size=4)
    theirs = torch_model.encode(texts, batch_size=4, normalize_embeddings=True)
    assert ours.shape == theirs.shape
    assert (ours * theirs).sum(1).min() > 0.9999


@pytest.mark.slow
def test_onnx_load_imports_neither_torch_nor_sentence_transformers():
    get_annotator("similarity", backend="onnx").provision()  # the export, made here as a driver makes it
    probe = ("import sys; from semanticseg.annotators import get_annotator; a = get_annotator('similarity', backend='onnx'); "
             "a.load(); heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
             "print(heavy)")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_onnx_proposals_equal_torch_proposals_on_real_documents(tmp_path):
    docs = make_work(tmp_path, [(name, "legal", Path(f"/usr/share/common-licenses/{name}").read_text()) for name in LICENCES])
    candidates = {c.doc_id: c for c in read_records(tmp_path / "candidates.parquet", Candidates)}
    torch_annotator, onnx_annotator = get_annotator("similarity"), get_annotator("similarity", backend="onnx")
    onnx_annotator.provision()
    cuts = 0
    for doc in docs:
        a = torch_annotator.propose(doc, candidates[doc.id], 256)
        b = onnx_annotator.propose(doc, candidates[doc.id], 256)
        assert a.status == b.status == "ok"
        assert a.cuts == b.cuts, f"{doc.id}: {sorted(set(a.cuts) ^ set(b.cuts))} differ"
        cuts += len(a.cuts)
        assert abs(a.meta["mean_similarity"] - b.meta["mean_similarity"]) < 1e-4
    assert cuts > 20


def test_the_backend_keys_the_propose_stage_only_when_given():
    default = ProposeStage(["structure", "similarity"])
    torch_given = ProposeStage(["structure", "similarity"], similarity_options={"backend": "torch"})
    onnx = ProposeStage(["structure", "similarity"], similarity_options={"backend": "onnx"})
    assert "similarity_options" not in default.settings()  # builds made before the option keep their fingerprint
    assert len({str(default.settings()), str(torch_given.settings()), str(onnx.settings())}) == 3
    assert "similarity_options" not in ProposeStage(["structure"], similarity_options={"backend": "onnx"}).settings()


def test_a_wrong_backend_is_one_clear_error():
    with pytest.raises(ValueError, match="torch, onnx"):
        get_annotator("similarity", backend="tensorflow")


def test_propose_command_takes_the_backend_as_build_does(tmp_path):
    """`semanticseg propose --similarity-backend onnx` writes the onnx annotator's proposals under the onnx settings;
    a wrong name is one line and exit 2 before any document is read."""
    from typer.testing import CliRunner

    from semanticseg.cli import app

    docs = make_work(tmp_path / "legal", [(name, "legal", Path(f"/usr/share/common-licenses/{name}").read_text()) for name in LICENCES[:2]])
    args = ["propose", "--work", str(tmp_path), "-c", "legal", "-a", "similarity", "--target-tokens", "256"]
    wrong = CliRunner().invoke(app, [*args, "--similarity-backend", "tensorflow"])
    assert wrong.exit_code == 2 and "torch, onnx" in wrong.output and not (tmp_path / "legal" / "proposals.parquet").exists()
    result = CliRunner().invoke(app, [*args, "--similarity-backend", "onnx"])
    assert result.exit_code == 0, result.output
    written = {p.doc_id: p.cuts for p in read_records(tmp_path / "legal" / "proposals.parquet", Proposal)}
    candidates = {c.doc_id: c for c in read_records(tmp_path / "legal" / "candidates.parquet", Candidates)}
    onnx = get_annotator("similarity", backend="onnx")
    assert written == {doc.id: onnx.propose(doc, candidates[doc.id], 256).cuts for doc in docs}
    # the cuts are torch's too on these texts: the settings the stage recorded say which backend ran
    assert json.loads((tmp_path / "legal" / "propose.config.json").read_text())["similarity_options"] == {"backend": "onnx"}
