"""``depthlab`` command line: ``complete``, ``info``, ``convert``, ``eval``, ``train``.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func`` (called with the parsed namespace, returns the exit status).

Errors: an error of the user's input or of the environment prints ONE line
(``depthlab <command>: error: ...``) and exits with status 2, without a traceback. These are
:class:`UserError`, ``ValueError`` (bad values; the library names the argument/file),
``FileNotFoundError``/``FileExistsError`` and every other ``OSError`` (permission, read-only or
full disk, a path below a regular file), ``MemoryError``, a missing optional dependency
(``ImportError`` raised by depthlab with an install hint) and argument-parsing errors. Anything
else (``TypeError``, ``RuntimeError``, ...) is a bug and keeps its traceback.
Warnings of the library (logger ``depthlab``) are printed as ``depthlab: warning: ...``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "UserError", "describe_error", "parse_device"]

# Modules that contribute sub-commands, in the order they appear in ``--help``.
_COMMAND_MODULES = (
    "depthlab.cli.complete_cmd",
    "depthlab.cli.info_cmd",
    "depthlab.cli.eval_cmd",
    "depthlab.cli.train_cmd",
    "depthlab.cli.lidar_cmd",
    "depthlab.cli.refine_cmd",
    "depthlab.cli.warp_cmd",
)


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2, no traceback."""


class _Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def parse_device(text: str) -> str:
    """``--device`` value: a torch device string that this machine can run, else a one-line error.

    Accepts ``cpu``, ``cuda``, ``cuda:N``, ``mps`` and the other torch device types; refuses names
    torch does not know (``gpu0``) and devices this torch build or machine does not have.
    """
    try:
        import torch
    except ImportError:
        raise argparse.ArgumentTypeError(
            f"--device {text!r} needs torch, which is not installed (the classical methods run on "
            "the CPU without it)"
        ) from None
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"invalid device {text!r}; use cpu, cuda, cuda:N (N-th GPU) or mps"
        ) from None
    if device.type == "cuda":
        if torch.version.cuda is None or not torch.cuda.is_available():
            why = (
                "this torch build has no CUDA support" if torch.version.cuda is None else "no GPU is visible"
            )
            raise argparse.ArgumentTypeError(
                f"--device {text!r}: {why} (torch {torch.__version__}); use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f"--device {text!r}: this machine has {count} GPU(s) (cuda:0 to cuda:{count - 1})"
            )
    elif device.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise argparse.ArgumentTypeError(f"--device {text!r}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"--device {text!r}: depthlab runs on cpu, cuda or mps")
    return text


def describe_error(error: BaseException) -> str | None:
    """One-line message for a user or environment error, None for a bug (keeps its traceback)."""
    if isinstance(error, (UserError, ValueError)):
        return str(error) or type(error).__name__
    if isinstance(error, MemoryError):
        return f"out of memory{f' ({error})' if str(error) else ''}; try a smaller input or method"
    if isinstance(error, ImportError) and "pip install" in str(error):
        return str(error)
    if isinstance(error, (FileNotFoundError, FileExistsError)) and error.strerror is None:
        return str(error)  # depthlab's own messages
    if isinstance(error, OSError):
        where = error.filename if error.filename is not None else ""
        if error.filename2 is not None:
            where = f"{where} -> {error.filename2}"
        reason = error.strerror or str(error)
        hint = {
            errno.ENOSPC: " (the disk is full)",
            errno.EROFS: " (read-only file system)",
            errno.EACCES: " (no permission)",
            errno.ENOTDIR: " (a part of the path is a file, not a folder)",
            errno.EDQUOT: " (disk quota exceeded)",
        }.get(error.errno, "")
        return f"{where}: {reason}{hint}" if where else f"{reason}{hint}"
    return None


class _WarningFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"depthlab: {record.levelname.lower()}: {record.getMessage()}"


def _show_library_warnings() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WarningFormatter())
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("depthlab")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    return handler


def build_parser() -> argparse.ArgumentParser:
    from depthlab import __version__

    parser = _Parser(
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
    handler = _show_library_warnings()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"depthlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        message = describe_error(error)
        if message is None or os.environ.get("DEPTHLAB_TRACEBACK"):
            raise
        first_line = " ".join(message.split())
        print(f"depthlab {args.command}: error: {first_line}", file=sys.stderr)
        return 2
    finally:
        logging.getLogger("depthlab").removeHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
