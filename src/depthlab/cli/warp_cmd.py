"""``depthlab warp``: warp an RGB-D view to a new camera pose; with --target-image, complete its depth."""

from __future__ import annotations

import argparse
from typing import Any

from depthlab.cli.app_args import add_method_arguments, check_method_name, depthlab_options, formats_type

EPILOG = """\
--pose is the 4x4 camera-to-world matrix (.txt with 16 or 12 numbers, or .npy) of the new camera,
with the source camera as the world (OpenCV axes: x right, y down, z forward), so a pose with
translation (0, 0, 0.5) steps half a unit forward. It must be rigid.
Outputs (<out>/<image stem>_warped...): _partial.npy (depth, 0 = unknown), _known.png (white =
known), _rgb.png (warped colours), _partial_color.png; with --target-image (your inpainting of
_rgb.png, or the real view) also the completed _depth.npy, _color.png, _panel.png (, ply, glb).
depthlab ships no RGB inpainter: use any inpainting model on _rgb.png with the black of
_known.png as the mask, then pass the result as --target-image.
"""

_FORMATS = ("npy", "png16", "color", "panel", "ply", "glb")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "warp",
        help="warp an RGB-D view to a new pose (partial depth + known mask); complete it with --target-image",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", metavar="IMAGE", help="source RGB image")
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--depth", required=True, help="source depth map aligned with IMAGE")
    inputs.add_argument(
        "--depth-scale", type=float, default=None, help="stored value / scale = depth (integer PNG/TIFF)"
    )
    inputs.add_argument("--depth-key", default=None, help="array name inside a .npz")
    inputs.add_argument(
        "--intrinsics", required=True, help="'fx,fy,cx,cy' or a K file (.txt/.npy/.json) of IMAGE"
    )
    inputs.add_argument("--pose", required=True, help="4x4 camera-to-world pose of the new view (.txt/.npy)")
    inputs.add_argument(
        "--target-image", default=None, help="RGB of the new view (e.g. inpainted); completes its depth"
    )
    inputs.add_argument(
        "--target-intrinsics", default=None, help="intrinsics of the new view (default: --intrinsics)"
    )
    inputs.add_argument(
        "--splat-radius",
        type=int,
        default=1,
        help="splat radius in pixels (default 1; 0 = one pixel per point)",
    )
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    outputs.add_argument(
        "--format", type=formats_type(_FORMATS), default=("npy", "color", "panel"),
        help=f"completed-depth outputs with --target-image, subset of {','.join(_FORMATS)} (default: npy,color,panel)",
    )  # fmt: skip
    outputs.add_argument(
        "--ply-region",
        choices=("all", "unknown"),
        default="all",
        help="ply/glb: every pixel or only the completed ones",
    )
    outputs.add_argument("--out-scale", type=float, default=None, help="png16 scale (default: --depth-scale)")
    outputs.add_argument("--cmap", default="Spectral", help="matplotlib colormap")
    outputs.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_method_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from depthlab.applications.scene import WarpConfig, run_warp

    config = WarpConfig(
        image=args.image,
        depth=args.depth,
        intrinsics=args.intrinsics,
        pose=args.pose,
        target_image=args.target_image,
        target_intrinsics=args.target_intrinsics,
        depth_scale=args.depth_scale,
        depth_key=args.depth_key,
        splat_radius=args.splat_radius,
        out=args.out,
        formats=tuple(args.format),
        method=check_method_name(args.method),
        depthlab_options=depthlab_options(args),
        checkpoints=args.checkpoints,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        out_scale=args.out_scale,
        cmap=args.cmap,
        ply_region=args.ply_region,
        overwrite=args.overwrite,
    )
    report = run_warp(config)
    print(
        f"depthlab warp: {report.known_fraction:.1%} of the new view is known from the source view"
        + (f"; completed with method {report.method}" if report.method else "")
    )
    for path in report.paths.values():
        print(f"  wrote {path}")
    return 0
