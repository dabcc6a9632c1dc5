"""``depthlab`` command line: ``complete``, ``info``, ``convert``, ``eval``, ``train``, ``demo``.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func`` (called with the parsed namespace, returns the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "UserError"]

# Modules that contribute sub-commands, in the order they appear in ``--help``.
_COMMAND_MODULES = (
    "depthlab.cli.complete_cmd",
    "depthlab.cli.info_cmd",
    "depthlab.cli.eval_cmd",
    "depthlab.cli.train_cmd",
    "depthlab.cli.lidar_cmd",
    "depthlab.cli.refine_cmd",
    "depthlab.cli.warp_cmd",
    "depthlab.cli.demo_cmd",
)


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    from depthlab import __version__

    parser = argparse.ArgumentParser(
        prog="depthlab",
        description="Complete partial depth maps (holes, sparse points, LiDAR) guided by an RGB image.",
    )
    parser.add_argument("--version", action="version", version=f"depthlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``depthlab`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
        print(f"depthlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"depthlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
