"""The `llm` annotator: an LLM chooses cuts among numbered candidate markers, through any
OpenAI-compatible endpoint (OpenAI, vLLM, the local `semanticseg llm serve`).

The document is shown with markers "[#k]" at its candidates, in overlapping windows when it is long;
the model answers {"cuts": [k, ...]} (JSON schema output is requested; a tolerant parser and one repair
turn cover servers that ignore it). Requests run concurrently under a limit; the openai client retries
429/5xx/timeouts with exponential backoff; every answer that parsed is cached on disk by endpoint, model,
prompt and settings (a bad answer or a failure is asked again on a rerun). A window that still has no usable answer makes the whole proposal fail with the reason:
a document is never cut from a partial or guessed answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from semanticseg.annotators.base import Annotator, ok_proposal
from semanticseg.annotators.llm_answer import BadAnswer, parse_answer
from semanticseg.annotators.llm_cache import ResponseCache, request_key
from semanticseg.annotators.windows import Window, make_windows, merge_choices
from semanticseg.schema import Candidates, Document, Proposal

CUTS_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "cuts",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"cuts": {"type": "array", "items": {"type": "integer"}}},
            "required": ["cuts"],
            "additionalProperties": False,
        },
    },
}


@lru_cache(maxsize=1)
def _templates() -> Any:
    """The Jinja2 environment over annotation/prompts (repo checkout or the installed package data)."""
    import jinja2

    from semanticseg.paths import package_data

    folder = package_data("annotation/prompts")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


def render(name: str, **values: Any) -> str:
    """Render the prompt template annotation/prompts/<name>.jinja2."""
    return _templates().get_template(f"{name}.jinja2").render(**values).strip()


def marked_text(text: str, offsets: list[int], window: Window) -> str:
    """The window's text with "[#k] " inserted at its k-th shown candidate (k from 1)."""
    parts, pos = [], window.char_start
    for k, index in enumerate(window.shown, start=1):
        parts += [text[pos : offsets[index]], f"[#{k}] "]
        pos = offsets[index]
    parts.append(text[pos : window.char_end])
    return "".join(parts)


@dataclass(slots=True)
class _Tally:
    """What one proposal cost: requests sent, cache hits, tokens paid and tokens served from cache."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class LLMSettings:
    """The llm annotator's request settings and their defaults (`propose` and `build` show and override these)."""

    temperature: float = 0.8  # of samples 1..; sample 0 is greedy
    max_tokens: int = 512
    window_tokens: int = 3000
    overlap_tokens: int = 300
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 4
    structured: bool = True


_DEFAULTS = LLMSettings()


