"""``depthlab demo``: serve the browser demo (needs ``pip install "depthlab[demo]"``)."""

from __future__ import annotations

import argparse
from typing import Any

from depthlab.cli import UserError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="serve the browser demo (Gradio; pip install 'depthlab[demo]')",
        description="Serve a web page to upload an image and partial depth, paint the region to "
        "fill, complete it and download the result. Listens on 127.0.0.1 unless --host says "
        "otherwise; a public share link only with --share.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="DepthLab weights folder (default: $DEPTHLAB_CHECKPOINTS, then the "
        "huggingface_hub cache); without weights the classical methods are offered",
    )
    parser.add_argument(
        "--share", action="store_true", help="also create a public Gradio share link (off by default)"
    )
    parser.add_argument(
        "--device", default=None, help="torch device for DepthLab (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=("fp32", "fp16", "bf16"),
        help="DepthLab weights dtype (default fp32)",
    )
    parser.set_defaults(func=run)


def _default_device() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    """Build the :class:`depthlab.demo.DemoConfig` and serve until interrupted."""
    from depthlab.demo import DemoConfig, launch

    config = DemoConfig(
        host=args.host,
        port=args.port,
        checkpoints=args.checkpoints,
        share=args.share,
        device=args.device or _default_device(),
        dtype=args.dtype,
    )
    try:
        launch(config)
    except ImportError as error:
        raise UserError(str(error)) from None
    except OSError as error:  # e.g. the port is taken
        raise UserError(f"cannot serve on {args.host}:{args.port}: {error}") from None
    return 0
