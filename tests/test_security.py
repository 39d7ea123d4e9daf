"""Security: checkpoints load as data only, category names stay inside --work, URL credentials are never
written or printed. Real parts: the CLI, torch's own pickle format, the loopback OpenAI-compatible server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semanticseg.cli import app
from tests.fixtures_llm import make_work, real_paragraphs


class _Payload:
    """Unpickling this creates the file `marker`: stands in for any code a planted checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(folder: Path, marker: Path) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker), "state": {"epoch": 0}}, folder / "checkpoint.pt")


def _one_line_refusal(result, folder: Path) -> None:
    assert result.exit_code == 2, result.output
    assert "refused" in result.output and str(folder / "checkpoint.pt") in "".join(result.output.split())  # rich wraps long lines
    assert "Traceback" not in result.output


def test_planted_checkpoint_is_refused_by_train_segmenter(tmp_path, release_instances):
    from semanticseg.io import write_records
    from semanticseg.schema import Instance

    data = tmp_path / "data"
    write_records(data / "train.parquet", release_instances[:4], Instance)
    write_records(data / "validation.parquet", release_instances[4:6], Instance)
    out, marker = tmp_path / "model", tmp_path / "payload-ran"
    _plant(out, marker)
    result = CliRunner().invoke(app, ["train-segmenter", "--data", str(data), "--out", str(out), "--epochs", "1", "--device", "cpu"])
    assert not marker.exists(), "the checkpoint's pickle ran code"
    _one_line_refusal(result, out)


def test_planted_checkpoint_is_refused_by_distill(tmp_path, tiny_llama_dir, stdlib_docs):
    out, marker = tmp_path / "run", tmp_path / "payload-ran"
    _plant(out, marker)
    result = CliRunner().invoke(app, ["distill", "--teacher", str(tiny_llama_dir), "--data", str(stdlib_docs), "--out", str(out),
                                      "--steps", "1", "--batch-size", "1", "--context-tokens", "256", "--final-tokens", "48",
                                      "--device", "cpu", "--no-compile"])
    assert not marker.exists(), "the checkpoint's pickle ran code"
    _one_line_refusal(result, out)


# Every command that takes --category, with the other arguments it needs to get past parsing.
_COMMANDS = {
    "collect": ["collect", "--out", "{work}"],
    "build": ["build", "--work", "{work}", "--annotators", "structure"],
    "candidates": ["candidates", "--work", "{work}"],
    "propose": ["propose", "--work", "{work}", "-a", "structure"],
    "adjudicate": ["adjudicate", "--work", "{work}"],
    "release": ["release", "--work", "{work}", "--out", "{work}/release"],
    "annotate push": ["annotate", "push", "--work", "{work}", "--url", "http://127.0.0.1:9", "--api-key", "x"],
    "annotate pull": ["annotate", "pull", "--work", "{work}", "--url", "http://127.0.0.1:9", "--api-key", "x"],
    "segment": ["segment", "{work}/note.txt", "--method", "paragraph"],
}
_INPUTS = ("documents.parquet", "candidates.parquet", "proposals.parquet", "consensus.parquet", "instances.parquet")


@pytest.mark.parametrize("command", sorted(_COMMANDS))
@pytest.mark.parametrize("name", ["../outside", "code/../../outside", "/tmp/outside"])
def test_every_category_option_refuses_path_tricks(tmp_path, command, name):
    work = tmp_path / "work"
    work.mkdir()
    (work / "note.txt").write_text("One paragraph.\n\nAnother one.\n")
    # Every stage's input waits outside --work: a command that followed the name would read it and write beside it.
    outside = Path(name.replace("/tmp/", f"{tmp_path}/")) if name.startswith("/") else work / name
    outside.mkdir(parents=True, exist_ok=True)
    for input_name in _INPUTS:
        (outside / input_name).write_bytes(b"")
    name = str(outside) if name.startswith("/") else name
    before = sorted(p.name for p in outside.iterdir())
    args = [a.replace("{work}", str(work)) for a in _COMMANDS[command]] + ["--category", name]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"unknown category {name}; valid categories" in " ".join(result.output.split())  # rich wraps long lines
    assert sorted(p.name for p in outside.iterdir()) == before


