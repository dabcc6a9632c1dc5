"""Read and write images, depth maps, masks and pictures of results.

Conventions (stated once, used everywhere):

* **Depth units**: a stored value ``s`` is read as depth ``s / scale``. ``scale`` applies to
  integer data only: integer files (8/16-bit PNG, integer TIFF, integer ``.npy``/``.npz``) need
  an explicit ``scale`` (1000 for millimetre PNGs -> metres, 256 for KITTI); float files (float
  ``.npy``/``.npz``/TIFF, ``.pfm``, ``.exr``) are already depth, and giving them a ``scale`` is an
  error (it would silently change their units). CSV/TXT points are text: ``scale`` divides them
  when every depth value is written as an integer, otherwise it is an error. A depth of 0 or
  non-finite means "unknown"; negative known depth is an error.
* **Masks**: ``known_mask`` is boolean, True = depth known. Mask files in the original DepthLab
  convention (1/white = to fill) are read with ``convention="fill"``.
* **RGB**: any PIL-readable file becomes ``uint8 [H, W, 3]``; 16-bit images are scaled to 8 bits by the one rule of
  :func:`depthlab.inputs.image_to_uint8` (``round(v * 255 / 65535)``, the full 16-bit range);
  an alpha channel is composited onto black (``alpha="composite"``, the default) or dropped
  (``alpha="drop"``). EXIF orientation is *not* applied, so the image stays pixel-aligned with a
  depth map stored without one.
* **Writes** are atomic (a temporary file in the target folder, then ``os.replace``) and refuse
  to replace an existing file unless ``overwrite=True``.

``.exr`` needs the ``OpenEXR`` package (``pip install OpenEXR``); every other format works with
the core dependencies.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from depthlab.inputs import image_to_uint8, resolve_known_mask, to_depth_array

__all__ = [
    "DEPTH_SUFFIXES",
    "IMAGE_SUFFIXES",
    "POINT_SUFFIXES",
    "read_image",
    "read_depth",
    "read_points",
    "read_mask",
    "write_depth",
    "write_depth_npy",
    "write_depth_png16",
    "write_depth_tiff",
    "write_pfm",
    "read_pfm",
    "write_exr",
    "read_exr",
    "write_image",
    "write_mask",
    "write_color",
    "write_panel",
    "panel_caption",
    "describe_known_depth",
    "atomic_write",
    "OUTPUT_MARKER",
    "is_depthlab_output",
    "nearest_per_pixel",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEPTH_SUFFIXES = (".npy", ".npz", ".png", ".tif", ".tiff", ".pfm", ".exr")
POINT_SUFFIXES = (".csv", ".txt")
OUTPUT_MARKER = "depthlab-output"  # PNG text key that marks a file as a depthlab result, not an input
_EXR_HINT = "reading or writing .exr files needs the OpenEXR package: `pip install OpenEXR`"
_EXR_CHANNELS = ("Z", "depth", "Y", "R")


# ----------------------------------------------------------------------------------------------
# atomic writes
# ----------------------------------------------------------------------------------------------
def _create_temporary(path: Path) -> tuple[Path, int]:
    """An empty new file next to ``path`` and the permission bits the result must have.

    Created with ``os.open(..., 0o666)`` like a plain ``open(path, "w")``, so the process umask
    applies (``tempfile.mkstemp`` would make it ``0600``); when ``path`` exists its permission
    bits are kept, as writing over it in place would.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}"
        try:
            handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            mode = (
                stat.S_IMODE(os.stat(path).st_mode)
                if path.exists()
                else stat.S_IMODE(os.fstat(handle).st_mode)
            )
        finally:
            os.close(handle)
        return tmp, mode
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` for a temporary file next to ``path``, then rename it to ``path``.

    The parent folder is created. The temporary file has the same suffix as ``path`` (writers
    that pick the format from the suffix keep working) and is removed if ``write`` fails. The
    result gets the permissions a plain ``open(path, "w")`` would give it: ``0666`` less the
    process umask for a new file, the old file's mode when it replaces one.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        OSError: the folder cannot be made or written (read-only, permission, a path below a
            regular file, a full disk); it names ``path``. A short write without an errno (as
            numpy reports a full disk) is raised as ``ENOSPC``.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, mode = _create_temporary(path)
    try:
        write(tmp)
        os.chmod(tmp, mode)  # the writer may have replaced the file: give it the mode again
        os.replace(tmp, path)
    except OSError as error:
        if error.errno is None:  # e.g. numpy: "N requested and M written"
            free = shutil.disk_usage(path.parent).free
            raise OSError(
                errno.ENOSPC,
                f"short write ({error}; {free} bytes free): the disk is probably full",
                str(path),
            ) from error
        if error.filename is None:
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _check_path(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{what} path is a folder, expected a file: {path}")
    return path


# ----------------------------------------------------------------------------------------------
# RGB images
# ----------------------------------------------------------------------------------------------
def _open_image(path: Path, what: str) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except Exception as error:
        raise ValueError(f"cannot read {what} {path}: {error}") from None
    return image


def _to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """Bit depth -> uint8 by the one rule of :func:`depthlab.inputs.image_to_uint8`.

    Integer pixels that are not uint8/uint16 (PIL mode ``I``, 32-bit TIFF) must fit 0..65535 and are
    read as 16-bit values.
    """
    if np.issubdtype(array.dtype, np.integer) and array.dtype not in (np.uint8, np.uint16):
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(
                f"{what} has {array.dtype} values in [{array.min()}, {array.max()}]; expected 8- or "
                "16-bit values (0..65535)"
            )
        array = array.astype(np.uint16)
    return image_to_uint8(array, what)


def image_to_rgb(image: Image.Image, *, alpha: str = "composite", what: str = "image") -> np.ndarray:
    """Convert a PIL image of any mode to ``uint8 [H, W, 3]`` RGB (see the module conventions).

    Bit depth: the one rule of :func:`depthlab.inputs.image_to_uint8` (16-bit values ``v`` ->
    ``round(v * 255 / 65535)``); ``what`` names the image in error messages.
    """
    if alpha not in ("composite", "drop"):
        raise ValueError(f"`alpha` must be 'composite' or 'drop'; got {alpha!r}")
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _to_uint8(np.asarray(image), what)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        rgb = rgba[..., :3]
        if alpha == "composite":
            rgb = rgb * (rgba[..., 3:] / 255.0)  # onto black
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    array = np.asarray(image)
    if array.ndim == 3 and array.dtype != np.uint8:  # e.g. 48-bit RGB read by PIL as 16-bit
        return _to_uint8(array[..., :3], what)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _png_bit_depth_and_colour(path: Path) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` from a PNG header, None for other files."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    if len(header) < 26 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return None
    return header[24], header[25]


