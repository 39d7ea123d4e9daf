"""The candidates stage: WORK/documents.parquet -> WORK/candidates.parquet (the rules are in semanticseg.candidates)."""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any

from semanticseg.candidates import find_candidates, mean_gap_tokens
from semanticseg.io import fingerprint, is_done, mark_done, read_records, read_summary, write_json, write_records
from semanticseg.schema import Candidates, Document


def run_candidates(work_dir: Path, encoding: str = "cl100k_base", force: bool = False, progress: Any = None) -> dict:
    """Read WORK/documents.parquet, write WORK/candidates.parquet; return a summary (mean gap per category)."""
    work_dir = Path(work_dir)
    docs_path, out = work_dir / "documents.parquet", work_dir / "candidates.parquet"
    settings = {"stage": "candidates", "encoding": encoding}
    fp = fingerprint(settings, docs_path) if docs_path.exists() else ""
    if not force and fp and is_done(out, fp):
        return read_summary(out) | {"skipped": True}
    documents: list[Document] = read_records(docs_path, Document)
    write_json(work_dir / "candidates.config.json", settings)
    records, gaps = [], {}
    task = progress.add_task("candidates", total=len(documents), info="") if progress else None
    for doc in documents:
        cands = find_candidates(doc.id, doc.text, doc.category, encoding=encoding)
        records.append(cands)
        gaps.setdefault(doc.category, []).append(mean_gap_tokens(cands, doc.n_tokens))
        if progress:
            progress.advance(task)
    write_records(out, records, Candidates)
    summary = {
        "documents": len(records),
        "candidates": sum(len(c.offsets) for c in records),
        "mean_gap_tokens": {cat: round(mean(values), 1) for cat, values in sorted(gaps.items())},
    }
    mark_done(out, fp, summary)
    return summary
