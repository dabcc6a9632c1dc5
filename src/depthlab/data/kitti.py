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
  ``P2 @ R0_rect @ Tr_velo_to_cam`` (:func:`depthlab.geometry.scan_to_depth`) into a sparse depth
  map that serves as GT (nearest return per pixel, depth = third projected coordinate, valid
  1e-3 < d < 80 m). Use a LiDAR-holdout protocol,
  e.g. ``ratio:90``: 90 % of the projected points are given, the 10 % held out are scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthlab.data.base import DepthDataset, SampleRef
from depthlab.data.registry import register_dataset
from depthlab.geometry.lidar import KittiCalibration, parse_kitti_calib, parse_velodyne, scan_to_depth

__all__ = [
    "KITTIEigenDataset",
    "KITTIDepthCompletionDataset",
    "KITTIObjectDataset",
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


@register_dataset("kitti_object")
class KITTIObjectDataset(DepthDataset):
    """KITTI object frames (module docstring); ``kb_crop=True`` crops to the 352x1216 benchmark size."""

    min_depth = 1e-3
    max_depth = 80.0

    def __init__(self, root: str | Path, *, kb_crop: bool = False, **kwargs: Any) -> None:
        self.kb_crop = bool(kb_crop)
        super().__init__(root, **kwargs)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        return kb_crop_box(height, width) if self.kb_crop else None

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

    def _calib(self, ref: SampleRef) -> KittiCalibration:
        return parse_kitti_calib(self.read_bytes(ref.paths["calib"]).decode(), source=str(ref.paths["calib"]))

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        height, width = self.read_image(ref.paths["rgb"]).shape[:2]
        scan = parse_velodyne(self.read_bytes(ref.paths["velodyne"]), source=str(ref.paths["velodyne"]))
        return scan_to_depth(scan, self._calib(ref), width, height, min_depth=self.min_depth)

    def load_intrinsics(self, ref: SampleRef) -> np.ndarray | None:
        return self._calib(ref).P2[:, :3].copy()
