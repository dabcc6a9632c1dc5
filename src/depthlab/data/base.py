"""Base class of the evaluation/training datasets: one sample = RGB + GT depth + validity.

A subclass holds only the decoding and the constants of its dataset; it overrides the hooks

* :meth:`DepthDataset.list_samples` -- which samples exist (from a split file or a folder scan),
* :meth:`DepthDataset.load_rgb`, :meth:`DepthDataset.load_depth`,
  :meth:`DepthDataset.load_valid_mask`, :meth:`DepthDataset.load_known_depth`,
  :meth:`DepthDataset.load_intrinsics` -- decoding,
* :meth:`DepthDataset.crop` -- a geometric crop applied to every array (e.g. KITTI benchmark crop),
* :meth:`DepthDataset.eval_region` -- the evaluation region (Eigen/Garg crop) AND-ed into the
  validity mask.

``root`` may be a folder or a ``.tar`` archive (Marigold's packaging); files are read through
:meth:`DepthDataset.read_bytes` either way.
"""

from __future__ import annotations

import csv
import io
import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

__all__ = ["DepthSample", "SampleRef", "DepthDataset", "read_split_file"]

logger = logging.getLogger(__name__)


@dataclass
class SampleRef:
    """Where one sample lives: its id and the relative paths of its files (by role)."""

    sample_id: str
    paths: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DepthSample:
    """One decoded sample.

    Attributes:
        sample_id: stable identifier (used to seed the masks and to name output files).
        rgb: ``uint8 [H, W, 3]``.
        depth: ground-truth depth ``float32 [H, W]`` in metres (0 where missing).
        valid_mask: ``bool [H, W]``, True where ``depth`` is usable for scoring (range, sensor
            mask and evaluation crop applied).
        known_depth: the dataset's own partial input depth (``float32 [H, W]``, metres, 0 = none),
            e.g. KITTI ``velodyne_raw``; None when the dataset has none.
        intrinsics: ``[3, 3]`` camera matrix (after cropping) or None.
        info: anything else (paths, focal length, ...).
    """

    sample_id: str
    rgb: np.ndarray
    depth: np.ndarray
    valid_mask: np.ndarray
    known_depth: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def known_mask(self) -> np.ndarray | None:
        """``known_depth > 0`` (finite), or None without ``known_depth``."""
        if self.known_depth is None:
            return None
        return np.isfinite(self.known_depth) & (self.known_depth > 0)


