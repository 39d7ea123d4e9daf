"""collect: every category yields real documents offline; ids, dedup, resume, online streaming, bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from semanticseg.cli import app
from semanticseg.dataset.collect import CATEGORIES, CollectConfig, EmptySource, build_documents, collect, cut, sections
from semanticseg.io import read_records
from semanticseg.recipes import OnlineSource, load_category
from semanticseg.schema import Document
from semanticseg.sources import RawText, Skipped
from semanticseg.sources.offline import read_files
from semanticseg.sources.online import stream_online
from semanticseg.tokens import count_tokens
from tests.fixtures_signals import interruptible

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _stdlib(name: str) -> str:
    return (STDLIB / name).read_text(encoding="utf-8")


def test_sixteen_categories_with_both_sources():
    assert len(CATEGORIES) == 16
    for name in CATEGORIES:
        recipe = load_category(name)
        assert recipe.definition and recipe.online.dataset and recipe.online.licence
        assert recipe.offline.reader == "files" and recipe.offline.licence and recipe.offline.packages


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_yields_documents_offline(category, tmp_path):
    summary = collect(category, tmp_path, limit=2)
    docs = read_records(tmp_path / "documents.parquet", Document)
    assert summary["documents"] == len(docs) >= 1
    for doc in docs:
        assert doc.category == category and doc.licence
        assert 2000 <= doc.n_tokens <= 32000
        assert doc.n_tokens == count_tokens(doc.text) and doc.n_chars == len(doc.text)
    assert len({d.id for d in docs}) == len(docs)


def test_ids_are_stable_across_runs(tmp_path):
    first = collect("legal", tmp_path / "a")
    second = collect("legal", tmp_path / "b")
    ids_a = [d.id for d in read_records(tmp_path / "a" / "documents.parquet", Document)]
    ids_b = [d.id for d in read_records(tmp_path / "b" / "documents.parquet", Document)]
    assert ids_a == ids_b and first["documents"] == second["documents"] > 0


def test_dedup_removes_planted_exact_and_near_duplicates():
    original, other = _stdlib("textwrap.py"), _stdlib("shlex.py")
    near = original.replace("width", "columns", 3).replace("text", "string", 2)
    assert near != original
    texts = [RawText("a", original), RawText("b", original), RawText("c", near), RawText("d", other)]
    config = CollectConfig("code", min_tokens=500, max_tokens=32000)
    docs, summary = build_documents(texts, config, load_category("code"), "PSF-2.0")
    assert [d.source for d in docs] == ["a", "d"]
    assert summary["dropped"] == {"exact duplicate": 1, "near duplicate": 1}


def test_cut_keeps_pieces_in_window_and_sections_rebuild_the_text():
    text = _stdlib("argparse.py").strip()
    count = count_tokens
    assert "".join(piece for piece, _, _ in sections(text, "code", 3000, count)) == text
    pieces = list(cut(text, "code", 500, 3000, count, seed="s"))
    assert len(pieces) > 5
    assert all(500 <= count(p) <= 3000 for p in pieces[:-1])  # only the tail may fall short (then dropped)
    position = 0
    for piece in pieces:  # in order, at boundaries, nothing rewritten
        position = text.index(piece, position) + len(piece)
    assert list(cut(text, "code", 500, 3000, count, seed="s")) == pieces  # same seed, same cuts


def test_interrupted_collect_leaves_no_file_and_resumes_without_duplicates(tmp_path):
    def interrupt(n_docs: int, origin: str) -> None:
        if n_docs >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        collect("transcripts", tmp_path, limit=8, on_text=interrupt)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    summary = collect("transcripts", tmp_path, limit=8)
    docs = read_records(tmp_path / "documents.parquet", Document)
    assert summary["skipped"] is False and len(docs) == 8 == len({d.id for d in docs})
    again = collect("transcripts", tmp_path, limit=8)
    assert again["skipped"] is True and again["documents"] == 8
    assert collect("transcripts", tmp_path, limit=9)["skipped"] is False  # other settings: collected again


# The CLI as a user runs it, with its offline reader paced: it says when it has read the first text, then reads one
# text every 20 ms, so the Ctrl-C lands while it collects on any machine (idle, the whole legal corpus is read in about
# a second, and a fixed sleep before the Ctrl-C raced the end of the command).
PACED_CLI = """
import time
import semanticseg.sources.offline as offline
read = offline.read_offline
def paced(*args, **kwargs):
    for i, text in enumerate(read(*args, **kwargs)):
        if i == 0:
            print("reading", flush=True)
        time.sleep(0.02)
        yield text
