"""Build throughput by Ray worker count, and LLM proposal throughput by request concurrency, in one run.

Part 1, the structure + similarity build: documents are collected once (this process); then every row runs the
per-document stages (candidates, propose with structure and similarity, adjudicate, instances) on a fresh copy of
them through `build_category`: the local executor (one process, torch with all its threads) and the Ray executor
started with N CPUs for each N of --workers (with --gpu also once more per N with the similarity actors sharing
the GPUs). The similarity encoder runs on --similarity-backend (onnx by default: the same MiniLM on ONNX Runtime,
whose actors start without importing torch; torch is the build's own default); with onnx the encoder is exported once
before the timed rows (untimed, like the model download, as a build's driver does before its actors start). Each row
gives seconds (min / median / max of --repeats), documents/s and document tokens/s, the speedup
against Ray with 1 worker measured in the same run, the same with the annotator actors' start (imports and
model load, once per category and annotator, amortised over a release) left out, and whether its output files equal
the local build's byte for byte. Without Ray installed only the local row is measured, and the table says so.
With --plain-workers, a reference for what the machine itself gives: the similarity annotator's proposals for the
same documents in N plain processes (multiprocessing, one torch thread each, no Ray, longest document first),
timed once every process has its encoder loaded; with --pin each process is bound to one CPU (`compact`: CPUs
0..N-1, `spread`: every other CPU first, so that on a VM whose vCPUs are hyperthread pairs no two share a core).
Speedups there are against the first row (measure 1 process first).

Part 2, LLM proposals: the llm annotator (the real prompts, windows and parsing; no response cache) over
single-window documents against a server, at each concurrency of --concurrency, with max(8, 2 x concurrency)
proposals per level: proposals/s, requests/s and generated tokens/s, and the speedup over concurrency 1. The
server is --llm-base-url, or `transformers serve` started here on --llm-model-dir (--llm-device cuda and
--continuous-batching on the GPU). Throughput grows with concurrency until the server saturates.

    python bench/bench_build.py --categories code --limit 6 --workers 1,2 --repeats 1 --concurrency 1,2 --llm-model-dir DIR
    python bench/bench_build.py --workers 1,2,4,8,16 --gpu --llm-model-dir DIR --llm-device cuda --continuous-batching
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from semanticseg.dataset.build import BuildConfig, build_category
from semanticseg.dataset.collect import CollectConfig, CollectStage
from semanticseg.dataset.stage import run_stage
from semanticseg.executors import LocalExecutor
from semanticseg.io import read_records
from semanticseg.progress import NoProgress
from semanticseg.recipes import load_recipe
from semanticseg.schema import Candidates, Document

SATURATION_GAIN = 1.1  # a doubling of concurrency that adds under 10% proposals/s: the server is saturated
COMPARED = ("candidates.parquet", "proposals.parquet", "consensus.parquet", "agreement.parquet", "instances.parquet")


def collect_once(root: Path, categories: list[str], limit: int, recipe: Any) -> tuple[int, int]:
    """documents.parquet for each category under root (as `build` would collect them); (documents, tokens)."""
    docs = tokens = 0
    for category in categories:
        config = CollectConfig(category, "offline", limit, recipe.min_tokens, recipe.max_tokens, recipe.encoding,
                               recipe.near_duplicate_jaccard)
        summary = run_stage(CollectStage(config), root / category)
        docs, tokens = docs + summary["documents"], tokens + summary["tokens"]
    return docs, tokens


class StageClock(NoProgress):
    """A progress display that shows nothing and keeps each stage's seconds (build_category names each stage)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stage, self._since = "", 0.0

    def add_task(self, description: str, *args: Any, **fields: Any) -> str:
        return description  # a stage's own bar: its updates are not stage changes

    def update(self, task_id: Any, **fields: Any) -> None:
        if task_id == "overall" and "info" in fields:
            self.stop()
            self._stage, self._since = fields["info"].split(": ")[-1], time.perf_counter()

    def stop(self) -> None:
        if self._stage:
            self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + time.perf_counter() - self._since
            self._stage = ""


