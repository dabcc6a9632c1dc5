"""Pinhole camera intrinsics and rigid poses (conventions: :mod:`depthlab.geometry`)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Camera", "load_camera", "load_pose", "check_rigid", "invert_pose"]


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}")
    return value


def _size(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or int(value) != value or int(value) < 1:
        raise ValueError(f"`{name}` must be a positive integer (pixels); got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics of an image of ``width x height`` pixels (OpenCV convention).

    Attributes:
        fx, fy: focal lengths in pixels (> 0).
        cx, cy: principal point in pixels (the top-left pixel's centre is (0, 0)).
        width, height: image size in pixels the intrinsics belong to.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "fx", _positive(self.fx, "fx"))
        object.__setattr__(self, "fy", _positive(self.fy, "fy"))
        for name in ("cx", "cy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"`{name}` must be finite; got {value!r}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "width", _size(self.width, "width"))
        object.__setattr__(self, "height", _size(self.height, "height"))

    # ------------------------------------------------------------------ constructors
    @property
    def K(self) -> np.ndarray:  # noqa: N802 (the standard name)
        """The 3x3 intrinsic matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @classmethod
    def from_K(cls, K: Any, width: int, height: int) -> Camera:  # noqa: N803
        """From a 3x3 intrinsic matrix (zero skew, last row ``[0, 0, 1]``)."""
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"`K` must be a 3x3 matrix; got shape {K.shape}")
        if abs(K[0, 1]) > 1e-9 * abs(K[0, 0]) or not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
            raise ValueError(f"`K` must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew); got {K.tolist()}")
        return cls(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height)

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float, axis: str = "horizontal") -> Camera:
        """Square pixels, principal point at the image centre ``((W-1)/2, (H-1)/2)``.

        Args:
            width: image width in pixels.
            height: image height in pixels.
            fov_deg: full field of view in degrees, (0, 180), along ``axis``.
            axis: ``"horizontal"`` (across the width), ``"vertical"`` or ``"diagonal"``.
        """
        fov = float(fov_deg)
        if not 0 < fov < 180:
            raise ValueError(f"`fov_deg` must be in (0, 180) degrees; got {fov_deg!r}")
        extent = {"horizontal": width, "vertical": height, "diagonal": math.hypot(width, height)}
        if axis not in extent:
            raise ValueError(f"`axis` must be 'horizontal', 'vertical' or 'diagonal'; got {axis!r}")
        focal = extent[axis] / 2.0 / math.tan(math.radians(fov) / 2.0)
        return cls(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_kitti_p2(cls, P2: Any, width: int, height: int) -> Camera:  # noqa: N803
        """The intrinsics of a KITTI rectified projection matrix ``P2 = K [I | t]`` (``[3, 4]``).

        The translation ``t = K^-1 P2[:, 3]`` (camera 2 relative to the rectified camera 0) is
        not part of the intrinsics; :class:`depthlab.geometry.KittiCalibration` applies it.
        """
        P2 = np.asarray(P2, dtype=np.float64)
        if P2.shape != (3, 4):
            raise ValueError(f"`P2` must be a 3x4 projection matrix; got shape {P2.shape}")
        return cls.from_K(P2[:, :3], width, height)

    # ------------------------------------------------------------------ derived cameras
    def scaled(self, sx: float, sy: float | None = None) -> Camera:
        """The intrinsics of this image resized by ``sx`` (width) and ``sy`` (height, default sx).

        With pixel centres at integer coordinates the principal point maps as
        ``c' = (c + 0.5) * s - 0.5``; the new size is ``round(width * sx) x round(height * sy)``.
        """
        sx = _positive(sx, "sx")
        sy = sx if sy is None else _positive(sy, "sy")
        return Camera(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            max(1, round(self.width * sx)),
            max(1, round(self.height * sy)),
        )

    def resized(self, width: int, height: int) -> Camera:
        """The intrinsics after resizing the image to ``width x height`` pixels."""
        return self.scaled(_size(width, "width") / self.width, _size(height, "height") / self.height)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> Camera:
        """The intrinsics of the crop ``[y0:y0+height, x0:x0+width]`` (must lie inside the image)."""
        x0, y0 = int(x0), int(y0)
        width, height = _size(width, "width"), _size(height, "height")
        if x0 < 0 or y0 < 0 or x0 + width > self.width or y0 + height > self.height:
            raise ValueError(
                f"crop x0={x0}, y0={y0}, {width}x{height} does not fit in the {self.width}x{self.height} image"
            )
        return Camera(self.fx, self.fy, self.cx - x0, self.cy - y0, width, height)

    def check_size(self, width: int, height: int, name: str = "intrinsics") -> None:
        """Raise a one-line ValueError naming ``name`` unless these intrinsics are for ``width x height``."""
        if (int(width), int(height)) != (self.width, self.height):
            raise ValueError(
                f"{name}: the intrinsics are for a {self.width}x{self.height} image but the image is "
                f"{int(width)}x{int(height)} (W x H); scale or crop them to match "
                "(Camera.scaled / Camera.cropped)"
            )

    def rays(self) -> np.ndarray:
        """Per-pixel ray directions with z = 1, float64 ``[H, W, 3]``."""
        cols = (np.arange(self.width, dtype=np.float64) - self.cx) / self.fx
        rows = (np.arange(self.height, dtype=np.float64) - self.cy) / self.fy
        rays = np.empty((self.height, self.width, 3))
        rays[..., 0] = cols[None, :]
        rays[..., 1] = rows[:, None]
        rays[..., 2] = 1.0
        return rays

    def to_dict(self) -> dict[str, float | int]:
        """``{fx, fy, cx, cy, width, height}`` (the JSON layout :func:`load_camera` reads)."""
        return {
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
            "width": self.width,
            "height": self.height,
        }


# ----------------------------------------------------------------------------------------------
# reading intrinsics
# ----------------------------------------------------------------------------------------------
def _from_numbers(values: np.ndarray, where: str, width: int | None, height: int | None) -> Camera:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 6:  # fx fy cx cy width height
        cam = Camera(*values[:4], int(values[4]), int(values[5]))
        if width is not None and height is not None:
            cam.check_size(width, height, where)
        return cam
    if width is None or height is None:
        raise ValueError(f"{where}: the image size is needed to build the camera (give width and height)")
    if values.size == 4:
        return Camera(*values, width, height)
    if values.size == 9:
        try:
            return Camera.from_K(values.reshape(3, 3), width, height)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    if values.size == 12:  # a 3x4 projection matrix (KITTI P2 style)
        return Camera.from_kitti_p2(values.reshape(3, 4), width, height)
    raise ValueError(
        f"{where}: expected fx,fy,cx,cy (4 numbers), a 3x3 K (9) or a 3x4 P (12); got {values.size} numbers"
    )


def _from_json(data: Any, where: str, width: int | None, height: int | None) -> Camera:
    if isinstance(data, list):
        return _from_numbers(np.asarray(data, dtype=np.float64), where, width, height)
    if not isinstance(data, dict):
        raise ValueError(
            f"{where}: expected a JSON object with fx, fy, cx, cy (or K); got {type(data).__name__}"
        )
    size_w = data.get("width", width)
    size_h = data.get("height", height)
    if all(k in data for k in ("fx", "fy", "cx", "cy")):
        values = [data["fx"], data["fy"], data["cx"], data["cy"]]
    elif "K" in data or "intrinsics" in data or "cam_in" in data:
        values = data.get("K", data.get("intrinsics", data.get("cam_in")))
    else:
        raise ValueError(
            f"{where}: JSON needs keys fx, fy, cx, cy (or K); has {', '.join(sorted(data)) or 'none'}"
        )
    try:
        numbers = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: intrinsics are not numbers: {values!r}") from None
    if size_w is None or size_h is None:
        raise ValueError(f"{where}: the image size is needed (add width and height, or pass them)")
    cam = _from_numbers(numbers, where, int(size_w), int(size_h))
    if width is not None and height is not None:
        cam.check_size(width, height, where)
    return cam


def load_camera(spec: Any, width: int | None = None, height: int | None = None) -> Camera:
    """Build a :class:`Camera` from what a user has.

    Args:
        spec: a :class:`Camera`; ``"fx,fy,cx,cy"`` (or ``"fx,fy,cx,cy,width,height"``); a 3x3 K array; or a file: ``.txt`` with
            ``fx fy cx cy`` (4 numbers), 9 numbers (3x3 K) or 12 (a 3x4 P like KITTI's ``P2``),
            optionally ``fx fy cx cy width height`` (6); ``.npy`` with the same; ``.json`` with
            ``fx, fy, cx, cy[, width, height]`` or ``K``.
        width: image width in pixels (needed unless the file stores the size). When the spec
            stores a size that differs, a ValueError names the spec.
        height: image height in pixels (likewise).

    Raises:
        FileNotFoundError, ValueError (one line naming the file or value).
    """
    if isinstance(spec, Camera):
        if width is not None and height is not None:
            spec.check_size(width, height, "camera")
        return spec
    if isinstance(spec, np.ndarray):
        return _from_numbers(spec, "intrinsics array", width, height)
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(
            f"`intrinsics` must be a Camera, a 3x3 array, 'fx,fy,cx,cy' or a file; got {type(spec).__name__}"
        )
    text = str(spec)
    path = Path(text)
    if not path.is_file():
        if "," in text:
            try:
                values = np.array([float(v) for v in text.split(",")])
            except ValueError:
                raise ValueError(f"intrinsics {text!r}: not a file and not numbers 'fx,fy,cx,cy'") from None
            if values.size not in (4, 6):
                raise ValueError(
                    f"intrinsics {text!r}: expected 4 numbers 'fx,fy,cx,cy' (or 6 with ',width,height'); "
                    f"got {values.size}"
                )
            return _from_numbers(values, f"intrinsics {text!r}", width, height)
        raise FileNotFoundError(f"intrinsics file not found: {text} (or give 'fx,fy,cx,cy')")
    where = f"intrinsics file {path}"
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            values = np.load(path, allow_pickle=False)
            return _from_numbers(values, where, width, height)
        if suffix == ".json":
            return _from_json(json.loads(path.read_text()), where, width, height)
        values = np.array(path.read_text().replace(",", " ").split(), dtype=np.float64)
    except (OSError, ValueError, json.JSONDecodeError) as error:
        if isinstance(error, ValueError) and str(error).startswith(where):
            raise
        raise ValueError(f"{where}: cannot read intrinsics ({error})") from None
    return _from_numbers(values, where, width, height)


# ----------------------------------------------------------------------------------------------
# poses
# ----------------------------------------------------------------------------------------------
def check_rigid(pose: Any, name: str = "pose", atol: float = 1e-4) -> np.ndarray:
    """Return ``pose`` as a float64 4x4 rigid transform or raise a one-line ValueError naming ``name``.

    A 3x4 ``[R | t]`` gets the row ``[0, 0, 0, 1]``. Rigid: ``R^T R = I`` and ``det R = +1``
    within ``atol``, last row ``[0, 0, 0, 1]``, all finite. (Scale is not allowed: depth units
    would silently change.)
    """
    matrix = np.asarray(pose, dtype=np.float64)
    if matrix.shape == (3, 4):
        matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
    if matrix.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 (or 3x4) matrix; got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name}: the pose has non-finite entries")
    if not np.allclose(matrix[3], [0, 0, 0, 1], atol=atol):
        raise ValueError(f"{name}: the last row must be [0, 0, 0, 1]; got {matrix[3].tolist()}")
    rotation = matrix[:3, :3]
    error = float(np.abs(rotation.T @ rotation - np.eye(3)).max())
    if error > atol or np.linalg.det(rotation) < 0:
        raise ValueError(
            f"{name}: not a rigid transform (rotation part is not orthonormal with det +1: "
            f"max |R^T R - I| = {error:.3g}, det = {np.linalg.det(rotation):.3g})"
        )
    return matrix


def invert_pose(pose: Any) -> np.ndarray:
    """Inverse of a rigid 4x4 transform, ``[R^T | -R^T t]`` (exact for rigid input)."""
    matrix = check_rigid(pose)
    inverse = np.eye(4)
    inverse[:3, :3] = matrix[:3, :3].T
    inverse[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
    return inverse


def load_pose(spec: Any, name: str = "pose") -> np.ndarray:
    """Read a 4x4 camera-to-world pose from an array or a ``.npy``/``.txt`` (16 or 12 numbers) file.

    Raises:
        FileNotFoundError; ValueError naming the file when it is not a rigid 4x4/3x4 matrix.
    """
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"{name} file not found: {path}")
        try:
            if path.suffix.lower() == ".npy":
                values = np.load(path, allow_pickle=False).astype(np.float64)
            else:
                values = np.array(path.read_text().replace(",", " ").split(), dtype=np.float64)
        except (OSError, ValueError) as error:
            raise ValueError(f"{name} file {path}: cannot read a matrix ({error})") from None
        if values.size in (12, 16):
            values = values.reshape(-1, 4)
        return check_rigid(values, f"{name} file {path}")
    return check_rigid(spec, name)
