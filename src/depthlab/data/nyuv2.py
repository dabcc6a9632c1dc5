"""NYU Depth v2 (official 654-frame test split), two layouts.

* ``layout="png"`` -- DenseDepth's extracted test set (``nyu2_test/NNNNN_colors.png`` +
  ``NNNNN_depth.png``, uint16 millimetres, in-painted dense depth, 640x480). ``root`` is the folder
  holding the PNGs or its parent; every ``*_colors.png`` with a matching ``*_depth.png`` is a
  sample, sorted by name; sample id = the prefix (``00013``).
* ``layout="marigold"`` -- Marigold's ``nyu_labeled_extracted`` folder or ``.tar`` with the split
  list ``filename_list_test.txt`` (lines ``rgb depth filled``, e.g.
  ``test/kitchen_0004/rgb_0001.png test/kitchen_0004/depth_0001.png
  test/kitchen_0004/filled_0001.png``; uint16 mm). GT is the raw depth (``depth_type="raw"``,
  Marigold's choice) or the in-painted one (``"filled"``); the raw depth is always exposed as
  ``known_depth`` for the ``sensor`` protocol. Sample id = the rgb path without extension.

``layout="auto"`` picks ``png`` when ``*_colors.png`` files exist. Valid GT: 1e-3 < d < 10 m,
inside the Eigen crop (rows 45:471, cols 41:601 of the 640x480 frame; disable with
``eigen_crop=False``). Intrinsics: fx=518.8579, fy=519.4696, cx=325.5824, cy=253.7362.

``nyu_nlspn`` is the view of the NYU depth-completion tables (Ma & Karaman, NLSPN, CFormer,
OMNI-DC, DepthLab Table 2): the 640x480 frame resized to 320x240 (PIL bilinear, RGB and depth),
then centre-cropped to 304x228 (rows 6:234, columns 8:312 of the resized frame); GT = the dense
(in-painted) depth; valid = resized depth > 1e-4 m and inside the depth range. Use it with
``points:500`` (``docs/protocols.md``, "nyu_nlspn").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthlab.data.base import DepthDataset, DepthSample, SampleRef
from depthlab.data.registry import register_dataset

__all__ = [
    "NYUv2Dataset",
    "NYUNLSPNDataset",
    "EIGEN_CROP",
    "NYU_OFFICIAL_TEST_FRAMES",
    "NLSPN_RESIZE",
    "NLSPN_CROP",
    "nlspn_crop_box",
]

EIGEN_CROP = (45, 471, 41, 601)  # rows top:bottom, cols left:right of the 480x640 frame
NYU_OFFICIAL_TEST_FRAMES = 654  # ``testNdxs`` of NYU's splits.mat (the 654-frame test split)
NLSPN_RESIZE = (240, 320)  # (height, width) after the resize, from 480x640
NLSPN_CROP = (228, 304)  # (height, width) of the centre crop
_MM = 1000.0


def nlspn_crop_box(height: int = NLSPN_RESIZE[0], width: int = NLSPN_RESIZE[1]) -> tuple[int, int]:
    """``(top, left)`` of the 228x304 centre crop, as torchvision ``CenterCrop``: ``round((H - h)/2)``."""
    return int(round((height - NLSPN_CROP[0]) / 2.0)), int(round((width - NLSPN_CROP[1]) / 2.0))


@register_dataset("nyuv2", "nyu")
class NYUv2Dataset(DepthDataset):
    min_depth = 1e-3
    max_depth = 10.0
    default_intrinsics = (518.8579, 519.4696, 325.5824, 253.7362)

    def __init__(
        self,
        root: str | Path,
        *,
        layout: str = "auto",
        depth_type: str = "raw",
        eigen_crop: bool = True,
        **kwargs: Any,
    ) -> None:
        if layout not in ("auto", "png", "marigold"):
            raise ValueError(f"`layout` must be 'auto', 'png' or 'marigold'; got {layout!r}")
        if depth_type not in ("raw", "filled"):
            raise ValueError(f"`depth_type` must be 'raw' or 'filled'; got {depth_type!r}")
        self.layout = layout
        self.depth_type = depth_type
        self.eigen_crop = bool(eigen_crop)
        super().__init__(root, **kwargs)

    def _png_folder(self) -> Path | None:
        if not self.root.is_dir():
            return None
        for folder in (self.root, self.root / "nyu2_test", self.root / "data" / "nyu2_test"):
            if folder.is_dir() and any(folder.glob("*_colors.png")):
                return folder
        return None

    def list_samples(self) -> list[SampleRef]:
        png_folder = self._png_folder() if self.layout in ("auto", "png") else None
        if self.layout == "png" and png_folder is None:
            raise FileNotFoundError(f"no *_colors.png files in {self.root} (or its nyu2_test/)")
        if png_folder is not None:
            self.layout = "png"
            refs = []
            for rgb_path in sorted(png_folder.glob("*_colors.png")):
                prefix = rgb_path.name[: -len("_colors.png")]
                depth_path = rgb_path.with_name(f"{prefix}_depth.png")
                if depth_path.is_file():
                    refs.append(self.sample_ref(prefix, {"rgb": rgb_path, "depth": depth_path}))
            return refs
        self.layout = "marigold"
        refs = []
        for row in self._split_rows(default="filename_list_test.txt"):
            if len(row) < 2:
                raise ValueError(f"NYUv2 split line needs 'rgb depth [filled]'; got {row}")
            paths = {"rgb": row[0], "raw": row[1]}
            if len(row) > 2:
                paths["filled"] = row[2]
            refs.append(SampleRef(str(Path(row[0]).with_suffix("")), paths))
        return refs

    def _read_mm(self, rel_path: str) -> np.ndarray:
        return self.read_image(rel_path).astype(np.float32) / _MM

    def load_depth(self, ref: SampleRef) -> np.ndarray:
        if self.layout == "png":
            return self._read_mm(ref.paths["depth"])
        if self.depth_type == "filled":
            if "filled" not in ref.paths:
                raise ValueError(f"sample {ref.sample_id!r} has no filled depth in the split file")
            return self._read_mm(ref.paths["filled"])
        return self._read_mm(ref.paths["raw"])

    def load_known_depth(self, ref: SampleRef) -> np.ndarray | None:
        if self.layout == "marigold":
            return self._read_mm(ref.paths["raw"])
        return None

    def eval_region(self, height: int, width: int) -> np.ndarray | None:
        if not self.eigen_crop:
            return None
        if (height, width) != (480, 640):
            raise ValueError(
                f"the Eigen crop needs 480x640 NYUv2 frames; got {height}x{width} "
                "(pass eigen_crop=False for pre-cropped data)"
            )
        top, bottom, left, right = EIGEN_CROP
        region = np.zeros((height, width), dtype=bool)
        region[top:bottom, left:right] = True
        return region


@register_dataset("nyu_nlspn", "nyuv2_nlspn")
class NYUNLSPNDataset(NYUv2Dataset):
    """NYUv2 test frames in the NLSPN view: 640x480 -> 320x240 (bilinear) -> centre crop 304x228.

    Same layouts and options as :class:`NYUv2Dataset` (Marigold layout: ``depth_type="filled"``
    by default, the dense GT of the NLSPN tables); no Eigen crop, no ``known_depth``. The official
    split has :data:`NYU_OFFICIAL_TEST_FRAMES` (654) frames; :meth:`describe` records how many are
    present.
    """

    def __init__(self, root: str | Path, *, depth_type: str = "filled", **kwargs: Any) -> None:
        kwargs.pop("eigen_crop", None)
        super().__init__(root, depth_type=depth_type, eigen_crop=False, **kwargs)

    def load(self, ref: SampleRef) -> DepthSample:
        from PIL import Image

        sample = super().load(ref)
        height, width = sample.depth.shape
        if (height, width) != (480, 640):
            raise ValueError(f"the NLSPN view needs 480x640 NYUv2 frames; got {height}x{width}")
        size = (NLSPN_RESIZE[1], NLSPN_RESIZE[0])  # PIL: (width, height)
        rgb = np.asarray(Image.fromarray(sample.rgb, mode="RGB").resize(size, Image.BILINEAR))
        depth = np.asarray(
            Image.fromarray(sample.depth.astype(np.float32), mode="F").resize(size, Image.BILINEAR)
        )
        top, left = nlspn_crop_box()
        window = (slice(top, top + NLSPN_CROP[0]), slice(left, left + NLSPN_CROP[1]))
        sample.rgb = np.ascontiguousarray(rgb[window])
        sample.depth = np.ascontiguousarray(depth[window], dtype=np.float32)
        sample.valid_mask = (sample.depth > 1e-4) & self.load_valid_mask(ref, sample.depth)
        sample.known_depth = None
        if sample.intrinsics is not None:
            K = sample.intrinsics.copy()  # noqa: N806 - pixel-centre convention of the resize
            scale = NLSPN_RESIZE[1] / width, NLSPN_RESIZE[0] / height
            K[0, 0], K[1, 1] = K[0, 0] * scale[0], K[1, 1] * scale[1]
            K[0, 2] = (K[0, 2] + 0.5) * scale[0] - 0.5 - left
            K[1, 2] = (K[1, 2] + 0.5) * scale[1] - 0.5 - top
            sample.intrinsics = K
        sample.info["view"] = "nlspn: resize 320x240 bilinear, centre crop 304x228"
        return sample

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            view="nlspn",
            official_test_frames=NYU_OFFICIAL_TEST_FRAMES,
            frames_present=len(self),
            complete_split=len(self) == NYU_OFFICIAL_TEST_FRAMES,
        )
        return info
