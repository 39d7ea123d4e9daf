"""semanticseg: build the SemanticSeg data set, segment long text into blocks, distill block attention."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Segmenter", "__version__"]

if TYPE_CHECKING:
    from semanticseg.segmenter.model import Segmenter


def __getattr__(name: str) -> Any:
    # Lazy so `import semanticseg` (and the CLI) never pays for torch.
    if name == "Segmenter":
        from semanticseg.segmenter.model import Segmenter

        return Segmenter
    raise AttributeError(name)
