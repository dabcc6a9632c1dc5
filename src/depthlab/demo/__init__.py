"""``depthlab demo``: a Gradio page to try depth completion in the browser.

:func:`launch` is the one entry point (the CLI calls it with a :class:`DemoConfig`). It makes the
demo's own temporary folder, points Gradio's caches there, turns analytics off, imports Gradio
(only now, so the rest of depthlab works without the ``demo`` extra), serves the page until
interrupted, and removes the folder. The page itself is :mod:`depthlab.demo.app`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DemoConfig", "launch", "prepare_environment"]

_DTYPES = ("fp32", "fp16", "bf16")


@dataclass
class DemoConfig:
    """Settings of ``depthlab demo``.

    Attributes:
        host: address to listen on (default loopback only).
        port: TCP port.
        checkpoints: DepthLab weights folder (None: ``$DEPTHLAB_CHECKPOINTS``, hub cache).
        share: ask Gradio for a public share link (off unless asked for).
        device: torch device for DepthLab (None: the pipeline's default).
        dtype: ``"fp32"``, ``"fp16"``, ``"bf16"`` or None (float32).
        workdir: parent of the demo's temporary folder (None: the system's temporary folder).
    """

    host: str = "127.0.0.1"
    port: int = 7860
    checkpoints: str | None = None
    share: bool = False
    device: str | None = None
    dtype: str | None = None
    workdir: str | None = None


def prepare_environment(workdir: Path) -> None:
    """Keep Gradio offline and inside ``workdir`` (must run before Gradio is imported)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(workdir / "examples_cache")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _torch_dtype(name: str | None) -> Any:
    if name is None:
        return None
    if name not in _DTYPES:
        raise ValueError(f"`dtype` must be one of {', '.join(_DTYPES)}; got {name!r}")
    from depthlab.models.loading import resolve_dtype  # the one dtype-name rule

    return resolve_dtype(name, name="dtype")


def launch(config: DemoConfig) -> None:
    """Serve the demo until interrupted; everything it writes lives in one temporary folder.

    Raises:
        ValueError: a bad port, host or dtype. ImportError: Gradio is not installed.
    """
    if not 0 < int(config.port) < 65536:
        raise ValueError(f"`port` must be in 1..65535; got {config.port!r}")
    if not config.host:
        raise ValueError(f"`host` must be an address such as 127.0.0.1; got {config.host!r}")
    torch_dtype = _torch_dtype(config.dtype)
    workdir = Path(tempfile.mkdtemp(prefix="depthlab-demo-", dir=config.workdir))
    try:
        prepare_environment(workdir)
        try:
            import gradio  # noqa: F401
        except ImportError as error:
            raise ImportError(
                f'depthlab demo needs Gradio ({error}); install it with `pip install "depthlab[demo]"`'
            ) from error
        from depthlab.demo.app import DemoSettings, build_demo

        settings = DemoSettings(
            workdir=workdir, checkpoints=config.checkpoints, device=config.device, torch_dtype=torch_dtype
        )
        demo, launch_kwargs = build_demo(settings)
        print(  # noqa: T201 (the launcher tells the user where the page is)
            f"depthlab demo: serving on http://{config.host}:{config.port} "
            f"(temporary files in {workdir}; Ctrl+C stops)",
            flush=True,
        )
        demo.queue(default_concurrency_limit=1).launch(
            server_name=config.host,
            server_port=int(config.port),
            share=bool(config.share),
            ssr_mode=False,
            mcp_server=False,
            quiet=True,
            footer_links=[],
            allowed_paths=[str(workdir)],
            **launch_kwargs,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
