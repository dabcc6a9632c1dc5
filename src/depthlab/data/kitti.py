"""KITTI: Eigen split (annotated depth), depth-completion ``val_selection_cropped``, object LiDAR.

* ``kitti`` (alias ``kitti_eigen``) -- Marigold's ``kitti_eigen_split_test`` folder or ``.tar``
  with ``eigen_test_files_with_gt.txt`` (lines ``rgb gt [focal]``, e.g.
  ``2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png
  2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png 721.5377``; lines with
  GT ``None`` are skipped). GT: annotated depth, uint16 / 256 = m; valid 1e-5 < d < 80 m.
  ``kb_crop=True`` crops every array to the KITTI benchmark size 352x1216 (bottom rows, centred
  columns); ``eval_crop`` = ``"eigen"`` (default, Marigold), ``"garg"`` or None, as fractions of
  the (cropped) frame: Garg rows 0.40810811H:0.99189189H, cols 0.03594771W:0.96405229W; Eigen rows
  0.3324324H:0.91351351H, cols 0.0359477W:0.96405229W.
* ``kitti_dc`` -- the depth-completion ``depth_selection/val_selection_cropped`` layout: folders
  ``image/``, ``velodyne_raw/``, ``groundtruth_depth/``, ``intrinsics/`` whose file names differ
  only in the folder word (``<drive>_image_<frame>_image_0X.png``,
  ``<drive>_velodyne_raw_<frame>_image_0X.png``, ``<drive>_groundtruth_depth_<frame>_image_0X.png``,
  ``<drive>_image_<frame>_image_0X.txt`` with the 9 numbers of K). 352x1216, uint16 / 256 = m;
  ``velodyne_raw`` is the ``known_depth`` (use protocol ``sensor``). Valid: GT > 0 (the benchmark
  scores every GT pixel).
* ``kitti_object`` -- KITTI object ``training/`` layout: ``image_2/NNNNNN.png``,
  ``velodyne/NNNNNN.bin`` (float32 x, y, z, reflectance), ``calib/NNNNNN.txt`` (``P2``,
  ``R0_rect``, ``Tr_velo_to_cam``). The raw scan is projected with
  ``P2 @ R0_rect @ Tr_velo_to_cam`` into a sparse depth map that serves as GT (nearest return per
  pixel, depth = third projected coordinate, valid 1e-3 < d < 80 m). Use a LiDAR-holdout protocol,
  e.g. ``ratio:90``: 90 % of the projected points are given, the 10 % held out are scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthlab.data.base import DepthDataset, SampleRef
from depthlab.data.registry import register_dataset

__all__ = [
    "KITTIEigenDataset",
    "KITTIDepthCompletionDataset",
    "KITTIObjectDataset",
    "read_kitti_calib",
    "project_velodyne",
    "kb_crop_box",
    "kitti_eval_region",
]

KB_CROP_HEIGHT, KB_CROP_WIDTH = 352, 1216
_EVAL_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def kb_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """KITTI benchmark crop ``(top, left, 352, 1216)``: bottom rows, centred columns."""
    if height < KB_CROP_HEIGHT or width < KB_CROP_WIDTH:
        raise ValueError(f"KITTI benchmark crop needs at least 352x1216; got {height}x{width}")
    return height - KB_CROP_HEIGHT, (width - KB_CROP_WIDTH) // 2, KB_CROP_HEIGHT, KB_CROP_WIDTH


def kitti_eval_region(height: int, width: int, crop: str | None) -> np.ndarray | None:
    """Garg or Eigen evaluation region (bool ``[H, W]``), or None for ``crop=None``."""
    if crop is None:
        return None
    if crop not in _EVAL_CROPS:
        raise ValueError(f"`eval_crop` must be 'garg', 'eigen' or None; got {crop!r}")
    top, bottom, left, right = _EVAL_CROPS[crop]
    region = np.zeros((height, width), dtype=bool)
    region[int(top * height) : int(bottom * height), int(left * width) : int(right * width)] = True
    return region


def _read_kitti_png(dataset: DepthDataset, rel_path: str) -> np.ndarray:
    return dataset.read_image(rel_path).astype(np.float32) / 256.0


@register_dataset("kitti", "kitti_eigen")
class KITTIEigenDataset(DepthDataset):
    min_depth = 1e-5
    max_depth = 80.0

    def __init__(
        self,
        root: str | Path,
        *,
        kb_crop: bool = True,
        eval_crop: str | None = "eigen",
        **kwargs: Any,
    ) -> None:
        if eval_crop is not None and eval_crop not in _EVAL_CROPS:
            raise ValueError(f"`eval_crop` must be 'garg', 'eigen' or None; got {eval_crop!r}")
        self.kb_crop = bool(kb_crop)
        self.eval_crop = eval_crop
        super().__init__(root, **kwargs)

    def list_samples(self) -> list[SampleRef]:
        refs = []
        for row in self._split_rows(default="eigen_test_files_with_gt.txt"):
            if len(row) < 2 or row[1] == "None":
                continue
            extra = {"focal": float(row[2])} if len(row) > 2 else {}
            refs.append(SampleRef(str(Path(row[0]).with_suffix("")), {"rgb": row[0], "depth": row[1]}, extra))
        return refs

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        return _read_kitti_png(self, ref.paths["depth"])

    def load_intrinsics(self, ref: SampleRef) -> np.ndarray | None:
        return None  # only the focal length is in the split file (info["focal"])

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        return kb_crop_box(height, width) if self.kb_crop else None

    def eval_region(self, height: int, width: int) -> np.ndarray | None:
        return kitti_eval_region(height, width, self.eval_crop)


@register_dataset("kitti_dc")
class KITTIDepthCompletionDataset(DepthDataset):
    min_depth = 1e-3
    max_depth = float("inf")

    def _base(self) -> Path:
        for candidate in (
            self.root,
            self.root / "val_selection_cropped",
            self.root / "depth_selection" / "val_selection_cropped",
        ):
            if (candidate / "image").is_dir():
                return candidate
        raise FileNotFoundError(f"no image/ folder in {self.root} (val_selection_cropped layout)")

    def list_samples(self) -> list[SampleRef]:
        base = self._base()
        refs = []
        for image_path in sorted((base / "image").glob("*.png")):
            name = image_path.name
            if "_image_" not in name:
                continue
            paths = {
                "rgb": image_path,
                "known": base / "velodyne_raw" / name.replace("_image_", "_velodyne_raw_", 1),
                "depth": base / "groundtruth_depth" / name.replace("_image_", "_groundtruth_depth_", 1),
                "intrinsics": base / "intrinsics" / (image_path.stem + ".txt"),
            }
            if not paths["depth"].is_file():
                continue
            refs.append(self.sample_ref(image_path.stem, paths))
        return refs

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        return _read_kitti_png(self, ref.paths["depth"])

    def load_known_depth(self, ref: SampleRef) -> np.ndarray | None:
        if not self.exists(ref.paths["known"]):
            return None
        return _read_kitti_png(self, ref.paths["known"])

    def load_intrinsics(self, ref: SampleRef) -> np.ndarray | None:
        if not self.exists(ref.paths["intrinsics"]):
            return None
        values = np.array(self.read_bytes(ref.paths["intrinsics"]).decode().split(), dtype=np.float64)
        if values.size != 9:
            raise ValueError(f"{ref.paths['intrinsics']}: expected 9 numbers (3x3 K); got {values.size}")
        return values.reshape(3, 3)


def read_kitti_calib(text: str) -> dict[str, np.ndarray]:
    """Parse a KITTI object calib file into ``{name: matrix}``.

    ``P2`` ``[3, 4]``, ``R0_rect`` ``[3, 3]``, ``Tr_velo_to_cam`` ``[3, 4]`` (required) and any other
    matrices it holds.
    """
    calib: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, values = line.split(":", 1)
        numbers = np.array(values.split(), dtype=np.float64)
        if numbers.size == 12:
            calib[key.strip()] = numbers.reshape(3, 4)
        elif numbers.size == 9:
            calib[key.strip()] = numbers.reshape(3, 3)
    for key in ("P2", "R0_rect", "Tr_velo_to_cam"):
        if key not in calib:
            raise ValueError(f"KITTI calib is missing {key!r}")
    return calib


def project_velodyne(
    points: np.ndarray,
    calib: dict[str, np.ndarray],
    height: int,
    width: int,
    min_depth: float = 1e-3,
) -> np.ndarray:
    """Project LiDAR points ``[N, >=3]`` (velodyne frame) into a sparse depth map ``[H, W]``.

    ``x_img = P2 @ [R0_rect @ Tr_velo_to_cam @ [x; 1]; 1]``; pixel ``(round(u), round(v))`` with
    ``u = x_img[0] / x_img[2]``, ``v = x_img[1] / x_img[2]``, depth ``x_img[2]``. Points with depth
    <= ``min_depth`` or outside the image are dropped; when several land on one pixel the
    nearest is kept. Empty pixels are 0.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"`points` must be [N, 3+]; got shape {points.shape}")
    homogeneous = np.concatenate([points[:, :3], np.ones((points.shape[0], 1))], axis=1)  # [N, 4]
    rect = calib["R0_rect"] @ (calib["Tr_velo_to_cam"] @ homogeneous.T)  # [3, N]
    image = calib["P2"] @ np.concatenate([rect, np.ones((1, rect.shape[1]))], axis=0)  # [3, N]
    depth = image[2]
    in_front = depth > min_depth
    u = np.round(image[0, in_front] / depth[in_front]).astype(np.int64)
    v = np.round(image[1, in_front] / depth[in_front]).astype(np.int64)
    depth = depth[in_front]
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v, depth = u[inside], v[inside], depth[inside]
    order = np.argsort(-depth, kind="stable")  # far first, so the nearest is written last
    depth_map = np.zeros((height, width), dtype=np.float32)
    depth_map[v[order], u[order]] = depth[order]
    return depth_map


