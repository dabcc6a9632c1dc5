"""LiDAR scans and KITTI calibration -> sparse depth images.

KITTI layouts read here:

* **object** (``training/calib/NNNNNN.txt``): ``P2`` ``[3, 4]``, ``R0_rect`` ``[3, 3]``,
  ``Tr_velo_to_cam`` ``[3, 4]`` (also accepted under the names ``R_rect`` and ``Tr_velo_cam``
  used by the tracking benchmark).
* **raw** (``<date>/calib_cam_to_cam.txt`` + ``<date>/calib_velo_to_cam.txt``):
  ``P_rect_02``, ``R_rect_00`` (and ``S_rect_02``, the image size) + ``R``, ``T``.

A velodyne point ``X`` (metres, x forward, y left, z up) goes to the rectified camera-2 frame as
``X_cam = velo_to_cam @ X`` with ``velo_to_cam = [I | K^-1 P2[:, 3]] @ R0_rect @ Tr_velo_to_cam``
(``P2 = K [I | t]``), so that ``K X_cam = P2 [R0_rect Tr_velo_to_cam X; 1]``: the projection is
the usual ``P2 @ R0_rect @ Tr_velo_to_cam`` and the depth is its third coordinate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depthlab.geometry.camera import Camera
from depthlab.geometry.points import project

__all__ = [
    "KittiCalibration",
    "parse_kitti_calib",
    "read_kitti_calib",
    "read_kitti_raw_calib",
    "parse_velodyne",
    "read_velodyne",
    "scan_to_depth",
]

_OBJECT_KEYS = {
    "P2": ("P2",),
    "R0_rect": ("R0_rect", "R_rect"),
    "Tr_velo_to_cam": ("Tr_velo_to_cam", "Tr_velo_cam"),
}


@dataclass(frozen=True)
class KittiCalibration:
    """The three matrices that take a velodyne scan into camera 2's image.

    Attributes:
        P2: float64 ``[3, 4]`` rectified projection of camera 2.
        R0_rect: float64 ``[3, 3]`` rectifying rotation of camera 0.
        Tr_velo_to_cam: float64 ``[3, 4]`` velodyne -> (unrectified) camera 0.
        image_size: ``(width, height)`` when the file states it (raw layout ``S_rect_02``), else None.
        source: the file(s) it was read from, for error messages.
    """

    P2: np.ndarray
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray
    image_size: tuple[int, int] | None = None
    source: str = "calibration"

    def camera(self, width: int, height: int) -> Camera:
        """Camera-2 intrinsics for an image of ``width x height`` pixels."""
        if self.image_size is not None:
            Camera.from_kitti_p2(self.P2, *self.image_size).check_size(width, height, self.source)
        return Camera.from_kitti_p2(self.P2, width, height)

    @property
    def velo_to_cam(self) -> np.ndarray:
        """4x4 transform velodyne -> rectified camera-2 frame (see the module docstring)."""
        K = self.P2[:, :3]  # noqa: N806
        to_cam2 = np.eye(4)
        to_cam2[:3, 3] = np.linalg.solve(K, self.P2[:, 3])
        rect = np.eye(4)
        rect[:3, :3] = self.R0_rect
        velo = np.eye(4)
        velo[:3, :] = self.Tr_velo_to_cam
        return to_cam2 @ rect @ velo


def _numbers_by_key(text: str) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, rest = line.split(":", 1)
        try:
            values[key.strip()] = np.array(rest.split(), dtype=np.float64)
        except ValueError:  # e.g. "calib_time: 15-Mar-2012 11:37:16"
            continue
    return values


def _matrix(
    values: dict[str, np.ndarray], names: tuple[str, ...], shape: tuple[int, int], source: str
) -> np.ndarray:
    for name in names:
        if name in values:
            numbers = values[name]
            if numbers.size != shape[0] * shape[1]:
                raise ValueError(
                    f"{source}: {name!r} has {numbers.size} numbers; expected {shape[0] * shape[1]}"
                )
            return numbers.reshape(shape)
    raise ValueError(f"{source}: KITTI calibration is missing {names[0]!r}")


def parse_kitti_calib(text: str, source: str = "KITTI calib") -> KittiCalibration:
    """Parse an object-layout calib file's text (``P2``, ``R0_rect``, ``Tr_velo_to_cam``).

    Raises:
        ValueError: a key is missing or has the wrong number of values (names ``source`` and the key).
    """
    values = _numbers_by_key(text)
    return KittiCalibration(
        P2=_matrix(values, _OBJECT_KEYS["P2"], (3, 4), source),
        R0_rect=_matrix(values, _OBJECT_KEYS["R0_rect"], (3, 3), source),
        Tr_velo_to_cam=_matrix(values, _OBJECT_KEYS["Tr_velo_to_cam"], (3, 4), source),
        source=source,
    )


def _read_text(path: str | os.PathLike, what: str) -> tuple[str, Path]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return path.read_text(), path
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {what} {path}: {error}") from None


def read_kitti_calib(path: str | os.PathLike) -> KittiCalibration:
    """Read a calibration: an object-layout ``.txt`` file, or a raw-layout date folder / cam_to_cam file.

    A folder (or a ``calib_cam_to_cam.txt``) is read with :func:`read_kitti_raw_calib`.
    """
    path = Path(path)
    if path.is_dir() or path.name == "calib_cam_to_cam.txt":
        folder = path if path.is_dir() else path.parent
        return read_kitti_raw_calib(folder / "calib_cam_to_cam.txt", folder / "calib_velo_to_cam.txt")
    text, path = _read_text(path, "calibration")
    return parse_kitti_calib(text, source=str(path))


def read_kitti_raw_calib(
    cam_to_cam: str | os.PathLike, velo_to_cam: str | os.PathLike, camera: int = 2
) -> KittiCalibration:
    """Read the raw-data layout: ``calib_cam_to_cam.txt`` + ``calib_velo_to_cam.txt``.

    Args:
        cam_to_cam: file with ``P_rect_0<camera>``, ``R_rect_00`` (and ``S_rect_0<camera>``).
        velo_to_cam: file with ``R`` (9 numbers) and ``T`` (3).
        camera: which rectified camera (2 = left colour, 3 = right colour).
    """
    cam_text, cam_path = _read_text(cam_to_cam, "calib_cam_to_cam")
    velo_text, velo_path = _read_text(velo_to_cam, "calib_velo_to_cam")
    cam_values = _numbers_by_key(cam_text)
    velo_values = _numbers_by_key(velo_text)
    projection = _matrix(cam_values, (f"P_rect_0{camera}",), (3, 4), str(cam_path))
    rect = _matrix(cam_values, ("R_rect_00",), (3, 3), str(cam_path))
    rotation = _matrix(velo_values, ("R",), (3, 3), str(velo_path))
    translation = _matrix(velo_values, ("T",), (3, 1), str(velo_path))
    size = cam_values.get(f"S_rect_0{camera}")
    image_size = (int(round(size[0])), int(round(size[1]))) if size is not None and size.size == 2 else None
    return KittiCalibration(
        P2=projection,
        R0_rect=rect,
        Tr_velo_to_cam=np.hstack([rotation, translation]),
        image_size=image_size,
        source=f"{cam_path} + {velo_path}",
    )


def parse_velodyne(data: bytes, source: str = "velodyne scan") -> np.ndarray:
    """Decode a KITTI velodyne ``.bin`` (float32 little-endian ``x, y, z, reflectance``) -> ``[N, 4]``."""
    if len(data) % 16:
        raise ValueError(
            f"{source}: {len(data)} bytes is not a whole number of points "
            "(a KITTI velodyne .bin holds float32 x, y, z, reflectance = 16 bytes per point)"
        )
    return np.frombuffer(data, dtype="<f4").reshape(-1, 4).astype(np.float32)


def read_velodyne(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI velodyne ``.bin`` scan as float32 ``[N, 4]`` (see :func:`parse_velodyne`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"velodyne scan not found: {path}")
    return parse_velodyne(path.read_bytes(), source=str(path))


def scan_to_depth(
    scan: Any,
    calib: KittiCalibration,
    width: int,
    height: int,
    min_depth: float = 1e-3,
    max_depth: float = np.inf,
    return_index: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Project a LiDAR scan into camera 2 as a sparse depth image.

    Args:
        scan: ``[N, >=3]`` velodyne points (extra columns such as reflectance are ignored).
        calib: :class:`KittiCalibration`.
        width: image width in pixels.
        height: image height in pixels.
        min_depth: points with depth ``<= min_depth`` (behind the camera) are dropped.
        max_depth: points with depth ``> max_depth`` are dropped.
        return_index: also return the index of the scan point behind each pixel (-1 = none).

    Returns:
        float32 ``[H, W]`` depth in metres, 0 where no point lands; the nearest point wins each
        pixel (ties: the lower scan index), via :func:`depthlab.geometry.project`.
    """
    scan = np.asarray(scan)
    if scan.ndim != 2 or scan.shape[1] < 3:
        raise ValueError(f"`scan` must be [N, 3+] points; got shape {scan.shape}")
    xyz = scan[:, :3].astype(np.float64) @ calib.velo_to_cam[:3, :3].T + calib.velo_to_cam[:3, 3]
    if np.isfinite(max_depth):
        xyz[xyz[:, 2] > max_depth] = np.nan
    depth, index = project(xyz, calib.camera(width, height), min_depth=min_depth)
    return (depth, index) if return_index else depth
