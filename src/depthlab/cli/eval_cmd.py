r"""``depthlab eval``: benchmark completion methods on a dataset under mask protocols.

Examples::

    depthlab eval --dataset nyuv2 --root data/nyu2_test --protocol points:500 \\
        --method guided --method linear --out runs/nyu
    depthlab eval --config table3_ratios --root data/nyu2_test --limit 20
    depthlab eval --config my_table.yaml --root data/nyu2_test limit=20 method_options.guided.space=depth

``--config`` takes a YAML path or the name of a packaged config (src/depthlab/configs/eval/);
``KEY=VALUE`` overrides (dotted keys, YAML values) apply to it as for ``depthlab train``, then the
flags.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import yaml

from depthlab.cli import UserError

__all__ = ["register", "run"]


def _key_value(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE; got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def register(subparsers: Any) -> None:
    from depthlab.completion import method_names

    parser = subparsers.add_parser(
        "eval",
        help="evaluate methods on a dataset with seeded mask protocols",
        description=(
            "Run completion methods on a dataset under known-depth mask protocols; write "
            "predictions (resumable), per-sample CSV, summary JSON, a Markdown table and figures. "
            "A YAML --config describes a whole table; flags given here override it."
        ),
    )
    from depthlab.config import packaged_configs

    parser.add_argument(
        "--config",
        help="YAML path or packaged name (" + ", ".join(packaged_configs("eval")["eval"]) + "); "
        "`base_config:` is resolved",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. limit=20 method_options.guided.space=depth (values parsed as YAML)",
    )
    parser.add_argument(
        "--dataset",
        help="dataset name (nyuv2, kitti, kitti_dc, kitti_object, eth3d, scannet, diode, folder, ...)",
    )
    parser.add_argument("--root", help="dataset folder or .tar archive")
    parser.add_argument("--split-file", help="split list for datasets that need one")
    parser.add_argument(
        "--dataset-opt",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="dataset option (YAML value), e.g. depth_scale=1000, eval_crop=garg",
    )
    parser.add_argument(
        "--protocol",
        action="append",
        metavar="P",
        help="mask protocol, repeatable: ratio:5, points:500, holes:0.3, lidar:64, "
        "border:0.2, sensor, orb:500, sift:500, range:0.3, blob:0.1, lines:16 (see docs/protocols.md)",
    )
    parser.add_argument(
        "--method",
        action="append",
        metavar="M",
        help="method, repeatable: " + ", ".join(method_names()),
    )
    parser.add_argument(
        "--method-opt",
        action="append",
        type=_key_value,
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="method option, e.g. depthlab.num_inference_steps=10",
    )
    parser.add_argument("--out", help="output folder (default outputs/eval)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N samples")
    parser.add_argument("--seed", type=int, help="mask seed (default 0)")
    parser.add_argument(
        "--region",
        action="append",
        choices=("unknown", "known", "all"),
        help="regions to score (default unknown and all)",
    )
    parser.add_argument("--table-metric", action="append", help="metric columns of table.md")
    parser.add_argument("--table-region", choices=("unknown", "known", "all"), help="region of table.md")
    parser.add_argument("--num-figures", type=int, help="samples per figure grid (0 = none)")
    parser.add_argument("--title", help="heading of table.md")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from depthlab.config import load_config
    from depthlab.evaluation.runner import merge_config, run_evaluation

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    file_config = load_config(args.config, args.overrides, kind="eval")
    dataset_options = dict(args.dataset_opt)
    if args.split_file:
        dataset_options["split_file"] = args.split_file
    method_options: dict[str, dict[str, Any]] = {}
    for key, value in args.method_opt:
        if "." not in key:
            raise UserError(f"--method-opt needs METHOD.KEY=VALUE; got {key!r}")
        method, option = key.rsplit(".", 1)
        method_options.setdefault(method, {})[option] = value
    overrides = {
        "dataset": args.dataset,
        "root": args.root,
        "dataset_options": dataset_options or None,
        "protocols": args.protocol,
        "methods": args.method,
        "method_options": method_options or None,
        "out": args.out,
        "limit": args.limit,
        "seed": args.seed,
        "regions": args.region,
        "table_metrics": args.table_metric,
        "table_region": args.table_region,
        "num_figures": args.num_figures,
        "title": args.title,
    }
    if args.root and not args.dataset and file_config.get("datasets"):
        # --root alone re-points a single-dataset config
        if len(file_config["datasets"]) != 1:
            raise UserError("--root without --dataset needs a config with exactly one dataset")
        file_config["datasets"][0]["root"] = args.root
        overrides["root"] = None
    if args.dataset and not args.root and file_config.get("datasets"):
        raise UserError("--dataset needs --root as well")
    config = merge_config(file_config, overrides)
    summary = run_evaluation(config, show_progress=not args.no_progress)
    out = config.out
    n_failed = len(summary["failures"])
    print((_read(f"{out}/table.md")).rstrip())
    print(f"\nresults in {out}/ (table.md, summary.json, per_sample.csv, figures/, config.yaml)")
    if n_failed:
        print(f"{n_failed} prediction(s) failed; see {out}/summary.json 'failures'")
    return 0


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
