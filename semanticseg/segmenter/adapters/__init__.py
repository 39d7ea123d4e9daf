"""The segmenter where users already are: a LangChain TextSplitter and a LlamaIndex node parser.

Thin adapters over `Segmenter` (extras `langchain` and `llamaindex`): each block keeps its exact char
offsets into the source text in metadata (`start_index`, `end_index`; LlamaIndex nodes also in
`start_char_idx` / `end_char_idx`) and its token count (`n_tokens`), so the blocks rebuild the text.

    from semanticseg.segmenter.adapters.langchain import SegmenterTextSplitter
    from semanticseg.segmenter.adapters.llamaindex import SegmenterNodeParser
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def as_segmenter(segmenter: Any = None) -> Any:
    """A Segmenter as given, or loaded from a model folder, or the default one when None."""
    from semanticseg.segmenter.model import Segmenter

    if isinstance(segmenter, Segmenter):
        return segmenter
    if segmenter is None:
        return Segmenter.load()
    if isinstance(segmenter, (str, Path)):
        return Segmenter.load(segmenter)
    raise TypeError(f"segmenter must be a Segmenter, a model folder or None, not {type(segmenter).__name__}")
