"""Virtual KITTI 2 in the layout Marigold trains on (the paper's outdoor training set).

Layout under ``root`` (folder or ``.tar``; Marigold packs it as ``vkitti.tar``)::

    rgb/<Scene>/<variation>/frames/rgb/Camera_<k>/rgb_<frame:05d>.jpg
    depth/<Scene>/<variation>/frames/depth/Camera_<k>/depth_<frame:05d>.png   uint16, value / 100 = m

Split lists hold ``rgb_path depth_path`` per line (Marigold: ``data_split/vkitti/vkitti_train.txt``
and ``vkitti_val.txt``); lines whose depth is ``None`` are skipped. Frames are 1242x375; with
``kb_crop=True`` (Marigold's training setting) every array is cropped to the KITTI benchmark size
352x1216 (bottom rows, centred columns). Valid depth: ``1e-5 < d < 80`` m (Marigold's range; the
format saturates at 655.35 m, the sky). Without a split file the folder is scanned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthlab.data.base import DepthDataset, SampleRef
from depthlab.data.kitti import kb_crop_box
from depthlab.data.registry import register_dataset

__all__ = ["VirtualKITTIDataset"]

_CM = 100.0


@register_dataset("vkitti", "virtual_kitti")
class VirtualKITTIDataset(DepthDataset):
    """Virtual KITTI 2 RGB + depth (metres); see the module docstring for the layout."""

    min_depth = 1e-5
    max_depth = 80.0
    default_intrinsics = (725.0087, 725.0087, 620.5, 187.0)  # Camera_0, full 1242x375 frame

    def __init__(self, root: str | Path, *, kb_crop: bool = True, **kwargs: Any) -> None:
        self.kb_crop = bool(kb_crop)
        super().__init__(root, **kwargs)

    def list_samples(self) -> list[SampleRef]:
        if self.split_file is not None:
            refs = []
            for row in self._split_rows():
                if len(row) < 2 or row[1] == "None":
                    continue
                refs.append(SampleRef(str(Path(row[0]).with_suffix("")), {"rgb": row[0], "depth": row[1]}))
            return refs
        if not self.root.is_dir():
            raise ValueError(f"Virtual KITTI in a .tar needs `split_file` ({self.root})")
        refs = []
        for rgb in sorted((self.root / "rgb").rglob("rgb_*.jpg")):
            rel = rgb.relative_to(self.root / "rgb")
            parts = list(rel.parts)
            parts = [("depth" if part == "rgb" else part) for part in parts[:-1]]
            name = "depth_" + rgb.stem.removeprefix("rgb_") + ".png"
            depth = self.root / "depth" / Path(*parts) / name
            if depth.is_file():
                sample_id = str(rgb.relative_to(self.root).with_suffix(""))
                refs.append(self.sample_ref(sample_id, {"rgb": rgb, "depth": depth}))
        return refs

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        raw = self.read_image(ref.paths["depth"])
        if raw.ndim == 3:  # some exports store 3 identical channels
            raw = raw[..., 0]
        return raw.astype(np.float32) / _CM

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        return kb_crop_box(height, width) if self.kb_crop else None
