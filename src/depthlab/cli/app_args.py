"""Arguments the application commands (``lidar``, ``refine``, ``warp``) share."""

from __future__ import annotations

import argparse
from typing import Any

from depthlab.cli import UserError


def formats_type(allowed: tuple[str, ...]) -> Any:
    """Argparse type: a comma-separated subset of ``allowed``."""

    def parse(text: str) -> tuple[str, ...]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"unknown format(s) {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}"
            )
        return tuple(names)

    return parse


def add_method_arguments(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--method`` and the DepthLab options (steps, resolution, seed, device, dtype, weights)."""
    from depthlab.completion import method_names

    group = parser.add_argument_group("method")
    group.add_argument(
        "--method",
        default=default,
        help=f"completion method, one of {', '.join(method_names())} "
        "(auto: DepthLab if its weights are found, else guided)",
    )
    group.add_argument(
        "--checkpoints",
        default=None,
        help="DepthLab weights folder (default: $DEPTHLAB_CHECKPOINTS, hub cache)",
    )
    group.add_argument("--steps", type=int, default=None, help="DepthLab denoising steps")
    group.add_argument(
        "--processing-resolution",
        type=int,
        default=None,
        help="DepthLab: longest side the model runs at (0 = input size)",
    )
    group.add_argument("--ensemble", type=int, default=None, help="DepthLab ensemble size")
    group.add_argument(
        "--seed", type=int, default=0, help="random seed (DepthLab noise, hold-out masks; default 0)"
    )
    group.add_argument(
        "--device", default=None, help="torch device for DepthLab (default: cuda if available, else cpu)"
    )
    group.add_argument(
        "--dtype", default=None, choices=("fp32", "fp16", "bf16"), help="DepthLab weights dtype"
    )


def depthlab_options(args: argparse.Namespace) -> dict[str, Any]:
    """The DepthLab call options given on the command line."""
    options: dict[str, Any] = {}
    for name, key in (
        ("steps", "num_inference_steps"),
        ("processing_resolution", "processing_resolution"),
        ("ensemble", "ensemble_size"),
    ):
        value = getattr(args, name, None)
        if value is not None:
            options[key] = value
    return options


def check_method_name(method: str) -> str:
    from depthlab.completion import check_method

    try:
        return check_method(method)
    except ValueError as error:
        raise UserError(f"--method: {error}") from None
