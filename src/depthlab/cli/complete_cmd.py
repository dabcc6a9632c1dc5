"""``depthlab complete``: complete one image or a whole folder / glob / manifest of them.

Matching rule in batch mode (also in ``depthlab complete --help``): for an image ``<stem>.<ext>``
(``<base>`` = the stem without a trailing ``_colors``, ``_color``, ``_rgb`` or ``_image``), the
depth is the first existing file among, in the ``--depth`` folder (default: the image's folder),
``<stem>.*``, ``<stem>_depth.*``, ``<base>_depth.*``, ``<base>.*`` (same relative sub-folder as
the image; depth suffixes ``.npy .npz .png .tif .tiff .pfm .exr``). Masks (``--mask DIR``) and
point lists (``--points DIR``) are matched the same way with ``_mask`` and ``_points``. Files
whose stem ends with ``_depth``, ``_mask`` or ``_points`` are never taken as images. A CSV
manifest (``--manifest``) with columns ``image,depth[,mask][,points]`` replaces the rule.

Outputs mirror the inputs: ``<out>/<sub-folder>/<stem>_depth.npy``, ``<stem>_depth.png``
(16-bit), ``<stem>_color.png`` and ``<stem>_panel.png``. An item whose requested outputs all exist
is skipped (resume); ``--overwrite`` recomputes it.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depthlab.cli import UserError

logger = logging.getLogger(__name__)

FORMATS = ("npy", "png16", "color", "panel")
_OUTPUT_SUFFIX = {
    "npy": "_depth.npy",
    "png16": "_depth.png",
    "color": "_color.png",
    "panel": "_panel.png",
}
_IMAGE_SUFFIX_HINTS = ("_colors", "_color", "_rgb", "_image")
_NOT_IMAGES = ("_depth", "_mask", "_points", "_color", "_panel")


@dataclass
class Item:
    """One unit of work: an image, its depth (or points) and mask, and its output prefix."""

    image: Path
    depth: Path | None
    mask: Path | None
    points: Path | None
    out_prefix: Path  # output paths are out_prefix + suffix


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


def register(subparsers: Any) -> None:
    from depthlab.completion import METHODS

    parser = subparsers.add_parser(
        "complete",
        help="complete partial depth guided by an RGB image (one file, a folder, a glob)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", nargs="*", metavar="IMAGE",
                        help="RGB image file(s), a folder, or a quoted glob ('data/*.png')")
    io_group = parser.add_argument_group("inputs")
    io_group.add_argument("--depth", help="depth file, or a folder (batch; see the matching rule)")
    io_group.add_argument("--mask", help="known-mask file or folder (default: known = depth > 0)")
    io_group.add_argument("--points", help="CSV/TXT of 'u,v,depth' points (file or folder) "
                          "used as the known depth instead of --depth")
    io_group.add_argument("--manifest", help="CSV with columns image,depth[,mask][,points]; "
                          "relative paths are relative to the manifest")
    io_group.add_argument("--depth-scale", type=float, default=None,
                          help="stored value / scale = depth (required for integer PNG/TIFF: "
                          "1000 for mm -> m, 256 for KITTI); also the default --out-scale")
    io_group.add_argument("--depth-key", default=None, help="array name inside a .npz depth file")
    io_group.add_argument("--mask-convention", choices=("known", "fill"), default="known",
                          help="what white/1 means in the mask: 'known' (depthlab, default) or "
                          "'fill' (original DepthLab: 1 = to fill)")
    io_group.add_argument("--alpha", choices=("composite", "drop"), default="composite",
                          help="RGB alpha channel: composite onto black (default) or drop")

    out_group = parser.add_argument_group("outputs")
    out_group.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    out_group.add_argument("--format", type=_formats, default=["npy", "color"],
                           help=f"comma-separated subset of {','.join(FORMATS)} (default: npy,color)")
    out_group.add_argument("--out-scale", type=float, default=None,
                           help="scale of the 16-bit PNG output (default: --depth-scale)")
    out_group.add_argument("--cmap", default="Spectral", help="matplotlib colormap (default Spectral)")
    out_group.add_argument("--vmin", type=float, default=None, help="fixed colour range low end")
    out_group.add_argument("--vmax", type=float, default=None, help="fixed colour range high end")
    out_group.add_argument("--colorbar", action="store_true", help="add a colour bar to color PNGs")
    out_group.add_argument("--unit", default="", help="unit label under the colour bar, e.g. m")
    out_group.add_argument("--overwrite", action="store_true",
                           help="replace existing outputs (default: skip items already done)")
    out_group.add_argument("--quiet", action="store_true", help="no progress bar")

    method_group = parser.add_argument_group("method")
    method_group.add_argument("--method", choices=METHODS, default="auto",
                              help="auto (default): DepthLab if its weights are found, else guided")
    method_group.add_argument("--checkpoints", default=None,
                              help="DepthLab weights folder (original or save_pretrained layout); "
                              "default: $DEPTHLAB_CHECKPOINTS, then the huggingface_hub cache")
    method_group.add_argument("--steps", type=int, default=None, help="DepthLab denoising steps")
    method_group.add_argument("--processing-resolution", type=int, default=None,
                              help="DepthLab: longest side at which the model runs (0 = input size)")
    method_group.add_argument("--strength", type=float, default=None, help="DepthLab strength (0, 1]")
    method_group.add_argument("--blend", action=argparse.BooleanOptionalAction, default=None,
                              help="DepthLab: re-inject known depth latents during denoising")
    method_group.add_argument("--normalize-scale", type=float, default=None,
                              help="DepthLab: known depth range is mapped to [-s, s]")
    method_group.add_argument("--refine", action="store_true",
                              help="DepthLab: the depth is a full rough map to refine")
    method_group.add_argument("--ensemble", type=int, default=None, help="DepthLab ensemble size")
    method_group.add_argument("--seed", type=int, default=None, help="DepthLab random seed")
    method_group.add_argument("--device", default=None,
                              help="torch device for DepthLab (default: cuda if available, else cpu)")
    method_group.add_argument("--dtype", default=None, choices=("fp32", "fp16", "bf16"),
                              help="DepthLab weights dtype (default fp32)")
    parser.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------
# collecting the work
# ----------------------------------------------------------------------------------------------
def _is_image_candidate(path: Path) -> bool:
    from depthlab.io import IMAGE_SUFFIXES

    if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
        return False
    return not path.stem.lower().endswith(_NOT_IMAGES)


def _expand_images(specs: list[str]) -> tuple[list[Path], Path]:
    """Image files named by files / folders / globs, and the root the outputs mirror."""
    images: list[Path] = []
    roots: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_image_candidate(p))
            if not found:
                raise UserError(f"no image files in folder {spec}")
            images += found
            roots.append(path)
        elif path.is_file():
            images.append(path)
            roots.append(path.parent)
        elif glob.has_magic(spec):
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            found = [p for p in found if _is_image_candidate(p)]
            if not found:
                raise UserError(f"no image files match {spec!r}")
            images += found
            base = Path(spec.split("*")[0].split("?")[0].split("[")[0] or ".")
            roots.append(base if base.is_dir() else base.parent)
        else:
            raise FileNotFoundError(f"IMAGE {spec!r} is not a file, folder or matching glob")
    unique = list(dict.fromkeys(images))
    root = Path(os.path.commonpath([str(r.resolve()) for r in roots]))
    return unique, root


def _match(folder: Path, rel_parent: Path, stem: str, tag: str, suffixes: tuple[str, ...],
           exclude: Path) -> Path | None:
    base = stem
    for hint in _IMAGE_SUFFIX_HINTS:
        if stem.lower().endswith(hint):
            base = stem[: -len(hint)]
            break
    names = [f"{stem}_{tag}", f"{base}_{tag}", stem, base]
    for directory in (folder / rel_parent, folder):
        for name in dict.fromkeys(names):
            for suffix in suffixes:
                candidate = directory / f"{name}{suffix}"
                if candidate.is_file() and candidate.resolve() != exclude.resolve():
                    return candidate
    return None


def _collect(args: argparse.Namespace) -> list[Item]:
    from depthlab.io import DEPTH_SUFFIXES, IMAGE_SUFFIXES, POINT_SUFFIXES, read_manifest

    out = Path(args.out)
    if args.manifest:
        rows = read_manifest(args.manifest)
        root = Path(os.path.commonpath([str(Path(r["image"]).resolve().parent) for r in rows]))
        items = []
        for row in rows:
            image = Path(row["image"])
            rel = image.resolve().relative_to(root).with_suffix("")
            items.append(Item(
                image=image,
                depth=Path(row["depth"]) if row.get("depth") else None,
                mask=Path(row["mask"]) if row.get("mask") else None,
                points=Path(row["points"]) if row.get("points") else None,
                out_prefix=out / Path(row["out"]) if row.get("out") else out / rel,
            ))
        return items

    images, root = _expand_images(args.image)
    single = len(images) == 1
    items = []
    for image in images:
        rel = image.resolve().relative_to(root)
        found: dict[str, Path | None] = {}
        for key, tag, suffixes in (
            ("depth", "depth", DEPTH_SUFFIXES),
            ("mask", "mask", IMAGE_SUFFIXES + (".npy", ".npz")),
            ("points", "points", POINT_SUFFIXES),
        ):
            given = getattr(args, key)
            if given is None:
                found[key] = (
                    _match(image.parent, Path("."), image.stem, tag, suffixes, image)
                    if key == "depth" and args.points is None else None
                )
            elif Path(given).is_dir():
                found[key] = _match(Path(given), rel.parent, image.stem, tag, suffixes, image)
            elif Path(given).is_file():
                if not single:
                    raise UserError(
                        f"--{key} {given} is a single file but {len(images)} images were given; "
                        f"pass a folder (matched by name) or a --manifest"
                    )
                found[key] = Path(given)
            else:
                raise FileNotFoundError(f"--{key} {given!r} is neither a file nor a folder")
        items.append(Item(image, found["depth"], found["mask"], found["points"],
                          out / rel.parent / image.stem))
    return items


# ----------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------
def _outputs(item: Item, formats: list[str]) -> dict[str, Path]:
    return {f: Path(f"{item.out_prefix}{_OUTPUT_SUFFIX[f]}") for f in formats}


def _pipeline_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, key in (
        ("steps", "num_inference_steps"),
        ("processing_resolution", "processing_resolution"),
        ("strength", "strength"),
        ("blend", "blend"),
        ("normalize_scale", "normalize_scale"),
        ("ensemble", "ensemble_size"),
    ):
        value = getattr(args, name)
        if value is not None:
            options[key] = value
    if args.refine:
        options["refine"] = True
    return options


def _device_and_dtype(args: argparse.Namespace) -> tuple[str, Any]:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return device, args.dtype  # a name; from_pretrained resolves it (models.loading.resolve_dtype)


def _process(item: Item, args: argparse.Namespace, chosen: str, pipeline: Any,
             outputs: dict[str, Path]) -> str:
    from depthlab import io
    from depthlab.completion import complete

    # 1. read
    rgb = io.read_image(item.image, alpha=args.alpha)
    height, width = rgb.shape[:2]
    if item.points is not None:
        depth = io.read_points(item.points, (height, width), scale=args.depth_scale)
    elif item.depth is not None:
        depth = io.read_depth(item.depth, scale=args.depth_scale, key=args.depth_key,
                              image_size=(height, width))
    else:
        raise FileNotFoundError(
            f"no depth found for {item.image} (give --depth FILE/DIR, --points, or put "
            f"{item.image.stem}_depth.<ext> next to it)"
        )
    if depth.shape != (height, width):
        raise ValueError(f"depth {item.depth} has size {depth.shape} but image {item.image} has "
                         f"{(height, width)} (H, W); they must be pixel-aligned")
    known = None
    if item.mask is not None:
        known = io.read_mask(item.mask, convention=args.mask_convention, shape=(height, width))
        known = known & np.isfinite(depth) & (depth > 0) if args.mask_convention == "fill" else known

    # 2. complete
    options: dict[str, Any] = {}
    if chosen == "depthlab":
        options = _pipeline_options(args)
        options["show_progress_bar"] = not args.quiet and args._single
        if args.seed is not None:
            import torch

            # the pipeline draws its noise on the CPU, so the generator lives there too
            options["generator"] = torch.Generator().manual_seed(args.seed)
    result = complete(rgb, depth, known, method=chosen, pipeline=pipeline, **options)
    completed = np.asarray(result.depth, np.float32)

    # 3. write what is missing (or everything with --overwrite)
    for fmt, path in outputs.items():
        if path.exists() and not args.overwrite:
            continue
        if fmt == "npy":
            io.write_depth_npy(path, completed, overwrite=args.overwrite)
        elif fmt == "png16":
            scale = args.out_scale or args.depth_scale
            if scale is None:
                raise ValueError("--format png16 needs --out-scale (or --depth-scale), e.g. 1000")
            io.write_depth_png16(path, completed, scale, overwrite=args.overwrite)
        elif fmt == "color":
            io.write_color(path, completed, vmin=args.vmin, vmax=args.vmax, cmap=args.cmap,
                           colorbar=args.colorbar, unit=args.unit, overwrite=args.overwrite)
        else:
            io.write_panel(path, rgb, np.where(result.known_mask, depth, 0.0), result.known_mask,
                           completed, vmin=args.vmin, vmax=args.vmax, cmap=args.cmap,
                           overwrite=args.overwrite)
    return f"{result.info.get('seconds', 0.0):.2f} s"


def run(args: argparse.Namespace) -> int:
    """Run ``depthlab complete``; returns 0 when every item succeeded (or was already done)."""
    from tqdm import tqdm

    from depthlab.completion import load_pipeline, resolve_method

    if args.vmin is not None and args.vmax is not None and not args.vmax > args.vmin:
        raise UserError(f"--vmax ({args.vmax}) must be larger than --vmin ({args.vmin})")
    if "png16" in args.format and args.out_scale is None and args.depth_scale is None:
        raise UserError("--format png16 needs --out-scale (or --depth-scale), e.g. 1000 for mm")
    if not args.image and not args.manifest:
        raise UserError("give an IMAGE (file, folder or glob) or --manifest CSV")
    if args.image and args.manifest:
        raise UserError("give either IMAGE or --manifest, not both")
    items = _collect(args)
    args._single = len(items) == 1

    # 1. choose the method once, load DepthLab once
    try:
        chosen, reason, paths = resolve_method(args.method, checkpoints=args.checkpoints)
    except ImportError as error:
        raise UserError(str(error)) from None
    pipeline = None
    if chosen == "depthlab":
        device, dtype = _device_and_dtype(args)
        pipeline = load_pipeline(paths, device=device, torch_dtype=dtype)
    print(f"depthlab complete: method {chosen}: {reason}", flush=True)

    # 2. run every item; a failure is reported and the run goes on
    done = skipped = 0
    failures: list[tuple[Path, str]] = []
    bar = tqdm(items, desc="completing", unit="image", disable=args.quiet or args._single,
               file=sys.stderr)
    for item in bar:
        outputs = _outputs(item, args.format)
        if not args.overwrite and all(p.exists() for p in outputs.values()):
            skipped += 1
            continue
        try:
            _process(item, args, chosen, pipeline, outputs)
            done += 1
        except (ValueError, TypeError, OSError) as error:
            if args._single:
                raise
            failures.append((item.image, f"{type(error).__name__}: {error}"))
            bar.write(f"depthlab complete: failed: {item.image}: {error}", file=sys.stderr)
        except Exception as error:  # keep a long batch going; report the unexpected error
            if args._single:
                raise
            logger.debug("unexpected error on %s", item.image, exc_info=True)
            failures.append((item.image, f"{type(error).__name__}: {error}"))
            bar.write(f"depthlab complete: failed: {item.image}: {type(error).__name__}: {error}",
                      file=sys.stderr)
    bar.close()

    # 3. summary
    out = Path(args.out)
    print(f"depthlab complete: {done} completed, {skipped} already done (skipped), "
          f"{len(failures)} failed; outputs in {out}")
    if args._single and done == 1:
        for path in _outputs(items[0], args.format).values():
            print(f"  wrote {path}")
    for image, message in failures:
        print(f"  FAILED {image}: {message}", file=sys.stderr)
    return 1 if failures else 0
