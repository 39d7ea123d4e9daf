"""Why similarity actors slow down per document as Ray runs more of them (issue 16): a diagnostic, not a bench.

For each variant and each actor count of --actors, the similarity annotator's proposals for --window-s seconds
(documents handed out round-robin, longest first, each actor two calls deep), then per actor: document tokens per
second inside propose, the process's CPU seconds per wall second inside propose (above 1: more threads than one
busy; below 1: the actor waited for a CPU), involuntary context switches per second, and what the process looks
like (nice, CPU affinity, torch threads, BLAS/OpenMP pools, OS threads). During the window the busiest processes of
the machine are sampled from /proc. Variants:
  default   as RayExecutor starts Ray and its actors
  nice0     Ray's worker_niceness=0 (Ray's default puts workers at nice 15, raylet, GCS and the driver at 0)
  threads   OMP/MKL/OPENBLAS_NUM_THREADS=1 in the workers and torch inter-op threads 1
The same proposals in plain processes (no Ray), the machine's own scaling: `bench_build.py --plain-workers 1,8`.

    python bench/ray_probe.py --limit 24 --actors 1,8 --variants default,nice0,threads --window-s 20
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from semanticseg.executors.ray_executor import _AnnotatorActor


def process_state() -> dict[str, Any]:
    """What this process runs with: niceness, CPUs, thread pools."""
    import torch

    state: dict[str, Any] = {"pid": os.getpid(), "nice": os.nice(0), "affinity": len(os.sched_getaffinity(0)),
                             "torch_threads": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
                             "os_threads": len(os.listdir("/proc/self/task")),
                             "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                     "LD_PRELOAD", "MALLOC_ARENA_MAX", "TOKENIZERS_PARALLELISM")}}
    try:
        from threadpoolctl import threadpool_info

        state["pools"] = [(p.get("internal_api"), p.get("num_threads")) for p in threadpool_info()]
    except ImportError:
        state["pools"] = "no threadpoolctl"
    return state


def _switches() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("nonvoluntary_ctxt_switches"))


class Meter:
    """Wall, process CPU and involuntary switches inside propose."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.tokens = self.docs = self.switches = 0

    def run(self, annotator: Any, doc: Any, cands: Any, target: int) -> None:
        w, c, s = time.perf_counter(), time.process_time(), _switches()
        annotator.propose(doc, cands, target)
        self.wall += time.perf_counter() - w
        self.cpu += time.process_time() - c
        self.switches += _switches() - s
        self.tokens += doc.n_tokens
        self.docs += 1

    def report(self) -> dict[str, Any]:
        return {"wall": self.wall, "cpu": self.cpu, "tokens": self.tokens, "docs": self.docs, "switches": self.switches}


class ProbeActor(_AnnotatorActor):
    def __init__(self, make: Any, interop1: bool, warm: Any) -> None:
        if interop1:
            import torch

            torch.set_num_interop_threads(1)
        super().__init__(make)
        self.annotator.propose(*warm)  # the model loaded and its first call paid before anything is measured
        self.meter = Meter()

    def propose(self, doc: Any, candidates: Any, target_tokens: int) -> None:  # type: ignore[override]
        self.meter.run(self.annotator, doc, candidates, target_tokens)

    def report(self) -> dict[str, Any]:
        return self.meter.report() | process_state()


def top_processes(seconds: float) -> list[tuple[str, int, float]]:
    """The busiest processes over `seconds`: (name, nice, CPU seconds)."""

    def ticks() -> dict[int, tuple[str, int, int]]:
        out = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                rest = stat[stat.rindex(")") + 2:].split()
                out[int(pid)] = (name, int(rest[16]), int(rest[11]) + int(rest[12]))
        return out

    before = ticks()
    time.sleep(seconds)
    after = ticks()
    hz = os.sysconf("SC_CLK_TCK")
    busy = [(name, nice, (t - before.get(pid, (name, nice, t))[2]) / hz) for pid, (name, nice, t) in after.items()]
    return sorted(busy, key=lambda b: -b[2])[:12]


