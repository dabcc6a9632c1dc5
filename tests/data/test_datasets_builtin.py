import tarfile

import numpy as np
import pytest
from PIL import Image

from depthlab.data import DepthDataset, get_dataset, list_datasets, register_dataset
from depthlab.data.kitti import kb_crop_box, kitti_eval_region
from depthlab.geometry import parse_kitti_calib, scan_to_depth


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def random_rgb(rng, h, w):
    return rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def test_registry_names_and_errors(tmp_path):
    names = list_datasets()
    for name in ("nyuv2", "kitti", "kitti_dc", "kitti_object", "eth3d", "scannet", "diode", "folder"):
        assert name in names
    with pytest.raises(ValueError, match="unknown dataset"):
        get_dataset("nope", tmp_path)
    with pytest.raises(FileNotFoundError):
        get_dataset("folder", tmp_path / "missing")


def test_register_decorator_adds_subclass(tmp_path):
    @register_dataset("tiny_test_dataset")
    class Tiny(DepthDataset):
        def list_samples(self):
            from depthlab.data import SampleRef

            return [SampleRef("a", {})]

        def load_rgb(self, ref):
            return np.zeros((4, 5, 3), np.uint8)

        def load_depth(self, ref):
            return np.full((4, 5), 2.0, np.float32)

    dataset = get_dataset("tiny_test_dataset", tmp_path)
    assert isinstance(dataset, Tiny) and dataset[0].valid_mask.all()
    with pytest.raises(TypeError):
        register_dataset("bad")(int)


def make_nyu_png(root, rng, n=3):
    folder = root / "nyu2_test"
    for i in range(n):
        write_png(folder / f"{i:05d}_colors.png", random_rgb(rng, 480, 640))
        depth = rng.integers(500, 9000, size=(480, 640)).astype(np.uint16)
        depth[0, 0] = 0
        write_png(folder / f"{i:05d}_depth.png", depth)
    write_png(folder / "00099_colors.png", random_rgb(rng, 480, 640))  # no depth: skipped
    return folder


def test_nyuv2_png_layout(tmp_path, rng):
    folder = make_nyu_png(tmp_path, rng)
    dataset = get_dataset("nyuv2", tmp_path)
    assert len(dataset) == 3 and dataset.layout == "png"
    sample = dataset[1]
    raw = np.asarray(Image.open(folder / "00001_depth.png"))
    np.testing.assert_allclose(sample.depth, raw / 1000.0, rtol=1e-6)
    assert sample.sample_id == "00001" and sample.rgb.shape == (480, 640, 3)
    # Eigen crop: rows 45:471, cols 41:601
    assert not sample.valid_mask[:45].any() and not sample.valid_mask[471:].any()
    assert not sample.valid_mask[:, :41].any() and not sample.valid_mask[:, 601:].any()
    assert sample.valid_mask[45:471, 41:601].all()
    assert sample.intrinsics[0, 0] == pytest.approx(518.8579)
    no_crop = get_dataset("nyuv2", folder, eigen_crop=False, limit=2)
    assert len(no_crop) == 2 and no_crop[0].valid_mask.sum() == 480 * 640 - 1


def test_nyuv2_marigold_tar_layout(tmp_path, rng):
    src = tmp_path / "src"
    lines = []
    for i in range(2):
        rgb, raw, filled = (f"test/kitchen_0004/{kind}_{i:04d}.png" for kind in ("rgb", "depth", "filled"))
        write_png(src / rgb, random_rgb(rng, 480, 640))
        raw_depth = rng.integers(500, 9000, size=(480, 640)).astype(np.uint16)
        raw_depth[100:200, 100:200] = 0
        write_png(src / raw, raw_depth)
        write_png(src / filled, np.full((480, 640), 2500, np.uint16))
        lines.append(f"{rgb} {raw} {filled}")
    split = tmp_path / "filename_list_test.txt"
    split.write_text("\n".join(lines) + "\n")
    archive = tmp_path / "nyu.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname=".")
    dataset = get_dataset("nyuv2", archive, split_file=split)
    assert dataset.layout == "marigold" and len(dataset) == 2
    sample = dataset[0]
    assert sample.sample_id == "test/kitchen_0004/rgb_0000"
    assert not sample.valid_mask[150, 150] and sample.valid_mask[300, 300]
    assert sample.known_mask is not None and not sample.known_mask[150, 150]
    filled = get_dataset("nyuv2", archive, split_file=split, depth_type="filled")[0]
    assert filled.depth[150, 150] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="split_file"):
        get_dataset("nyuv2", src / "test")


