"""A fallback corpus of real long texts shipped with Python itself, until `semanticseg collect` is used.

Documents: the language-reference topics of pydoc_data (English technical prose) and standard-library
module sources (code with docstrings). Split into train, dev and held-out by a hash of the document id, so
the split is stable across machines with the same Python version. `write_out_of_domain` adds held-out sets
of other categories (collected with `semanticseg collect --source offline`), split into dev and test.
"""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

from semanticseg.io import write_records
from semanticseg.schema import Document, Instance
from semanticseg.tokens import count_tokens


def stdlib_documents(min_tokens: int = 2000, max_tokens: int = 32000) -> list[Document]:
    """pydoc topics and stdlib sources whose cl100k length lies in [min_tokens, max_tokens]."""
    import pydoc_data.topics

    texts = [(f"pydoc:{name}", "technical-docs", text) for name, text in sorted(pydoc_data.topics.topics.items())]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts += [(f"stdlib:{p.relative_to(stdlib)}", "code", p.read_text(errors="replace")) for p in sorted(stdlib.glob("*.py"))]
    docs = []
    for source, category, text in texts:
        n_tokens = count_tokens(text)
        if min_tokens <= n_tokens <= max_tokens:
            doc_id = hashlib.sha256(text.encode()).hexdigest()[:16]
            docs.append(Document(doc_id, category, source, "PSF-2.0", text, len(text), n_tokens))
    return docs


def as_instance(doc: Document, target_tokens: int) -> Instance:
    """The document with structure cuts, as a release row (so later steps need no tokenizer of ours)."""
    from semanticseg.distill.data import block_texts, structure_cuts

    cuts = structure_cuts(doc.id, doc.text, target_tokens, doc.category)
    block_tokens = [count_tokens(piece) for piece in block_texts(doc.text, cuts)]
    return Instance(doc.id, doc.category, doc.source, doc.licence, doc.text, cuts, block_tokens, doc.n_tokens, ["structure"], [cuts], 1.0, False)


def write_split(out_dir: Path, heldout_percent: int = 15, dev_percent: int = 10, min_tokens: int = 2000, target_tokens: int = 128) -> dict[str, int]:
    """Write train/, dev/ and heldout/ instances.parquet (structure cuts) by id hash; returns their sizes.

    heldout is the in-domain test set (never used to choose settings); dev chooses them.
    """
    split: dict[str, list[Instance]] = {"train": [], "dev": [], "heldout": []}
    for doc in stdlib_documents(min_tokens):
        bucket = int(doc.id, 16) % 100
        name = "heldout" if bucket < heldout_percent else "dev" if bucket < heldout_percent + dev_percent else "train"
        split[name].append(as_instance(doc, target_tokens))
    for name, rows in split.items():
        write_records(out_dir / name / "instances.parquet", rows, Instance)
    return {name: len(rows) for name, rows in split.items()}


def write_out_of_domain(documents: list[Path], out_dir: Path, target_tokens: int = 128) -> dict[str, int]:
    """Collected documents of other categories -> ood-dev/ and ood-test/ instances.parquet (half each, by id hash)."""
    from semanticseg.io import read_records

    split: dict[str, list[Instance]] = {"ood-dev": [], "ood-test": []}
    for path in documents:
        for doc in read_records(path, Document):
            split["ood-dev" if int(hashlib.sha256(doc.id.encode()).hexdigest(), 16) % 2 == 0 else "ood-test"].append(as_instance(doc, target_tokens))
    for name, rows in split.items():
        write_records(out_dir / name / "instances.parquet", rows, Instance)
    return {name: len(rows) for name, rows in split.items()}
