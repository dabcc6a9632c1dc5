"""``depthlab train``: train or fine-tune DepthLab from a layered YAML config.

Examples::

    depthlab train --config smoke_tiny
    depthlab train --config base run.output_dir=runs/x optim.lr=1e-5
    depthlab train --config my_run.yaml run.resume=latest
    depthlab train --config distill_tiny   # few-step student (a `distill:` section)
    accelerate launch --multi_gpu --num_processes 8 -m depthlab.training --config base

``--config`` takes a YAML path or the name of a packaged config (src/depthlab/configs/train/).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["register", "main", "build_parser"]


def _packaged(kind: str) -> list[str]:
    from depthlab.config import packaged_configs

    return packaged_configs(kind)[kind]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="training config: a YAML path or a packaged name (" + ", ".join(_packaged("train")) + ")",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. optim.lr=1e-5 run.max_steps=100 (values parsed as YAML)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the merged config and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune DepthLab (layered YAML config; accelerate for multi-GPU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from depthlab.config import load_config

    config = load_config(args.config, args.overrides, kind="train")
    if args.dry_run:
        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if config.get("distill"):  # few-step student by latent consistency distillation
        from depthlab.training.distill import Distiller

        summary = Distiller(config, show_progress=not args.no_progress).train()
        print(f"distilled {summary['steps']} steps in {summary['train_seconds']:.1f} s")
        print(f"exported student: {summary['export']}")
        return 0
    from depthlab.training.trainer import Trainer

    trainer = Trainer(config, show_progress=not args.no_progress)
    summary = trainer.train()
    if trainer.accelerator.is_main_process:
        after = summary.get("validation_after") or {}
        before = summary.get("validation_before") or {}
        print(
            f"trained steps {summary['start_step']}..{summary['end_step']} "
            f"in {summary['train_seconds']:.1f} s"
        )
        if before.get("abs_rel") is not None and after.get("abs_rel") is not None:
            print(f"unknown-region AbsRel: before {before['abs_rel']:.4f} -> after {after['abs_rel']:.4f}")
        for kind, path in (summary.get("export") or {}).items():
            print(f"exported {kind}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m depthlab.training", description=__doc__)
    _add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``python -m depthlab.training`` / ``accelerate launch -m depthlab.training``."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
        print(f"depthlab train: error: {error}", file=sys.stderr)
        return 2
