"""The segmenter as a LlamaIndex node parser (extra `llamaindex`).

    parser = SegmenterNodeParser.from_segmenter("models/segmenter", target_tokens=512)
    nodes = parser.get_nodes_from_documents([Document(text=text)])   # start_char_idx / end_char_idx exact
"""

from __future__ import annotations

from typing import Any, Sequence

from llama_index.core.node_parser import NodeParser
from llama_index.core.node_parser.node_utils import build_nodes_from_splits
from llama_index.core.schema import BaseNode, Document, TextNode
from pydantic import Field, PrivateAttr

from semanticseg.segmenter.adapters import as_segmenter


class SegmenterNodeParser(NodeParser):
    """Parse documents into nodes, one per block of the semanticseg segmenter."""

    target_tokens: int | None = Field(default=512, description="Mean block length to aim for, in tokens.")
    min_tokens: int | None = Field(default=None, description="Shortest block allowed, in tokens.")
    max_tokens: int | None = Field(default=None, description="Longest block allowed, in tokens.")
    threshold: float | None = Field(default=None, description="Cut where P(boundary) >= this instead of aiming at a target.")
    category: str = Field(default="unknown", description="Kind of text, for format-aware candidate cuts (e.g. code).")
    _segmenter: Any = PrivateAttr()

    @classmethod
    def from_segmenter(cls, segmenter: Any = None, **kwargs: Any) -> SegmenterNodeParser:
        """segmenter: a Segmenter, a model folder, or None for the default model; kwargs: the fields above."""
        parser = cls(**kwargs)
        parser._segmenter = as_segmenter(segmenter)
        return parser

    @classmethod
    def class_name(cls) -> str:
        return "SegmenterNodeParser"

    def _parse_nodes(self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any) -> list[BaseNode]:
        out: list[BaseNode] = []
        for node in nodes:
            text = node.get_content()
            blocks = self._segmenter.segment(text, self.target_tokens, self.min_tokens, self.max_tokens, self.threshold, self.category)
            for block, child in zip(blocks, build_nodes_from_splits([b.text for b in blocks], node, id_func=self.id_func)):
                child.metadata.update(start_index=block.start, end_index=block.end, n_tokens=block.n_tokens)
                # Bookkeeping, not content: kept out of what is embedded and what the LLM reads.
                child.excluded_embed_metadata_keys += ["start_index", "end_index", "n_tokens"]
                child.excluded_llm_metadata_keys += ["start_index", "end_index", "n_tokens"]
                out.append(child)
        return out

    def _postprocess_parsed_nodes(self, nodes: list[BaseNode], parent_doc_map: dict[str, Document]) -> list[BaseNode]:
        # The base class re-finds each node's text in its document from the previous node's start + 1, which
        # lands inside the previous block when a block's text also occurs there: keep the segmenter's offsets.
        nodes = super()._postprocess_parsed_nodes(nodes, parent_doc_map)
        for node in nodes:
            if isinstance(node, TextNode):
                node.start_char_idx, node.end_char_idx = node.metadata["start_index"], node.metadata["end_index"]
        return nodes
