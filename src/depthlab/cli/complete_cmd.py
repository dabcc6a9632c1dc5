"""``depthlab complete``: complete one image or a whole folder / glob / manifest of them.

Matching rule in batch mode (also in ``depthlab complete --help``): for an image ``<stem>.<ext>``
(``<base>`` = the stem without a trailing ``_colors``, ``_color``, ``_rgb`` or ``_image``), the
depth is the first existing file among, in the ``--depth`` folder (default: the image's folder),
``<stem>_depth.*``, ``<base>_depth.*``, ``<stem>.*``, ``<base>.*`` (same relative sub-folder as
the image; depth suffixes ``.npy .npz .png .tif .tiff .pfm .exr``). Masks (``--mask DIR``) and
point lists (``--points DIR``) are matched the same way with ``_mask`` and ``_points``. Files
whose stem ends with ``_depth``, ``_mask`` or ``_points`` are never taken as images; depthlab's
own outputs (this run's output names, and every file a results manifest lists) are never taken
as inputs. A CSV manifest (``--manifest``) with columns ``image,depth[,mask][,points][,out]``
replaces the rule.

Outputs mirror the inputs: ``<out>/<sub-folder>/<stem>_depth.npy``, ``<stem>_depth.png``
(16-bit), ``<stem>_color.png`` and ``<stem>_panel.png``; ``<out>/depthlab-results.jsonl``
records every item (status, method, settings, formats, seconds, error). A rerun skips items
finished with the same settings and retries failed ones; items whose outputs come from a run
with other settings are skipped with the difference named (exit status 1), never mixed;
``--overwrite`` recomputes. ``--engine ray`` runs the items on a Ray cluster;
``accelerate launch -m depthlab.batch ...`` on every GPU of one machine (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from depthlab.batch.options import BatchOptions, RayOptions
from depthlab.batch.worklist import WorkListSpec
from depthlab.batch.writers import FORMATS as OUTPUT_FORMATS
from depthlab.cli import UserError

FORMATS = tuple(OUTPUT_FORMATS)


# ----------------------------------------------------------------------------------------------
# argument parsing
# ----------------------------------------------------------------------------------------------
def _formats(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(bad) or repr(text)}; choose from {', '.join(FORMATS)}"
        )
    return names


def _method(text: str) -> str:
    """``--method`` value: a method of the registry (depthlab.completion)."""
    from depthlab.completion import check_method

    try:
        return check_method(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers: Any) -> None:
    from depthlab.completion import describe_methods

    parser = subparsers.add_parser(
        "complete",
        help="complete partial depth guided by an RGB image (one file, a folder, a glob)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "image",
        nargs="*",
        metavar="IMAGE",
        help="RGB image file(s), a folder, or a quoted glob ('data/*.png')",
    )
    io_group = parser.add_argument_group("inputs")
    io_group.add_argument("--depth", help="depth file, or a folder (batch; see the matching rule)")
    io_group.add_argument("--mask", help="known-mask file or folder (default: known = depth > 0)")
    io_group.add_argument(
        "--points",
        help="CSV/TXT of 'u,v,depth' points (file or folder) used as the known depth instead of --depth",
    )
    io_group.add_argument(
        "--manifest",
        help="CSV with columns image,depth[,mask][,points]; relative paths are relative to the manifest",
    )
    io_group.add_argument(
        "--depth-scale",
        type=float,
        default=None,
        help="stored value / scale = depth (required for integer PNG/TIFF: "
        "1000 for mm -> m, 256 for KITTI); also the default --out-scale",
    )
    io_group.add_argument("--depth-key", default=None, help="array name inside a .npz depth file")
    io_group.add_argument(
        "--mask-convention",
        choices=("known", "fill"),
        default="known",
        help="what white/1 means in the mask: 'known' (depthlab, default) or "
        "'fill' (original DepthLab: 1 = to fill)",
    )
    io_group.add_argument(
        "--alpha",
        choices=("composite", "drop"),
        default="composite",
        help="RGB alpha channel: composite onto black (default) or drop",
    )

    out_group = parser.add_argument_group("outputs")
    out_group.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    out_group.add_argument(
        "--format",
        type=_formats,
        default=["npy", "color"],
        help=f"comma-separated subset of {','.join(FORMATS)} (default: npy,color)",
    )
    out_group.add_argument(
        "--out-scale",
        type=float,
        default=None,
        help="scale of the 16-bit PNG output (default: --depth-scale)",
    )
    out_group.add_argument("--cmap", default="Spectral", help="matplotlib colormap (default Spectral)")
    out_group.add_argument("--vmin", type=float, default=None, help="fixed colour range low end")
    out_group.add_argument("--vmax", type=float, default=None, help="fixed colour range high end")
    out_group.add_argument("--colorbar", action="store_true", help="add a colour bar to color PNGs")
    out_group.add_argument("--unit", default="", help="unit label under the colour bar, e.g. m")
    out_group.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (default: skip items already done)"
    )
    out_group.add_argument("--quiet", action="store_true", help="no progress bar")

    method_group = parser.add_argument_group("method")
    method_group.add_argument(
        "--method",
        type=_method,
        default="auto",
        metavar="METHOD",
        help="one of: " + "; ".join(describe_methods().splitlines()) + " (default auto)",
    )
    method_group.add_argument(
        "--checkpoints",
        default=None,
        help="DepthLab weights folder (original or save_pretrained layout); "
        "default: $DEPTHLAB_CHECKPOINTS, then the huggingface_hub cache",
    )
    method_group.add_argument("--steps", type=int, default=None, help="DepthLab denoising steps")
    method_group.add_argument(
        "--processing-resolution",
        type=int,
        default=None,
        help="DepthLab: longest side at which the model runs (0 = input size)",
    )
    method_group.add_argument("--strength", type=float, default=None, help="DepthLab strength (0, 1]")
    method_group.add_argument(
        "--blend",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="DepthLab: re-inject known depth latents during denoising",
    )
    method_group.add_argument(
        "--normalize-scale", type=float, default=None, help="DepthLab: known depth range is mapped to [-s, s]"
    )
    method_group.add_argument(
        "--refine", action="store_true", help="DepthLab: the depth is a full rough map to refine"
    )
    method_group.add_argument("--ensemble", type=int, default=None, help="DepthLab ensemble size")
    method_group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="DepthLab base seed (default 0); each image's noise comes from a "
        "hash of the seed and the image's output name, so results do not "
        "depend on the order or the number of workers",
    )
    method_group.add_argument(
        "--device", default=None, help="torch device for DepthLab (default: cuda if available, else cpu)"
    )
    method_group.add_argument(
        "--dtype",
        default=None,
        choices=("fp32", "fp16", "bf16"),
        help="DepthLab weights dtype (default fp32)",
    )

    engine_group = parser.add_argument_group("scale-out (docs/scale-out.md)")
    engine_group.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default): this process, or each process of "
        "`accelerate launch -m depthlab.batch`; ray: a Ray Data pipeline",
    )
    engine_group.add_argument(
        "--address",
        default=None,
        help="Ray cluster address: auto, ray://HOST:10001 (default: a new local instance)",
    )
    engine_group.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Ray: completion workers, each loads the method once (default 1)",
    )
    engine_group.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        help="Ray: GPUs per worker (default 0; use 1 for DepthLab on GPUs)",
    )
    engine_group.add_argument(
        "--batch-size", type=int, default=1, help="Ray: items per worker call (default 1)"
    )
    parser.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------
# arguments -> plain dataclasses -> depthlab.batch.complete_batch
# ----------------------------------------------------------------------------------------------
_PIPELINE_FLAGS = (
    ("steps", "num_inference_steps"),
    ("processing_resolution", "processing_resolution"),
    ("strength", "strength"),
    ("blend", "blend"),
    ("normalize_scale", "normalize_scale"),
    ("ensemble", "ensemble_size"),
)


def work_list_spec(args: argparse.Namespace) -> WorkListSpec:
    """The work list the arguments name."""
    return WorkListSpec(
        images=list(args.image),
        depth=args.depth,
        mask=args.mask,
        points=args.points,
        manifest=args.manifest,
        out=args.out,
    )


def batch_options(args: argparse.Namespace) -> BatchOptions:
    """The per-item settings the arguments give."""
    method_options: dict[str, Any] = {
        key: getattr(args, name) for name, key in _PIPELINE_FLAGS if getattr(args, name) is not None
    }
    if args.refine:
        method_options["refine"] = True
    return BatchOptions(
        formats=tuple(args.format),
        depth_scale=args.depth_scale,
        depth_key=args.depth_key,
        mask_convention=args.mask_convention,
        alpha=args.alpha,
        out_scale=args.out_scale,
        cmap=args.cmap,
        vmin=args.vmin,
        vmax=args.vmax,
        colorbar=args.colorbar,
        unit=args.unit,
        method_options=method_options,
        seed=args.seed,
        checkpoints=args.checkpoints,
        device=args.device,
        dtype=args.dtype,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )


def ray_options(args: argparse.Namespace) -> RayOptions:
    for flag, value in (("--workers", args.workers), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1; got {value}")
    if args.gpus_per_worker < 0:
        raise UserError(f"--gpus-per-worker must be >= 0; got {args.gpus_per_worker:g}")
    return RayOptions(
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        batch_size=args.batch_size,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``depthlab complete``; 0 when every item is done, 1 when some failed or were left as they were."""
    from depthlab.batch.runner import complete_batch

    if args.vmin is not None and args.vmax is not None and not args.vmax > args.vmin:
        raise UserError(f"--vmax ({args.vmax}) must be larger than --vmin ({args.vmin})")
    if "png16" in args.format and args.out_scale is None and args.depth_scale is None:
        raise UserError("--format png16 needs --out-scale (or --depth-scale), e.g. 1000 for mm")
    if args.engine == "local" and args.address is not None:
        raise UserError("--address is for --engine ray")

    def announce(loaded: Any) -> None:
        print(f"depthlab complete: method {loaded.name}: {loaded.reason}", flush=True)

    def log(message: str) -> None:
        print(f"depthlab complete: {message}", file=sys.stderr, flush=True)

    try:
        report = complete_batch(
            work_list_spec(args),
            args.method,
            batch_options(args),
            engine=args.engine,
            ray=ray_options(args) if args.engine == "ray" else None,
            on_method=announce,
            log=log,
        )
    except ImportError as error:
        raise UserError(str(error)) from None

    out = Path(args.out)
    done = report.skipped.get("done", 0)
    print(
        f"depthlab complete: {len(report.completed)} completed, {done} already done (skipped), "
        f"{len(report.failed)} failed; outputs in {out} ({report.seconds:.1f} s)"
    )
    conflicts = {reason: n for reason, n in report.skipped.items() if reason != "done"}
    for reason, count in conflicts.items():
        print(f"depthlab complete: {count} skipped: {reason}; --overwrite to recompute", file=sys.stderr)
    if len(report.completed) == 1 and not report.failed and not report.num_skipped:
        for rel in report.completed[0]["written"]:
            print(f"  wrote {out / rel}")
    for record in report.failed:
        print(f"  FAILED {record['item']}: {record['error']}", file=sys.stderr)
    return 1 if report.failed or conflicts else 0
