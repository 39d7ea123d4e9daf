"""`build --executor ray` on a real two-node Ray cluster on loopback: same files as the local build, and a killed
run resumes from the proposals already made."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
BUILD = ["build", "--category", "code", "--limit", "2", "--annotators", "structure,similarity"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from semanticseg.cli import app; app()", *args]


TOKEN = secrets.token_hex(32)  # this test's cluster only: its nodes and drivers authenticate with it


def _env() -> dict[str, str]:
    # The nodes' workers import semanticseg from this checkout, as the driver does.
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN,
            # Ray runs its workers at nice 15 by default: on a busy CI machine they would starve behind everything else.
            "RAY_worker_niceness": "0"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_node(*args: str) -> subprocess.Popen:
    """`ray start --block` in its own process group: stopping the group stops exactly this node (not `ray stop`,
    which would stop every Ray node on the machine)."""
    ray = Path(sys.executable).with_name("ray")
    cmd = [str(ray) if ray.exists() else "ray", "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
           "--object-store-memory", str(80 * 2**20), "--disable-usage-stats", *args]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(node: subprocess.Popen) -> None:
    """SIGTERM to the node's group (ray start shuts its processes down), then SIGKILL to whatever of it is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            return
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="module")
def two_nodes():
    """A Ray head and a second node on loopback, one CPU each; yields the address; both stopped however the tests end."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = [_ray_node("--head", "--port", str(port), "--include-dashboard", "false")]
    try:
        deadline = time.monotonic() + 120
        while socket.socket().connect_ex(("127.0.0.1", port)) and time.monotonic() < deadline:  # the head's GCS is up
            assert nodes[0].poll() is None, "the Ray head exited"
            time.sleep(0.5)
        nodes.append(_ray_node("--address", address))
        # Both nodes registered: the head's GCS listens before its raylet has registered, so joining is retried.
        probe = ("import ray, sys, time\ndeadline = time.time() + 180\n"
                 "while True:\n"
                 "    try:\n"
                 "        ray.init(address=sys.argv[1], logging_level='ERROR'); break\n"
                 "    except Exception:\n"
                 "        if time.time() > deadline: raise\n"
                 "        time.sleep(2)\n"
                 "alive = lambda: len([n for n in ray.nodes() if n['Alive']])\n"
                 "while alive() < 2 and time.time() < deadline: time.sleep(1)\n"
                 "print(alive(), 'nodes alive')")
        up = subprocess.run([sys.executable, "-c", probe, address], env=_env(), timeout=300, capture_output=True, text=True)
        assert "2 nodes alive" in up.stdout, up.stdout + up.stderr[-2000:]
        yield address
    finally:
        for node in reversed(nodes):
            _stop(node)


def _same_outputs(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("*.parquet"))
    assert names and names == sorted(p.name for p in b.glob("*.parquet"))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs"
    for name in ("candidates.config.json", "propose.config.json", "adjudicate.config.json", "instances.config.json"):
        assert (a / name).read_text() == (b / name).read_text(), f"{name} differs"
    assert not list(b.glob("*.parts")) or [p.name for p in b.glob("*.parts")] == ["proposals.parts"]


@pytest.mark.slow
def test_two_node_ray_build_equals_the_local_build_and_resumes_after_a_kill(tmp_path, two_nodes):
    local, ray_work, killed = tmp_path / "local", tmp_path / "ray", tmp_path / "killed"
    subprocess.run(_cli(*BUILD, "--work", str(local)), env=_env(), check=True, capture_output=True, timeout=600)
    on_ray = [*BUILD, "--executor", "ray", "--address", two_nodes, "--num-workers", "2"]
    subprocess.run(_cli(*on_ray, "--work", str(ray_work)), env=_env(), check=True, capture_output=True, timeout=600)
    _same_outputs(local / "code", ray_work / "code")

    # Killed once its first proposal is kept: the rerun keeps that proposal's shard and ends with the same files.
    proc = subprocess.Popen(_cli(*on_ray, "--work", str(killed)), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = killed / "code" / "proposals.parts"
    deadline = time.monotonic() + 300
    while not list(parts.glob("*/*/*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {p: p.stat().st_mtime_ns for p in parts.glob("*/*/*.parquet")}
    assert kept and not (killed / "code" / "proposals.parquet").exists(), "not killed mid-propose"
    subprocess.run(_cli(*on_ray, "--work", str(killed)), env=_env(), check=True, capture_output=True, timeout=600)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "a proposal made before the kill was made again"
    _same_outputs(local / "code", killed / "code")


@pytest.mark.slow
def test_ray_build_on_its_own_runtime_equals_the_local_build(tmp_path):
    """Without --address the executor starts Ray here and the similarity actors at the category's start, before
    collect (RayExecutor.prestart): the files are still the local build's."""
    local, ray_work = tmp_path / "local", tmp_path / "ray"
    subprocess.run(_cli(*BUILD, "--work", str(local)), env=_env(), check=True, capture_output=True, timeout=600)
    on_ray = [*BUILD, "--executor", "ray", "--num-workers", "2", "--work", str(ray_work)]
    subprocess.run(_cli(*on_ray), env=_env(), check=True, capture_output=True, timeout=600)
    _same_outputs(local / "code", ray_work / "code")


@pytest.mark.slow
def test_ray_build_with_the_onnx_similarity_backend_equals_the_local_one(tmp_path):
    """--similarity-backend onnx: the driver exports the encoder once, the actors open the export without torch, and
    the files are the local onnx build's byte for byte."""
    pytest.importorskip("onnxruntime")
    onnx = [*BUILD, "--similarity-backend", "onnx"]
    local, ray_work = tmp_path / "local", tmp_path / "ray"
    subprocess.run(_cli(*onnx, "--work", str(local)), env=_env(), check=True, capture_output=True, timeout=600)
    on_ray = [*onnx, "--executor", "ray", "--num-workers", "2", "--work", str(ray_work)]
    subprocess.run(_cli(*on_ray), env=_env(), check=True, capture_output=True, timeout=600)
    _same_outputs(local / "code", ray_work / "code")
    assert '"backend": "onnx"' in (ray_work / "code" / "propose.config.json").read_text()


@pytest.mark.slow
def test_a_runtime_the_executor_starts_serves_tasks_from_the_workers_ray_prestarted():
    """Without --address the workers inherit the driver's environment (no job runtime env), so the idle workers Ray
    starts with the runtime serve the build's first tasks instead of a cold process each; the driver's own
    environment is left as it was."""
    import psutil
    import ray

    from semanticseg.executors.ray_executor import RayExecutor

    before = os.environ.get("TOKENIZERS_PARALLELISM")
    executor = RayExecutor(num_workers=2)
    try:
        assert os.environ.get("TOKENIZERS_PARALLELISM") == before
        deadline = time.monotonic() + 60
        idle: set[int] = set()
        while len(idle) < 2 and time.monotonic() < deadline:
            idle = {p.pid for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [""])[0] == "ray::IDLE"}
            time.sleep(0.2)
        assert len(idle) >= 2, "Ray started no idle workers with the runtime"
        seen = list(executor.imap(lambda _: (os.getpid(), os.environ.get("TOKENIZERS_PARALLELISM")), range(2)))
        assert {env for _, env in seen} == {"false"}
        assert {pid for pid, _ in seen} <= idle, "a task ran in a new process, not in a worker Ray prestarted"
    finally:
        executor.close()
    assert not ray.is_initialized()