def _read_png48(path: Path, alpha: str) -> np.ndarray:
    """16-bit colour PNG (RGB/RGBA, 48/64-bit) through OpenCV at full depth.

    Pillow reads these as 8-bit by dropping the low byte (``v >> 8``), a different rule from the
    one of :func:`depthlab.inputs.image_to_uint8`; OpenCV keeps the 16-bit values.
    """
    import cv2

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim != 3:
        raise ValueError(f"cannot read 16-bit colour image {path}")
    bgr_to_rgb = [2, 1, 0, 3][: array.shape[2]] if array.shape[2] >= 3 else [0, 0, 0]
    return _colour16_to_rgb(array[..., bgr_to_rgb], alpha, f"image {path}")


def _colour16_to_rgb(array: np.ndarray, alpha: str, what: str) -> np.ndarray:
    """uint16 ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA -> uint8 RGB by the one rule, alpha onto black."""
    rgb = array[..., :3]
    if array.shape[2] == 4 and alpha == "composite":
        values = rgb.astype(np.float64) / 65535.0 * (array[..., 3:].astype(np.float64) / 65535.0)
        return image_to_uint8(values, what)  # onto black
    return image_to_uint8(np.ascontiguousarray(rgb), what)


def _read_tiff(path: Path, alpha: str) -> np.ndarray:
    """TIFF: 16-bit colour through tifffile at full depth (Pillow reads it as 8-bit, ``v >> 8``)."""
    what = f"image {path}"
    try:
        image = _open_image(path, "image")
        bits = image.tag_v2.get(258, (8,)) if hasattr(image, "tag_v2") else (8,)
        if image.mode in ("RGB", "RGBA") and max(bits) > 8:
            raise ValueError("16-bit colour")
        return image_to_rgb(image, alpha=alpha, what=what)
    except ValueError:
        import tifffile

        array = tifffile.imread(path)
    if array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint16:
        return _colour16_to_rgb(array, alpha, what)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    array = _to_uint8(array, what)
    return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]


