"""Which optional extra (pyproject.toml) installs each optional import, for a one-line error when one is missing."""

from __future__ import annotations

# Top-level module -> the extra that installs it. The README's install line installs all of them.
EXTRAS: dict[str, str] = {
    "torch": "train",
    "transformers": "train",
    "safetensors": "train",
    "accelerate": "train",
    "sentence_transformers": "train",
    "peft": "train",
    "gguf": "llm",
    "label_studio_sdk": "annotate",
    "yaml": "corpus",
    "html2text": "corpus",
}


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """One line naming the extra to install when `err` is a missing optional part; None for anything else."""
    module = (err.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return f"{module} is not installed: it comes with the {extra} extra, pip install 'semanticseg[{extra}]' (or the README's install line)"