def test_kitti_crops():
    assert kb_crop_box(375, 1242) == (23, 13, 352, 1216)
    region = kitti_eval_region(352, 1216, "garg")
    rows = np.flatnonzero(region.any(axis=1))
    assert rows[0] == int(0.40810811 * 352) and rows[-1] == int(0.99189189 * 352) - 1
    eigen = kitti_eval_region(352, 1216, "eigen")
    assert np.flatnonzero(eigen.any(axis=1))[0] == int(0.3324324 * 352)
    assert kitti_eval_region(10, 10, None) is None
    with pytest.raises(ValueError):
        kitti_eval_region(10, 10, "bts")


def test_kitti_eigen_layout(tmp_path, rng):
    rgb = "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png"
    gt = "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png"
    write_png(tmp_path / rgb, random_rgb(rng, 375, 1242))
    depth = np.zeros((375, 1242), np.uint16)
    depth[200:, :] = 256 * 10
    write_png(tmp_path / gt, depth)
    split = tmp_path / "eigen_test_files_with_gt.txt"
    split.write_text(f"{rgb} {gt} 721.5377\n{rgb} None 721.5377\n")
    dataset = get_dataset("kitti", tmp_path, eval_crop="garg")
    assert len(dataset) == 1
    sample = dataset[0]
    assert sample.rgb.shape == (352, 1216, 3) and sample.info["focal"] == pytest.approx(721.5377)
    np.testing.assert_allclose(sample.depth[-1, 600], 10.0)
    assert sample.valid_mask.sum() == kitti_eval_region(352, 1216, "garg")[177:].sum()


def test_kitti_dc_layout(tmp_path, rng):
    base = tmp_path / "depth_selection" / "val_selection_cropped"
    stem = "2011_09_26_drive_0002_sync_{}_0000000005_image_02"
    write_png(base / "image" / (stem.format("image") + ".png"), random_rgb(rng, 352, 1216))
    gt = np.zeros((352, 1216), np.uint16)
    gt[100:, :] = 5120
    write_png(base / "groundtruth_depth" / (stem.format("groundtruth_depth") + ".png"), gt)
    lidar = np.zeros((352, 1216), np.uint16)
    lidar[150::10, ::4] = 5000
    write_png(base / "velodyne_raw" / (stem.format("velodyne_raw") + ".png"), lidar)
    (base / "intrinsics").mkdir()
    (base / "intrinsics" / (stem.format("image") + ".txt")).write_text("721.5 0 596.5 0 721.5 149.8 0 0 1")
    sample = get_dataset("kitti_dc", tmp_path)[0]
    assert sample.depth[200, 10] == pytest.approx(20.0) and not sample.valid_mask[50, 10]
    assert sample.known_mask.sum() == (lidar > 0).sum()
    assert sample.known_depth[150, 0] == pytest.approx(5000 / 256)
    assert sample.intrinsics[1, 2] == pytest.approx(149.8)


def test_project_velodyne_geometry():
    calib_text = (
        "P2: 100 0 50 0 0 100 40 0 0 0 1 0\n"
        "R0_rect: 1 0 0 0 1 0 0 0 1\n"
        # velodyne x forward, y left, z up -> camera x right, y down, z forward
        "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"
    )
    calib = parse_kitti_calib(calib_text)
    points = np.array(
        [
            [10.0, 0.0, 0.0, 0],
            [5.0, -1.0, 0.5, 0],
            [10.0, 0.0, 0.0, 0],
            [4.0, 0.0, 0.0, 0],
            [-5.0, 0.0, 0.0, 0],
            [1.0, -50.0, 0.0, 0],
        ],
        dtype=np.float32,
    )
    depth = scan_to_depth(points, calib, 100, 80)
    # point 1: cam (1, -0.5, 5) -> u = 50 + 100 * 0.2 = 70, v = 40 - 10 = 30
    assert depth[30, 70] == pytest.approx(5.0)
    assert depth[40, 50] == pytest.approx(4.0)  # nearest of the points on the optical axis wins
    assert (depth > 0).sum() == 2  # behind-camera and out-of-image points dropped
    with pytest.raises(ValueError, match="P2"):
        parse_kitti_calib("R0_rect: 1 0 0 0 1 0 0 0 1\n")


def test_kitti_object_layout(tmp_path, rng):
    base = tmp_path / "training"
    write_png(base / "image_2" / "000007.png", random_rgb(rng, 80, 100))
    (base / "velodyne").mkdir()
    np.array([[5.0, -1.0, 0.5, 0.3], [8.0, 0.0, 0.0, 0.1]], np.float32).tofile(
        base / "velodyne" / "000007.bin"
    )
    (base / "calib").mkdir()
    (base / "calib" / "000007.txt").write_text(
        "P2: 100 0 50 0 0 100 40 0 0 0 1 0\nR0_rect: 1 0 0 0 1 0 0 0 1\n"
        "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"
    )
    sample = get_dataset("kitti_object", tmp_path)[0]
    assert sample.sample_id == "000007" and sample.valid_mask.sum() == 2
    assert sample.depth[40, 50] == pytest.approx(8.0)


