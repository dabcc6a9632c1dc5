"""Fixtures for the demo tests: the real app served from a subprocess on a free loopback port.

The server runs ``python -m depthlab.cli demo`` with an empty working directory, its own
``TMPDIR``, only a tiny random-weight DepthLab (``--checkpoints``; none of the real weights), and a
``sitecustomize`` that refuses (and records) any connection or name lookup that is not loopback
and bounds the server's life (it stops itself after ``LIFETIME_S`` or once the test process is
gone, so a killed test run leaves no server behind). It is stopped with SIGINT (then SIGKILL) in a
finally; the tests check that the port is closed, that nothing was written to the working
directory, that the demo removed its temporary folder and that it tried no outside connection.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "room"
START_TIMEOUT_S = 120.0
LIFETIME_S = 1800.0  # the server stops itself after this, or as soon as the test process is gone

_GUARD = textwrap.dedent(
    '''
    """Test guard: record and refuse every non-loopback connection or name lookup."""
    import os
    import socket

    _LOG = os.environ["DEPTHLAB_TEST_NET_LOG"]
    _LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::", ""}


    def _record(what):
        with open(_LOG, "a", encoding="utf-8") as handle:
            handle.write(what + "\\n")


    def _check(address):
        if isinstance(address, tuple) and address:
            host = str(address[0])
            if host not in _LOOPBACK and not host.startswith("127."):
                _record(f"connect {address!r}")
                raise OSError(f"test guard: no connection to {host} allowed")


    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


    def connect(self, address):
        _check(address)
        return _connect(self, address)


    def connect_ex(self, address):
        _check(address)
        return _connect_ex(self, address)


    _getaddrinfo = socket.getaddrinfo


    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name not in _LOOPBACK and not name.startswith("127."):
            _record(f"getaddrinfo {name!r}")
            raise socket.gaierror(f"test guard: no lookup of {name} allowed")
        return _getaddrinfo(host, *args, **kwargs)


    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo


    def _watchdog(parent, lifetime):
        """Stop the server (SIGINT, as Ctrl+C) when the test process is gone or the lifetime is up."""
        import signal
        import threading
        import time

        def watch():
            deadline = time.monotonic() + lifetime
            while os.getppid() == parent and time.monotonic() < deadline:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
            os._exit(1)  # SIGINT did not stop it

        threading.Thread(target=watch, name="test-watchdog", daemon=True).start()


    if os.getppid() == int(os.environ.get("DEPTHLAB_TEST_PARENT_PID", "-1")):  # the server, not its children
        _watchdog(os.getppid(), float(os.environ["DEPTHLAB_TEST_LIFETIME_S"]))
    '''
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class DemoServer:
    url: str
    port: int
    cwd: Path
    tmpdir: Path
    net_log: Path
    log: Path
    has_depthlab: bool = False


def require_gradio() -> None:
    for name in ("gradio", "gradio_client"):
        try:
            __import__(name)
        except ImportError:
            pytest.skip(f"{name} is not installed (pip install '.[demo]')")


def prepare_server(
    root: Path, extra_args: list[str] | None = None
) -> tuple[list[str], dict[str, str], DemoServer]:
    """The demo's command line, environment and :class:`DemoServer` (folders made below ``root``)."""
    port = free_port()
    cwd, tmpdir, weights = root / "cwd", root / "tmp", root / "no_weights"
    guard = root / "guard"
    for folder in (cwd, tmpdir, weights, guard, root / "hf"):
        folder.mkdir(parents=True, exist_ok=True)
    (guard / "sitecustomize.py").write_text(_GUARD)
    net_log, log = root / "net.log", root / "server.log"
    net_log.write_text("")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard), str(REPO / "src")]),
        "TMPDIR": str(tmpdir),
        "DEPTHLAB_CHECKPOINTS": str(weights),
        "HF_HOME": str(root / "hf"),
        "HF_HUB_OFFLINE": "1",
        "DEPTHLAB_TEST_NET_LOG": str(net_log),
        "OMP_NUM_THREADS": "2",
        "NO_PROXY": "127.0.0.1,localhost",
        "DEPTHLAB_TEST_PARENT_PID": str(os.getpid()),
        "DEPTHLAB_TEST_LIFETIME_S": str(LIFETIME_S),
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(name, None)
    command = [sys.executable, "-m", "depthlab.cli", "demo", "--host", "127.0.0.1", "--port", str(port)]
    server = DemoServer(f"http://127.0.0.1:{port}", port, cwd, tmpdir, net_log, log)
    return command + (extra_args or []), env, server


def start_server(root: Path, extra_args: list[str] | None = None):
    """Start the demo; returns (process, DemoServer). The caller must call stop_server."""
    command, env, server = prepare_server(root, extra_args)
    with open(server.log, "wb") as handle:
        process = subprocess.Popen(
            command,
            cwd=server.cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stop_server(process, server, check=False)
            pytest.fail(f"demo exited with status {process.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/", timeout=2) as response:
                if response.status == 200:
                    return process, server
        except OSError:
            time.sleep(0.5)
    stop_server(process, server, check=False)
    pytest.fail(f"demo did not answer within {START_TIMEOUT_S:.0f} s:\n{server.log.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen, server: DemoServer, check: bool = True) -> None:
    """SIGINT the process group, SIGKILL it if it lingers; then check it left nothing behind."""
    try:
        os.killpg(process.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    try:  # no stray child left in the group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if not check:
        return
    deadline = time.monotonic() + 5
    while port_open(server.port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_open(server.port), f"port {server.port} still open after the demo stopped"
    assert list(server.cwd.iterdir()) == [], (
        f"the demo wrote into its working directory: {list(server.cwd.iterdir())}"
    )
    left = [p for p in server.tmpdir.iterdir() if p.name.startswith("depthlab-demo-")]
    assert left == [], f"the demo left its temporary folder behind: {left}"
    assert server.net_log.read_text() == "", (
        f"the demo tried to reach the outside:\n{server.net_log.read_text()}"
    )


def save_tiny_checkpoint(folder: Path) -> Path | None:
    """A tiny random-weight DepthLab in the ``save_pretrained`` layout (None without torch)."""
    try:
        from depthlab import DepthLabPipeline

        pipeline = DepthLabPipeline.build_tiny(seed=0)
    except ImportError:
        return None
    pipeline.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """One demo server for the browser and the API-client tests, with tiny DepthLab weights."""
    require_gradio()
    root = tmp_path_factory.mktemp("demo_server")
    checkpoint = save_tiny_checkpoint(root / "tiny_depthlab")
    process, server = start_server(root, ["--checkpoints", str(checkpoint)] if checkpoint else [])
    server.has_depthlab = checkpoint is not None
    try:
        yield server
    finally:
        stop_server(process, server)
