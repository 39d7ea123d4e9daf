"""LLM fixtures: the real local SmolLM2 server (one per test session) and a scripted OpenAI-compatible
HTTP server on loopback that misbehaves on purpose (errors, garbage, slowness, bad answers).

The scripted server is a real `http.server` speaking the chat-completions wire format, so the real
`openai` client, its retries and timeouts, and our parser are what the tests exercise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

# A step: ("status", code) | ("garbage", body[, content_type]) | ("sleep", seconds) | ("answer", content[, finish_reason]).
Step = tuple


@dataclass
class ScriptedServer:
    """What the server will do for the next requests (then `default`), and what it was asked."""

    base_url: str
    script: list[Step] = field(default_factory=list)
    default: Callable[[dict[str, Any]], Step] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def reset(self, script: list[Step] | None = None, default: Callable[[dict[str, Any]], Step] | None = None) -> None:
        self.script, self.default, self.requests = list(script or []), default, []


def _completion(content: str, finish_reason: str = "stop") -> bytes:
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }).encode()


def _handler(state: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if code == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state.requests.append(body)
                step = state.script.pop(0) if state.script else (state.default(body) if state.default else ("status", 500))
            kind = step[0]
            if kind == "sleep":
                time.sleep(step[1])
                self._send(200, _completion('{"cuts": []}'))
            elif kind == "status":
                self._send(step[1], json.dumps({"error": {"message": f"scripted {step[1]}"}}).encode())
            elif kind == "garbage":  # ("garbage", body[, content type]): a 200 whose body is no completion
                self._send(200, step[1].encode(), step[2] if len(step) > 2 else "text/html")
            else:
                self._send(200, _completion(step[1], *step[2:]))

    return Handler


@contextmanager
def serve_scripted() -> Iterator[ScriptedServer]:
    """A real loopback HTTP server answering /v1/chat/completions from a script, stopped on exit."""
    state = ScriptedServer(base_url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    """The scripted server, one per test session."""
    with serve_scripted() as state:
        yield state


def marked_answer(pattern: str) -> Callable[[dict[str, Any]], Step]:
    """A server policy: choose every marker "[#k]" directly followed by `pattern` in the prompt."""

    def answer(body: dict[str, Any]) -> Step:
        prompt = body["messages"][-1]["content"]
        return ("answer", json.dumps({"cuts": [int(k) for k in re.findall(r"\[#(\d+)\] " + re.escape(pattern), prompt)]}))

    return answer


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The real SmolLM2 server, started once per session through `semanticseg llm serve`."""
    port = os.environ.get("SEMANTICSEG_TEST_LLM_PORT", "18731")
    cmd = ["semanticseg", "llm", "serve", "--port", port]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    from semanticseg.paths import cache_dir

    yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": str(cache_dir() / "models" / "SmolLM2-135M-Instruct")}
    subprocess.run(["semanticseg", "llm", "serve", "--port", port, "--stop"], capture_output=True, timeout=60)


def real_paragraphs(n: int | None = None) -> list[str]:
    """Paragraphs of a real text shipped on every Debian-based machine (the GPL-3 licence)."""
    from pathlib import Path

    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if len(p.split()) > 20]
    return paragraphs[:n] if n else paragraphs


def make_work(work_dir: Any, docs: list[tuple[str, str, str]]) -> list[Any]:
    """Write WORK/documents.parquet for (id, category, text) triples and run the candidates stage."""
    from semanticseg.dataset.candidates import run_candidates
    from semanticseg.io import write_records
    from semanticseg.schema import Document
    from semanticseg.tokens import count_tokens

    records = [Document(i, c, "test", "GPL-3.0", t, len(t), count_tokens(t)) for i, c, t in docs]
    write_records(work_dir / "documents.parquet", records, Document)
    run_candidates(work_dir)
    return records
