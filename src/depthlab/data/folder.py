"""Generic folder dataset: ``rgb/`` + ``depth/`` (+ optional ``mask/`` and ``known/``).

Layout (file stems must match; the stem is the sample id)::

    root/rgb/<id>.png|jpg|jpeg|bmp|tif|tiff
    root/depth/<id>.png|npy|tif|tiff|pfm      ground truth; value / depth_scale = metres
    root/mask/<id>.png|npy                    optional GT validity (non-zero = valid)
    root/known/<id>.png|npy|tif|tiff          optional partial input depth (same scale), 0 = none

``depth_scale`` divides the stored values (1000 for millimetre PNGs, 256 for KITTI PNGs, 1 for
float metres). Valid GT: mask (if any) & ``min_depth < d < max_depth`` (defaults 1e-3, inf).
A split file (one id or one ``rgb`` relative path per line) restricts and orders the samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthlab.data.base import DepthDataset, SampleRef
from depthlab.data.registry import register_dataset

__all__ = ["FolderDataset"]

_RGB_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_DEPTH_EXTENSIONS = (".npy", ".png", ".tif", ".tiff", ".pfm")


def _read_pfm(data: bytes) -> np.ndarray:
    header, _, rest = data.partition(b"\n")
    dims, _, rest = rest.partition(b"\n")
    scale_line, _, body = rest.partition(b"\n")
    if header.strip() not in (b"Pf", b"PF"):
        raise ValueError("not a PFM file")
    width, height = (int(v) for v in dims.split())
    scale = float(scale_line)
    channels = 3 if header.strip() == b"PF" else 1
    dtype = "<f4" if scale < 0 else ">f4"
    array = np.frombuffer(body, dtype=dtype, count=width * height * channels)
    array = array.reshape(height, width, channels)[..., 0]
    return np.flipud(array).astype(np.float32)


@register_dataset("folder")
class FolderDataset(DepthDataset):
    min_depth = 1e-3
    max_depth = float("inf")

    def __init__(
        self,
        root: str | Path,
        *,
        depth_scale: float = 1.0,
        rgb_dir: str = "rgb",
        depth_dir: str = "depth",
        mask_dir: str = "mask",
        known_dir: str = "known",
        intrinsics: tuple[float, float, float, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not depth_scale or float(depth_scale) <= 0:
            raise ValueError(f"`depth_scale` must be > 0; got {depth_scale!r}")
        self.depth_scale = float(depth_scale)
        self.dirs = {"rgb": rgb_dir, "depth": depth_dir, "mask": mask_dir, "known": known_dir}
        self.default_intrinsics = tuple(intrinsics) if intrinsics is not None else None
        super().__init__(root, **kwargs)

    def _find(self, role: str, stem: str, extensions: tuple[str, ...]) -> Path | None:
        folder = self.root / self.dirs[role]
        for extension in extensions:
            path = folder / f"{stem}{extension}"
            if path.is_file():
                return path
        return None

    def list_samples(self) -> list[SampleRef]:
        rgb_folder = self.root / self.dirs["rgb"]
        if not rgb_folder.is_dir():
            raise FileNotFoundError(f"folder dataset needs {rgb_folder}/ (and {self.dirs['depth']}/)")
        if self.split_file is not None:
            stems = [Path(row[0]).stem for row in self._split_rows()]
        else:
            stems = sorted({p.stem for p in rgb_folder.iterdir() if p.suffix.lower() in _RGB_EXTENSIONS})
        refs = []
        for stem in stems:
            rgb = self._find("rgb", stem, _RGB_EXTENSIONS)
            depth = self._find("depth", stem, _DEPTH_EXTENSIONS)
            if rgb is None or depth is None:
                continue
            paths = {"rgb": rgb, "depth": depth}
            for role, extensions in (("mask", (".png", ".npy")), ("known", _DEPTH_EXTENSIONS)):
                found = self._find(role, stem, extensions)
                if found is not None:
                    paths[role] = found
            refs.append(self.sample_ref(stem, paths))
        return refs

    def _read_array(self, rel_path: str) -> np.ndarray:
        suffix = Path(rel_path).suffix.lower()
        if suffix == ".npy":
            array = self.read_npy(rel_path)
        elif suffix == ".pfm":
            array = _read_pfm(self.read_bytes(rel_path))
        else:
            array = self.read_image(rel_path)
        array = np.squeeze(np.asarray(array))
        if array.ndim != 2:
            raise ValueError(f"{rel_path}: expected a single-channel [H, W] map; got shape {array.shape}")
        return array

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        return self._read_array(ref.paths["depth"]).astype(np.float32) / self.depth_scale

    def load_valid_mask(self, ref: SampleRef, depth: np.ndarray) -> np.ndarray:
        valid = super().load_valid_mask(ref, depth)
        if "mask" in ref.paths:
            valid &= self._read_array(ref.paths["mask"]) != 0
        return valid

    def load_known_depth(self, ref: SampleRef) -> np.ndarray | None:
        if "known" not in ref.paths:
            return None
        return self._read_array(ref.paths["known"]).astype(np.float32) / self.depth_scale
