"""The segmenter as a LangChain TextSplitter (extra `langchain`).

    splitter = SegmenterTextSplitter("models/segmenter", target_tokens=512)
    splitter.split_text(text)                 # block texts; "".join(...) == text
    splitter.split_documents(docs)            # Documents with start_index, end_index, n_tokens in metadata
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from langchain_core.documents import Document
from langchain_text_splitters import TextSplitter

from semanticseg.segmenter.adapters import as_segmenter


class SegmenterTextSplitter(TextSplitter):
    """Split text into self-contained blocks with the semanticseg segmenter (no overlap, nothing stripped)."""

    def __init__(self, segmenter: Any = None, target_tokens: int | None = 512, min_tokens: int | None = None,
                 max_tokens: int | None = None, threshold: float | None = None, category: str = "unknown") -> None:
        """segmenter: a Segmenter, a model folder, or None for the default model; the rest as Segmenter.segment."""
        # chunk_size only feeds TextSplitter's own merging, which this splitter does not use.
        super().__init__(chunk_size=max_tokens or 4 * (target_tokens or 512), chunk_overlap=0, strip_whitespace=False)
        self.segmenter = as_segmenter(segmenter)
        self.options = {"target_tokens": target_tokens, "min_tokens": min_tokens, "max_tokens": max_tokens,
                        "threshold": threshold, "category": category}

    def split_text(self, text: str) -> list[str]:
        """The block texts of text, in order; they join back to text exactly."""
        return [block.text for block in self.segmenter.segment(text, **self.options)]

    def create_documents(self, texts: list[str], metadatas: list[dict] | None = None) -> list[Document]:
        """One Document per block, with the block's char offsets (start_index, end_index) and n_tokens.

        Offsets come from the segmenter itself, never from searching the text, so repeated passages get theirs.
        """
        documents = []
        for i, text in enumerate(texts):
            for block in self.segmenter.segment(text, **self.options):
                metadata = copy.deepcopy(metadatas[i]) if metadatas else {}
                metadata.update(start_index=block.start, end_index=block.end, n_tokens=block.n_tokens)
                documents.append(Document(page_content=block.text, metadata=metadata))
        return documents

    def split_documents(self, documents: Iterable[Document]) -> list[Document]:
        """Split each Document; metadata is copied to its blocks and extended with their offsets."""
        documents = list(documents)
        return self.create_documents([d.page_content for d in documents], [d.metadata for d in documents])