offline.read_offline = paced
from semanticseg.cli import app
app()
"""


@pytest.mark.slow
def test_ctrl_c_during_collect_leaves_no_file(tmp_path):
    cmd = [sys.executable, "-c", PACED_CLI, "collect", "-c", "legal", "--out", str(tmp_path)]
    proc = interruptible(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"reading\n"  # imports done, the first copyright file read
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and b"collect legal" in err  # it was collecting when Ctrl-C came
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no output, no marker, no temporary file


def test_readers_keep_the_packages_text_and_order():
    recipe = load_category("books")
    book = next(iter(read_files(recipe.offline.params)))
    assert isinstance(book, RawText) and book.text.startswith("Debian 11\n\n# The Debian Administrator's Handbook")
    assert "Download the ebook" not in book.text and "**Next**" not in book.text  # page chrome stripped
    assert book.text.index("Chapter 1.") < book.text.index("Chapter 2.") < book.text.index("Chapter 3.")
    manuals = {r.source.rsplit("/", 1)[-1]: r.text for r in read_files(load_category("technical_docs").offline.params)}
    assert "\x00" not in manuals["find"] and "\x1f" not in manuals["find"]
    assert manuals["find"].index("Node: Top") < manuals["find"].index("Node: Primary Index")  # parts in order


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    (tmp_path / "good.txt").write_text(_stdlib("textwrap.py"), encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    items = list(read_files({"root": str(tmp_path), "patterns": ["*"]}))
    assert sorted(i.reason for i in items if isinstance(i, Skipped)) == ["binary", "non-UTF-8"]
    config = CollectConfig("code", min_tokens=500)
    docs, summary = build_documents(items, config, load_category("code"), "PSF-2.0")
    assert len(docs) == 1 and summary["dropped"] == {"file binary": 1, "file non-UTF-8": 1}


def test_empty_source_is_a_clear_error(tmp_path):
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    with pytest.raises(EmptySource, match="no readable text"):
        build_documents(read_files({"root": str(tmp_path), "patterns": ["*"]}), CollectConfig("code"), load_category("code"), "")
    short = [RawText("s", "A short real sentence from nowhere.")]
    with pytest.raises(EmptySource, match="no document inside"):
        build_documents(short, CollectConfig("code"), load_category("code"), "")


def test_online_source_streams_a_local_parquet_through_datasets(tmp_path):
    path = tmp_path / "rows.parquet"
    turns = [{"role": "user", "content": "How do I wrap text?"}, {"role": "assistant", "content": "Use textwrap."}]
    pq.write_table(
        pa.table({"title": ["textwrap", "shlex"], "text": [_stdlib("textwrap.py"), _stdlib("shlex.py")], "turns": [turns, turns]}),
        path,
    )
    spec = OnlineSource(dataset="parquet", data_files=[str(path)], text_fields=["title", "text"], licence="PSF-2.0")
    rows = list(stream_online(spec))
    assert [r.source for r in rows] == ["parquet#0", "parquet#1"] and rows[0].text.startswith("textwrap\n\n")
    docs, _ = build_documents(rows, CollectConfig("code", source="online", min_tokens=500), load_category("code"), spec.licence)
    assert len(docs) == 2
    chat = next(stream_online(OnlineSource(dataset="parquet", data_files=[str(path)], text_fields=["turns"])))
    assert chat.text == "user: How do I wrap text?\nassistant: Use textwrap."
    with pytest.raises(KeyError, match="no field"):
        next(stream_online(OnlineSource(dataset="parquet", data_files=[str(path)], text_fields=["body"])))


def test_cli_bad_inputs_give_clear_errors(tmp_path):
    runner = CliRunner()
    unknown = runner.invoke(app, ["collect", "--category", "poems", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "valid categories" in unknown.output and "scripts_subtitles" in unknown.output
    window = runner.invoke(app, ["collect", "-c", "legal", "--min-tokens", "5000", "--max-tokens", "100", "--out", str(tmp_path)])
    assert window.exit_code == 2 and "greater than --max-tokens" in window.output
    ok = runner.invoke(app, ["collect", "-c", "legal", "--limit", "2", "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "documents" in ok.output and (tmp_path / "legal" / "documents.parquet").exists()
