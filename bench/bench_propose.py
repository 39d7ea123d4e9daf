"""Proposal throughput of the llm annotator against the local SmolLM2 server, by concurrency, and the
response cache's effect on a rerun.

Each concurrency level runs the real propose stage on the same documents with an empty cache (fresh
work dir), then reruns it with the shards removed so only the cache is left. Prints documents/s and
document tokens/s per level, the speed-up over concurrency 1 and the cached rerun's speed-up.

    python bench/bench_propose.py --docs 4 --levels 1 2 4
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from semanticseg.dataset.candidates import run_candidates
from semanticseg.dataset.propose import run_propose
from semanticseg.io import write_records
from semanticseg.schema import Document
from semanticseg.servers.llm_server import start_server
from semanticseg.tokens import count_tokens


def documents(n: int, paragraphs: int) -> list[Document]:
    """n short documents of real text (GPL-3 paragraphs), so a 135M model on CPU answers in seconds."""
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    paras = [" ".join(p.split())[:400] for p in text.split("\n\n") if len(p.split()) > 20]
    docs = []
    for i in range(n):
        body = "\n\n".join(paras[i * paragraphs:(i + 1) * paragraphs])
        docs.append(Document(f"bench{i}", "legal", "GPL-3", "GPL-3.0", body, len(body), count_tokens(body)))
    return docs


def run(work: Path, docs: list[Document], options: dict, model: str) -> float:
    """Seconds for one propose run over docs."""
    start = time.perf_counter()
    summary = run_propose(work, [f"llm:{model}#0"], target_tokens=80, llm_options=options)
    seconds = time.perf_counter() - start
    row = next(iter(summary["annotators"].values()))
    print(f"    ok {row['ok']} failed {row['failed']} requests {row['requests']} cache hits {row['cache_hits']} "
          f"prompt tok {row['prompt_tokens']} completion tok {row['completion_tokens']}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=4, help="documents per run")
    parser.add_argument("--paragraphs", type=int, default=3, help="paragraphs (candidates + 1) per document")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4], help="concurrency levels")
    parser.add_argument("--max-tokens", type=int, default=24, help="answer cap per request")
    parser.add_argument("--port", type=int, default=8741, help="loopback port of the bench's own server (not shared with other runs)")
    args = parser.parse_args()
    server = start_server(port=args.port)
    docs = documents(args.docs, args.paragraphs)
    tokens = sum(d.n_tokens for d in docs)
    root = Path(tempfile.mkdtemp(prefix="bench_propose_"))
    print(f"{len(docs)} documents, {tokens} tokens; server {server.base_url}")
    base = None
    try:
        for level in args.levels:
            work = root / f"c{level}"
            write_records(work / "documents.parquet", docs, Document)
            run_candidates(work)
            options = {"base_url": server.base_url, "concurrency": level, "max_tokens": args.max_tokens, "timeout_s": 600.0}
            print(f"concurrency {level}: cold")
            cold = run(work, docs, options, server.model)
            shutil.rmtree(work / "proposals.parts")
            print(f"concurrency {level}: rerun from the cache")
            warm = run(work, docs, options, server.model)
            base = base or cold
            print(f"concurrency {level}: {len(docs) / cold:.3f} docs/s, {tokens / cold:.1f} doc tokens/s, "
                  f"x{base / cold:.2f} vs concurrency {args.levels[0]}; cached rerun {warm:.3f} s = x{cold / warm:.0f} faster")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
