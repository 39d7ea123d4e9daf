"""Where a Ray build's fixed seconds go (issue 16): a diagnostic, not a bench.

`imports`: in fresh processes of this python, the seconds to import what a candidates task needs (Ray, semanticseg's
candidates, the tiktoken encoding, nltk) and what a similarity actor needs (torch, sentence-transformers, the MiniLM
load and a first encode), and what it needs with --similarity-backend onnx (the encoder from its ONNX export, made
first and untimed), each twice, then --at-once similarity loads started together (as a pool of that many
actors starts), then the largest cumulative `python -X importtime` entries of one similarity load.
`build`: one build of --limit collected code documents on a Ray runtime of --workers CPUs with --similarity-backend,
timed as bench_build.py times a row (the executor's start apart), with the seconds of each stage and of the wait for
the similarity actors.

    python bench/start_probe.py imports --at-once 8
    python bench/start_probe.py build --workers 8 --limit 48 --similarity-backend onnx
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = """import time; t = time.perf_counter()
import ray; t1 = time.perf_counter()
from semanticseg.candidates import find_candidates; t2 = time.perf_counter()
from semanticseg.tokens import token_starts; token_starts('warm up', 'cl100k_base'); t3 = time.perf_counter()
import nltk; t4 = time.perf_counter()
print(f'ray {t1 - t:.2f} candidates {t2 - t1:.2f} tiktoken {t3 - t2:.2f} nltk {t4 - t3:.2f}')"""
SIMILARITY = """import time; t = time.perf_counter()
import torch; t1 = time.perf_counter()
import sentence_transformers; t2 = time.perf_counter()
from semanticseg.annotators.similarity import load_encoder
encoder = load_encoder('cpu'); t3 = time.perf_counter(); encoder.encode(['warm up']); t4 = time.perf_counter()
print(f'torch {t1 - t:.2f} sentence-transformers {t2 - t1:.2f} load {t3 - t2:.2f} first encode {t4 - t3:.2f}')"""
ONNX = """import sys, time; t = time.perf_counter()
import onnxruntime, tokenizers; t1 = time.perf_counter()
from semanticseg.annotators.similarity import load_encoder
encoder = load_encoder('cpu', 'onnx'); t2 = time.perf_counter(); encoder.encode(['warm up']); t3 = time.perf_counter()
assert 'torch' not in sys.modules
print(f'onnxruntime + tokenizers {t1 - t:.2f} load {t2 - t1:.2f} first encode {t3 - t2:.2f}')"""


def _run(code: str) -> str:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return f"{time.perf_counter() - start:5.2f} s wall: {out}"


def imports(at_once: int, top: int) -> None:
    from semanticseg.annotators import get_annotator
    from semanticseg.segmenter.onnx_encoder import onnx_available

    onnx = onnx_available()  # onnxruntime to run and onnx to export, as the backend needs
    if onnx:
        get_annotator("similarity", backend="onnx").provision()  # the export, as a build's driver makes it
    for i in range(2):
        print(f"candidates task imports, run {i + 1}: {_run(TASK)}", flush=True)
        print(f"similarity actor load, run {i + 1}: {_run(SIMILARITY)}", flush=True)
        if onnx:
            print(f"similarity actor load, backend onnx, run {i + 1}: {_run(ONNX)}", flush=True)
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", SIMILARITY], stdout=subprocess.PIPE, text=True) for _ in range(at_once)]
    outs = [p.communicate()[0].strip() for p in procs]
    print(f"{at_once} similarity loads at once: {time.perf_counter() - start:.2f} s wall; " + " | ".join(outs), flush=True)
    profile = subprocess.run([sys.executable, "-X", "importtime", "-c", SIMILARITY], capture_output=True, text=True).stderr
    rows = []
    for line in profile.splitlines():
        fields = line.split(":", 1)[-1].split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[1].strip().isdigit():
            rows.append((int(fields[1]), fields[2].rstrip()))
    print(f"largest cumulative imports of one similarity load (python -X importtime, top {top}):")
    for cumulative, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative / 1e6:6.2f} s {name}")


def build(workers: int, limit: int, max_tokens: int, backend: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_build import StageClock, bench_recipe, build_once, collect_once

    from semanticseg.executors.ray_executor import RayExecutor

    recipe = bench_recipe(argparse.Namespace(max_tokens=max_tokens))
    root = Path(tempfile.mkdtemp(prefix="start_probe_"))
    collect_once(root / "collected", ["code"], limit, recipe)
    from semanticseg.annotators import get_annotator

    get_annotator("similarity", backend=backend).provision()  # the onnx export, before the clock (a driver's step)
    start = time.perf_counter()
    executor = RayExecutor(None, workers, use_gpu=False)
    init_s = time.perf_counter() - start
    clock = StageClock()
    try:
        seconds = build_once(root / "collected", root / "run", ["code"], recipe, executor, limit, clock, backend)
    finally:
        executor.close()
    print(json.dumps({"workers": workers, "documents": limit, "similarity_backend": backend, "executor_start_s": round(init_s, 2), "seconds": round(seconds, 2),
                      "actor_start_s": round(executor.actor_start_s, 2),
                      "stage_s": {k: round(v, 2) for k, v in clock.seconds.items()}}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("imports", "build"))
    parser.add_argument("--at-once", type=int, default=8, help="imports: similarity loads started together")
    parser.add_argument("--top", type=int, default=40, help="imports: importtime entries shown")
    parser.add_argument("--workers", type=int, default=8, help="build: CPUs of the Ray runtime")
    parser.add_argument("--limit", type=int, default=48, help="build: code documents")
    parser.add_argument("--max-tokens", type=int, default=3000, help="build: longest document")
    parser.add_argument("--similarity-backend", choices=("torch", "onnx"), default="onnx", help="build: the similarity encoder")
    args = parser.parse_args()
    if args.what == "imports":
        imports(args.at_once, args.top)
    else:
        build(args.workers, args.limit, args.max_tokens, args.similarity_backend)


if __name__ == "__main__":
    main()