def read_split_file(path: str | Path) -> list[list[str]]:
    """Read a split list: one sample per line, whitespace- or comma-separated relative paths.

    Empty lines and lines starting with ``#`` are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    rows: list[list[str]] = []
    text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "," in line:
            rows.append([cell.strip() for cell in next(csv.reader([line]))])
        else:
            rows.append(line.split())
    return rows


class DepthDataset:
    """Base dataset with override hooks; see the module docstring.

    Args:
        root: dataset folder or ``.tar`` archive.
        split_file: a split list (see :func:`read_split_file`); subclasses that need one say so.
        limit: keep only the first ``limit`` samples (after sorting/split order).
        min_depth / max_depth: override the dataset's valid depth range (metres).

    Class constants a subclass sets: ``name``, ``min_depth``, ``max_depth`` (valid GT range,
    exclusive), ``intrinsics`` (default camera, or None).
    """

    name: ClassVar[str] = "base"
    min_depth: float = 1e-3
    max_depth: float = float("inf")
    default_intrinsics: ClassVar[tuple[float, float, float, float] | None] = None  # fx, fy, cx, cy

    def __init__(
        self,
        root: str | Path,
        *,
        split_file: str | Path | None = None,
        limit: int | None = None,
        min_depth: float | None = None,
        max_depth: float | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"dataset root not found: {self.root}")
        self.split_file = Path(split_file) if split_file is not None else None
        if min_depth is not None:
            self.min_depth = float(min_depth)
        if max_depth is not None:
            self.max_depth = float(max_depth)
        self._tar: tarfile.TarFile | None = None
        self._tar_names: set[str] | None = None
        refs = self.list_samples()
        if limit is not None:
            if int(limit) < 1:
                raise ValueError(f"`limit` must be >= 1; got {limit!r}")
            refs = refs[: int(limit)]
        if not refs:
            raise FileNotFoundError(
                f"no samples found for dataset {self.name!r} under {self.root}"
                + (f" with split file {self.split_file}" if self.split_file else "")
            )
        self.samples: list[SampleRef] = refs

    # ------------------------------------------------------------------ file access
    @property
    def is_tar(self) -> bool:
        return self.root.is_file() and tarfile.is_tarfile(self.root)

    def exists(self, rel_path: str) -> bool:
        """True if ``rel_path`` exists under the root (folder or tar)."""
        if self.is_tar:
            if self._tar_names is None:
                self._tar_names = {name.lstrip("./") for name in self._open_tar().getnames()}
            return rel_path.lstrip("./") in self._tar_names
        return (self.root / rel_path).is_file()

    def _open_tar(self) -> tarfile.TarFile:
        if self._tar is None:
            self._tar = tarfile.open(self.root)
        return self._tar

    def read_bytes(self, rel_path: str) -> bytes:
        """Raw bytes of a file relative to the root (folder or tar archive)."""
        if self.is_tar:
            archive = self._open_tar()
            for candidate in (rel_path, "./" + rel_path.lstrip("./")):
                try:
                    member = archive.extractfile(candidate)
                except KeyError:
                    continue
                if member is not None:
                    return member.read()
            raise FileNotFoundError(f"{rel_path!r} not found in {self.root}")
        path = self.root / rel_path
        if not path.is_file():
            raise FileNotFoundError(f"file not found: {path}")
        return path.read_bytes()

    def read_image(self, rel_path: str) -> np.ndarray:
        """Decode an image file (PNG/JPG/TIFF, any bit depth) to a numpy array, unchanged."""
        with Image.open(io.BytesIO(self.read_bytes(rel_path))) as image:
            image.load()
            return np.asarray(image).copy()

    def read_npy(self, rel_path: str) -> np.ndarray:
        return np.load(io.BytesIO(self.read_bytes(rel_path)), allow_pickle=False)

    def sample_ref(self, sample_id: str, paths: dict[str, Path]) -> SampleRef:
        """A :class:`SampleRef` whose paths are stored relative to the dataset root."""
        return SampleRef(
            sample_id, {key: str(Path(path).relative_to(self.root)) for key, path in paths.items()}
        )

    # ------------------------------------------------------------------ hooks
    def list_samples(self) -> list[SampleRef]:
        """Hook: the samples of this dataset, in a deterministic order."""
        raise NotImplementedError(f"{type(self).__name__} must implement list_samples()")

    def load_rgb(self, ref: SampleRef) -> np.ndarray:
        """Hook: ``uint8 [H, W, 3]``. Default: decode ``ref.paths['rgb']``."""
        array = self.read_image(ref.paths["rgb"])
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.dtype != np.uint8:
            array = (array.astype(np.float64) / np.iinfo(array.dtype).max * 255 + 0.5).astype(np.uint8)
        return np.ascontiguousarray(array[..., :3])

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        """Hook: GT depth ``float32 [H, W]`` in metres, 0 where missing."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_depth()")

    def load_valid_mask(self, ref: SampleRef, depth: np.ndarray) -> np.ndarray:
        """Hook: ``bool [H, W]``. Default: ``min_depth < depth < max_depth`` and finite."""
        return np.isfinite(depth) & (depth > self.min_depth) & (depth < self.max_depth)

    def load_known_depth(self, ref: SampleRef) -> np.ndarray | None:
        """Hook: the dataset's own partial input depth (metres, 0 = none) or None."""
        return None

    def load_intrinsics(self, ref: SampleRef) -> np.ndarray | None:
        """Hook: ``[3, 3]`` camera matrix of the full frame, or None."""
        if self.default_intrinsics is None:
            return None
        fx, fy, cx, cy = self.default_intrinsics
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """Hook: ``(top, left, crop_height, crop_width)`` applied to every array, or None."""
        return None

    def eval_region(self, height: int, width: int) -> np.ndarray | None:
        """Hook: ``bool [H, W]`` evaluation region (after cropping), AND-ed into the validity."""
        return None

    # ------------------------------------------------------------------ assembly
    def crop(self, sample: DepthSample) -> DepthSample:
        """Apply :meth:`crop_box` to every array of ``sample`` (and shift the intrinsics)."""
        height, width = sample.depth.shape
        box = self.crop_box(height, width)
        if box is None:
            return sample
        top, left, crop_height, crop_width = box
        window = (slice(top, top + crop_height), slice(left, left + crop_width))
        sample.rgb = np.ascontiguousarray(sample.rgb[window])
        sample.depth = np.ascontiguousarray(sample.depth[window])
        sample.valid_mask = np.ascontiguousarray(sample.valid_mask[window])
        if sample.known_depth is not None:
            sample.known_depth = np.ascontiguousarray(sample.known_depth[window])
        if sample.intrinsics is not None:
            sample.intrinsics = sample.intrinsics.copy()
            sample.intrinsics[0, 2] -= left
            sample.intrinsics[1, 2] -= top
        sample.info["crop_box"] = box
        return sample

    def load(self, ref: SampleRef) -> DepthSample:
        """Decode one sample: hooks in order rgb, depth, valid mask, known depth, intrinsics."""
        rgb = self.load_rgb(ref)
        depth = np.asarray(self.load_depth(ref), dtype=np.float32)
        if depth.shape != rgb.shape[:2]:
            raise ValueError(
                f"sample {ref.sample_id!r}: depth {depth.shape} and rgb {rgb.shape[:2]} differ in size"
            )
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        valid = self.load_valid_mask(ref, depth)
        known = self.load_known_depth(ref)
        if known is not None:
            known = np.asarray(known, dtype=np.float32)
            if known.shape != depth.shape:
                raise ValueError(f"sample {ref.sample_id!r}: known depth {known.shape} != {depth.shape}")
            known = np.where(np.isfinite(known) & (known > 0), known, 0.0).astype(np.float32)
        sample = DepthSample(
            sample_id=ref.sample_id,
            rgb=rgb,
            depth=depth,
            valid_mask=valid,
            known_depth=known,
            intrinsics=self.load_intrinsics(ref),
            info={"paths": dict(ref.paths), **ref.extra},
        )
        sample = self.crop(sample)
        region = self.eval_region(*sample.depth.shape)
        if region is not None:
            sample.valid_mask = sample.valid_mask & region
        return sample

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> DepthSample:
        return self.load(self.samples[index])

    def __iter__(self) -> Iterator[DepthSample]:
        for index in range(len(self)):
            yield self[index]

    def describe(self) -> dict[str, Any]:
        """Constants for the record (saved with every evaluation run)."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "root": str(self.root),
            "split_file": str(self.split_file) if self.split_file else None,
            "num_samples": len(self),
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
        }

    def _split_rows(self, default: str | None = None) -> list[list[str]]:
        """Rows of ``split_file`` (or ``root/default`` when it exists); error when none."""
        path = self.split_file
        if path is None and default is not None:
            candidate = self.root / default if self.root.is_dir() else None
            if candidate is not None and candidate.is_file():
                path = candidate
        if path is None:
            raise ValueError(
                f"dataset {self.name!r} needs `split_file` (a list of relative paths, one sample per line)"
            )
        self.split_file = Path(path)
        return read_split_file(path)
