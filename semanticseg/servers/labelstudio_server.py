"""A real Label Studio server for human review, started without any interactive step.

Label Studio's pins clash with ours, so it lives in its own virtualenv under the cache dir
(created on first use). The server listens on loopback unless asked otherwise (Label Studio's own
`--host` only sets the URL it prints; the bind address is `--internal-host`), with its data under the
work dir, a preset admin user and a preset API token (from the environment, or generated once and kept
in credentials.json beside the data). Label Studio 1.17+ refuses a preset token unless legacy tokens are enabled, hence
LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true; personal access tokens made in the UI work as well, since
label-studio-sdk exchanges them for access tokens itself. A state file beside the data (server.json: pid,
port, bind address) tells our server from another one on the same port, e.g. another work root's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from semanticseg.io import write_json
from semanticseg.paths import cache_dir

# The loopback checks are the ones the local LLM server uses.
from semanticseg.servers.llm_server import _healthy as healthy
from semanticseg.servers.llm_server import _port_free

LABEL_STUDIO_VERSION = "1.23.2"
DEFAULT_PORT = 8085
DEFAULT_USERNAME = "reviewer@semanticseg.local"
DEFAULT_BIND = "127.0.0.1"
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


def is_loopback(bind: str) -> bool:
    """True when a bind address only accepts connections from this machine."""
    return bind == "localhost" or ipaddress.ip_address(bind).is_loopback


def check_bind(bind: str) -> str:
    """The bind address, or ValueError when it is not an IP address (or localhost)."""
    if bind != "localhost":
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            raise ValueError(f"--bind must be an IP address such as 127.0.0.1 or 0.0.0.0, got {bind!r}") from None
    return bind


def _url(bind: str, port: int) -> str:
    """Where this machine reaches a server bound to `bind` (loopback when it listens on every address)."""
    if bind == "localhost" or ipaddress.ip_address(bind).is_unspecified:
        return f"http://127.0.0.1:{port}"
    return f"http://[{bind}]:{port}" if ":" in bind else f"http://{bind}:{port}"


def server_dir(work_root: Path) -> Path:
    """Where `annotate serve` keeps a work root's Label Studio data, credentials and state."""
    return work_root / "labelstudio"


def connection(work_root: Path, url: str | None, api_key: str | None) -> tuple[str, str]:
    """URL and token: the given ones, else $LABEL_STUDIO_URL / $LABEL_STUDIO_API_KEY, else those `serve` kept
    for the work root ("" where there is none)."""
    kept = load_credentials(server_dir(work_root))
    url = url or os.environ.get("LABEL_STUDIO_URL") or (kept.url if kept else "")
    api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY") or (kept.token if kept else "")
    return url, api_key


def _resolve_credentials(data_dir: Path, url: str) -> tuple[Credentials, bool]:
    """Username/password/token from the environment, else the ones kept from the first start, else new ones."""
    kept = load_credentials(data_dir)
    env = os.environ
    creds = Credentials(
        url=url,
        username=env.get("LABEL_STUDIO_USERNAME") or (kept.username if kept else DEFAULT_USERNAME),
        password=env.get("LABEL_STUDIO_PASSWORD") or (kept.password if kept else secrets.token_urlsafe(12)),
        # A legacy Label Studio token is 40 hex characters.
        token=env.get("LABEL_STUDIO_API_KEY") or (kept.token if kept else secrets.token_hex(20)),
    )
    return creds, kept is None


@dataclass(slots=True)
class ServerState:
    """What server.json records about the server `serve` started for one data dir."""

    pid: int
    port: int
    bind: str
    data_dir: str


def _state_file(data_dir: Path) -> Path:
    return data_dir / "server.json"


def running(data_dir: Path) -> ServerState | None:
    """The server started for data_dir when its process still runs with that data dir, else None.

    The process's own environment is checked, so a pid reused by another program is not taken for ours.
    """
    import psutil

    data_dir = data_dir.resolve()
    path = _state_file(data_dir)
    if not path.exists():
        return None
    state = ServerState(**json.loads(path.read_text()))
    try:
        env = psutil.Process(state.pid).environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return state if env.get("LABEL_STUDIO_BASE_DATA_DIR") == str(data_dir) else None


def serve(data_dir: Path, port: int = DEFAULT_PORT, bind: str = DEFAULT_BIND, timeout_s: float = 300) -> tuple[Credentials, bool]:
    """Start Label Studio on bind:port in the background (or reuse the one started for data_dir); wait for /health.

    Returns the credentials and whether they were generated now (so the caller prints them once). A port
    held by anything else, another work root's Label Studio included, is a RuntimeError that says so.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    check_bind(bind)
    creds, generated = _resolve_credentials(data_dir, _url(bind, port))
    ours = running(data_dir)
    if ours is not None:
        if (ours.port, ours.bind) != (port, bind):
            raise RuntimeError(
                f"Label Studio for {data_dir} already runs on {ours.bind}:{ours.port}: use --port {ours.port} --bind {ours.bind}, "
                "or stop it first with `semanticseg annotate serve --stop`"
            )
        return _wait_healthy(creds, data_dir, ours.pid, None, timeout_s), False
    if not _port_free(port):
        other = "another Label Studio (not the one for this work root)" if healthy(creds.url) else "another program"
        raise RuntimeError(f"port {port} is taken by {other}: choose a free one with --port")
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
            # --host is only the URL Label Studio prints and links to; --internal-host is what it listens on.
            [str(exe), "start", "--no-browser", "--host", creds.url, "--internal-host", f"[{bind}]" if ":" in bind else bind,
             "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so `stop` ends the server and its workers
        )
    _STARTED[process.pid] = process
    write_json(_state_file(data_dir), asdict(ServerState(pid=process.pid, port=port, bind=bind, data_dir=str(data_dir))))
    write_json(_credentials_file(data_dir), asdict(creds))
    _credentials_file(data_dir).chmod(0o600)
    return _wait_healthy(creds, data_dir, process.pid, process, timeout_s), generated


def _wait_healthy(creds: Credentials, data_dir: Path, pid: int, process: subprocess.Popen | None, timeout_s: float) -> Credentials:
    """Wait until our server answers /health; stop it when it does not in time."""
    import psutil

    log = data_dir / "server.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"Label Studio exited with code {process.returncode}; see {log}")
        if process is None and not psutil.pid_exists(pid):
            raise RuntimeError(f"Label Studio (pid {pid}) exited; see {log}")
        if healthy(creds.url):
            return creds
        time.sleep(2)
    stop(data_dir)
    raise RuntimeError(f"Label Studio was not healthy at {creds.url} after {timeout_s:.0f} s; see {log}")


def stop(data_dir: Path, timeout_s: float = 20) -> bool:
    """Stop the server started by `serve` for data_dir; False when none was running."""
    data_dir = data_dir.resolve()
    state = running(data_dir)
    _state_file(data_dir).unlink(missing_ok=True)
    if state is None:
        return False
    pid = state.pid
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
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
    return True
