"""A real Label Studio server for human review, started without any interactive step.

Label Studio's pins clash with ours, so it lives in its own virtualenv under the cache dir
(created on first use). The server runs on loopback with its data under the work dir, a preset admin
user and a preset API token (from the environment, or generated once and kept in credentials.json
beside the data). Label Studio 1.17+ refuses a preset token unless legacy tokens are enabled, hence
LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true; personal access tokens made in the UI work as well, since
label-studio-sdk exchanges them for access tokens itself.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from semanticseg.io import write_json
# The loopback checks are the ones the local LLM server uses.
from semanticseg.llm_server import _healthy as healthy
from semanticseg.llm_server import _port_free, cache_dir

LABEL_STUDIO_VERSION = "1.23.2"
DEFAULT_PORT = 8085
DEFAULT_USERNAME = "reviewer@semanticseg.local"
_STARTED: dict[int, subprocess.Popen] = {}  # servers this process started, so stop() can reap them


@dataclass(slots=True)
class Credentials:
    """How to reach a Label Studio server and log in to it."""

    url: str
    username: str
    password: str
    token: str  # the admin's legacy API token (what LABEL_STUDIO_API_KEY should hold)


def venv_dir() -> Path:
    """The virtualenv that holds the label-studio package (its pins clash with ours)."""
    return cache_dir() / "labelstudio-venv"


def ensure_installed(version: str = LABEL_STUDIO_VERSION) -> Path:
    """Create the Label Studio virtualenv and install label-studio==version once; return its executable."""
    exe = venv_dir() / "bin" / "label-studio"
    if exe.exists():
        return exe
    if not (venv_dir() / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir())], check=True)
    # About 3 minutes on first use; pip prints its own progress.
    subprocess.run([str(venv_dir() / "bin" / "pip"), "install", "-q", f"label-studio=={version}"], check=True)
    return exe


def _credentials_file(data_dir: Path) -> Path:
    return data_dir / "credentials.json"


def load_credentials(data_dir: Path) -> Credentials | None:
    """Credentials written by `serve` for the server whose data lives in data_dir (None if never served)."""
    path = _credentials_file(data_dir)
    return Credentials(**json.loads(path.read_text())) if path.exists() else None


def _resolve_credentials(data_dir: Path, port: int) -> tuple[Credentials, bool]:
    """Username/password/token from the environment, else the ones kept from the first start, else new ones."""
    kept = load_credentials(data_dir)
    env = os.environ
    creds = Credentials(
        url=f"http://127.0.0.1:{port}",
        username=env.get("LABEL_STUDIO_USERNAME") or (kept.username if kept else DEFAULT_USERNAME),
        password=env.get("LABEL_STUDIO_PASSWORD") or (kept.password if kept else secrets.token_urlsafe(12)),
        # A legacy Label Studio token is 40 hex characters.
        token=env.get("LABEL_STUDIO_API_KEY") or (kept.token if kept else secrets.token_hex(20)),
    )
    return creds, kept is None


def _pid_file(data_dir: Path) -> Path:
    return data_dir / "server.pid"


def serve(data_dir: Path, port: int = DEFAULT_PORT, timeout_s: float = 300) -> tuple[Credentials, bool]:
    """Start Label Studio on 127.0.0.1:port in the background (or reuse a healthy one); wait for /health.

    Returns the credentials and whether they were generated now (so the caller prints them once).
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    creds, generated = _resolve_credentials(data_dir, port)
    if healthy(creds.url):
        return creds, False
    if not _port_free(port):
        raise RuntimeError(f"port {port} is taken by something that is not a healthy Label Studio")
    exe = ensure_installed()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": creds.username,
        "LABEL_STUDIO_PASSWORD": creds.password,
        "LABEL_STUDIO_USER_TOKEN": creds.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }
    log = data_dir / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so `stop` ends the server and its workers
        )
    _STARTED[process.pid] = process
    _pid_file(data_dir).write_text(str(process.pid))
    write_json(_credentials_file(data_dir), asdict(creds))
    _credentials_file(data_dir).chmod(0o600)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Label Studio exited with code {process.returncode}; see {log}")
        if healthy(creds.url):
            return creds, generated
        time.sleep(2)
    stop(data_dir)
    raise RuntimeError(f"Label Studio was not healthy at {creds.url} after {timeout_s:.0f} s; see {log}")


def stop(data_dir: Path, timeout_s: float = 20) -> bool:
    """Stop the server started by `serve` for data_dir; False when none was running."""
    pid_file = _pid_file(data_dir.resolve())
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        return False
    started = _STARTED.pop(pid, None)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if started is not None:
            started.poll()  # reap our own child, else it lingers as a zombie in its group
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        os.killpg(pid, signal.SIGKILL)
        if started is not None:
            started.wait()
    pid_file.unlink(missing_ok=True)
    return True
