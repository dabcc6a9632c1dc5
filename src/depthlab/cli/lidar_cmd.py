"""``depthlab lidar``: LiDAR scan (or camera-frame points) + RGB -> dense depth (:mod:`depthlab.applications.lidar`)."""

from __future__ import annotations

import argparse
from typing import Any

from depthlab.cli.app_args import add_method_arguments, check_method_name, depthlab_options, formats_type

EPILOG = """\
inputs:
  IMAGE --scan S.bin --calib C.txt        one KITTI frame (object calib, or a raw date folder)
  IMAGE --points P.csv|.npy --intrinsics K points already in the camera frame (x, y, z per row)
  FOLDER                                  KITTI object layout (image_2/ velodyne/ calib/) or raw
                                          layout (<drive>/image_02/data + velodyne_points/data)
DepthLab runs with resize_mode="auto" so sparse LiDAR points survive the resize to the
processing resolution. Every frame is recorded in OUT/depthlab-results.jsonl (the batch results
manifest): a rerun skips frames finished with the same settings, retries failed ones and never
mixes outputs of other settings with new ones; --overwrite recomputes.
"""


def register(subparsers: Any) -> None:
    from depthlab.applications.lidar import LIDAR_FORMATS

    parser = subparsers.add_parser(
        "lidar",
        help="complete LiDAR depth (KITTI scans or camera-frame points) guided by the RGB image",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", nargs="+", metavar="IMAGE", help="RGB image, or a KITTI object/raw folder")
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--scan", help="velodyne .bin scan (float32 x, y, z, reflectance)")
    inputs.add_argument(
        "--calib", help="KITTI calib .txt (object layout) or raw date folder / calib_cam_to_cam.txt"
    )
    inputs.add_argument("--points", help=".csv/.npy of x,y,z points in the camera frame (instead of --scan)")
    inputs.add_argument("--intrinsics", help="'fx,fy,cx,cy' or a K file (.txt/.npy/.json), with --points")
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    outputs.add_argument(
        "--format",
        type=formats_type(LIDAR_FORMATS),
        default=("npy", "color", "panel"),
        help=f"comma-separated subset of {','.join(LIDAR_FORMATS)} (default: npy,color,panel; "
        "ply = coloured points for 3DGS, glb = mesh, sparse = the projected LiDAR depth)",
    )
    outputs.add_argument(
        "--ply-region",
        choices=("all", "unknown"),
        default="all",
        help="ply/glb: every pixel or only the filled ones",
    )
    outputs.add_argument(
        "--out-scale", type=float, default=256.0, help="png16 scale (default 256, like KITTI)"
    )
    outputs.add_argument("--cmap", default="Spectral", help="matplotlib colormap")
    outputs.add_argument("--vmin", type=float, default=None, help="fixed colour range low end")
    outputs.add_argument("--vmax", type=float, default=None, help="fixed colour range high end")
    outputs.add_argument("--overwrite", action="store_true", help="recompute frames whose outputs exist")
    outputs.add_argument("--quiet", action="store_true", help="no progress bar")
    scoring = parser.add_argument_group("hold-out scoring")
    scoring.add_argument(
        "--holdout",
        default=None,
        help="mask protocol, e.g. ratio:90: keep 90%% of the points, score on the rest",
    )
    scoring.add_argument(
        "--max-depth", type=float, default=80.0, help="valid LiDAR range for scoring (default 80 m)"
    )
    add_method_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from depthlab.applications.lidar import LidarConfig, run_lidar

    config = LidarConfig(
        images=list(args.image),
        scan=args.scan,
        calib=args.calib,
        points=args.points,
        intrinsics=args.intrinsics,
        out=args.out,
        method=check_method_name(args.method),
        formats=tuple(args.format),
        depthlab_options=depthlab_options(args),
        checkpoints=args.checkpoints,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        holdout=args.holdout,
        max_depth=args.max_depth,
        out_scale=args.out_scale,
        cmap=args.cmap,
        vmin=args.vmin,
        vmax=args.vmax,
        ply_region=args.ply_region,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    report = run_lidar(config)
    print(f"depthlab lidar: method {report.method}: {report.reason}")
    done = report.skip_reasons.get("done", 0)
    print(
        f"depthlab lidar: {report.done} completed, {done} already done (skipped), "
        f"{len(report.failures)} failed in {report.seconds:.1f} s; outputs in {args.out}, "
        f"results in {report.manifest}"
    )
    for reason, count in report.skip_reasons.items():
        if reason != "done":
            print(f"  skipped {count}: {reason} (--overwrite recomputes)")
    for paths in report.outputs.values() if report.done == 1 else ():
        for path in paths.values():
            print(f"  wrote {path}")
    for key, metrics in report.metrics.items():
        print(
            f"  {key}: held-out {int(metrics['n_pixels'])} points: RMSE {metrics['rmse']:.3f}, "
            f"MAE {metrics['mae']:.3f}, AbsRel {metrics['abs_rel']:.4f}, delta1 {metrics['delta1']:.4f}"
        )
    for key, message in report.failures:
        print(f"  FAILED {key}: {message}")
    return 1 if report.failures else 0
