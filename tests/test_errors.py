"""Clear errors: bad recipes, paths, model folders and options end in one "error:" line through the real CLI,
before any work starts, never in a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semanticseg.cli import app
from semanticseg.errors import UserError

runner = CliRunner()


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _refused(result, *words: str, code: int = 2) -> None:
    """The command failed with one clear error: the exit code, an "error:" line, every word said, no traceback."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert any(line.startswith("error:") for line in result.output.splitlines()), result.output
    for word in words:
        assert word in result.output, (word, result.output)


def _set_writable(folder: Path, writable: bool) -> None:
    # Modes do not stop root; the immutable attribute does (and, while set, forbids chmod too).
    chattr = os.geteuid() == 0 and shutil.which("chattr")
    if writable and chattr:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755 if writable else 0o555)
    if not writable and chattr:
        subprocess.run(["chattr", "+i", str(folder)], capture_output=True)


@pytest.fixture
def lock():
    """lock(folder) makes folder read-only for this test (skips where that cannot be done)."""
    locked: list[Path] = []

    def lock_(folder: Path) -> Path:
        _set_writable(folder, False)
        locked.append(folder)
        try:
            (folder / "probe").touch()
        except OSError:
            return folder
        pytest.skip("cannot make a read-only folder here")

    yield lock_
    for folder in locked:
        _set_writable(folder, True)


# ---- recipes ----


def test_every_shipped_recipe_validates():
    from semanticseg.recipes import load_categories, load_recipe

    assert len(load_categories()) == 16
    recipe = load_recipe()
    assert recipe.max_tokens == 32000 and recipe.annotators == ["structure", "similarity", "llm"]
    assert recipe.offline_llm_options["window_tokens"] == 2000


def test_a_bad_recipe_names_every_bad_key_and_builds_nothing(tmp_path):
    recipe = tmp_path / "my_recipe.toml"
    recipe.write_text(
        '[release]\nsplits = "80/10/10"\nnear_duplicate_jaccard = 7\nshard_rows = 0\n'
        "[documents]\nmax_token = 6000\n"
        '[annotation]\nannotators = "structure"\n'
        "[blokcs]\ntarget_tokens = 300\n"
    )
    result = _cli("build", "-c", "code", "--recipe", recipe, "--work", tmp_path / "work", "--limit", "1")
    _refused(result)
    for key in ("release.splits", "release.near_duplicate_jaccard", "release.shard_rows", "documents.max_token",
                "annotation.annotators", "blokcs"):
        assert f"my_recipe.toml: {key}:" in result.output, key
    assert "unknown key" in result.output
    assert not (tmp_path / "work").exists()