@register_dataset("kitti_object")
class KITTIObjectDataset(DepthDataset):
    min_depth = 1e-3
    max_depth = 80.0

    def _base(self) -> Path:
        for candidate in (
            self.root,
            self.root / "training",
            self.root / "object" / "training",
            self.root / "data" / "object" / "training",
        ):
            if (candidate / "image_2").is_dir() and (candidate / "velodyne").is_dir():
                return candidate
        raise FileNotFoundError(f"no image_2/ and velodyne/ folders under {self.root}")

    def list_samples(self) -> list[SampleRef]:
        base = self._base()
        refs = []
        for image_path in sorted((base / "image_2").glob("*.png")):
            frame = image_path.stem
            scan = base / "velodyne" / f"{frame}.bin"
            calib = base / "calib" / f"{frame}.txt"
            if scan.is_file() and calib.is_file():
                paths = {"rgb": image_path, "velodyne": scan, "calib": calib}
                refs.append(self.sample_ref(frame, paths))
        return refs

    def _calib(self, ref: SampleRef) -> dict[str, np.ndarray]:
        return read_kitti_calib(self.read_bytes(ref.paths["calib"]).decode())

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        with_size = self.read_image(ref.paths["rgb"])
        height, width = with_size.shape[:2]
        scan = np.frombuffer(self.read_bytes(ref.paths["velodyne"]), dtype=np.float32).reshape(-1, 4)
        return project_velodyne(scan, self._calib(ref), height, width, min_depth=self.min_depth)

    def load_intrinsics(self, ref: SampleRef) -> np.ndarray | None:
        return self._calib(ref)["P2"][:, :3].copy()