def test_kitti_object_real_frame(shared_datasets):
    root = shared_datasets / "kuixu__kitti_object_vis" / "data" / "object"
    if not root.is_dir():
        pytest.skip("KITTI object sample not available")
    sample = get_dataset("kitti_object", root)[0]
    n_points = int(sample.valid_mask.sum())
    assert 19_000 < n_points < 22_000  # ~20,300 points in view (INVENTORY.md)
    assert 4.0 < sample.depth[sample.valid_mask].min() < 5.0


def test_eth3d_scannet_diode_layouts(tmp_path, rng):
    from depthlab.data.eth3d import ETH3DDataset

    # ETH3D: raw float32 buffer of a fixed size (shrunk for the test)
    class SmallETH3D(ETH3DDataset):
        height, width = 6, 8

    write_png(tmp_path / "rgb/office/DSC_1.JPG.png", random_rgb(rng, 6, 8))
    raw = np.full((6, 8), 3.0, np.float32)
    raw[0, 0] = np.inf
    (tmp_path / "depth").mkdir()
    raw.tofile(tmp_path / "depth" / "DSC_1.JPG")
    (tmp_path / "eth.txt").write_text("rgb/office/DSC_1.JPG.png depth/DSC_1.JPG\n")
    sample = SmallETH3D(tmp_path, split_file=tmp_path / "eth.txt")[0]
    assert sample.depth[0, 0] == 0 and not sample.valid_mask[0, 0] and sample.valid_mask.sum() == 47

    write_png(tmp_path / "scene0000_00/color/000000.jpg.png", random_rgb(rng, 6, 8))
    write_png(tmp_path / "scene0000_00/depth/000000.png", np.full((6, 8), 12000, np.uint16))
    (tmp_path / "scannet.txt").write_text("scene0000_00/color/000000.jpg.png scene0000_00/depth/000000.png\n")
    sample = get_dataset("scannet", tmp_path, split_file=tmp_path / "scannet.txt")[0]
    assert sample.depth[0, 0] == pytest.approx(12.0) and not sample.valid_mask.any()  # > 10 m

    write_png(tmp_path / "indoors/a.png", random_rgb(rng, 6, 8))
    np.save(tmp_path / "indoors/a_depth.npy", np.full((6, 8, 1), 2.0, np.float32))
    mask = np.ones((6, 8), np.float32)
    mask[:, :2] = 0
    np.save(tmp_path / "indoors/a_depth_mask.npy", mask)
    (tmp_path / "diode.txt").write_text("indoors/a.png indoors/a_depth.npy indoors/a_depth_mask.npy\n")
    sample = get_dataset("diode", tmp_path, split_file=tmp_path / "diode.txt")[0]
    assert sample.valid_mask.sum() == 36 and sample.depth.shape == (6, 8)


def test_folder_dataset(tmp_path, rng):
    write_png(tmp_path / "rgb" / "b.png", random_rgb(rng, 5, 7))
    write_png(tmp_path / "rgb" / "a.jpg", random_rgb(rng, 5, 7))
    write_png(tmp_path / "depth" / "a.png", np.full((5, 7), 1500, np.uint16))
    np.save(tmp_path / "depth" / "b.npy", np.full((5, 7), 2500.0, np.float32))
    write_png(tmp_path / "mask" / "a.png", np.eye(5, 7, dtype=np.uint8) * 255)
    known = np.zeros((5, 7), np.float32)
    known[2, 3] = 1000
    (tmp_path / "known").mkdir()
    np.save(tmp_path / "known" / "b.npy", known)
    dataset = get_dataset("folder", tmp_path, depth_scale=1000)
    assert [ref.sample_id for ref in dataset.samples] == ["a", "b"]
    a, b = dataset[0], dataset[1]
    assert a.depth[0, 0] == pytest.approx(1.5) and a.valid_mask.sum() == 5 and a.known_depth is None
    assert b.valid_mask.all() and b.known_mask.sum() == 1 and b.known_depth[2, 3] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="depth_scale"):
        get_dataset("folder", tmp_path, depth_scale=0)
    with pytest.raises(FileNotFoundError, match="no samples"):
        get_dataset("folder", tmp_path, rgb_dir="depth", depth_dir="nothing")


def test_nyuv2_real_frames(shared_datasets):
    root = shared_datasets / "stepi2299__eadir2" / "data" / "nyu_samples"
    if not root.is_dir():
        pytest.skip("NYUv2 sample frames not available")
    dataset = get_dataset("nyuv2", root)
    assert len(dataset) == 20
    sample = dataset[0]
    assert sample.depth[sample.valid_mask].min() == pytest.approx(1.798, abs=1e-3)