class LLMAnnotator(Annotator):
    """Cuts chosen by an LLM behind an OpenAI-compatible endpoint (the local server when none is set)."""

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        sample: int = 0,
        temperature: float = _DEFAULTS.temperature,
        max_tokens: int = _DEFAULTS.max_tokens,
        window_tokens: int = _DEFAULTS.window_tokens,
        overlap_tokens: int = _DEFAULTS.overlap_tokens,
        concurrency: int = _DEFAULTS.concurrency,
        timeout_s: float = _DEFAULTS.timeout_s,
        max_retries: int = _DEFAULTS.max_retries,
        cache_dir: Path | None = None,
        structured: bool = _DEFAULTS.structured,
    ) -> None:
        if window_tokens <= overlap_tokens or concurrency < 1 or max_tokens < 8:
            raise ValueError("need window_tokens > overlap_tokens, concurrency >= 1 and max_tokens >= 8")
        self._server = None
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        # No endpoint: the local server, started on the first request that misses the cache.
        self._local = base_url is None
        if self._local:
            from semanticseg.paths import cache_dir as semanticseg_cache

            model = model or str(semanticseg_cache() / "models" / "SmolLM2-135M-Instruct")
        if not model:
            raise ValueError("an LLM endpoint needs a model name (--llm-model)")
        self.model, self.base_url, self.sample = model, base_url, sample
        # The endpoint keys the response cache: another server's answers are never reused ("local" is ours).
        self._endpoint = base_url or "local"
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "local"
        # Sample 0 is the greedy answer; samples 1.. are seeded draws at `temperature`.
        self.temperature = 0.0 if sample == 0 else temperature
        self.max_tokens, self.window_tokens, self.overlap_tokens = max_tokens, window_tokens, overlap_tokens
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.cache = ResponseCache(cache_dir)
        self.structured = structured
        self.name = f"llm:{Path(model).name}#{sample}"
        self._loop_state: tuple[Any, Any, asyncio.Semaphore] | None = None
        self._lock = threading.Lock()

    async def _client(self) -> tuple[Any, asyncio.Semaphore]:
        """The AsyncOpenAI client and semaphore for the running event loop (httpx clients are loop-bound)."""
        loop = asyncio.get_running_loop()
        if self._loop_state is None or self._loop_state[0] is not loop:
            from openai import AsyncOpenAI

            if self._local:
                self.base_url = (await asyncio.to_thread(self._start_local)).base_url
            if self._loop_state is not None and self._loop_state[0] is loop:  # another task got here first
                return self._loop_state[1], self._loop_state[2]
            client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s, max_retries=self.max_retries)
            self._loop_state = (loop, client, asyncio.Semaphore(self.concurrency))
        return self._loop_state[1], self._loop_state[2]

    def _start_local(self) -> Any:
        """The local server, started once even when many requests ask at the same time."""
        with self._lock:
            if self._server is None:
                from semanticseg.servers.llm_server import start_server

                self._server = start_server()  # reuses a healthy `semanticseg llm serve`
            return self._server

    def propose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Proposal:
        """Synchronous form of apropose (runs its own event loop)."""
        return asyncio.run(self.apropose(doc, candidates, target_tokens))

    async def apropose(self, doc: Document, candidates: Candidates, target_tokens: int) -> Proposal:
        """Ask the model window by window (concurrently), merge the windows' choices; fail with a reason."""
        if not candidates.offsets:
            return ok_proposal(self.name, doc, candidates, [], windows=0)
        windows = make_windows(candidates.offsets, candidates.token_offsets, len(doc.text), doc.n_tokens,
                               self.window_tokens, self.overlap_tokens)
        tally = _Tally()
        results = await asyncio.gather(*(self._ask_window(doc, candidates, w, target_tokens, len(windows) > 1, tally) for w in windows))
        meta = {"windows": len(windows), "requests": tally.requests, "cache_hits": tally.cache_hits,
                "cached_tokens": tally.cached_tokens, "notes": tally.notes, "model": self.model, "sample": self.sample}
        errors = [f"window {n + 1}/{len(windows)}: {r}" for n, r in enumerate(results) if isinstance(r, str)]
        if errors:
            return Proposal(doc.id, self.name, [], status="failed", error="; ".join(errors),
                            prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens, meta=meta)
        proposal = ok_proposal(self.name, doc, candidates, merge_choices(windows, results), **meta)
        proposal.prompt_tokens, proposal.completion_tokens = tally.prompt_tokens, tally.completion_tokens
        return proposal

    async def _ask_window(self, doc: Document, candidates: Candidates, window: Window, target_tokens: int,
                          partial: bool, tally: _Tally) -> list[int] | str:
        """Global indices of the candidates the model chose in this window, or the reason it failed."""
        from openai import APIError

        n = len(window.shown)
        if n == 0:
            return []
        span_tokens = (candidates.token_offsets[window.shown[-1]] - candidates.token_offsets[window.shown[0]]) or target_tokens
        n_cuts = max(1, round(span_tokens / target_tokens))
        example = _templates().get_template("example.jinja2")
        messages = [
            {"role": "system", "content": render("segment_system")},
            {"role": "user", "content": render("segment", category="news", n_markers=3, target_tokens=40, n_cuts=1,
                                               partial=False, text=example.render().strip())},
            {"role": "assistant", "content": example.module.answer},
            {"role": "user", "content": render("segment", category=doc.category, n_markers=n, target_tokens=target_tokens,
                                               n_cuts=n_cuts, partial=partial, text=marked_text(doc.text, candidates.offsets, window))},
        ]
        # An answer lists at most every marker: about 3 tokens a number plus the JSON around it.
        max_tokens = min(self.max_tokens, 24 + 4 * min(n, 3 * n_cuts))
        content: str | None = None
        reason: BadAnswer | None = None
        for attempt in range(2):  # the answer, then at most one repair turn
            try:
                reply, key, hit = await self._chat(messages, max_tokens, tally)
                content = reply["content"]
                answer = parse_answer(content, n, reply["finish_reason"])
            except BadAnswer as err:
                reason = err
                if attempt == 0:
                    tally.notes.append(f"repair: {err}")
                    messages = messages + [{"role": "assistant", "content": content or ""},
                                           {"role": "user", "content": render("repair", reason=str(err), n_markers=n)}]
            except APIError as err:
                return f"server error after {self.max_retries} retries: {type(err).__name__}: {str(err)[:200]}"
            else:
                if not hit:  # only answers that parsed are cached: a bad one is asked again on a rerun
                    self.cache.put(key, reply)
                tally.notes += answer.notes
                return [window.shown[k - 1] for k in answer.numbers]
        return f"bad answer after one repair: {reason}"

    async def _chat(self, messages: list[dict[str, str]], max_tokens: int, tally: _Tally) -> tuple[dict[str, Any], str, bool]:
        """One chat completion: (reply {content, finish_reason, usage}, its cache key, whether it came from the cache).

        The caller caches the reply once it parsed. A reply that is not a chat completion raises BadAnswer.
        """
        settings = {"temperature": self.temperature, "max_tokens": max_tokens, "seed": self.sample,
                    "response_format": CUTS_SCHEMA if self.structured else None}
        key = request_key(self._endpoint, self.model, messages, settings)
        if (hit := self.cache.get(key)) is not None:
            tally.cache_hits += 1
            tally.cached_tokens += hit["usage"]["prompt_tokens"] + hit["usage"]["completion_tokens"]
            return hit, key, True
        from openai import BadRequestError

        client, limit = await self._client()
        extra = {"response_format": CUTS_SCHEMA} if self.structured else {}
        try:
            async with limit:
                tally.requests += 1
                response = await client.chat.completions.create(model=self.model, messages=messages, temperature=self.temperature,
                                                                max_tokens=max_tokens, seed=self.sample, **extra)
        except BadRequestError as err:
            if not self.structured or "response_format" not in str(err):
                raise
            self.structured = False  # this server rejects JSON schema output: rely on the tolerant parser
            tally.notes.append("server rejected response_format; parsing free text")
            return await self._chat(messages, max_tokens, tally)
        except json.JSONDecodeError as err:  # a 200 labelled JSON whose body is not: the client does not wrap it
            raise BadAnswer(f"server sent a non-JSON response: {err.doc[:80]!r}") from None
        if isinstance(response, str):  # the client hands back a body not labelled JSON as text instead of raising
            raise BadAnswer(f"server sent a non-JSON response: {response[:80]!r}")
        choice = response.choices[0] if response.choices else None
        usage = {"prompt_tokens": getattr(response.usage, "prompt_tokens", 0) or 0,
                 "completion_tokens": getattr(response.usage, "completion_tokens", 0) or 0}
        tally.prompt_tokens += usage["prompt_tokens"]
        tally.completion_tokens += usage["completion_tokens"]
        reply = {"content": choice.message.content if choice else None, "finish_reason": choice.finish_reason if choice else None,
                 "usage": usage}
        return reply, key, False

    def close(self) -> None:
        """Stop the local server if this annotator started it."""
        if self._server is not None:
            self._server.stop()