def test_a_recipe_with_an_unknown_annotator_or_category_target_is_refused(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[annotation]\nannotators = ["structure", "simlarity"]\n[targets.poetry]\n"2-4k" = 5\n')
    _refused(_cli("validate", tmp_path, "--recipe", recipe), "annotation.annotators: unknown annotator 'simlarity'",
             "targets: unknown category 'poetry'")


def test_a_category_recipe_with_a_wrong_type_or_unknown_key_is_refused(tmp_path):
    from semanticseg.recipes import _parse, categories_dir

    path = tmp_path / "code.toml"
    text = (categories_dir() / "code.toml").read_text()
    path.write_text(text.replace('text_fields = ["content"]', 'text_fields = "content"\nlicense = "MIT"'))
    with pytest.raises(UserError) as refused:
        _parse(path)
    assert "code.toml: online.text_fields:" in str(refused.value)
    assert "code.toml: online.license: unknown key" in str(refused.value)


def test_a_category_brings_its_own_boundary_regex_and_a_misspelt_name_is_refused(tmp_path):
    """A new category's natural boundary needs no code: `boundary = "re:<pattern>"` in its TOML; a name that is
    neither a known boundary nor re:... is an error, never a silent literal pattern."""
    from semanticseg.dataset.collect import sections
    from semanticseg.recipes import _parse, categories_dir

    path = tmp_path / "code.toml"
    text = (categories_dir() / "code.toml").read_text()
    path.write_text(text.replace('boundary = "code"', 'boundary = "re:(?m)^(?=Chapter )"'))
    recipe = _parse(path)
    book = "Chapter one\n" + "word " * 50 + "\nChapter two\n" + "word " * 50
    pieces = [piece for piece, _, _ in sections(book, recipe.boundary, 200, lambda s: len(s.split()))]
    assert len(pieces) == 2 and pieces[1].startswith("Chapter two")
    path.write_text(text.replace('boundary = "code"', 'boundary = "paragrph"'))
    with pytest.raises(UserError, match="boundary: 'paragrph' is neither"):
        _parse(path)


# ---- output folders ----


def test_work_that_is_a_file_is_refused_before_any_work(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    _refused(_cli("build", "-c", "code", "--work", a_file, "--annotators", "structure"), "--work", "not a folder")
    _refused(_cli("collect", "-c", "code", "--out", a_file / "sub"), "not a folder", "notes.txt is a file")


def test_a_read_only_output_folder_is_named_not_blamed_on_the_source(tmp_path, lock):
    (tmp_path / "out").mkdir()
    result = _cli("collect", "-c", "code", "--out", lock(tmp_path / "out"), "--limit", "1")
    _refused(result, "--out", "cannot write")
    assert "online source" not in result.output


def test_a_read_only_folder_met_midway_is_one_line(tmp_path, lock):
    """The one handler in cli.py: a write refused inside a stage (here candidates) still ends in one error line."""
    from semanticseg.io import write_records
    from semanticseg.schema import Document

    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    (tmp_path / "legal").mkdir()
    write_records(tmp_path / "legal" / "documents.parquet", [Document("d1", "legal", "test", "GPL-3.0", text, len(text), 8000)], Document)
    lock(tmp_path / "legal")
    _refused(_cli("candidates", "--work", tmp_path, "-c", "legal"), str(tmp_path / "legal"), code=1)


# ---- segmenter folders and options ----


@pytest.fixture(scope="module")
def segmenter_dir(tmp_path_factory):
    from semanticseg.segmenter.model import Segmenter, SegmenterConfig

    path = tmp_path_factory.mktemp("seg") / "model"
    Segmenter(SegmenterConfig(hidden=16, layers=1)).save(path)
    return path


def _variant(segmenter_dir: Path, tmp_path: Path, weights: bytes | None = None, **config) -> Path:
    folder = tmp_path / "variant"
    shutil.copytree(segmenter_dir, folder)
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    if config:
        (folder / "config.json").write_text(json.dumps({**json.loads((segmenter_dir / "config.json").read_text()), **config}))
    return folder


@pytest.mark.parametrize("damage, words", [
    ("truncated", ["model.safetensors", "damaged"]),
    ("random", ["model.safetensors", "damaged"]),
    ("extra key", ["config.json: hiden: unknown key"]),
    ("bad type", ["config.json: layers:"]),
    ("wrong shapes", ["model.safetensors", "do not fit config.json"]),
])
def test_a_damaged_segmenter_folder_is_one_line(segmenter_dir, tmp_path, damage, words):
    weights = (segmenter_dir / "model.safetensors").read_bytes()
    folder = {
        "truncated": lambda: _variant(segmenter_dir, tmp_path, weights[: len(weights) // 2]),
        "random": lambda: _variant(segmenter_dir, tmp_path, os.urandom(4096)),
        "extra key": lambda: _variant(segmenter_dir, tmp_path, hiden=32),
        "bad type": lambda: _variant(segmenter_dir, tmp_path, layers="six"),
        "wrong shapes": lambda: _variant(segmenter_dir, tmp_path, hidden=32),
    }[damage]()
    text = tmp_path / "t.txt"
    text.write_text("One sentence here.\n\nAnother paragraph there.\n")
    _refused(_cli("segment", text, "--model", folder), *words)


def test_min_tokens_over_max_tokens_is_checked_before_the_model(segmenter_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("One sentence here.\n\nAnother paragraph there.\n")
    # A missing model folder would be the first error if the model were looked at first.
    _refused(_cli("segment", text, "--model", tmp_path / "missing", "--min-tokens", "600", "--max-tokens", "100"),
             "min_tokens (600) is larger than max_tokens (100)")
    _refused(_cli("segment", text, "--model", segmenter_dir, "--min-tokens", "3000"), "4 x target_tokens")


# ---- build: annotators and the LLM endpoint ----


def test_an_unknown_annotator_is_refused_before_collect(tmp_path):
    _refused(_cli("build", "-c", "code", "--work", tmp_path, "--annotators", "structure,simlarity"),
             "unknown annotator 'simlarity'")
    assert not any(tmp_path.iterdir())


def test_build_with_a_remote_llm_needs_a_model_and_says_so_up_front(tmp_path, scripted_server):
    _refused(_cli("build", "-c", "code", "--work", tmp_path, "--annotators", "structure,llm", "--llm-base-url",
                  scripted_server.base_url), "--llm-base-url needs --llm-model")
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_build_takes_propose_s_llm_options(tmp_path, scripted_server):
    scripted_server.reset(default=lambda body: ("answer", '{"cuts": []}'))
    result = _cli("build", "-c", "code", "--work", tmp_path, "--limit", "1", "--annotators", "structure,llm",
                  "--llm-base-url", scripted_server.base_url, "--llm-model", "scripted", "--max-tokens", "9",
                  "--max-retries", "0")
    assert result.exit_code == 0, result.output
    assert scripted_server.requests, "the llm annotator never asked the endpoint"
    assert {r["model"] for r in scripted_server.requests} == {"scripted"}
    assert max(r["max_tokens"] for r in scripted_server.requests) <= 9


# ---- release --push-to-hub: hub or local, said explicitly ----


def test_a_bare_owner_name_push_target_is_refused_before_the_release(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _refused(_cli("release", "--work", tmp_path / "work", "--out", tmp_path / "out", "--push-to-hub", "backup/name"),
             "hub:backup/name", "./backup/name")
    assert not (tmp_path / "out").exists()


def test_a_dot_slash_push_target_is_a_local_folder(tmp_path, monkeypatch):
    from semanticseg.dataset.release import publish, publish_target

    out = tmp_path / "release"
    (out / "data").mkdir(parents=True)
    (out / "README.md").write_text("card")
    (out / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    monkeypatch.chdir(tmp_path)
    assert publish_target("hub:owner/name") == ("hub", "owner/name")
    publish(out, "./backup/name")
    assert (tmp_path / "backup" / "name" / "README.md").read_text() == "card"
    assert (tmp_path / "backup" / "name" / "data" / "train-00000-of-00001.parquet").exists()
