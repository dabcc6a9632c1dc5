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
