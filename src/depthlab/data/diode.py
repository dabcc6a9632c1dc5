"""DIODE (validation split, indoor + outdoor, 771 frames), Marigold's layout.

Folder or ``diode_val.tar`` with the split list ``diode_val_all_filename_list.txt`` (lines
``rgb depth mask``, e.g. ``indoors/scene_00021/scan_00189/00021_00189_indoors_200_010.png
..._depth.npy ..._depth_mask.npy``). Depth: ``.npy`` float32 metres ``[H, W(, 1)]``; the mask
``.npy`` marks valid laser returns. Valid: mask & 0.6 < d < 350 m.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthlab.data.base import DepthDataset, SampleRef
from depthlab.data.registry import register_dataset

__all__ = ["DIODEDataset"]


@register_dataset("diode")
class DIODEDataset(DepthDataset):
    min_depth = 0.6
    max_depth = 350.0

    def list_samples(self) -> list[SampleRef]:
        refs = []
        for row in self._split_rows(default="diode_val_all_filename_list.txt"):
            if len(row) < 3:
                raise ValueError(f"DIODE split line needs 'rgb depth mask'; got {row}")
            paths = {"rgb": row[0], "depth": row[1], "mask": row[2]}
            refs.append(SampleRef(str(Path(row[0]).with_suffix("")), paths))
        return refs

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        return np.squeeze(self.read_npy(ref.paths["depth"])).astype(np.float32)

    def load_valid_mask(self, ref: SampleRef, depth: np.ndarray) -> np.ndarray:
        mask = np.squeeze(self.read_npy(ref.paths["mask"])).astype(bool)
        return mask & super().load_valid_mask(ref, depth)
