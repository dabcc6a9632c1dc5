"""ScanNet (v2 validation, 800 frames sampled by Marigold), Marigold's layout.

Folder or ``scannet_val_sampled_800_1.tar`` with the split list
``scannet_val_sampled_list_800_1.txt`` (lines ``rgb depth``, e.g.
``scene0000_00/color/000000.jpg scene0000_00/depth/000000.png``). Depth: uint16 PNG millimetres,
640x480 (RGB already resized to the depth size). Valid: 1e-3 < d < 10 m.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthlab.data.base import DepthDataset, SampleRef
from depthlab.data.registry import register_dataset

__all__ = ["ScanNetDataset"]


@register_dataset("scannet")
class ScanNetDataset(DepthDataset):
    min_depth = 1e-3
    max_depth = 10.0

    def list_samples(self) -> list[SampleRef]:
        refs = []
        for row in self._split_rows(default="scannet_val_sampled_list_800_1.txt"):
            if len(row) < 2:
                raise ValueError(f"ScanNet split line needs 'rgb depth'; got {row}")
            refs.append(SampleRef(str(Path(row[0]).with_suffix("")), {"rgb": row[0], "depth": row[1]}))
        return refs

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        return self.read_image(ref.paths["depth"]).astype(np.float32) / 1000.0