def test_known_and_unknown_category_names():
    runner = CliRunner()
    assert runner.invoke(app, ["build", "-c", "poetry-slam"]).exit_code == 2
    assert "unknown category poetry-slam" in runner.invoke(app, ["build", "-c", "poetry-slam"]).output
    # segment's --category is a kind of text; "unknown" (its default) means prose rules.
    ok = runner.invoke(app, ["segment", "-", "--method", "paragraph", "--category", "unknown"], input="a\n\nb\n")
    assert ok.exit_code == 0, ok.output


def test_redact_url_keeps_the_endpoint_and_drops_the_secrets():
    from semanticseg.redact import redact_url

    assert redact_url("http://user:pw@host:8000/v1?api_key=k&api-version=2") == "http://host:8000/v1?api_key=***&api-version=2"
    assert redact_url("https://token@api.example.com/v1") == "https://api.example.com/v1"
    assert redact_url("https://api.openai.com/v1") == "https://api.openai.com/v1" and redact_url(None) is None


def test_llm_base_url_credentials_reach_no_file_and_no_output(tmp_path, scripted_server):
    secret = "s3cr3t-pa55word"
    work = tmp_path / "work"
    make_work(work / "legal", [(f"d{i}", "legal", "\n\n".join(real_paragraphs(12)[i:i + 6])) for i in range(2)])
    scripted_server.reset(default=lambda body: ("answer", '{"cuts": [1]}'))
    url = scripted_server.base_url.replace("http://", f"http://reviewer:{secret}@") + f"?api_key={secret}"
    result = CliRunner().invoke(app, ["propose", "--work", str(work), "-c", "legal", "-a", "structure", "-a", "llm",
                                      "--llm-base-url", url, "--llm-model", "scripted", "--max-retries", "0"])
    assert result.exit_code == 0, result.output
    assert len(scripted_server.requests) >= 2  # the endpoint was used, credentials and all
    assert secret not in result.output
    for path in work.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"{path} holds the password"
    config = (work / "legal" / "propose.config.json").read_text()
    assert scripted_server.base_url in config


def test_label_studio_url_credentials_are_not_printed_by_annotate(tmp_path):
    from semanticseg.io import write_records
    from semanticseg.schema import Candidates, Consensus, Document

    secret = "ls-pa55word"
    work = tmp_path / "work"
    for name, cls in (("documents", Document), ("candidates", Candidates), ("consensus", Consensus)):
        write_records(work / "legal" / f"{name}.parquet", [], cls)
    for command in ("push", "pull"):
        result = CliRunner().invoke(app, ["annotate", command, "-c", "legal", "--work", str(work), "--api-key", "x",
                                          "--url", f"http://admin:{secret}@127.0.0.1:9"])
        assert result.exit_code == 2 and "cannot reach Label Studio at http://127.0.0.1:9" in " ".join(result.output.split()), result.output
        assert secret not in result.output


@pytest.mark.slow
def test_label_studio_url_credentials_are_not_written_by_build(tmp_path):
    """build.config.json is written before any stage runs: a URL with a password must be redacted there."""
    secret = "ls-pa55word"
    work = tmp_path / "work"
    result = CliRunner().invoke(app, ["build", "-c", "legal", "--work", str(work), "--limit", "1", "--annotators", "structure",
                                      "--label-studio-url", f"http://admin:{secret}@127.0.0.1:9"],
                                env={**os.environ, "LABEL_STUDIO_API_KEY": "x"})
    assert secret not in result.output
    written = (work / "legal" / "build.config.json").read_text()
    assert secret not in written and "http://127.0.0.1:9" in written
