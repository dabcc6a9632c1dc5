"""``depthlab complete``: complete one image or a whole folder / glob / manifest of them.

Matching rule in batch mode (also in ``depthlab complete --help``): for an image ``<stem>.<ext>``
(``<base>`` = the stem without a trailing ``_colors``, ``_color``, ``_rgb`` or ``_image``), the
depth is the first existing file among, in the ``--depth`` folder (default: the image's folder),
``<stem>_depth.*``, ``<base>_depth.*``, ``<stem>.*``, ``<base>.*`` (same relative sub-folder as
the image; depth suffixes ``.npy .npz .png .tif .tiff .pfm .exr``). Masks (``--mask DIR``) and
point lists (``--points DIR``) are matched the same way with ``_mask`` and ``_points``. Files
whose stem ends with ``_depth``, ``_mask`` or ``_points`` are never taken as images; depthlab's
own outputs (this run's output names, every file a results manifest lists, and every PNG result,
which carries a depthlab marker, with the ``.npy`` next to it) are never taken as inputs. A CSV
manifest (``--manifest``) with columns ``image,depth[,mask][,points][,out]`` replaces the rule.

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
import math
import sys
from pathlib import Path
from typing import Any

from depthlab.batch.options import BatchOptions, RayOptions
from depthlab.batch.worklist import WorkListSpec
from depthlab.batch.writers import FORMATS as OUTPUT_FORMATS
from depthlab.cli import UserError, parse_device

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


def _number(kind: type, low: float, *, low_included: bool = True, high: float | None = None) -> Any:
    """Type for argparse: a ``kind`` (int/float) in the range, else a one-line error with the value."""
    text_range = f"{'>=' if low_included else '>'} {low:g}" + (
        f" and <= {high:g}" if high is not None else ""
    )

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}; got {text!r}") from None
        below = value < low if low_included else value <= low
        if not math.isfinite(value) or below or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {text_range}; got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _keep(text: str) -> str:
    """``--keep`` value: a mask protocol of depthlab.masks (checked here, before any work)."""
    from depthlab.masks import parse_protocol

    try:
        parse_protocol(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


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
        help="CSV/TXT of points (file or folder) used as the known depth instead of --depth (not "
        "with it): 'u,v,depth' without a header; a header may name the fields u/x/col, v/y/row, "
        "depth/z/d in any order",
    )
    io_group.add_argument(
        "--manifest",
        help="CSV with columns image,depth[,mask][,points]; relative paths are relative to the manifest",
    )
    io_group.add_argument(
        "--depth-scale",
        type=_number(float, 0, low_included=False),
        default=None,
        help="stored value / scale = depth, for integer depth only (PNG, integer TIFF/.npy, integer "
        "CSV values), where it is required: 1000 for mm -> m, 256 for KITTI; float files are "
        "depth as they are (a scale is an error); also the default --out-scale",
    )
    io_group.add_argument(
        "--keep",
        type=_keep,
        default=None,
        metavar="PROTOCOL",
        help="make sparse input from the (dense) depth first: points:500, ratio:5 (percent), "
        "holes:0.3, lidar:64, border:0.2 (depthlab.masks.sparsify on the valid or --mask-known "
        "pixels, drawn with --seed)",
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
        type=_number(float, 0, low_included=False),
        default=None,
        help="png16 output stores depth x scale (default: --depth-scale)",
    )
    out_group.add_argument("--cmap", default="Spectral", help="matplotlib colormap (default Spectral)")
    out_group.add_argument("--vmin", type=float, default=None, help="fixed colour range low end")
    out_group.add_argument("--vmax", type=float, default=None, help="fixed colour range high end")
    out_group.add_argument("--colorbar", action="store_true", help="add a colour bar to color PNGs")
    out_group.add_argument(
        "--unit",
        default=None,
        help="unit of colour bars, panels and messages (default: m with --depth-scale 1000 or 256, "
        "else none)",
    )
    out_group.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (default: skip items already done)"
    )
    out_group.add_argument("--quiet", action="store_true", help="no progress bar")
    out_group.add_argument(
        "--intrinsics",
        default=None,
        help="camera of the images for --format ply: 'fx,fy,cx,cy' or a K file (.txt/.npy/.json)",
    )
    out_group.add_argument(
        "--ply-region",
        choices=("unknown", "all"),
        default="unknown",
        help="--format ply: the completed pixels only (default; e.g. 3DGS inpainting points) or all",
    )

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
    method_group.add_argument(
        "--steps", type=_number(int, 1), default=None, help="DepthLab denoising steps (>= 1, default 50)"
    )
    method_group.add_argument(
        "--processing-resolution",
        type=_number(int, 0),
        default=None,
        help="DepthLab: longest side at which the model runs (0 = input size, default 768)",
    )
    method_group.add_argument(
        "--strength",
        type=_number(float, 0, low_included=False, high=1),
        default=None,
        help="DepthLab strength in (0, 1] (default 0.8)",
    )
    method_group.add_argument(
        "--blend",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="DepthLab: re-inject known depth latents during denoising",
    )
    method_group.add_argument(
        "--normalize-scale",
        type=_number(float, 0, low_included=False),
        default=None,
        help="DepthLab: known depth range is mapped to [-s, s]",
    )
    method_group.add_argument(
        "--refine", action="store_true", help="DepthLab: the depth is a full rough map to refine"
    )
    method_group.add_argument(
        "--ensemble", type=_number(int, 1), default=None, help="DepthLab ensemble size (>= 1)"
    )
    method_group.add_argument(
        "--guidance-scale",
        type=_number(float, 1),
        default=None,
        help="DepthLab classifier-free guidance (>= 1, default 1; > 1 loads the text encoder)",
    )
    method_group.add_argument(
        "--preserve-known",
        choices=("none", "exact", "smooth"),
        default=None,
        help="DepthLab: none (original, default), exact (paste the known depth back), smooth "
        "(exact, without a seam)",
    )
    method_group.add_argument(
        "--resize-mode",
        choices=("auto", "nearest", "preserve"),
        default=None,
        help="DepthLab: how the known mask is resized to the processing size (auto, the default, "
        "keeps sparse points)",
    )
    method_group.add_argument(
        "--fill-mode",
        choices=("exact", "fast", "auto"),
        default=None,
        help="DepthLab pre-fill: exact (original, default), fast (not within the golden "
        "tolerance) or auto (= exact on every device: fast does not match the golden cases)",
    )
    method_group.add_argument(
        "--timestep-spacing",
        choices=("leading", "trailing", "linspace"),
        default=None,
        help="DepthLab DDIM timestep spacing (default: the scheduler's; trailing for 1-4 steps)",
    )
    method_group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed (default 0) of --keep (the same for every image, as "
        "depthlab.masks.sparsify(depth, PROTOCOL, seed)) and of DepthLab's noise (each image's "
        "from a hash of the seed and its output name, so results do not depend on the order or "
        "the number of workers)",
    )
    method_group.add_argument(
        "--device",
        type=parse_device,
        default=None,
        help="torch device for DepthLab: cpu, cuda, cuda:N, mps (default: cuda if available, else cpu)",
    )
    method_group.add_argument(
        "--dtype",
        default=None,
        choices=("fp32", "fp16", "bf16"),
        help="DepthLab weights dtype (default fp32)",
    )
    method_group.add_argument(
        "--low-memory",
        action="store_true",
        help="hold only the DepthLab model that runs in memory (CPU: read from the files per "
        "stage; GPU: offload to CPU); same result, lower peak memory, a little slower",
    )
    method_group.add_argument(
        "--channels-last",
        action="store_true",
        help="DepthLab U-Nets and VAE in channels-last memory format (same result up to float "
        "rounding; see benchmarks/results/speed_options.md for whether it helps here)",
    )
    method_group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the DepthLab estimation U-Net (the first image compiles, minutes on CPU)",
    )
    method_group.add_argument(
        "--tiny-vae",
        default=None,
        metavar="NAME",
        help="decode with AutoencoderTiny (hub id such as madebyollin/taesd, or a folder): faster, "
        "APPROXIMATE (not the original's decoder)",
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
        "--cpus-per-worker",
        type=float,
        default=1.0,
        help="Ray: CPUs reserved per worker (default 1); decoding tasks use 0.25 CPU besides",
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
    ("guidance_scale", "guidance_scale"),
    ("preserve_known", "preserve_known"),
    ("resize_mode", "resize_mode"),
    ("fill_mode", "fill_mode"),
    ("timestep_spacing", "timestep_spacing"),
)


def _unit(args: argparse.Namespace) -> str:
    """``--unit``, or ``m`` for the metre-producing scales (1000: mm, 256: KITTI)."""
    if args.unit is not None:
        return args.unit
    return "m" if args.depth_scale in (1000.0, 256.0) else ""


def _depthlab_only_flags(args: argparse.Namespace) -> list[str]:
    """The DepthLab-only flags given on the command line."""
    given = [f"--{name.replace('_', '-')}" for name, _ in _PIPELINE_FLAGS if getattr(args, name) is not None]
    given += [
        flag
        for flag, value in (
            ("--refine", args.refine),
            ("--dtype", args.dtype),
            ("--low-memory", args.low_memory),
            ("--channels-last", args.channels_last),
            ("--compile", args.compile),
            ("--tiny-vae", args.tiny_vae),
        )
        if value
    ]
    return given + (["--device"] if args.device is not None else [])


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
        unit=_unit(args),
        keep=args.keep,
        intrinsics=args.intrinsics,
        ply_region=args.ply_region,
        method_options=method_options,
        seed=args.seed,
        checkpoints=args.checkpoints,
        device=args.device,
        dtype=args.dtype,
        low_memory=args.low_memory,
        speed={
            k: v
            for k, v in (
                ("channels_last", args.channels_last),
                ("compile", args.compile),
                ("tiny_vae", args.tiny_vae),
            )
            if v
        },
        overwrite=args.overwrite,
        progress=not args.quiet,
    )


def ray_options(args: argparse.Namespace) -> RayOptions:
    for flag, value in (("--workers", args.workers), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1; got {value}")
    for flag, number in (
        ("--gpus-per-worker", args.gpus_per_worker),
        ("--cpus-per-worker", args.cpus_per_worker),
    ):
        if number < 0:
            raise UserError(f"{flag} must be >= 0; got {number:g}")
    return RayOptions(
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        batch_size=args.batch_size,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``depthlab complete``; 0 when every item is done, 1 when some failed or were left as they were."""
    from depthlab.batch.runner import complete_batch

    if args.vmin is not None and args.vmax is not None and not args.vmax > args.vmin:
        raise UserError(f"--vmax ({args.vmax}) must be larger than --vmin ({args.vmin})")
    if "png16" in args.format and args.out_scale is None and args.depth_scale is None:
        raise UserError(
            "--format png16 needs --out-scale (the PNG stores depth x scale), e.g. --out-scale 1000 "
            "for millimetres from metres"
        )
    if args.points and args.depth:
        raise UserError(
            f"give --depth ({args.depth}) or --points ({args.points}), not both: the points would "
            "replace the depth map; merge them into one depth file first if that is what you want"
        )
    if "ply" in args.format and args.intrinsics is None:
        raise UserError("--format ply needs --intrinsics (fx,fy,cx,cy or a K file)")
    if args.engine == "local" and args.address is not None:
        raise UserError("--address is for --engine ray")

    def announce(loaded: Any) -> None:
        print(f"depthlab complete: method {loaded.name}: {loaded.reason}", flush=True)
        if loaded.name != "depthlab" and _depthlab_only_flags(args):
            log(
                f"warning: {', '.join(_depthlab_only_flags(args))} only apply to DepthLab and are "
                f"ignored: method {loaded.name} runs"
            )
        device = str(getattr(loaded.pipeline, "device", ""))
        if loaded.name == "depthlab" and device.startswith("cpu"):
            from depthlab.completion import estimate_cpu_seconds

            options = batch_options(args).method_options
            seconds = estimate_cpu_seconds((576, 768), dtype=args.dtype or "fp32", **options)
            log(
                f"warning: DepthLab runs on the CPU: expect about {seconds / 60:.0f} min per 4:3 image "
                f"at processing resolution {options.get('processing_resolution', 768)} (a GPU is "
                "tens of times faster; --method guided takes about a second)"
            )

    def item_done(record: dict[str, Any]) -> None:
        if not args.quiet:
            print(
                f"  {record['item']}: {record.get('known_depth', '')}; {record['method']} "
                f"{record['seconds']:.2f} s",
                flush=True,
            )

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
            on_item=item_done,
        )
    except ImportError as error:
        raise UserError(str(error)) from None
    except KeyboardInterrupt:
        print(
            f"depthlab complete: interrupted; finished items are recorded in "
            f"{Path(args.out) / 'depthlab-results.jsonl'}: run the same command again to resume",
            file=sys.stderr,
        )
        return 130

    out = Path(args.out)
    conflicts = {reason: n for reason, n in report.skipped.items() if reason != "done"}
    status = 1 if report.failed or conflicts else 0
    if report.process_index != 0:
        # one process of a launch: the main process reports (and exits with the status) for all; a
        # non-zero exit here would make the launcher stop the main process before it has reported
        return 0
    done = report.skipped.get("done", 0)
    print(
        f"depthlab complete: {len(report.completed)} completed, {done} already done (skipped), "
        f"{len(report.failed)} failed; outputs in {out} ({report.seconds:.1f} s)"
    )
    for reason, count in conflicts.items():
        print(f"depthlab complete: {count} skipped: {reason}; --overwrite to recompute", file=sys.stderr)
    if len(report.completed) == 1 and not report.failed and not report.num_skipped:
        for rel in report.completed[0]["written"]:
            print(f"  wrote {out / rel}")
    for record in report.failed:
        print(f"  FAILED {record['item']}: {record['error']}", file=sys.stderr)
    return status
