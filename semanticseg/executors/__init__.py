"""Where a stage's per-document work runs: in this process (`local`, the default) or on Ray (`ray`).

A stage hands its executor a plain function of one item (a raw text, a document) and the items; the executor
returns the results in the items' order, so the stage writes the same output whichever executor ran the work.
Proposals go through `propose`, which knows annotators: CPU ones one document at a time, LLM ones concurrently.
The driver (this process) always writes the files; executors only compute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from semanticseg.schema import Candidates, Document, Proposal

EXECUTORS = ("local", "ray")

# record(annotator_name, doc, proposal): the stage writes the proposal's shard and advances its progress.
Record = Callable[[str, Document, Proposal], None]


@dataclass(slots=True)
class ExecutorConfig:
    """How `build` runs its per-document work (not part of any stage's settings: outputs do not depend on it)."""

    kind: str = "local"  # local | ray
    address: str | None = None  # ray: a running cluster ("auto", "ray://host:10001", "host:6379"); None: start one here
    num_workers: int | None = None  # ray: CPU workers (tasks or annotator actors at once); None: every CPU it has
    use_gpu: bool = True  # ray: model annotators (similarity) take a share of the cluster's GPUs when it has any

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"unknown executor {self.kind!r}: use {' or '.join(EXECUTORS)}")
        if self.num_workers is not None and self.num_workers < 1:
            raise ValueError("--num-workers must be at least 1")
        if self.kind == "local" and (self.address or self.num_workers):
            raise ValueError("--address and --num-workers need --executor ray")


class Executor(Protocol):
    """What a stage may ask of an executor."""

    name: str

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any], chunk: int = 1, shards: Any = None) -> Iterator[Any]:
        """fn(item) for every item, in the items' order (lazily: the caller may stop early)."""

    def prestart(self, makers: dict[str, Callable[[], Any]]) -> None:
        """The annotators that keep a model (name -> maker) a category's propose stage will use: load them ahead if useful."""

    def propose(self, annotators: list[Any], makers: dict[str, Callable[[], Any]], todo: dict[str, list[Document]],
                by_id: dict[str, Candidates], target_tokens: int, record: Record) -> tuple[dict[str, float], dict[str, int]]:
        """Every annotator over its pending documents; record() each proposal as it arrives; (seconds, tokens) per annotator."""

    def close(self) -> None:
        """Release what the executor holds (workers, a cluster it started)."""


class LocalExecutor:
    """Everything in this process, one item at a time: the default, and the reference the Ray executor must equal."""

    name = "local"

    def imap(self, fn: Callable[[Any], Any], items: Iterable[Any], chunk: int = 1, shards: Any = None) -> Iterator[Any]:
        """fn over items in this process (chunk and shards only matter for distributed executors)."""
        return map(fn, items)

    def prestart(self, makers: dict[str, Callable[[], Any]]) -> None:
        """Nothing ahead: the propose stage loads its annotators' models in this process."""

    def propose(self, annotators: list[Any], makers: dict[str, Callable[[], Any]], todo: dict[str, list[Document]],
                by_id: dict[str, Candidates], target_tokens: int, record: Record) -> tuple[dict[str, float], dict[str, int]]:
        """CPU annotators one document at a time, then every LLM annotator concurrently (the annotators given are used)."""
        seconds: dict[str, float] = {}
        tokens: dict[str, int] = {}
        # CPU-bound annotators run here, outside the event loop, one document at a time: Ctrl-C interrupts
        # them at once (inside asyncio.run it would wait for the loop's next await, after every document).
        for annotator in (a for a in annotators if not is_llm(a.name)):
            start = time.perf_counter()
            for doc in todo.get(annotator.name, []):
                record(annotator.name, doc, annotator.propose(doc, by_id[doc.id], target_tokens))
            seconds[annotator.name] = time.perf_counter() - start
            tokens[annotator.name] = sum(d.n_tokens for d in todo.get(annotator.name, []))
        llms = [a for a in annotators if is_llm(a.name)]
        if llms:
            asyncio.run(_run_llms(llms, todo, by_id, target_tokens, record, seconds, tokens))
        return seconds, tokens

    def close(self) -> None:
        """Nothing to release."""


def is_llm(name: str) -> bool:
    """Whether an annotator (by its name) waits on an LLM endpoint rather than the CPU."""
    return name.startswith("llm:")


async def _run_llms(llms: list[Any], todo: dict[str, list[Document]], by_id: dict[str, Candidates], target_tokens: int,
                    record: Record, seconds: dict[str, float], tokens: dict[str, int]) -> None:
    """Every LLM annotator at once, all its documents concurrently (under its own request limit)."""

    async def one(annotator: Any, doc: Document) -> None:
        record(annotator.name, doc, await annotator.apropose(doc, by_id[doc.id], target_tokens))

    async def per_annotator(annotator: Any) -> None:
        docs = todo.get(annotator.name, [])
        start = time.perf_counter()
        await asyncio.gather(*(one(annotator, doc) for doc in docs))
        seconds[annotator.name] = time.perf_counter() - start
        tokens[annotator.name] = sum(d.n_tokens for d in docs)

    await asyncio.gather(*(per_annotator(a) for a in llms))


def make_executor(config: ExecutorConfig) -> Executor:
    """The executor config asks for (Ray is imported, and a cluster started or joined, only for `ray`)."""
    if config.kind == "local":
        return LocalExecutor()
    from semanticseg.executors.ray_executor import RayExecutor

    return RayExecutor(config.address, config.num_workers, config.use_gpu)