def read_image(path: str | os.PathLike, *, alpha: str = "composite") -> np.ndarray:
    """Read an RGB image file as ``uint8 [H, W, 3]``.

    Args:
        path: any file PIL can read (PNG 8/16-bit, JPEG, TIFF, BMP, WebP, ...).
        alpha: ``"composite"`` multiplies the colour by alpha (onto black), ``"drop"`` ignores it.

    Raises:
        FileNotFoundError: no such file. ValueError: not a readable image.
    """
    path = _check_path(path, "image")
    if alpha not in ("composite", "drop"):
        raise ValueError(f"`alpha` must be 'composite' or 'drop'; got {alpha!r}")
    png = _png_bit_depth_and_colour(path)
    if png is not None and png[0] == 16 and png[1] in (2, 6):  # 16-bit RGB / RGBA
        return _read_png48(path, alpha)
    if path.suffix.lower() in (".tif", ".tiff"):
        return _read_tiff(path, alpha)
    return image_to_rgb(_open_image(path, "image"), alpha=alpha, what=f"image {path}")


# ----------------------------------------------------------------------------------------------
# depth
# ----------------------------------------------------------------------------------------------
def _check_scale(scale: float | None) -> float:
    if scale is None:
        return 1.0
    scale = float(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"`scale` (--depth-scale) must be a positive number; got {scale!r}")
    return scale