def build_once(base: Path, work: Path, categories: list[str], recipe: Any, executor: Any, limit: int,
               clock: StageClock, backend: str) -> float:
    """Seconds for the per-document stages of every category on a fresh copy of the collected documents."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work)
    # The same limit as collect_once: the collect stage's fingerprint then matches and it is skipped (with another
    # limit it would collect again, untimed documents and all, inside the timed build).
    config = BuildConfig(categories, str(work), ["structure", "similarity"], recipe.target_block_tokens,
                         recipe.agreement_threshold, limit=limit, similarity={"backend": backend})
    start = time.perf_counter()
    for category in categories:
        build_category(category, config, recipe, progress=clock, overall="overall", executor=executor)
    seconds = time.perf_counter() - start
    clock.stop()
    for category in categories:
        if (work / category / "documents.parquet").read_bytes() != (base / category / "documents.parquet").read_bytes():
            raise RuntimeError(f"the build collected {category} again: the timing would not be of the collected documents")
    return seconds


def same_files(a: Path, b: Path, categories: list[str]) -> bool:
    return all((a / c / n).read_bytes() == (b / c / n).read_bytes() for c in categories for n in COMPARED)


def bench_recipe(args: argparse.Namespace) -> Any:
    """The release recipe with --max-tokens (if given) as its longest document."""
    recipe = load_recipe()
    if args.max_tokens:
        recipe = dataclasses.replace(recipe, min_tokens=min(recipe.min_tokens, args.max_tokens), max_tokens=args.max_tokens)
    return recipe


def build_table(args: argparse.Namespace, deadline: float) -> list[dict[str, Any]]:
    recipe = bench_recipe(args)
    categories = args.categories.split(",")
    root = Path(tempfile.mkdtemp(prefix="bench_build_"))
    base = root / "collected"
    n_docs, n_tokens = collect_once(base, categories, args.limit, recipe)
    print(f"part 1: {n_docs} documents, {n_tokens:,} tokens ({','.join(categories)}; collected once, not timed), "
          f"similarity backend {args.similarity_backend}", flush=True)
    from semanticseg.annotators import get_annotator

    get_annotator("similarity", backend=args.similarity_backend).provision()  # the onnx export, untimed (once, cached)
    rows: list[dict[str, Any]] = []

    def row(label: str, workers: int | None, make: Any) -> None:
        times, starts, busy, same, clock = [], [], [], True, StageClock()
        first = not (root / "local").exists()  # the first row measured is the reference for "same files"
        for r in range(args.repeats):
            if time.monotonic() > deadline:
                break
            executor = make()
            try:
                seconds = build_once(base, root / "run", categories, recipe, executor, args.limit, clock, args.similarity_backend)
                starts.append(getattr(executor, "actor_start_s", 0.0))
                busy.append(sum(getattr(executor, "actor_busy_s", {}).values()))
            finally:
                executor.close()
            times.append(seconds)
            if first and r == 0:
                shutil.copytree(root / "run", root / "local")
            else:
                same = same and same_files(root / "local", root / "run", categories)
        if times:
            stages = {k: round(v / len(times), 2) for k, v in clock.seconds.items()}  # mean seconds per stage
            # The annotator actors' seconds inside propose over what their CPUs had in the propose stage: under 1,
            # the actors waited (for work, or for the driver); near 1 with no speedup, each actor itself got slower.
            working = stages.get("propose", 0.0) - statistics.median(starts)  # the actors' start is inside the stage
            use = statistics.median(busy) / ((workers or 1) * working) if working > 0 else float("nan")
            rows.append({"executor": label, "workers": workers, "similarity_backend": args.similarity_backend, "seconds": times,
                         "actor_start_s": starts, "same_as_local": same,
                         "stage_s": stages, "actor_busy_s": busy, "actor_utilisation": use})
            if args.out:  # kept row by row: a run cut short by its time limit still leaves what it measured
                args.out.write_text(json.dumps({"build": rows, "llm": []}, indent=2) + "\n")
            med = statistics.median(times)
            print(f"  {label:<10} {workers or '-':>3} workers: {min(times):7.1f} / {med:7.1f} / {max(times):7.1f} s, "
                  f"actor start {statistics.median(starts):5.1f} s, actors busy {statistics.median(busy):6.1f} s "
                  f"(utilisation {use:.2f}), same files as the first row: {same}; stages "
                  + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()), flush=True)
        else:
            print(f"  {label} {workers}: skipped (deadline)", flush=True)

    have_ray = importlib.util.find_spec("ray") is not None
    if args.local or not have_ray:
        row("local", None, LocalExecutor)
    if not have_ray:
        print("  ray is not installed here: only the local row was measured", flush=True)
        return _finish_build_rows(rows, n_docs, n_tokens, ray_missing=True)
    from semanticseg.executors.ray_executor import RayExecutor

    for n in [int(w) for w in args.workers.split(",") if w]:
        row("ray-cpu", n, lambda n=n: RayExecutor(None, n, use_gpu=False))
    if args.gpu:
        for n in [int(w) for w in (args.gpu_workers or args.workers).split(",") if w]:
            row("ray-gpu", n, lambda n=n: RayExecutor(None, n, use_gpu=True))
    shutil.rmtree(root, ignore_errors=True)
    return _finish_build_rows(rows, n_docs, n_tokens, ray_missing=False)


def _finish_build_rows(rows: list[dict[str, Any]], n_docs: int, n_tokens: int, ray_missing: bool) -> list[dict[str, Any]]:
    one = {r["executor"]: r for r in rows if r["workers"] == 1}
    for r in rows:
        med = statistics.median(r["seconds"])
        warm = max(med - statistics.median(r["actor_start_s"]), 1e-9)
        r.update(docs_per_s=n_docs / med, tokens_per_s=n_tokens / med, warm_tokens_per_s=n_tokens / warm, ray_missing=ray_missing)
        ref = one.get(r["executor"]) or one.get("ray-cpu")
        if ref is not None:
            ref_med = statistics.median(ref["seconds"])
            r["speedup"] = ref_med / med
            r["warm_speedup"] = (ref_med - statistics.median(ref["actor_start_s"])) / warm
    return rows


def _plain_init(barrier: Any, counter: Any, pin: str) -> None:
    import os

    import torch

    torch.set_num_threads(1)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    cpus = sorted(os.sched_getaffinity(0))
    if pin != "none":
        order = cpus if pin == "compact" else cpus[0::2] + cpus[1::2]
        os.sched_setaffinity(0, {order[index % len(order)]})
    from semanticseg.annotators.similarity import load_encoder

    load_encoder("cpu").encode(["warm up"])  # the model is loaded and its first call paid before the clock starts
    barrier.wait()


def _plain_propose(item: tuple[Document, Candidates, int]) -> int:
    from semanticseg.annotators.similarity import SimilarityAnnotator

    doc, cands, target = item
    SimilarityAnnotator().propose(doc, cands, target)
    return doc.n_tokens


def proposal_items(root: Path, categories: list[str], limit: int, recipe: Any) -> list[tuple[Document, Candidates, int]]:
    """(document, candidates, target tokens) of the collected documents under root, longest document first."""
    from semanticseg.dataset.candidates import run_candidates

    collect_once(root, categories, limit, recipe)
    items: list[tuple[Document, Candidates, int]] = []
    for category in categories:
        run_candidates(root / category)
        cands = {c.doc_id: c for c in read_records(root / category / "candidates.parquet", Candidates)}
        items += [(d, cands[d.id], recipe.target_block_tokens) for d in read_records(root / category / "documents.parquet", Document)]
    items.sort(key=lambda it: -it[0].n_tokens)  # longest first: the last document handed out is a short one
    return items


def plain_table(args: argparse.Namespace, deadline: float) -> list[dict[str, Any]]:
    """The similarity proposals in N plain processes per row of --plain-workers: the machine's own scaling."""
    import multiprocessing as mp

    root = Path(tempfile.mkdtemp(prefix="bench_plain_"))
    items = proposal_items(root, args.categories.split(","), args.limit, bench_recipe(args))
    n_tokens = sum(it[0].n_tokens for it in items)
    ctx = mp.get_context("spawn")
    rows: list[dict[str, Any]] = []
    print(f"plain processes: {len(items)} documents, {n_tokens:,} tokens, similarity proposals only", flush=True)
    for pin in args.pin.split(","):
        for n in [int(w) for w in args.plain_workers.split(",") if w]:
            if n == 1 and rows:  # one process is the same whatever its CPU: measured once, the reference of every pin
                continue
            if time.monotonic() > deadline:
                print(f"  plain {n}, pin {pin}: skipped (deadline)", flush=True)
                continue
            barrier, counter = ctx.Barrier(n + 1), ctx.Value("i", 0)
            with ctx.Pool(n, initializer=_plain_init, initargs=(barrier, counter, pin)) as pool:
                barrier.wait()
                start = time.perf_counter()
                done = sum(pool.imap_unordered(_plain_propose, items, chunksize=1))
                seconds = time.perf_counter() - start
            if done != n_tokens:
                raise RuntimeError("a plain process lost documents")
            r = {"workers": n, "pin": pin, "seconds": seconds, "tokens_per_s": n_tokens / seconds}
            r["speedup"] = r["tokens_per_s"] / rows[0]["tokens_per_s"] * rows[0]["workers"] if rows else float(n)
            rows.append(r)
            print(f"  plain {n:>3} processes, pin {pin:<7}: {seconds:7.1f} s, {r['tokens_per_s']:,.0f} tokens/s, "
                  f"{r['speedup']:.2f}x one process", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return rows


def single_window_docs(n_tokens_max: int, count: int, recipe: Any) -> list[tuple[Document, Candidates]]:
    """Real documents that fit one LLM window (code, 2k tokens up to the window), with their candidates."""
    root = Path(tempfile.mkdtemp(prefix="bench_llm_"))
    config = CollectConfig("code", "offline", count, recipe.min_tokens, n_tokens_max, recipe.encoding, recipe.near_duplicate_jaccard)
    run_stage(CollectStage(config), root)
    from semanticseg.dataset.candidates import run_candidates

    run_candidates(root)
    docs = read_records(root / "documents.parquet", Document)
    cands = {c.doc_id: c for c in read_records(root / "candidates.parquet", Candidates)}
    return [(d, cands[d.id]) for d in docs]


async def llm_level(docs: list[tuple[Document, Candidates]], n: int, concurrency: int, options: dict[str, Any],
                    target: int) -> dict[str, Any]:
    from semanticseg.annotators.llm import LLMAnnotator

    annotator = LLMAnnotator(concurrency=concurrency, cache_dir=None, **options)
    work = [docs[i % len(docs)] for i in range(n)]
    start = time.perf_counter()
    proposals = await asyncio.gather(*(annotator.apropose(d, c, target) for d, c in work))
    seconds = time.perf_counter() - start
    requests = sum(p.meta.get("requests", 0) for p in proposals)
    return {"concurrency": concurrency, "proposals": n, "seconds": seconds, "proposals_per_s": n / seconds,
            "requests_per_s": requests / seconds, "completion_tokens_per_s": sum(p.completion_tokens for p in proposals) / seconds,
            "ok": sum(p.status == "ok" for p in proposals), "prompt_tokens": sum(p.prompt_tokens for p in proposals),
            "completion_tokens": sum(p.completion_tokens for p in proposals), "doc_tokens": sum(d.n_tokens for d, _ in work)}


def llm_table(args: argparse.Namespace, deadline: float) -> list[dict[str, Any]]:
    from semanticseg.servers.llm_server import start_server

    recipe = load_recipe()
    server = None
    if args.llm_base_url:
        options = {"base_url": args.llm_base_url, "model": args.llm_model}
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        extra = ("--continuous-batching",) if args.continuous_batching else ()
        try:
            server = start_server(port, Path(args.llm_model_dir), timeout_s=300, device=args.llm_device, extra_args=extra)
        except RuntimeError as err:
            if not extra:
                raise
            print(f"  the server did not start with --continuous-batching ({err}); serving without it", flush=True)
            args.continuous_batching = False
            server = start_server(port, Path(args.llm_model_dir), timeout_s=300, device=args.llm_device)
        options = {"base_url": server.base_url, "model": server.model}
    options |= {"max_retries": 1, "timeout_s": 300.0, "window_tokens": args.window_tokens}
    rows: list[dict[str, Any]] = []
    try:
        docs = single_window_docs(args.window_tokens, 16, recipe)
        print(f"part 2: {len(docs)} single-window documents, server {options['base_url']}"
              f"{' (continuous batching)' if args.continuous_batching else ''}", flush=True)
        for c in [int(x) for x in args.concurrency.split(",")]:
            if time.monotonic() > deadline:
                print(f"  concurrency {c}: skipped (deadline)", flush=True)
                continue
            r = asyncio.run(llm_level(docs, max(8, 2 * c), c, options, recipe.target_block_tokens))
            rows.append(r)
            print(f"  concurrency {c:>3}: {r['proposals_per_s']:.2f} proposals/s, {r['requests_per_s']:.2f} requests/s, "
                  f"{r['completion_tokens_per_s']:.0f} generated tokens/s ({r['ok']}/{r['proposals']} ok)", flush=True)
    finally:
        if server is not None:
            server.stop()
    for r in rows:
        r["speedup"] = r["proposals_per_s"] / rows[0]["proposals_per_s"]
    return rows


def saturation(rows: list[dict[str, Any]], gain: float = SATURATION_GAIN) -> str:
    """Where throughput stops growing: the first level after which more concurrency adds less than `gain`."""
    for before, after in zip(rows, rows[1:]):
        if after["proposals_per_s"] < before["proposals_per_s"] * gain:
            return (f"the server saturates at concurrency {before['concurrency']}: {after['concurrency']} gives "
                    f"{after['proposals_per_s'] / before['proposals_per_s']:.2f}x its proposals/s (under {gain:.2f}x)")
    return f"no saturation up to concurrency {rows[-1]['concurrency']} (every step gained at least {gain:.2f}x)" if rows else ""


def print_tables(build_rows: list[dict[str, Any]], llm_rows: list[dict[str, Any]], plain_rows: list[dict[str, Any]]) -> None:
    if build_rows:
        print(f"\nstructure + similarity build (candidates, propose, adjudicate, instances), similarity backend "
              f"{build_rows[0].get('similarity_backend', 'torch')}")
        if build_rows[0].get("ray_missing"):
            print("  (ray is not installed on this machine: the Ray rows could not be measured)")
        print("| executor | workers | seconds min / median / max | actor start s | docs/s | tokens/s | speedup vs 1 worker | "
              "speedup, actor start left out | same files as the first row |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in build_rows:
            t = r["seconds"]
            print(f"| {r['executor']} | {r['workers'] or '-'} | {min(t):.1f} / {statistics.median(t):.1f} / {max(t):.1f} | "
                  f"{statistics.median(r['actor_start_s']):.1f} | {r['docs_per_s']:.2f} | {r['tokens_per_s']:,.0f} | "
                  f"{r.get('speedup', float('nan')):.2f}x | {r.get('warm_speedup', float('nan')):.2f}x | {'yes' if r['same_as_local'] else 'NO'} |")
    if plain_rows:
        print("\nthe machine's own scaling: similarity proposals in plain processes, no Ray")
        print("| processes | pin | seconds | tokens/s | speedup vs 1 process |")
        print("|---|---|---|---|---|")
        for r in plain_rows:
            print(f"| {r['workers']} | {r['pin']} | {r['seconds']:.1f} | {r['tokens_per_s']:,.0f} | {r['speedup']:.2f}x |")
    if llm_rows:
        print("\nLLM proposals by request concurrency (single-window documents, no response cache)")
        print("| concurrency | proposals | seconds | proposals/s | requests/s | generated tokens/s | speedup vs 1 | ok |")
        print("|---|---|---|---|---|---|---|---|")
        for r in llm_rows:
            print(f"| {r['concurrency']} | {r['proposals']} | {r['seconds']:.1f} | {r['proposals_per_s']:.2f} | "
                  f"{r['requests_per_s']:.2f} | {r['completion_tokens_per_s']:.0f} | {r['speedup']:.2f}x | {r['ok']}/{r['proposals']} |")
        print(saturation(llm_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", default="code", help="offline categories whose documents the build reads")
    parser.add_argument("--limit", type=int, default=48, help="documents per category")
    parser.add_argument("--max-tokens", type=int, default=None, help="longest document (default: the recipe's)")
    parser.add_argument("--workers", default="1,2,4,8,16", help="Ray worker counts (CPUs of the local Ray runtime)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (min / median / max)")
    parser.add_argument("--local", action=argparse.BooleanOptionalAction, default=True,
                        help="measure the local executor too (with --no-local the first Ray row is the reference for "
                             "'same files'; tests/test_ray_executor.py checks Ray against local)")
    parser.add_argument("--similarity-backend", choices=("torch", "onnx"), default="onnx",
                        help="the similarity annotator's encoder in the build rows (onnx needs onnxruntime, and onnx to export)")
    parser.add_argument("--gpu", action="store_true", help="also rows with the similarity encoder on the GPUs")
    parser.add_argument("--gpu-workers", default=None, help="worker counts of the GPU rows (default: --workers)")
    parser.add_argument("--build-budget-s", type=float, default=1e9, help="start no build run after this many seconds")
    parser.add_argument("--plain-workers", default="", help="plain-process counts of the machine's own scaling ('' = none)")
    parser.add_argument("--pin", default="none", help="comma list of none, compact, spread: how plain processes are "
                        "bound to CPUs (one row set each; spread: every other CPU first)")
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="LLM request concurrency levels ('' = no LLM part)")
    parser.add_argument("--llm-base-url", default=None, help="a running OpenAI-compatible server (else --llm-model-dir)")
    parser.add_argument("--llm-model", default=None, help="model name to send to --llm-base-url")
    parser.add_argument("--llm-model-dir", default=None, help="serve this model directory with `transformers serve`")
    parser.add_argument("--llm-device", default="cpu", help="--device of `transformers serve` (cuda on the GPU)")
    parser.add_argument("--continuous-batching", action="store_true", help="`transformers serve --continuous-batching`")
    parser.add_argument("--window-tokens", type=int, default=3000, help="LLM window (documents are chosen to fit one)")
    parser.add_argument("--llm-budget-s", type=float, default=1e9, help="start no concurrency level after this many seconds")
    parser.add_argument("--out", type=Path, default=None, help="write both tables as JSON here")
    args = parser.parse_args()
    if args.gpu and args.similarity_backend == "onnx":
        parser.error("--gpu rows put the similarity encoder on the GPUs: that is --similarity-backend torch (onnx runs on CPU)")
    start = time.monotonic()
    plain_rows = plain_table(args, start + args.build_budget_s) if args.plain_workers else []
    build_rows = build_table(args, start + args.build_budget_s) if args.workers or args.gpu else []
    llm_rows = []
    if args.concurrency and (args.llm_base_url or args.llm_model_dir):
        llm_rows = llm_table(args, start + args.llm_budget_s)
    print_tables(build_rows, llm_rows, plain_rows)
    if args.out:
        args.out.write_text(json.dumps({"build": build_rows, "llm": llm_rows, "plain": plain_rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