def ray_round(items: list[Any], n: int, variant: str, window: float) -> dict[str, Any]:
    import ray

    from semanticseg.annotators.similarity import SimilarityAnnotator

    env = {"TOKENIZERS_PARALLELISM": "false"}
    config: dict[str, Any] = {"num_workers_soft_limit": n}
    if variant == "nice0":
        config["worker_niceness"] = 0
    if variant == "threads":
        env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    ray.init(address="local", num_cpus=n, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": env}, _system_config=config)
    try:
        cls = ray.remote(num_cpus=1)(ProbeActor)
        start = time.perf_counter()
        actors = [cls.remote(SimilarityAnnotator, variant == "threads", items[-1]) for _ in range(n)]
        ray.get([a.ready.remote() for a in actors])
        started = time.perf_counter() - start
        pending: dict[Any, Any] = {}
        nxt = 0
        for a in actors:
            for _ in range(2):
                doc, cands, target = items[nxt % len(items)]
                nxt += 1
                pending[a.propose.remote(doc, cands, target)] = a
        t0 = time.perf_counter()
        top: list[Any] = []
        while time.perf_counter() - t0 < window:
            if not top and time.perf_counter() - t0 > window / 4:
                top = top_processes(window / 2)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                a = pending.pop(ref)
                doc, cands, target = items[nxt % len(items)]
                nxt += 1
                pending[a.propose.remote(doc, cands, target)] = a
        ray.get(list(pending))
        reports = ray.get([a.report.remote() for a in actors])
        driver = process_state()
    finally:
        ray.shutdown()
    return {"actor_start_s": started, "actors": reports, "top": top, "driver": driver}


def summarise(variant: str, n: int, result: dict[str, Any]) -> dict[str, Any]:
    acts = result["actors"]
    wall = sum(a["wall"] for a in acts)
    row = {"variant": variant, "actors": n, "actor_start_s": result["actor_start_s"],
           "tokens_per_busy_s": sum(a["tokens"] for a in acts) / wall, "cpu_per_wall": sum(a["cpu"] for a in acts) / wall,
           "switches_per_s": sum(a["switches"] for a in acts) / wall, "docs": sum(a["docs"] for a in acts)}
    print(f"{variant:<8} {n:>2} actors: start {row['actor_start_s']:5.1f} s, {row['tokens_per_busy_s']:7.0f} tokens per busy s "
          f"per actor, CPU/wall {row['cpu_per_wall']:.2f}, involuntary switches {row['switches_per_s']:.1f}/s, "
          f"{row['docs']} docs", flush=True)
    if acts and "nice" in acts[0]:
        a = acts[0]
        print(f"    actor: nice {a['nice']}, affinity {a['affinity']} CPUs, torch {a['torch_threads']} / interop "
              f"{a['torch_interop']}, OS threads {a['os_threads']}, pools {a['pools']}, env {a['env']}", flush=True)
    if result["driver"]:
        d = result["driver"]
        print(f"    driver: nice {d['nice']}, torch {d['torch_threads']}, OS threads {d['os_threads']}", flush=True)
    if result["top"]:
        print("    busiest processes in the middle half of the window (name, nice, CPU s): "
              + ", ".join(f"{name} {nice} {s:.1f}" for name, nice, s in result["top"] if s > 0.05), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=3000)
    parser.add_argument("--actors", default="1,8")
    parser.add_argument("--variants", default="default,nice0,threads")
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import tempfile

    from bench.bench_build import bench_recipe, proposal_items

    items = proposal_items(Path(tempfile.mkdtemp(prefix="ray_probe_")), ["code"], args.limit, bench_recipe(args))
    rows = []
    for variant in args.variants.split(","):
        for n in [int(x) for x in args.actors.split(",")]:
            result = ray_round(items, n, variant, args.window_s)
            rows.append(summarise(variant, n, result))
    print("\n| variant | actors | actor start s | tokens per busy s per actor | vs 1 actor | CPU / wall in propose | involuntary switches/s |")
    print("|---|---|---|---|---|---|---|")
    ones = {r["variant"]: r for r in rows if r["actors"] == 1}
    for r in rows:
        ref = ones.get(r["variant"])
        rel = r["tokens_per_busy_s"] / ref["tokens_per_busy_s"] if ref else float("nan")
        print(f"| {r['variant']} | {r['actors']} | {r['actor_start_s']:.1f} | {r['tokens_per_busy_s']:.0f} | {rel:.2f} | "
              f"{r['cpu_per_wall']:.2f} | {r['switches_per_s']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
