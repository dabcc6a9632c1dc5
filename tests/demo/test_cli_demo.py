"""``depthlab demo`` as a command: --help without Gradio, and a clear error when it is missing."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO

# Make ``import gradio`` fail the way it does when the extra is not installed.
_NO_GRADIO = "import sys; sys.modules['gradio'] = None; sys.modules['gradio_client'] = None; "


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _NO_GRADIO + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )


def test_help_works_without_gradio(tmp_path):
    done = _run("from depthlab.cli import main; sys.exit(main(['--help']))", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout
    done = _run("from depthlab.cli import main; sys.exit(main(['demo', '--help']))", tmp_path)
    assert done.returncode == 0, done.stderr
    for flag in ("--host", "--port", "--checkpoints", "--share"):
        assert flag in done.stdout
    # with Gradio installed, building the parser (and importing depthlab.demo) still does not import it
    code = (
        "from depthlab.cli import build_parser; import depthlab.demo; build_parser(); "
        "print('gradio' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import sys; " + code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert done.stdout.strip() == "False", done.stderr


def test_demo_without_gradio_is_one_line_error(tmp_path):
    done = _run("from depthlab.cli import main; sys.exit(main(['demo', '--port', '7999']))", tmp_path)
    assert done.returncode == 2
    assert "pip install" in done.stderr and "demo" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # its temporary folder is gone again


def test_share_is_off_by_default():
    from depthlab.cli import build_parser

    args = build_parser().parse_args(["demo"])
    assert args.share is False and args.host == "127.0.0.1" and args.port == 7860


# a stand-in for a test process: starts the demo as its child, prints its pid, then waits
_PARENT = (
    "import json, os, subprocess, sys; os.environ['DEPTHLAB_TEST_PARENT_PID'] = str(os.getpid()); "
    "p = subprocess.Popen(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT); "
    "print(p.pid, flush=True); p.wait()"
)


def test_server_stops_itself_when_the_test_process_is_gone(tmp_path):
    """A test run killed mid-way leaves no demo behind: the server stops (and cleans up) on its own."""
    import json
    import os
    import signal
    import time

    from .conftest import START_TIMEOUT_S, port_open, prepare_server, require_gradio

    require_gradio()
    command, env, server = prepare_server(tmp_path)
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, json.dumps(command)],
        env=env,
        cwd=server.cwd,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_open(server.port) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert port_open(server.port), "the demo did not start"
        parent.kill()  # the "test process" dies without stopping its server
        parent.wait(timeout=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (port_open(server.port) or _alive(pid)):
            time.sleep(0.3)
        assert not port_open(server.port) and not _alive(pid), "the orphaned demo is still running"
        left = [p for p in server.tmpdir.iterdir() if p.name.startswith("depthlab-demo-")]
        assert left == [], f"the demo left its temporary folder behind: {left}"
    finally:
        try:
            os.killpg(parent.pid, signal.SIGKILL)  # the group holds the demo too
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
