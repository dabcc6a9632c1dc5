"""ETH3D (high-res multi-view, DSLR images), Marigold's layout.

Folder or ``eth3d.tar`` with the split list ``eth3d_filename_list.txt`` (lines ``rgb depth``, e.g.
``rgb/office/images/dslr_images/DSC_0219.JPG
depth/office_dslr_depth/office/ground_truth_depth/dslr_images/DSC_0219.JPG``; 454 frames). The
depth "JPG" is a raw little-endian float32 buffer of 4032x6048 (H x W) metres, ``inf`` = no
measurement (set to 0). Valid: d > 1e-5 and finite (no upper bound).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthlab.data.base import DepthDataset, SampleRef
from depthlab.data.registry import register_dataset

__all__ = ["ETH3DDataset"]


@register_dataset("eth3d")
class ETH3DDataset(DepthDataset):
    min_depth = 1e-5
    max_depth = float("inf")
    height, width = 4032, 6048

    def list_samples(self) -> list[SampleRef]:
        refs = []
        for row in self._split_rows(default="eth3d_filename_list.txt"):
            if len(row) < 2:
                raise ValueError(f"ETH3D split line needs 'rgb depth'; got {row}")
            refs.append(SampleRef(str(Path(row[0]).with_suffix("")), {"rgb": row[0], "depth": row[1]}))
        return refs

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        buffer = np.frombuffer(self.read_bytes(ref.paths["depth"]), dtype="<f4").copy()
        if buffer.size != self.height * self.width:
            raise ValueError(
                f"{ref.paths['depth']}: expected {self.height}x{self.width} float32 values; got {buffer.size}"
            )
        buffer[~np.isfinite(buffer)] = 0.0
        return buffer.reshape(self.height, self.width)