def _single_channel(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(
            f"depth file {path} holds an array of shape {array.shape}; expected a single-channel "
            "[H, W] map (a colourised depth picture cannot be read back as depth)"
        )
    return array


def read_depth(
    path: str | os.PathLike,
    *,
    scale: float | None = None,
    key: str | None = None,
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read a depth map as float32 ``[H, W]`` in ``stored value / scale`` units.

    Supported: ``.npy``; ``.npz`` (array ``key``, or the only array); 8/16-bit ``.png`` and
    integer ``.tif`` (``scale`` required); float ``.tif``/``.tiff``; ``.pfm``; ``.exr`` (needs
    ``OpenEXR``); ``.csv``/``.txt`` point lists (see :func:`read_points`, needs ``image_size``).

    Args:
        path: the file.
        scale: divisor applied to stored *integer* values, required for them (e.g. 1000 for
            millimetres -> metres, 256 for KITTI), whatever the suffix (PNG, TIFF, ``.npy``).
            Float data is read as is; a ``scale`` with float data is an error.
        key: array name inside an ``.npz``.
        image_size: ``(H, W)`` for point lists.

    Raises:
        FileNotFoundError, ValueError (unsupported suffix, missing scale, bad content).
    """
    path = _check_path(path, "depth")
    suffix = path.suffix.lower()
    if suffix in POINT_SUFFIXES:
        if image_size is None:
            raise ValueError(f"reading points from {path} needs the image size (H, W)")
        return read_points(path, image_size, scale=scale)
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as error:
            raise ValueError(f"cannot read depth {path}: {error}") from None
    elif suffix == ".npz":
        array = _read_npz(path, key)
    elif suffix == ".png":
        array = np.asarray(_open_image(path, "depth"))
        if array.ndim == 3:
            raise ValueError(
                f"depth PNG {path} has {array.shape[2]} channels; expected a single-channel 8/16-bit "
                "PNG (a colourised depth picture cannot be read back as depth)"
            )
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            array = tifffile.imread(path)
        except Exception as error:
            raise ValueError(f"cannot read depth {path}: {error}") from None
    elif suffix == ".pfm":
        array = read_pfm(path)
    elif suffix == ".exr":
        array = read_exr(path)
    else:
        raise ValueError(
            f"unsupported depth file {path}: suffix {suffix!r} is not one of "
            f"{', '.join(DEPTH_SUFFIXES + POINT_SUFFIXES)}"
        )
    array = _single_channel(np.asarray(array), path)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"depth file {path} holds {array.dtype} values; expected numbers")
    if np.issubdtype(array.dtype, np.integer):
        if scale is None:
            raise ValueError(
                f"depth file {path} stores integers ({array.dtype}): give the scale "
                "(--depth-scale: stored value / scale = depth), e.g. 1000 for millimetres -> "
                "metres or 256 for KITTI"
            )
        return (array.astype(np.float64) / _check_scale(scale)).astype(np.float32)
    if scale is not None:
        raise ValueError(
            f"depth file {path} stores float values ({array.dtype}), which are read as depth as "
            f"they are; the scale {scale:g} (--depth-scale) applies to integer files only: drop it "
            "(to write 16-bit PNG outputs use --out-scale)"
        )
    return array.astype(np.float32)


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None:
                if len(names) != 1:
                    raise ValueError(
                        f"{path} holds several arrays ({', '.join(names)}); name one with `key` "
                        "(CLI: --depth-key)"
                    )
                key = names[0]
            if key not in names:
                raise ValueError(f"{path} has no array {key!r}; it holds {', '.join(names)}")
            return archive[key]
    except ValueError:
        raise
    except Exception as error:
        raise ValueError(f"cannot read {path}: {error}") from None


_COLUMN_NAMES = ("u", "x", "col", "column")
_ROW_NAMES = ("v", "y", "row")
_DEPTH_NAMES = ("depth", "z", "d")


def _point_columns(header: list[str], path: Path) -> tuple[int, int, int]:
    """Indices of the (column, row, depth) fields named by a CSV header line."""
    names = [h.strip().strip("\"'").lower() for h in header]
    found: dict[str, list[int]] = {"u": [], "v": [], "depth": []}
    for index, name in enumerate(names):
        for role, accepted in (("u", _COLUMN_NAMES), ("v", _ROW_NAMES), ("depth", _DEPTH_NAMES)):
            if name in accepted:
                found[role].append(index)
    accepted_text = (
        f"column: {'/'.join(_COLUMN_NAMES)}; row: {'/'.join(_ROW_NAMES)}; depth: {'/'.join(_DEPTH_NAMES)}"
    )
    if any(len(v) != 1 for v in found.values()):
        raise ValueError(
            f"{path}: header {','.join(header)!r} must name exactly one pixel column, one pixel row "
            f"and one depth field ({accepted_text})"
        )
    if names[found["u"][0]] == "x" and names[found["v"][0]] == "y" and names[found["depth"][0]] == "z":
        raise ValueError(
            f"{path}: header 'x,y,z' reads as 3D point coordinates, but depthlab needs pixel "
            "coordinates and a depth: name the columns u,v,depth (u = pixel column, v = pixel row)"
        )
    return found["u"][0], found["v"][0], found["depth"][0]


def read_points(
    path: str | os.PathLike, image_size: tuple[int, int], *, scale: float | None = None
) -> np.ndarray:
    """Rasterise a CSV/TXT list of points into a float32 ``[H, W]`` map (0 = unknown).

    One point per line; fields separated by commas, semicolons, tabs or spaces; ``#`` starts a
    comment. Without a header the first three fields are ``u,v,depth``: ``u`` the pixel column
    (x), ``v`` the pixel row (y), rounded to the nearest pixel. A header line names the fields in
    any order (extra fields are ignored): the column as ``u``/``x``/``col``/``column``, the row as
    ``v``/``y``/``row``, the depth as ``depth``/``z``/``d`` (e.g. ``v,u,depth``, ``x,y,depth``,
    ``col,row,z``); ``x,y,z`` is refused (it reads as 3D point coordinates), as is a header that
    does not name all three. Points outside the image or with a depth that is not > 0 are an
    error. When several points land on one pixel the nearest (smallest depth) wins, and of equal
    depths the one listed first (:func:`nearest_per_pixel`, a z-buffer), whatever the file order.

    Depth = value / ``scale``. ``scale`` (default: none) is allowed only when every depth value is
    written as an integer (e.g. millimetres); with fractional values it is an error, because they
    already are depth.
    """
    path = _check_path(path, "points")
    height, width = (int(v) for v in image_size)
    if scale is not None:
        scale = _check_scale(scale)
    columns = (0, 1, 2)
    header_seen = False
    rows: list[tuple[float, float, float]] = []
    fractional = False
    with open(path, newline="", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            fields = [f for f in re.split(r"[,;\s]+", text) if f]
            try:
                if len(fields) <= max(columns):
                    raise ValueError
                u, v, d = (float(fields[i]) for i in columns)
            except ValueError:
                if not rows and not header_seen and not any(_is_number(f) for f in fields):
                    columns = _point_columns(fields, path)
                    header_seen = True
                    continue
                raise ValueError(
                    f"{path} line {line_no}: expected {len(columns)}+ numeric fields "
                    f"({'u,v,depth' if not header_seen else 'as the header names them'}); got {text!r}"
                ) from None
            fractional = fractional or not re.fullmatch(r"[+-]?\d+", fields[columns[2]])
            rows.append((u, v, d))
    if not rows:
        raise ValueError(f"{path} holds no 'u,v,depth' points")
    if scale is not None and fractional:
        raise ValueError(
            f"{path}: depth values are written with decimals, so they are read as depth as they "
            f"are; the scale {scale:g} (--depth-scale) applies to integer values only: drop it"
        )
    points = np.asarray(rows, dtype=np.float64)
    cols = np.rint(points[:, 0]).astype(np.int64)
    rws = np.rint(points[:, 1]).astype(np.int64)
    values = points[:, 2] / (scale or 1.0)
    outside = (cols < 0) | (cols >= width) | (rws < 0) | (rws >= height)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{path}: {int(outside.sum())} points fall outside the {width}x{height} image, e.g. "
            f"u={points[i, 0]:g}, v={points[i, 1]:g}"
        )
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} points have a depth that is not > 0")
    depth = np.zeros(height * width, np.float64)
    pixels, winners = nearest_per_pixel(rws * width + cols, values)
    depth[pixels] = values[winners]  # one value per pixel: no repeated indices
    return depth.reshape(height, width).astype(np.float32)


def nearest_per_pixel(flat_pixel: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The z-buffer rule: per pixel the nearest candidate wins; equal depths: the earlier one.

    Args:
        flat_pixel: int ``[M]`` flat pixel index (``row * W + col``) of each candidate.
        depth: ``[M]`` depth of each candidate.

    Returns:
        ``(pixels, winners)``: each distinct pixel hit (ascending) and the index of its winning
        candidate. One stable lexsort decides, so the result never depends on the order numpy
        applies repeated fancy-index assignments in. :func:`depthlab.geometry.zbuffer` is this rule.
    """
    flat_pixel = np.asarray(flat_pixel, np.int64).ravel()
    depth = np.asarray(depth).ravel()
    if flat_pixel.shape != depth.shape:
        raise ValueError(
            f"flat_pixel {flat_pixel.shape} and depth {depth.shape} must have one entry per candidate"
        )
    order = np.lexsort((np.arange(len(depth)), depth, flat_pixel))  # by pixel, then depth, then index
    sorted_pixels = flat_pixel[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_pixels[1:] != sorted_pixels[:-1]
    return sorted_pixels[first], order[first]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """Read a Portable Float Map as float32 ``[H, W]`` (``Pf``) or ``[H, W, 3]`` (``PF``).

    The header is ``Pf``/``PF``, ``width height``, and a scale whose sign gives the byte order
    (negative = little endian); rows are stored bottom to top.
    """
    path = _check_path(path, "PFM")
    with open(path, "rb") as handle:
        tokens: list[bytes] = []
        while len(tokens) < 4:
            line = handle.readline()
            if not line:
                raise ValueError(f"{path} is not a PFM file: header is incomplete")
            tokens += line.split(b"#", 1)[0].split()
        kind = tokens[0]
        if kind not in (b"Pf", b"PF"):
            raise ValueError(f"{path} is not a PFM file: starts with {kind[:8]!r}")
        try:
            width, height, scale = int(tokens[1]), int(tokens[2]), float(tokens[3])
        except ValueError:
            raise ValueError(f"{path}: malformed PFM header {b' '.join(tokens[:4])!r}") from None
        channels = 3 if kind == b"PF" else 1
        dtype = np.dtype("<f4" if scale < 0 else ">f4")
        data = np.frombuffer(handle.read(), dtype=dtype)
    expected = width * height * channels
    if data.size < expected:
        raise ValueError(f"{path}: PFM data has {data.size} values, header says {expected}")
    array = data[:expected].reshape(height, width, channels)[::-1]
    array = array[..., 0] if channels == 1 else array
    return np.ascontiguousarray(array, dtype=np.float32)


def _write_pfm_file(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        handle.write(f"Pf\n{array.shape[1]} {array.shape[0]}\n-1.0\n".encode("ascii"))
        handle.write(np.ascontiguousarray(array[::-1], dtype="<f4").tobytes())


def write_pfm(path: str | os.PathLike, depth: Any, *, overwrite: bool = False) -> Path:
    """Write ``[H, W]`` depth as a little-endian grayscale PFM (float32)."""
    array = to_depth_array(depth)
    return atomic_write(path, lambda tmp: _write_pfm_file(tmp, array), overwrite=overwrite)


def _openexr() -> Any:
    try:
        import OpenEXR
    except ImportError:
        raise ValueError(_EXR_HINT) from None
    return OpenEXR


def read_exr(path: str | os.PathLike) -> np.ndarray:
    """Read the depth channel of an OpenEXR file (``Z``, ``depth``, ``Y``, ``R`` or the only one)."""
    openexr = _openexr()
    path = _check_path(path, "EXR")
    try:
        with openexr.File(str(path)) as handle:
            channels = {name: np.asarray(ch.pixels) for name, ch in handle.channels().items()}
    except Exception as error:
        raise ValueError(f"cannot read EXR {path}: {error}") from None
    for name in _EXR_CHANNELS:
        if name in channels:
            return channels[name].astype(np.float32)
    if len(channels) == 1:
        array = next(iter(channels.values()))
        return array.astype(np.float32)
    raise ValueError(
        f"{path}: cannot tell which EXR channel is depth; it has {', '.join(sorted(channels))} "
        f"(expected one of {', '.join(_EXR_CHANNELS)})"
    )


def write_exr(path: str | os.PathLike, depth: Any, *, overwrite: bool = False) -> Path:
    """Write ``[H, W]`` depth as a float32 OpenEXR file with one channel ``Z`` (ZIP compressed)."""
    openexr = _openexr()
    array = np.ascontiguousarray(to_depth_array(depth))
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}

    def write(tmp: Path) -> None:
        with openexr.File(header, {"Z": array}) as handle:
            handle.write(str(tmp))

    return atomic_write(path, write, overwrite=overwrite)


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------
def read_mask(source: Any, *, convention: str = "known", shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file or array and return ``known_mask`` (bool ``[H, W]``, True = known).

    Args:
        source: a path (image file: white/non-zero = 1; ``.npy``/``.npz``: bool or 0/1 array) or
            an array/PIL image.
        convention: what 1/True/white means in ``source``: ``"known"`` (depthlab: depth is
            known) or ``"fill"`` (original DepthLab: pixel is to be filled).
        shape: expected ``(H, W)``; a different size is an error.

    Image files must be two-valued: 0 and 1, 0 and 255 (8-bit) or 0 and 65535 (16-bit). A
    gradient, anti-aliased or JPEG-compressed picture is refused with the count of pixels that
    are neither (thresholding it would guess which pixels are known).
    """
    if convention not in ("known", "fill"):
        raise ValueError(f"`convention` (--mask-convention) must be 'known' or 'fill'; got {convention!r}")
    name = "mask"
    if isinstance(source, (str, os.PathLike)):
        path = _check_path(source, "mask")
        name = str(path)
        suffix = path.suffix.lower()
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            array = _read_npz(path, None)
        else:
            image = _open_image(path, "mask")
            array = np.asarray(image.convert("L") if image.mode in ("RGB", "RGBA", "P", "LA") else image)
            array = _binarise_image(array, name)
    elif isinstance(source, Image.Image):
        array = _binarise_image(np.asarray(source.convert("L") if source.mode != "1" else source), name)
    else:
        array = source
    mask = resolve_known_mask(array, None, name=f"mask ({name})")
    if convention == "fill":
        mask = ~mask
    if shape is not None and mask.shape != tuple(shape):
        raise ValueError(f"mask {name} has size {mask.shape} (H, W); expected {tuple(shape)}")
    return mask


def _binarise_image(array: np.ndarray, name: str = "mask") -> np.ndarray:
    if array.dtype == np.bool_:
        return array
    values = np.unique(array)
    for top in (1, 255, 65535):
        if np.all(np.isin(values, (0, top))):
            return array == top
    top = 65535 if array.max(initial=0) > 255 else 255
    n_between = int(((array != 0) & (array != top)).sum())
    raise ValueError(
        f"mask {name} is not binary: {n_between} of {array.size} pixels are neither 0 nor {top} "
        f"({values.size} distinct values, a gradient or anti-aliased/JPEG picture?); save the mask "
        "as a black/white PNG"
    )


# ----------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------
def _save_png(image: Image.Image, tmp: Path, marker: str | None) -> None:
    """Save ``image`` as PNG; ``marker`` (if given) goes into a text chunk :data:`OUTPUT_MARKER`."""
    pnginfo = None
    if marker is not None:
        from PIL.PngImagePlugin import PngInfo

        pnginfo = PngInfo()
        pnginfo.add_text(OUTPUT_MARKER, marker)
    image.save(tmp, format="PNG", pnginfo=pnginfo)


def is_depthlab_output(path: str | os.PathLike) -> bool:
    """True for a PNG that depthlab wrote as a result (it carries the :data:`OUTPUT_MARKER` text chunk).

    Reads only the PNG header chunks; any other file, or one that cannot be read, is False.
    """
    if Path(path).suffix.lower() != ".png":
        return False
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and OUTPUT_MARKER in image.info
    except (OSError, ValueError, SyntaxError):
        return False


def write_depth_npy(path: str | os.PathLike, depth: Any, *, overwrite: bool = False) -> Path:
    """Write ``[H, W]`` depth as float32 ``.npy`` (units unchanged)."""
    array = to_depth_array(depth)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    return atomic_write(path, write, overwrite=overwrite)


def write_depth_png16(
    path: str | os.PathLike, depth: Any, scale: float, *, overwrite: bool = False, marker: str | None = None
) -> Path:
    """Write depth as a 16-bit PNG storing ``round(depth * scale)``; non-finite/<= 0 -> 0.

    ``marker``: mark the file as a depthlab result (:func:`is_depthlab_output`), so that folder
    batches never take it as an input.

    Raises:
        ValueError: a value would exceed 65535 (the message gives the largest scale that fits).
    """
    scale = _check_scale(scale)
    array = to_depth_array(depth).astype(np.float64)
    valid = np.isfinite(array) & (array > 0)
    stored = np.where(valid, np.rint(array * scale), 0.0)
    top = float(stored.max(initial=0))
    if top > 65535:
        largest = float(array[valid].max())
        raise ValueError(
            f"depth up to {largest:g} at scale {scale:g} overflows a 16-bit PNG (max 65535); "
            f"use a scale of at most {65535 / largest:.6g} or write .npy"
        )
    image = Image.fromarray(stored.astype(np.uint16))
    return atomic_write(path, lambda tmp: _save_png(image, tmp, marker), overwrite=overwrite)


def write_depth_tiff(path: str | os.PathLike, depth: Any, *, overwrite: bool = False) -> Path:
    """Write ``[H, W]`` depth as a float32 TIFF."""
    import tifffile

    array = to_depth_array(depth)
    return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array), overwrite=overwrite)


def write_depth(
    path: str | os.PathLike, depth: Any, *, scale: float | None = None, overwrite: bool = False
) -> Path:
    """Write depth in the format given by the suffix.

    Suffixes: ``.npy``, ``.png`` (16-bit, needs ``scale``), ``.tif``/``.tiff`` (float32),
    ``.pfm``, ``.exr`` (needs OpenEXR).
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        return write_depth_npy(path, depth, overwrite=overwrite)
    if suffix == ".png":
        if scale is None:
            raise ValueError(f"writing 16-bit PNG depth {path} needs a scale (e.g. 1000 for mm)")
        return write_depth_png16(path, depth, scale, overwrite=overwrite)
    if suffix in (".tif", ".tiff"):
        return write_depth_tiff(path, depth, overwrite=overwrite)
    if suffix == ".pfm":
        return write_pfm(path, depth, overwrite=overwrite)
    if suffix == ".exr":
        return write_exr(path, depth, overwrite=overwrite)
    raise ValueError(f"cannot write depth to {path}: suffix {suffix!r} is not .npy, .png, .tif, .pfm or .exr")


def write_image(
    path: str | os.PathLike, rgb: np.ndarray, *, overwrite: bool = False, marker: str | None = None
) -> Path:
    """Write a ``uint8 [H, W, 3]`` picture (format from the suffix, e.g. .png, .jpg).

    ``marker``: mark a PNG as a depthlab result (see :func:`write_depth_png16`).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"`rgb` must be uint8 [H, W, 3]; got {rgb.dtype} {rgb.shape}")
    image = Image.fromarray(rgb)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write an image to {path}: unknown suffix")
    if fmt == "PNG":
        return atomic_write(path, lambda tmp: _save_png(image, tmp, marker), overwrite=overwrite)
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt), overwrite=overwrite)


def write_mask(
    path: str | os.PathLike, known_mask: Any, *, convention: str = "known", overwrite: bool = False
) -> Path:
    """Write a boolean ``[H, W]`` known mask as a black/white 8-bit PNG (or ``.npy`` of bools).

    ``convention="known"``: white (255) = known; ``"fill"`` (original DepthLab): white = to fill.
    :func:`read_mask` with the same convention reads it back exactly.
    """
    if convention not in ("known", "fill"):
        raise ValueError(f"`convention` must be 'known' or 'fill'; got {convention!r}")
    mask = resolve_known_mask(known_mask, None)
    stored = mask if convention == "known" else ~mask
    if Path(path).suffix.lower() == ".npy":

        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, stored)

        return atomic_write(path, write_npy, overwrite=overwrite)
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"cannot write a mask to {path}: use .png or .npy (lossless)")
    image = Image.fromarray(stored.astype(np.uint8) * 255)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), overwrite=overwrite)


def write_color(
    path: str | os.PathLike,
    depth: Any,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "Spectral",
    colorbar: bool = False,
    unit: str = "",
    overwrite: bool = False,
    marker: str | None = None,
) -> Path:
    """Write a colourised depth PNG (fixed range ``vmin``/``vmax`` or per-image percentiles).

    With ``colorbar=True`` a labelled colour bar (``unit`` under it) is appended on the right.
    """
    from depthlab import visualize

    array = to_depth_array(depth)
    if vmin is None or vmax is None:
        lo, hi = visualize.depth_range(array)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    rgb = visualize.colorize(array, vmin=vmin, vmax=vmax, cmap=cmap)
    if colorbar:
        rgb = visualize.add_colorbar(rgb, vmin, vmax, cmap=cmap, label=unit)
    return write_image(path, rgb, overwrite=overwrite, marker=marker)


def write_panel(
    path: str | os.PathLike,
    rgb: np.ndarray,
    input_depth: Any,
    known_mask: Any,
    completed: Any,
    *,
    gt: Any = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "Spectral",
    colorbar: bool = True,
    unit: str = "",
    caption: str = "",
    overwrite: bool = False,
    marker: str | None = None,
) -> Path:
    """Write a side-by-side panel: RGB | input depth (holes marked) | completed [| |error| vs ``gt``].

    Sparse known pixels are drawn as small discs so they are visible; ``colorbar`` (default on)
    appends the shared depth colour bar labelled with ``unit``; ``caption`` is a line under the
    tiles (see :func:`panel_caption`). See :func:`depthlab.visualize.panel`.
    """
    from depthlab import visualize

    completed = to_depth_array(completed, "completed")
    error = None
    if gt is not None:
        error = visualize.error_map(completed, to_depth_array(gt, "gt"))
    picture = visualize.panel(
        np.asarray(rgb, np.uint8),
        to_depth_array(input_depth, "input_depth"),
        resolve_known_mask(known_mask, None),
        completed,
        error=error,
        vmin=vmin,
        vmax=vmax,
        cmap=cmap,
        colorbar=colorbar,
        unit=unit,
        caption=caption,
    )
    return write_image(path, picture, overwrite=overwrite, marker=marker)


def panel_caption(method: str, known_mask: Any, seconds: float | None = None) -> str:
    """``"guided | known 0.16 % (500 of 307200 px) | 0.89 s"``: the caption of a result panel."""
    known = resolve_known_mask(known_mask, None)
    parts = [method, f"known {100.0 * known.mean():.3g} % ({int(known.sum())} of {known.size} px)"]
    if seconds is not None:
        parts.append(f"{seconds:.2f} s")
    return " | ".join(parts)


def describe_known_depth(
    depth: Any, known_mask: Any = None, *, scale: float | None = None, unit: str = ""
) -> str:
    """``"known depth 0.71-9.98 m after /1000 (500 of 307200 px, 0.16 %)"``: what was read.

    Args:
        depth: ``[H, W]`` depth as read (after the scale).
        known_mask: known pixels; None -> finite and > 0.
        scale: the divisor that was applied (shown as ``after /scale``), None = none.
        unit: unit label, e.g. ``"m"``.
    """
    array = to_depth_array(depth)
    known = resolve_known_mask(known_mask, None) if known_mask is not None else None
    if known is None:
        known = np.isfinite(array) & (array > 0)
    values = array[known]
    unit_text = f" {unit}" if unit else ""
    after = f" after /{scale:g}" if scale is not None else ""
    if values.size == 0:
        return f"known depth: none{after}"
    fraction = 100.0 * values.size / array.size
    low, high = (
        f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}" for v in (float(values.min()), float(values.max()))
    )
    return f"known depth {low}-{high}{unit_text}{after} ({values.size} of {array.size} px, {fraction:.3g} %)"


# kept for callers that want to read a CSV manifest with the same rules as the CLI
def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a CSV manifest with a header line.

    Columns: ``image`` (required), ``depth``, ``mask``, ``points`` and ``out`` (optional).

    Relative paths are resolved against the manifest's folder.
    """
    path = _check_path(path, "manifest")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "image" not in reader.fieldnames:
            raise ValueError(f"manifest {path} needs a header line with at least an 'image' column")
        rows = []
        for row in reader:
            entry = {}
            for k, v in row.items():
                if k is None or v is None or not v.strip():
                    continue
                k = k.strip()
                v = v.strip()
                if k in ("image", "depth", "mask", "points") and not os.path.isabs(v):
                    v = str(path.parent / v)
                entry[k] = v
            if entry.get("image"):
                rows.append(entry)
    return rows
