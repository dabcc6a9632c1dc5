"""The work list of a batch: which image goes with which depth, mask or points, and where it is written.

Matching rule (folder / glob inputs): for an image ``<stem>.<ext>`` (``<base>`` = the stem without
a trailing ``_colors``, ``_color``, ``_rgb`` or ``_image``), the depth is the first existing file
among, in the depth folder (default: the image's folder), ``<stem>_depth.*``, ``<base>_depth.*``,
``<stem>.*``, ``<base>.*`` (same relative sub-folder as the image, then the folder itself; depth
suffixes ``.npy .npz .png .tif .tiff .pfm .exr``). Masks and point lists are matched the same way
with ``_mask`` and ``_points``. Files whose stem ends with ``_depth``, ``_mask`` or ``_points``
are never taken as images. A CSV manifest with columns ``image,depth[,mask][,points][,out]``
replaces the rule.

Outputs can never be taken as inputs: a file that a results manifest (``depthlab-results.jsonl``,
written by every run) in a searched folder or in ``out`` records as an output, and a PNG result
that carries depthlab's marker (:func:`depthlab.io.is_depthlab_output`: colour, panel and 16-bit
PNG outputs, wherever they were copied, with or without a manifest; an ``.npy``/``.ply`` output
next to a marked PNG of the same output prefix counts too), is excluded as an image and
as a depth/mask/points candidate, and a work list in which an output path of one item
is an input of any item is an error before any work (so a file at an output path that no run
recorded is never read as input and then overwritten). Symlinked files and folders are followed; paths are never resolved through
their links, so outputs mirror the layout the user sees.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from depthlab.batch.writers import FORMATS
from depthlab.io import DEPTH_SUFFIXES, IMAGE_SUFFIXES, POINT_SUFFIXES, is_depthlab_output, read_manifest

__all__ = [
    "RESULTS_NAME",
    "Item",
    "WorkListSpec",
    "collect_items",
    "output_paths",
    "recorded_outputs",
]

RESULTS_NAME = "depthlab-results.jsonl"
_IMAGE_NAME_HINTS = ("_colors", "_color", "_rgb", "_image")
_NOT_IMAGES = ("_depth", "_mask", "_points")  # other kinds of input, never an RGB image
_MASK_SUFFIXES = IMAGE_SUFFIXES + (".npy", ".npz")


@dataclass
class WorkListSpec:
    """What to process, as plain values (what ``depthlab complete``'s arguments describe).

    Attributes:
        images: image files, folders (searched recursively) or glob patterns.
        depth / mask / points: a file (one image only) or a folder searched with the matching
            rule; None: depth next to the image, no mask, no points.
        manifest: CSV with columns ``image,depth[,mask][,points][,out]`` instead of ``images``.
        out: output folder; outputs mirror the inputs' sub-folders below it.
    """

    images: list[str] = field(default_factory=list)
    depth: str | None = None
    mask: str | None = None
    points: str | None = None
    manifest: str | None = None
    out: str = "outputs"


@dataclass
class Item:
    """One unit of work.

    Attributes:
        key: the item's name, unique in the work list and independent of the machine: the output
            prefix relative to ``out`` in POSIX form (``"sub/00001_colors"``). Seeds derive from it.
        image / depth / mask / points: input files (depth/mask/points may be None).
        out_prefix: output paths are ``out_prefix + suffix`` (:data:`depthlab.batch.writers.FORMATS`).
    """

    key: str
    image: Path
    depth: Path | None
    mask: Path | None
    points: Path | None
    out_prefix: Path

    def to_dict(self) -> dict[str, str | None]:
        """JSON/Ray-friendly form (paths as strings)."""
        return {k: (None if v is None else str(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, str | None]) -> Item:
        """Inverse of :meth:`to_dict`."""

        def path(name: str) -> Path | None:
            value = data.get(name)
            return None if value is None else Path(value)

        return cls(
            key=str(data["key"]),
            image=Path(str(data["image"])),
            depth=path("depth"),
            mask=path("mask"),
            points=path("points"),
            out_prefix=Path(str(data["out_prefix"])),
        )


def output_paths(item: Item, formats: Iterable[str]) -> dict[str, Path]:
    """``{format: path}`` of the item's outputs."""
    return {f: Path(f"{item.out_prefix}{FORMATS[f].suffix}") for f in formats}


def _absolute(path: str | os.PathLike) -> Path:
    """Absolute and normalised, but symlinks are NOT resolved (outputs mirror what the user sees)."""
    return Path(os.path.abspath(os.fspath(path)))


def recorded_outputs(folder: Path) -> set[Path]:
    """Absolute paths that the results manifest in ``folder`` (and its unmerged parts) lists as outputs."""
    found: set[Path] = set()
    candidates = [folder / RESULTS_NAME, *sorted(folder.glob(f".{RESULTS_NAME}.part-*"))]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed process
            for rel in record.get("outputs", []) if isinstance(record, dict) else []:
                found.add(_absolute(folder / rel))
    return found


def _written_by_depthlab(path: Path) -> bool:
    """A marked PNG result, or an output (``<prefix>_depth.npy``, ...) next to a marked PNG of the same prefix.

    ``.npy`` and ``.ply`` have no room for a marker; their PNG siblings from the same run carry it.
    """
    if is_depthlab_output(path):
        return True
    for fmt in FORMATS.values():
        if path.name.endswith(fmt.suffix) and not fmt.suffix.endswith(".png"):
            prefix = path.name[: -len(fmt.suffix)]
            pngs = [other.suffix for other in FORMATS.values() if other.suffix.endswith(".png")]
            return any(is_depthlab_output(path.parent / f"{prefix}{suffix}") for suffix in pngs)
    return False


def _walk_files(root: Path) -> list[Path]:
    """Every file below ``root``, following symlinked folders (each real folder visited once)."""
    files: list[Path] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file():
                files.append(path)
    return sorted(files)


def _is_image_candidate(path: Path) -> bool:
    if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
        return False
    return not path.stem.lower().endswith(_NOT_IMAGES)


def _glob_root(spec: str) -> Path:
    prefix = spec
    for magic in "*?[":
        prefix = prefix.split(magic)[0]
    base = Path(prefix or ".")
    return base if prefix.endswith(os.sep) or base.is_dir() else base.parent


def _expand_images(specs: list[str]) -> tuple[list[Path], Path, list[Path]]:
    """Image files named by files / folders / globs, the root the outputs mirror, the searched folders."""
    images: list[Path] = []
    roots: list[Path] = []
    searched: list[Path] = []
    for spec in specs:
        path = _absolute(spec)
        if path.is_dir():
            files = _walk_files(path)
            searched += sorted({f.parent for f in files} | {path})
            found = [p for p in files if _is_image_candidate(p)]
            if not found:
                raise ValueError(f"IMAGE folder {spec} has no image files ({', '.join(IMAGE_SUFFIXES)})")
            images += found
            roots.append(path)
        elif path.is_file():
            images.append(path)
            roots.append(path.parent)
            searched.append(path.parent)
        elif glob.has_magic(spec):
            found = sorted(_absolute(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            searched += sorted({f.parent for f in found})
            found = [p for p in found if _is_image_candidate(p)]
            if not found:
                raise ValueError(f"IMAGE {spec!r}: no image files match")
            images += found
            roots.append(_absolute(_glob_root(spec)))
        else:
            raise FileNotFoundError(f"IMAGE {spec!r} is not a file, folder or matching glob")
    unique = list(dict.fromkeys(images))
    root = Path(os.path.commonpath([str(r) for r in roots]))
    return unique, root, list(dict.fromkeys(searched))


def _strip_hint(stem: str) -> str:
    for hint in _IMAGE_NAME_HINTS:
        if stem.lower().endswith(hint) and len(stem) > len(hint):
            return stem[: -len(hint)]
    return stem


def _match(
    folder: Path, rel_parent: Path, stem: str, tag: str, suffixes: tuple[str, ...], excluded: set[Path]
) -> Path | None:
    base = _strip_hint(stem)
    names = [f"{stem}_{tag}", f"{base}_{tag}", stem, base]
    for directory in dict.fromkeys((folder / rel_parent, folder)):
        for name in dict.fromkeys(names):
            for suffix in suffixes:
                candidate = directory / f"{name}{suffix}"
                if (
                    candidate.is_file()
                    and _absolute(candidate) not in excluded
                    and not _written_by_depthlab(candidate)
                ):
                    return candidate
    return None


def _relative_key(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:  # outside the common root (cannot happen for absolute, unresolved paths)
        return Path(path.name)


def collect_items(spec: WorkListSpec, formats: Iterable[str] = tuple(FORMATS)) -> list[Item]:
    """Build the work list; every problem is a ``ValueError``/``FileNotFoundError`` naming the argument.

    ``formats``: the outputs the run will write; their paths are never taken as inputs and must
    not replace one.

    Raises:
        ValueError: no input, both images and a manifest, a single depth/mask/points file for
            many images, two images with the same output name, or an output that would replace
            an input.
        FileNotFoundError: an input that does not exist.
    """
    if not spec.images and not spec.manifest:
        raise ValueError("give an IMAGE (file, folder or glob) or --manifest CSV")
    if spec.images and spec.manifest:
        raise ValueError("give either IMAGE or --manifest, not both")
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    out = _absolute(spec.out)
    items = _from_manifest(spec, out) if spec.manifest else _from_images(spec, out, formats)
    _check_unique_and_disjoint(items, formats)
    return items


def _from_manifest(spec: WorkListSpec, out: Path) -> list[Item]:
    rows = read_manifest(spec.manifest)
    if not rows:
        raise ValueError(f"--manifest {spec.manifest} lists no image")
    images = [_absolute(row["image"]) for row in rows]
    root = Path(os.path.commonpath([str(p.parent) for p in images]))
    items = []
    for row, image in zip(rows, images, strict=True):
        rel = Path(row["out"]) if row.get("out") else _relative_key(image, root).with_suffix("")
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(
                f"--manifest {spec.manifest}: 'out' {row['out']!r} must be a relative path below --out"
            )
        items.append(
            Item(
                key=rel.as_posix(),
                image=image,
                depth=_absolute(row["depth"]) if row.get("depth") else None,
                mask=_absolute(row["mask"]) if row.get("mask") else None,
                points=_absolute(row["points"]) if row.get("points") else None,
                out_prefix=out / rel,
            )
        )
    return items


def _from_images(spec: WorkListSpec, out: Path, formats: tuple[str, ...]) -> list[Item]:
    images, root, searched = _expand_images(spec.images)
    given: dict[str, Path | None] = {}
    for name in ("depth", "mask", "points"):
        value = getattr(spec, name)
        if value is None:
            given[name] = None
            continue
        path = _absolute(value)
        if not path.exists():
            raise FileNotFoundError(f"--{name} {value!r} is neither a file nor a folder")
        if path.is_file() and len(images) > 1:
            raise ValueError(
                f"--{name} {value} is a single file but {len(images)} images were given; "
                "pass a folder (matched by name) or a --manifest"
            )
        given[name] = path
        if path.is_dir():
            searched.append(path)

    # 1. outputs recorded by earlier runs (results manifests in the searched folders) are never
    #    inputs; a file at one of this run's output paths that no run recorded stays a candidate,
    #    so that it is refused below ("would replace an input") rather than silently skipped
    recorded: set[Path] = set()
    for folder in dict.fromkeys([out, *searched]):
        recorded |= recorded_outputs(folder)
    kept = [image for image in images if image not in recorded and not _written_by_depthlab(image)]
    if not kept:
        raise ValueError(
            f"IMAGE {' '.join(spec.images)}: every image found is an output of an earlier depthlab run"
        )

    # 2. match depth / mask / points for every image
    items = []
    for image in kept:
        rel_parent = _relative_key(image, root).parent
        prefix = out / rel_parent / image.stem
        found: dict[str, Path | None] = {}
        for name, tag, suffixes in (
            ("depth", "depth", DEPTH_SUFFIXES),
            ("mask", "mask", _MASK_SUFFIXES),
            ("points", "points", POINT_SUFFIXES),
        ):
            path = given[name]
            if path is None:
                found[name] = (
                    _match(image.parent, Path("."), image.stem, tag, suffixes, recorded | {image})
                    if name == "depth" and given["points"] is None
                    else None
                )
            elif path.is_dir():
                found[name] = _match(path, rel_parent, image.stem, tag, suffixes, recorded | {image})
            else:
                found[name] = path
        items.append(
            Item(
                key=prefix.relative_to(out).as_posix(),
                image=image,
                depth=found["depth"],
                mask=found["mask"],
                points=found["points"],
                out_prefix=prefix,
            )
        )
    return items


def _check_unique_and_disjoint(items: list[Item], formats: tuple[str, ...]) -> None:
    by_key: dict[str, Item] = {}
    for item in items:
        if item.key in by_key:
            raise ValueError(
                f"images {by_key[item.key].image} and {item.image} would both write the outputs "
                f"{item.out_prefix}_*; rename one or list them in a --manifest with an 'out' column"
            )
        by_key[item.key] = item
    inputs: dict[Path, Path] = {}
    for item in items:
        for path in (item.image, item.depth, item.mask, item.points):
            if path is not None:
                inputs[_absolute(path)] = item.image
    for item in items:
        for target in output_paths(item, formats).values():
            if _absolute(target) in inputs:
                raise ValueError(
                    f"the output {target} of {item.image} would replace an input of "
                    f"{inputs[_absolute(target)]}; choose another --out"
                )
