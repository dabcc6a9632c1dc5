"""Training datasets: procedural scenes and the Hypersim / Virtual KITTI readers (Marigold layouts)."""

import numpy as np
import pytest
from PIL import Image

from depthlab.data import get_dataset, list_datasets
from depthlab.data.synthetic import SyntheticDataset


def test_registered():
    names = list_datasets()
    assert {"synthetic", "hypersim", "vkitti"} <= set(names)


def test_synthetic_is_deterministic_and_exact():
    a = SyntheticDataset(length=3, height=40, width=56, seed=7)
    b = get_dataset("synthetic", None, length=3, height=40, width=56, seed=7)
    c = SyntheticDataset(length=3, height=40, width=56, seed=8)
    sa, sb, sc = a[1], b[1], c[1]
    np.testing.assert_array_equal(sa.rgb, sb.rgb)
    np.testing.assert_array_equal(sa.depth, sb.depth)
    assert not np.array_equal(sa.depth, sc.depth)
    assert sa.rgb.shape == (40, 56, 3) and sa.rgb.dtype == np.uint8
    assert sa.depth.dtype == np.float32 and sa.valid_mask.all()
    assert 0.5 < sa.depth.min() and sa.depth.max() < 100
    assert sa.rgb.std() > 5, "textured, not flat"
    # Depth is a z-depth of planar/curved surfaces: mostly smooth, with some discontinuities.
    jumps = np.abs(np.diff(sa.depth, axis=1)) > 0.2
    assert 0 < jumps.mean() < 0.2


def test_synthetic_invalid_fraction_and_errors():
    sample = SyntheticDataset(length=1, height=48, width=48, invalid_fraction=0.2)[0]
    assert 0.1 < 1 - sample.valid_mask.mean() < 0.6
    assert np.all(sample.depth[~sample.valid_mask] == 0)
    with pytest.raises(ValueError, match="length"):
        SyntheticDataset(length=0)
    with pytest.raises(TypeError, match="unexpected"):
        SyntheticDataset(length=1, split_file="x")


def _png16(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint16)).save(path)


def _rgb(path, height, width, fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 100, np.uint8)).save(path, format=fmt)


def test_hypersim_reader(tmp_path):
    root = tmp_path / "train"
    depth_mm = np.full((24, 32), 2500, np.uint16)
    depth_mm[0, 0] = 0  # no geometry
    depth_mm[1, 1] = 65535  # beyond 65 m: invalid
    _rgb(root / "ai_001_001" / "rgb_cam_00_fr0003.png", 24, 32)
    _png16(root / "ai_001_001" / "depth_plane_cam_00_fr0003.png", depth_mm)
    (root / "filename_list_train.txt").write_text(
        "ai_001_001/rgb_cam_00_fr0003.png ai_001_001/depth_plane_cam_00_fr0003.png\n"
    )
    dataset = get_dataset("hypersim", root)
    assert len(dataset) == 1
    sample = dataset[0]
    assert sample.sample_id == "ai_001_001/rgb_cam_00_fr0003"
    assert sample.depth[5, 5] == pytest.approx(2.5)
    assert not sample.valid_mask[0, 0] and not sample.valid_mask[1, 1] and sample.valid_mask[5, 5]
    # Without a split list the folder is scanned.
    (root / "filename_list_train.txt").unlink()
    assert len(get_dataset("hypersim", root)) == 1


def test_vkitti_reader_with_benchmark_crop(tmp_path):
    height, width = 375, 1242
    depth_cm = np.full((height, width), 1234, np.uint16)
    depth_cm[-1, :] = 65535  # sky: beyond 80 m
    rgb = tmp_path / "rgb/Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg"
    depth = tmp_path / "depth/Scene01/clone/frames/depth/Camera_0/depth_00000.png"
    _rgb(rgb, height, width, "JPEG")
    _png16(depth, depth_cm)
    split = tmp_path / "split.txt"
    split.write_text(
        f"{rgb.relative_to(tmp_path)} {depth.relative_to(tmp_path)}\n{rgb.relative_to(tmp_path)} None\n"
    )
    dataset = get_dataset("vkitti", tmp_path, split_file=split)
    assert len(dataset) == 1  # the line without depth is skipped
    sample = dataset[0]
    assert sample.depth.shape == (352, 1216) and sample.rgb.shape == (352, 1216, 3)
    assert sample.depth[0, 0] == pytest.approx(12.34)
    assert not sample.valid_mask[-1].any()
    scanned = get_dataset("vkitti", tmp_path, kb_crop=False)
    assert len(scanned) == 1 and scanned[0].depth.shape == (height, width)
