"""The demo's logic without a browser: reading uploads, the mask polarity, outputs, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import depthlab
from depthlab import io
from depthlab.demo import runner

from .conftest import EXAMPLE, REPO


@pytest.fixture
def upload():
    return runner.load_upload(EXAMPLE / "rgb.png", EXAMPLE / "depth.png", 1000)


def test_bundled_example_is_the_repository_example():
    packaged = REPO / "src" / "depthlab" / "demo" / "examples" / "room"
    for name in ("rgb.png", "depth.png"):
        assert (packaged / name).read_bytes() == (EXAMPLE / name).read_bytes(), name


def test_load_reads_every_format_with_the_right_scale(upload, tmp_path):
    assert upload.rgb.shape == (240, 320, 3) and upload.depth.dtype == np.float32
    np.testing.assert_array_equal(upload.depth, io.read_depth(EXAMPLE / "depth.png", scale=1000))
    np.save(tmp_path / "d.npy", upload.depth)  # float file: the scale field does not apply
    np.testing.assert_array_equal(
        runner.load_upload(EXAMPLE / "rgb.png", tmp_path / "d.npy", 1000).depth, upload.depth
    )
    rows, cols = np.nonzero(upload.valid)
    lines = ["u,v,depth"] + [
        f"{c},{r},{upload.depth[r, c]}" for r, c in zip(rows[:50], cols[:50], strict=True)
    ]
    (tmp_path / "p.csv").write_text("\n".join(lines))
    points = runner.load_upload(EXAMPLE / "rgb.png", tmp_path / "p.csv", None)
    assert points.valid.sum() == 50


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: (EXAMPLE / "rgb.png", EXAMPLE / "depth.png", None), "set the depth scale"),
        (lambda t: (EXAMPLE / "rgb.png", _npy(t, np.ones((5, 7))), 1), "must be pixel-aligned"),
        (lambda t: (_bytes(t, "x.png"), EXAMPLE / "depth.png", 1000), "Cannot read the RGB image"),
        (lambda t: (EXAMPLE / "rgb.png", _bytes(t, "d.npy"), 1000), "Cannot read the depth file"),
        (lambda t: (EXAMPLE / "rgb.png", _npy(t, np.zeros((240, 320))), 1), "has no valid depth"),
        (lambda t: (EXAMPLE / "rgb.png", _bytes(t, "d.xyz"), 1), "unsupported depth file"),
        (lambda t: (None, EXAMPLE / "depth.png", 1), "Upload an RGB image"),
    ],
)
def test_bad_uploads_give_a_message(tmp_path, make, message):
    with pytest.raises(runner.DemoInputError, match=message) as caught:
        runner.load_upload(*make(tmp_path))
    assert str(tmp_path) not in str(caught.value)  # file names only, not server paths


def _npy(folder, array):
    np.save(folder / "bad.npy", array.astype(np.float32))
    return folder / "bad.npy"


def _bytes(folder, name):
    (folder / name).write_bytes(b"not a picture")
    return folder / name


def test_painted_means_fill_and_known_is_the_rest(upload):
    layer = np.zeros((480, 640, 4), np.uint8)  # a canvas twice the image size
    layer[100:140, 200:360, 3] = 255
    layer[0:4, 0:4, 3] = 60  # faint anti-aliasing: not painted
    painted = runner.painted_region([layer], upload.depth.shape)
    assert painted.sum() == 20 * 80 and painted[50:70, 100:180].all()
    region = runner.build_region(upload, painted, use_invalid=True)
    np.testing.assert_array_equal(region.fill, painted | ~upload.valid)
    np.testing.assert_array_equal(region.known, upload.valid & ~painted)
    assert not region.empty.any()
    region = runner.build_region(upload, painted, use_invalid=False)
    np.testing.assert_array_equal(region.fill, painted)
    np.testing.assert_array_equal(region.empty, ~upload.valid & ~painted)


def test_mask_file_conventions(upload, tmp_path):
    known = io.read_mask(EXAMPLE / "mask.png")
    fill = runner.mask_file_region(EXAMPLE / "mask.png", "known", upload.depth.shape)
    np.testing.assert_array_equal(fill, ~known)
    Image.fromarray((~known).astype(np.uint8) * 255).save(tmp_path / "fill.png")
    np.testing.assert_array_equal(
        runner.mask_file_region(tmp_path / "fill.png", "fill", upload.depth.shape), fill
    )
    with pytest.raises(runner.DemoInputError, match="Cannot use the mask file"):
        runner.mask_file_region(tmp_path / "fill.png", "known", (10, 10))


def test_all_known_and_nothing_known_are_messages(upload):
    nothing = np.zeros(upload.depth.shape, bool)
    with pytest.raises(runner.DemoInputError, match="Nothing to fill"):
        runner.build_region(upload, nothing, use_invalid=False)
    with pytest.raises(runner.DemoInputError, match="No known depth left"):
        runner.build_region(upload, upload.valid, use_invalid=True)


@pytest.mark.parametrize("method", ["nearest", "guided"])
def test_run_equals_complete_and_writes_only_into_its_folder(upload, tmp_path, method):
    painted = np.zeros(upload.depth.shape, bool)
    painted[60:100, 100:180] = True
    region = runner.build_region(upload, painted, use_invalid=False)
    folder = tmp_path / "session" / "run-001"
    result = runner.run(upload, region, method, folder, geometry_files=False)
    expected = depthlab.complete(upload.rgb, upload.depth, region.known, method=method).depth.copy()
    expected[region.empty] = np.nan
    np.testing.assert_array_equal(result.depth, expected)
    np.testing.assert_array_equal(result.depth[region.known], upload.depth[region.known])
    assert result.method == method and result.seconds > 0
    assert all(f.parent == folder for f in result.files)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(f.name for f in result.files)
    np.testing.assert_array_equal(np.load(folder / "rgb_depth.npy"), result.depth)
    png = io.read_depth(folder / "rgb_depth.png", scale=1000)
    np.testing.assert_allclose(png[region.fill], result.depth[region.fill], atol=5e-4)
    assert (png[region.empty] == 0).all()
    assert result.before.shape == result.after.shape == (240, 320, 3)
    assert (result.before[region.fill] == runner.FILL_COLOR).all()
    assert result.uncertainty is None


def test_outline_is_the_border_of_the_region():
    region = np.zeros((10, 10), bool)
    region[2:7, 3:8] = True
    edge = runner.outline(region)
    assert edge.sum() == 2 * 5 + 2 * 3 and not edge[4, 5] and edge[2, 3]


@pytest.mark.parametrize("view", ["points", "mesh"])
def test_3d_outputs_open_in_real_readers(upload, tmp_path, view):
    plyfile = pytest.importorskip("plyfile")
    trimesh = pytest.importorskip("trimesh")
    region = runner.build_region(upload, np.zeros(upload.depth.shape, bool), use_invalid=True)
    result = runner.run(upload, region, "nearest", tmp_path, intrinsics="260,260,159.5,119.5", view=view)
    vertices = plyfile.PlyData.read(tmp_path / "rgb_points.ply")["vertex"]
    assert vertices.count == 240 * 320
    row, col = 100, 50  # pixel -> point with the given intrinsics (OpenCV frame, z forward)
    index = row * 320 + col
    z = result.depth[row, col]
    np.testing.assert_allclose(
        [vertices["x"][index], vertices["y"][index], vertices["z"][index]],
        [(col - 159.5) * z / 260, (row - 119.5) * z / 260, z],
        rtol=1e-5,
    )
    scene = trimesh.load(result.model3d)
    geometry = next(iter(scene.geometry.values()))
    if view == "mesh":
        assert isinstance(geometry, trimesh.Trimesh) and len(geometry.faces) > 100_000
    else:
        assert len(geometry.vertices) == 240 * 320
    assert "260,260,159.5,119.5" in " ".join(result.notes)


def test_bad_intrinsics_and_field_of_view_are_messages(upload, tmp_path):
    region = runner.build_region(upload, np.zeros(upload.depth.shape, bool), use_invalid=True)
    with pytest.raises(runner.DemoInputError, match="Intrinsics"):
        runner.run(upload, region, "nearest", tmp_path, intrinsics="1,2")
    with pytest.raises(runner.DemoInputError, match="field of view"):
        runner.run(upload, region, "nearest", tmp_path, fov_deg=200)


def test_page_without_weights_says_so_and_offers_the_classical_methods(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from depthlab.demo.app import DemoSettings, build_demo

    monkeypatch.setenv("DEPTHLAB_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    demo, _ = build_demo(DemoSettings(workdir=tmp_path / "work"))
    config = demo.get_config_file()
    texts = " ".join(str(c["props"].get("value", "")) for c in config["components"])
    assert "DepthLab weights are not installed" in texts and "what you paint is filled" in texts
    radio = next(c for c in config["components"] if c["props"].get("elem_id") == "method")
    offered = [choice[1] for choice in radio["props"]["choices"]]
    assert offered == ["auto", "guided", "linear", "nearest", "lidar"]
    options = next(c for c in config["components"] if c["props"].get("elem_id") == "depthlab-options")
    assert options["props"]["visible"] is False
