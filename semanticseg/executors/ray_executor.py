"""The Ray executor: `build --executor ray` runs each stage's per-document work as Ray tasks and actors.

Why Ray core (tasks and actors) rather than Ray Data or datatrove's Ray executor: our stages already are
plain functions of one document whose results are small records, and every output must equal the local
executor's row for row, in the same order. Tasks over ordered chunks give exactly that, with a bounded number in
flight; actors keep an annotator's model loaded (on a GPU share when the cluster has GPUs) and hold one LLM
endpoint's request limit for the whole cluster. Ray Data would bring its own block format (our records hold
nested dicts and lists), streaming executor, ordering rules and progress bars; datatrove's executor its own
readers, writers and file layout. Placement, retries of lost workers and data movement are Ray's; we only keep
the actors fed.

Only the driver touches the work folder (shards, outputs, the LLM cache through an actor pinned to the
driver's node), so the nodes of a cluster share nothing but Ray: each needs semanticseg installed
(`pip install 'semanticseg[ray,train]'`) and joins with `ray start --address HEAD:PORT`.
"""

from __future__ import annotations

import math
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from semanticseg.executors import Record, is_llm
from semanticseg.io import atomic_path
from semanticseg.schema import Candidates, Document

IN_FLIGHT_PER_WORKER = 4  # chunks or documents queued per worker: enough to hide a slow one, bounded memory
LLM_IN_FLIGHT = 256  # documents handed to an LLM actor at once (its request limit throttles the requests)


@contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """os.environ with env set, for processes started inside; restored after."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _apply(fn: Callable[[Any], Any], chunk: list[Any]) -> list[Any]:
    return [fn(item) for item in chunk]


def _propose_rule(make: Callable[[], Any], target_tokens: int, item: tuple[Document, Candidates]) -> Any:
    doc, candidates = item
    return make().propose(doc, candidates, target_tokens)


class _AnnotatorActor:
    """Holds one annotator (and so its model) for the actor's life; on a GPU share when Ray gave it one."""

    def __init__(self, make: Callable[[], Any]) -> None:
        import ray

        # As many threads as the CPUs Ray gave this actor (one for a prestarted pool's): no more, or the actors would
        # oversubscribe the node's cores. ONNX Runtime reads OMP_NUM_THREADS (onnx_encoder.py); torch is set below,
        # and only if the annotator imported it (an onnx encoder's actor never does: importing it costs seconds).
        threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        self.annotator = make()
        if ray.get_gpu_ids() and hasattr(self.annotator, "device"):
            self.annotator.device = "cuda"  # Ray set CUDA_VISIBLE_DEVICES to this actor's GPU
        # The model now, while every actor of the pool starts at once: loaded in the first propose instead (importing
        # sentence-transformers and its model takes seconds), each actor's first document would carry it, the pool's
        # start would look short and the actors' seconds per document would grow with their number.
        self.annotator.load()
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        self.busy_s = 0.0

    def propose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Any:
        start = time.perf_counter()
        try:
            return self.annotator.propose(doc, candidates, target_tokens)
        finally:
            self.busy_s += time.perf_counter() - start

    def busy(self) -> float:
        """Seconds spent inside propose so far (bench_build.py reports the actors' utilisation from it)."""
        return self.busy_s

    def ready(self) -> bool:
        return True


