"""Hypersim in the layout of Marigold's preprocessing (the paper's main training set).

Marigold's ``script/dataset_preprocess/hypersim/preprocess_hypersim.py`` turns the raw HDF5
renders into one folder per split (``train``/``val``/``test``, packed as ``.tar`` for training)::

    <split>/<scene>/rgb_<camera>_fr<frame:04d>.png           tone-mapped sRGB, 1024x768
    <split>/<scene>/depth_plane_<camera>_fr<frame:04d>.png   planar depth, uint16, value / 1000 = m
    <split>/filename_list_<split>.txt                        "rgb_path depth_path" per line

Distances along the ray were converted to planar z-depth (focal 886.81 px at 1024x768) and pixels
without geometry (``render_entity_id == -1``) stored as 0. Marigold trains on a filtered list
(``data_split/hypersim/filename_list_train_filtered.txt``, same line format) and treats
``1e-5 < d < 65`` m as valid. ``root`` is the split folder or its ``.tar``; ``split_file`` defaults
to ``filename_list_<split>.txt`` inside it, else the folder is scanned for ``rgb_*.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthlab.data.base import DepthDataset, SampleRef
from depthlab.data.registry import register_dataset

__all__ = ["HypersimDataset"]

_MM = 1000.0


@register_dataset("hypersim")
class HypersimDataset(DepthDataset):
    """Hypersim RGB + planar depth (metres); see the module docstring for the layout."""

    min_depth = 1e-5
    max_depth = 65.0
    default_intrinsics = (886.81, 886.81, 511.5, 383.5)  # fx, fy, cx, cy at 1024x768

    def __init__(self, root: str | Path, *, split: str = "train", **kwargs: Any) -> None:
        self.split = str(split)
        super().__init__(root, **kwargs)

    def list_samples(self) -> list[SampleRef]:
        default = f"filename_list_{self.split}.txt"
        has_default = self.root.is_dir() and (self.root / default).is_file()
        if self.split_file is not None or has_default:
            rows = self._split_rows(default)
            refs = []
            for row in rows:
                if len(row) < 2:
                    raise ValueError(f"{self.split_file}: expected 'rgb_path depth_path' lines; got {row}")
                sample_id = str(Path(row[0]).with_suffix(""))
                refs.append(SampleRef(sample_id, {"rgb": row[0], "depth": row[1]}))
            return refs
        if not self.root.is_dir():
            raise ValueError(f"Hypersim in a .tar needs `split_file` (no {default} inside {self.root})")
        refs = []
        for rgb in sorted(self.root.rglob("rgb_*.png")):
            depth = rgb.with_name("depth_plane_" + rgb.name.removeprefix("rgb_"))
            if depth.is_file():
                sample_id = str(rgb.relative_to(self.root).with_suffix(""))
                refs.append(self.sample_ref(sample_id, {"rgb": rgb, "depth": depth}))
        return refs

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        raw = self.read_image(ref.paths["depth"])
        if raw.ndim != 2:
            raise ValueError(f"{ref.paths['depth']}: expected a single-channel uint16 PNG; got {raw.shape}")
        return raw.astype(np.float32) / _MM
