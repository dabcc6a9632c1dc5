"""``depthlab refine``: re-complete the low-confidence pixels of a rough dense depth map (DUSt3R/MASt3R/VGGT)."""

from __future__ import annotations

import argparse
from typing import Any

from depthlab.cli.app_args import add_method_arguments, check_method_name, depthlab_options, formats_type

EPILOG = """\
The rough map (--depth: .npy/.npz depth or camera-frame pointmap [H, W, 3], or a PNG/TIFF/PFM/EXR
depth) is kept where --confidence >= --min-confidence (or above the --confidence-quantile of its
confidences) and re-completed elsewhere: DepthLab with refine=True (the whole map is its initial
guess), the classical methods from the confident pixels. The scale of the input is kept.
Outputs: <out>/<image stem>_refined_depth.npy, _color.png, _panel.png (, .ply/.glb with --intrinsics).
"""


def register(subparsers: Any) -> None:
    from depthlab.applications.refine import REFINE_FORMATS

    parser = subparsers.add_parser(
        "refine",
        help="refine a rough dense depth map: low-confidence pixels become unknown and are re-completed",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", metavar="IMAGE", help="RGB image aligned with the depth")
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument(
        "--depth", required=True, help="rough depth map or camera-frame pointmap [H, W, 3] (.npy)"
    )
    inputs.add_argument(
        "--depth-scale", type=float, default=None, help="stored value / scale = depth (integer PNG/TIFF)"
    )
    inputs.add_argument("--depth-key", default=None, help="array name inside a .npz")
    inputs.add_argument(
        "--confidence", default=None, help="confidence map [H, W] (.npy/.npz/.png/.tif; higher = better)"
    )
    threshold = inputs.add_mutually_exclusive_group()
    threshold.add_argument(
        "--min-confidence", type=float, default=None, help="keep pixels with confidence >= X"
    )
    threshold.add_argument(
        "--confidence-quantile",
        type=float,
        default=None,
        help="keep pixels above this quantile of the confidences (0.3: drop the worst 30%%)",
    )
    inputs.add_argument("--intrinsics", default=None, help="'fx,fy,cx,cy' or a K file, for --format ply/glb")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    outputs.add_argument(
        "--format", type=formats_type(REFINE_FORMATS), default=("npy", "color", "panel"),
        help=f"comma-separated subset of {','.join(REFINE_FORMATS)} (default: npy,color,panel)",
    )  # fmt: skip
    outputs.add_argument(
        "--ply-region",
        choices=("all", "unknown"),
        default="all",
        help="ply/glb: every pixel or only the re-completed ones",
    )
    outputs.add_argument("--out-scale", type=float, default=None, help="png16 scale (default: --depth-scale)")
    outputs.add_argument("--cmap", default="Spectral", help="matplotlib colormap")
    outputs.add_argument("--vmin", type=float, default=None, help="fixed colour range low end")
    outputs.add_argument("--vmax", type=float, default=None, help="fixed colour range high end")
    outputs.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    outputs.add_argument("--quiet", action="store_true", help="no progress bar")
    add_method_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from depthlab.applications.refine import RefineConfig, run_refine

    config = RefineConfig(
        image=args.image,
        depth=args.depth,
        confidence=args.confidence,
        min_confidence=args.min_confidence,
        confidence_quantile=args.confidence_quantile,
        depth_scale=args.depth_scale,
        depth_key=args.depth_key,
        intrinsics=args.intrinsics,
        out=args.out,
        method=check_method_name(args.method),
        formats=tuple(args.format),
        depthlab_options=depthlab_options(args),
        checkpoints=args.checkpoints,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        out_scale=args.out_scale,
        cmap=args.cmap,
        vmin=args.vmin,
        vmax=args.vmax,
        ply_region=args.ply_region,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    result, paths, reason = run_refine(config)
    known = result.known_mask
    threshold = "" if result.threshold is None else f" (confidence >= {result.threshold:.4g})"
    print(f"depthlab refine: method {result.output.method}: {reason}")
    print(
        f"depthlab refine: kept {known.mean():.1%} of the pixels{threshold}, re-completed the rest; "
        f"scale ratio on the kept pixels {result.scale_ratio:.4f}"
    )
    for path in paths.values():
        print(f"  wrote {path}")
    return 0