class _LLMActor:
    """An async actor: every document of one LLM annotator goes through it, so its request limit is global."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.annotator = make()

    async def propose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Any:
        return await self.annotator.apropose(doc, candidates, target_tokens)

    async def close(self) -> None:
        if hasattr(self.annotator, "close"):
            self.annotator.close()


class RayExecutor:
    """Tasks and actors on a Ray cluster: the one at `address`, or one started here with num_workers CPUs."""

    name = "ray"

    def __init__(self, address: str | None = None, num_workers: int | None = None, use_gpu: bool = True) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("--executor ray needs Ray: pip install 'semanticseg[ray]'") from None
        self._started = not ray.is_initialized()
        self._local = self._started and not address  # a single-node runtime of this executor's own
        if self._started:
            # Tokenizers must not fork-warn in the workers.
            env = {"TOKENIZERS_PARALLELISM": "false"}
            options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if address:  # a cluster's workers get it from the job's runtime env
                ray.init(address=address, runtime_env={"env_vars": env}, **options)
            else:
                cpus = num_workers or os.cpu_count()
                # Ray keeps idle task workers only up to the CPUs free, so the annotator actors (which take every CPU)
                # would cost the next stage a cold start of every task worker; a runtime started here keeps `cpus`.
                config = {"num_workers_soft_limit": cpus}
                # No job runtime env here: the runtime's processes inherit this environment (PYTHONPATH, caches, env)
                # instead. Ray starts `cpus` idle workers with the runtime, but gives a job with a runtime env of its
                # own none of them: every actor and task worker of the build would be a cold process start, and
                # at most `cpus` processes start at once, so the first stage's task workers queued behind the
                # annotator actors' processes. "local": a new runtime, never one `ray start` left running here.
                with _environ(env):
                    ray.init(address="local", num_cpus=cpus, _system_config=config, **options)
        resources = ray.cluster_resources()
        self.workers = num_workers or max(1, int(resources.get("CPU", 1)))
        self.gpus = resources.get("GPU", 0.0) if use_gpu else 0.0
        self._task = ray.remote(num_cpus=1)(_apply)
        self.actor_start_s = 0.0  # spent waiting for annotator actors to load their models (bench_build.py reports it)
        self.actor_busy_s: dict[str, float] = {}  # per annotator: its actors' seconds inside propose, all together
        self._pools: dict[str, list[Any]] = {}  # annotator name -> actors started ahead by prestart

    def prestart(self, makers: dict[str, Callable[[], Any]]) -> None:
        """Start the actor pools of these model annotators now, while the earlier stages run; propose takes them.

        On the runtime this executor started, an actor takes one of the idle worker processes Ray started with it, but
        importing torch and sentence-transformers and loading the model there still takes seconds that otherwise
        come after the earlier stages (a setup hook would not help: it runs in every task worker too, and a runtime
        env that names one gives the job none of the idle workers). Started here, the pool reserves no CPU: the earlier stages' tasks
        need every one, so a pool holding them would start only after those stages (or, started in the middle of
        one, leave it no CPU). The actors propose only once those tasks are done, one torch thread each; until then
        their start shares the node's CPUs with the tasks, so it is hidden where the tasks leave CPUs idle (the
        driver reading and writing, a machine with more cores than workers). Only on the single-node runtime this
        executor started: on a cluster, actors that reserve no CPU could crowd onto one node, so there the pool
        starts in propose with a CPU per actor. Pools left from an earlier category whose propose had nothing to do
        are ended first.
        """
        self._end_pools()
        if self._local:
            self._pools = {name: self._spawn(make, self.workers, cpus=0) for name, make in makers.items()}

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any], chunk: int = 1, shards: Path | None = None) -> Iterator[Any]:
        """fn(item) for every item, in order, as Ray tasks over chunks of `chunk` items.

        chunk is the most items per task (fewer when a known number of items would leave workers idle). With
        `shards` (a folder keyed by the stage's fingerprint), each chunk's results are kept there as they arrive
        and a rerun takes them from there: a killed run resumes per chunk.
        """
        import ray

        if hasattr(items, "__len__"):  # a known number of items: small enough chunks to keep every worker busy
            chunk = max(1, min(chunk, len(items) // (IN_FLIGHT_PER_WORKER * self.workers)))
        store = _Shards(shards / f"chunk{chunk}") if shards is not None else None
        chunks = enumerate(iter(lambda it=iter(items): list(islice(it, chunk)), []))
        waiting: dict[Any, int] = {}  # ref -> chunk number
        ready: dict[int, list[Any]] = {}
        next_out, exhausted = 0, False
        try:
            while True:
                while not exhausted and len(waiting) + len(ready) < IN_FLIGHT_PER_WORKER * self.workers:
                    number, part = next(chunks, (None, None))
                    if part is None:
                        exhausted = True
                    elif store is not None and (kept := store.load(number, len(part))) is not None:
                        ready[number] = kept
                    else:
                        waiting[self._task.remote(fn, part)] = number
                while next_out in ready:
                    yield from ready.pop(next_out)
                    next_out += 1
                if not waiting:
                    if exhausted and not ready:
                        return
                    continue
                done, _ = ray.wait(list(waiting), num_returns=1)
                for ref in done:
                    number = waiting.pop(ref)
                    ready[number] = ray.get(ref)
                    if store is not None:
                        store.save(number, ready[number])
        finally:
            for ref in waiting:  # the caller stopped early (collect's limit) or failed: drop what is still queued
                ray.cancel(ref)

    def propose(self, annotators: list[Any], makers: dict[str, Callable[[], Any]], todo: dict[str, list[Document]],
                by_id: dict[str, Candidates], target_tokens: int, record: Record) -> tuple[dict[str, float], dict[str, int]]:
        """LLM annotators as async actors (all at once, for the whole run); annotators with a model one after another as
        actor pools; rules as tasks."""
        import ray

        seconds: dict[str, float] = {}
        tokens = {a.name: sum(d.n_tokens for d in todo.get(a.name, [])) for a in annotators}
        llms = [_Feed(a.name, [self._llm_actor(makers[a.name])], todo.get(a.name, []), LLM_IN_FLIGHT)
                for a in annotators if is_llm(a.name) and todo.get(a.name)]
        try:
            for annotator in (a for a in annotators if not is_llm(a.name)):
                docs = todo.get(annotator.name, [])
                if not docs:
                    continue
                if not annotator.keeps_model:  # a rule: tasks on the workers already up, no actor processes to start
                    start = time.perf_counter()
                    items = [(doc, by_id[doc.id]) for doc in docs]
                    for doc, proposal in zip(docs, self.imap(partial(_propose_rule, makers[annotator.name], target_tokens), items, chunk=16)):
                        record(annotator.name, doc, proposal)
                    seconds[annotator.name] = time.perf_counter() - start
                    continue
                actors = self._cpu_actors(annotator.name, makers[annotator.name], min(self.workers, len(docs)))
                cpu = _Feed(annotator.name, actors, docs, IN_FLIGHT_PER_WORKER // 2 or 1)
                self._drain([cpu, *llms], by_id, target_tokens, record, seconds, until=cpu)
                self.actor_busy_s[annotator.name] = sum(ray.get([a.busy.remote() for a in actors]))
                for actor in actors:  # free their CPUs (and GPU shares) for the next annotator's pool
                    ray.kill(actor)
            self._drain(llms, by_id, target_tokens, record, seconds)
        finally:
            self._end_pools()  # prestarted pools of annotators that had no documents
            for feed in llms:
                ray.get([a.close.remote() for a in feed.actors])
                for actor in feed.actors:
                    ray.kill(actor)
        return seconds, tokens

    def close(self) -> None:
        """Shut down the Ray runtime this executor started (a cluster it joined keeps running)."""
        import ray

        self._end_pools()
        if self._started and ray.is_initialized():
            ray.shutdown()

    def _cpu_actors(self, name: str, make: Callable[[], Any], n: int) -> list[Any]:
        """The annotator's pool: the one prestart began (as many actors as workers) or n new ones; all up."""
        import ray

        start = time.perf_counter()
        actors = self._pools.pop(name, None) or self._spawn(make, n, cpus=1)
        ray.get([a.ready.remote() for a in actors])  # all up (in parallel) before the first document is handed out
        self.actor_start_s += time.perf_counter() - start  # what the build still waits for, after any prestart
        return actors

    def _spawn(self, make: Callable[[], Any], n: int, cpus: int) -> list[Any]:
        import ray

        # GPU shares are floored to Ray's 4-decimal resolution so that n of them never exceed the GPUs there are.
        gpu = math.floor(min(1.0, self.gpus / n) * 1e4) / 1e4 if self.gpus else 0
        cls = ray.remote(num_cpus=cpus, num_gpus=gpu, max_restarts=2, max_task_retries=2)(_AnnotatorActor)
        return [cls.remote(make) for _ in range(n)]

    def _end_pools(self) -> None:
        import ray

        for actors in self._pools.values():
            for actor in actors:
                ray.kill(actor)
        self._pools = {}

    def _llm_actor(self, make: Callable[[], Any]) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the driver's node: its response cache is the work folder's, and a local model server on loopback is reachable.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        cls = ray.remote(num_cpus=0, max_restarts=2, max_task_retries=2, scheduling_strategy=here)(_LLMActor)
        return cls.options(max_concurrency=LLM_IN_FLIGHT).remote(make)

    @staticmethod
    def _drain(feeds: list[_Feed], by_id: dict[str, Candidates], target_tokens: int, record: Record,
               seconds: dict[str, float], until: _Feed | None = None) -> None:
        """Keep every feed's actors busy and record proposals as they arrive, until `until` (else every feed) is done."""
        import ray

        pending: dict[Any, tuple[_Feed, Any, Document]] = {}
        for feed in feeds:
            pending.update(feed.fill(by_id, target_tokens))
        while pending and not (until is not None and until.finished):
            done, _ = ray.wait(list(pending), num_returns=1)
            feed, actor, doc = pending.pop(done[0])
            record(feed.name, doc, ray.get(done[0]))
            feed.returned(actor)
            if feed.finished:
                seconds[feed.name] = time.perf_counter() - feed.start
            pending.update(feed.fill(by_id, target_tokens))
        for ref, (feed, actor, _doc) in pending.items():  # still running (LLM calls): hand them to the next drain
            feed.requeue(ref, actor, _doc)


class _Feed:
    """One annotator's documents and its actors, each actor kept at most `depth` calls deep."""

    def __init__(self, name: str, actors: list[Any], docs: list[Document], depth: int) -> None:
        self.name, self.actors, self.depth = name, actors, depth
        # Longest first (popped from the end): the last documents handed out are short, so no actor finishes long
        # after the others. Proposals are recorded by document, so the order changes no output.
        self.docs = sorted(docs, key=lambda d: d.n_tokens)
        self.load = {id(a): 0 for a in actors}
        self.outstanding = 0
        self.carried: dict[Any, tuple[Any, Document]] = {}
        self.start = time.perf_counter()

    @property
    def finished(self) -> bool:
        return not self.docs and self.outstanding == 0

    def fill(self, by_id: dict[str, Candidates], target_tokens: int) -> dict[Any, tuple[_Feed, Any, Document]]:
        """Calls submitted now (and those carried over from an earlier drain), as ref -> (feed, actor, doc)."""
        out = {ref: (self, actor, doc) for ref, (actor, doc) in self.carried.items()}
        self.carried = {}
        for actor in sorted(self.actors, key=lambda a: self.load[id(a)]):
            while self.docs and self.load[id(actor)] < self.depth:
                doc = self.docs.pop()
                out[actor.propose.remote(doc, by_id[doc.id], target_tokens)] = (self, actor, doc)
                self.load[id(actor)] += 1
                self.outstanding += 1
        return out

    def returned(self, actor: Any) -> None:
        self.load[id(actor)] -= 1
        self.outstanding -= 1

    def requeue(self, ref: Any, actor: Any, doc: Document) -> None:
        self.carried[ref] = (actor, doc)


class _Shards:
    """Finished chunks of one stage run: <folder>/<n>.pkl, written atomically by the driver.

    Pickle because a chunk's results are whatever the stage's function returns (records, tuples of records);
    these files are this work folder's own intermediates, read back only for the same fingerprint.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, number: int, size: int) -> list[Any] | None:
        path = self.folder / f"{number}.pkl"
        try:
            kept = pickle.loads(path.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError):
            return None
        return kept if isinstance(kept, list) and len(kept) == size else None

    def save(self, number: int, results: list[Any]) -> None:
        with atomic_path(self.folder / f"{number}.pkl") as tmp:
            tmp.write_bytes(pickle.dumps(results))
