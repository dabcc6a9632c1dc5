import builtins
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlab import io


@pytest.fixture
def depth():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 9.0, (12, 17)).astype(np.float32)
    d[3:6, 4:9] = 0.0
    return d


@pytest.mark.parametrize("suffix", [".npy", ".tif", ".pfm"])
def test_float_round_trip(tmp_path, depth, suffix):
    path = io.write_depth(tmp_path / f"d{suffix}", depth)
    back = io.read_depth(path)
    assert back.dtype == np.float32 and np.array_equal(back, depth)


def test_exr_round_trip_or_clear_error(tmp_path, depth, monkeypatch):
    pytest.importorskip("OpenEXR")
    io.write_exr(tmp_path / "d.exr", depth)
    assert np.array_equal(io.read_depth(tmp_path / "d.exr"), depth)
    real_import = builtins.__import__

    def no_openexr(name, *args, **kwargs):
        if name == "OpenEXR":
            raise ImportError("no OpenEXR")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openexr)
    with pytest.raises(ValueError, match="pip install OpenEXR"):
        io.read_depth(tmp_path / "d.exr")


def test_png16_round_trip_with_scale(tmp_path, depth):
    io.write_depth_png16(tmp_path / "d.png", depth, 1000)
    raw = np.asarray(Image.open(tmp_path / "d.png"))
    assert raw.dtype == np.uint16 and raw[0, 0] == round(float(depth[0, 0]) * 1000)
    back = io.read_depth(tmp_path / "d.png", scale=1000)
    assert np.max(np.abs(back - depth)) <= 0.0005 + 1e-6
    assert np.all(back[3:6, 4:9] == 0)
    with pytest.raises(ValueError, match="--depth-scale"):
        io.read_depth(tmp_path / "d.png")
    kitti = io.read_depth(tmp_path / "d.png", scale=256)
    assert np.allclose(kitti, raw / 256.0)


def test_png16_overflow_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="overflows a 16-bit PNG"):
        io.write_depth_png16(tmp_path / "d.png", np.full((4, 4), 70.0), 1000)
    assert not (tmp_path / "d.png").exists()


def test_npz_named_array(tmp_path, depth):
    np.savez(tmp_path / "d.npz", depth=depth, other=depth * 2)
    assert np.array_equal(io.read_depth(tmp_path / "d.npz", key="other"), depth * 2)
    with pytest.raises(ValueError, match="several arrays"):
        io.read_depth(tmp_path / "d.npz")
    with pytest.raises(ValueError, match="no array 'nope'"):
        io.read_depth(tmp_path / "d.npz", key="nope")


def test_pfm_big_endian_and_orientation(tmp_path):
    array = np.arange(6, dtype=">f4").reshape(2, 3)
    (tmp_path / "b.pfm").write_bytes(b"Pf\n3 2\n1.0\n" + array[::-1].tobytes())
    assert np.array_equal(io.read_pfm(tmp_path / "b.pfm"), array.astype(np.float32))
    (tmp_path / "bad.pfm").write_bytes(b"P6\n3 2\n255\n")
    with pytest.raises(ValueError, match="not a PFM"):
        io.read_pfm(tmp_path / "bad.pfm")


def test_points_csv_rasterised(tmp_path):
    (tmp_path / "p.csv").write_text("u,v,depth\n1,2,3.5\n4.4,0,2\n4,0,1.5\n# comment\n0 3 7\n")
    depth = io.read_depth(tmp_path / "p.csv", image_size=(4, 6))
    assert depth.shape == (4, 6)
    assert depth[2, 1] == 3.5 and depth[3, 0] == 7.0
    assert depth[0, 4] == 1.5  # two points on one pixel: the nearest wins
    assert np.count_nonzero(depth) == 3
    (tmp_path / "out.csv").write_text("10,1,2\n")
    with pytest.raises(ValueError, match="outside the 6x4 image"):
        io.read_points(tmp_path / "out.csv", (4, 6))
    (tmp_path / "bad.txt").write_text("1,1,2\n1,x,2\n")
    with pytest.raises(ValueError, match="line 2"):
        io.read_points(tmp_path / "bad.txt", (4, 6))
    with pytest.raises(ValueError, match="image size"):
        io.read_depth(tmp_path / "p.csv")


def test_points_on_one_pixel_nearest_wins_in_any_file_order(tmp_path):
    rng = np.random.default_rng(3)
    # 400 points on a 3x4 image: every pixel hit many times, several depths repeated
    u = rng.integers(0, 4, 400)
    v = rng.integers(0, 3, 400)
    d = rng.integers(1, 30, 400) / 4
    expected = np.zeros((3, 4), np.float32)
    for col, row, value in zip(u, v, d, strict=True):  # brute force: the smallest depth per pixel
        if expected[row, col] == 0 or value < expected[row, col]:
            expected[row, col] = value
    for trial in range(4):
        order = rng.permutation(400) if trial else np.arange(400)
        lines = "".join(f"{u[i]},{v[i]},{d[i]}\n" for i in order)
        (tmp_path / f"p{trial}.csv").write_text(lines)
        assert np.array_equal(io.read_points(tmp_path / f"p{trial}.csv", (3, 4)), expected)


def test_nearest_per_pixel_rule():
    pixels, winners = io.nearest_per_pixel(
        np.array([5, 2, 5, 5, 2, 7]), np.array([3.0, 1.0, 2.0, 2.0, 1.0, 9.0])
    )
    assert pixels.tolist() == [2, 5, 7]
    assert winners.tolist() == [1, 2, 5]  # nearest; of equal depths the earlier candidate
    from depthlab.geometry.points import zbuffer

    flat = np.array([0, 0, 1, 1, 1])
    z = np.array([2.0, 1.0, 4.0, 4.0, 5.0])
    assert [a.tolist() for a in zbuffer(flat, z, 2)] == [[0, 1], [1, 2]]
    with pytest.raises(ValueError, match="one entry per candidate"):
        io.nearest_per_pixel(np.arange(3), np.ones(2))


def test_colour_png_is_not_depth(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(ValueError, match="single-channel"):
        io.read_depth(tmp_path / "c.png", scale=1)
    with pytest.raises(ValueError, match="suffix '.bmp'"):
        (tmp_path / "d.bmp").write_bytes(b"x")
        io.read_depth(tmp_path / "d.bmp")
    with pytest.raises(FileNotFoundError):
        io.read_depth(tmp_path / "missing.npy")


def test_read_image_modes(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = [[255, 0], [128, 255]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    composite = io.read_image(tmp_path / "a.png")
    assert composite.shape == (2, 2, 3) and composite.dtype == np.uint8
    assert composite[0, 0, 0] == 200 and composite[0, 1, 0] == 0 and composite[1, 0, 0] == 100
    dropped = io.read_image(tmp_path / "a.png", alpha="drop")
    assert np.all(dropped[..., 0] == 200)
    gray16 = np.array([[0, 65535]], np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g.png")
    g = io.read_image(tmp_path / "g.png")
    assert g.shape == (1, 2, 3) and g[0, 0, 0] == 0 and g[0, 1, 2] == 255
    Image.fromarray(np.array([[0, 1]], np.uint8), "P").save(tmp_path / "p.png")
    assert io.read_image(tmp_path / "p.png").shape == (1, 2, 3)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        io.read_image(tmp_path / "junk.png")


def test_masks_both_conventions(tmp_path):
    mask = np.zeros((3, 4), np.uint8)
    mask[1, 2] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    known = io.read_mask(tmp_path / "m.png")
    assert known.dtype == np.bool_ and known.sum() == 1 and known[1, 2]
    fill = io.read_mask(tmp_path / "m.png", convention="fill")
    assert np.array_equal(fill, ~known)
    np.save(tmp_path / "m.npy", (mask > 0).astype(np.int64))
    assert np.array_equal(io.read_mask(tmp_path / "m.npy"), known)
    assert np.array_equal(io.read_mask(mask > 0, convention="fill"), ~known)
    with pytest.raises(ValueError, match="expected"):
        io.read_mask(tmp_path / "m.png", shape=(4, 4))
    with pytest.raises(ValueError, match="convention"):
        io.read_mask(tmp_path / "m.png", convention="ones")


def test_atomic_write_refuses_overwrite(tmp_path, depth):
    path = io.write_depth_npy(tmp_path / "sub" / "d.npy", depth)
    with pytest.raises(FileExistsError, match="overwrite"):
        io.write_depth_npy(path, depth * 2)
    assert np.array_equal(np.load(path), depth)
    io.write_depth_npy(path, depth * 2, overwrite=True)
    assert np.array_equal(np.load(path), depth * 2)

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write(tmp_path / "x.bin", failing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_get_the_permissions_of_a_plain_open(tmp_path, depth, umask):
    previous = os.umask(umask)
    try:
        with open(tmp_path / "plain.bin", "w"):
            pass
        io.write_depth_npy(tmp_path / "d.npy", depth)
        io.write_color(tmp_path / "c.png", depth)
        io.atomic_write(tmp_path / "t.txt", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == expected
    for name in ("d.npy", "c.png", "t.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


def test_overwriting_keeps_the_mode_of_the_file_replaced(tmp_path, depth):
    path = io.write_depth_npy(tmp_path / "d.npy", depth)
    os.chmod(path, 0o640)
    io.write_depth_npy(path, depth * 2, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert np.array_equal(np.load(path), depth * 2)

    def replace_file(tmp: Path) -> None:  # a writer that deletes and recreates its target
        tmp.unlink()
        tmp.write_text("new")
        os.chmod(tmp, 0o600)

    text = tmp_path / "t.txt"
    text.write_text("old")
    os.chmod(text, 0o664)
    io.atomic_write(text, replace_file, overwrite=True)
    assert text.read_text() == "new" and stat.S_IMODE(text.stat().st_mode) == 0o664


def test_color_and_panel_writers(tmp_path, depth):
    io.write_color(tmp_path / "c.png", depth)
    io.write_color(tmp_path / "cb.png", depth, vmin=0, vmax=10, colorbar=True, unit="m")
    plain = np.asarray(Image.open(tmp_path / "c.png"))
    with_bar = np.asarray(Image.open(tmp_path / "cb.png"))
    assert plain.shape == (12, 17, 3) and with_bar.shape[0] == 12 and with_bar.shape[1] > 17
    rgb = np.zeros((12, 17, 3), np.uint8)
    filled = np.where(depth > 0, depth, 5.0)
    io.write_panel(tmp_path / "p.png", rgb, depth, depth > 0, filled, gt=filled)
    panel = np.asarray(Image.open(tmp_path / "p.png"))
    assert panel.shape[1] >= 4 * 17


def test_scale_applies_to_integer_data_only(tmp_path, depth):
    np.save(tmp_path / "f.npy", depth)
    with pytest.raises(ValueError, match=r"f\.npy stores float values .*--depth-scale\) applies to integer"):
        io.read_depth(tmp_path / "f.npy", scale=1000)
    np.save(tmp_path / "i.npy", np.rint(depth * 1000).astype(np.uint16))
    with pytest.raises(ValueError, match=r"i\.npy stores integers \(uint16\)"):
        io.read_depth(tmp_path / "i.npy")
    assert np.max(np.abs(io.read_depth(tmp_path / "i.npy", scale=1000) - depth)) <= 0.0005 + 1e-6
    io.write_depth_tiff(tmp_path / "f.tif", depth)
    with pytest.raises(ValueError, match="float"):
        io.read_depth(tmp_path / "f.tif", scale=256)


def test_points_header_names_the_fields(tmp_path):
    (tmp_path / "vu.csv").write_text("v,u,depth\n1,3,2.5\n")
    (tmp_path / "cr.csv").write_text("# exported\nrow;col;intensity;z\n1;3;9;2.5\n")
    (tmp_path / "plain.csv").write_text("3,1,2.5\n")
    for name in ("vu.csv", "cr.csv", "plain.csv"):
        points = io.read_points(tmp_path / name, (4, 4))
        assert points[1, 3] == 2.5 and np.count_nonzero(points) == 1, name
    (tmp_path / "xyz.csv").write_text("x,y,z\n1,2,3\n")
    with pytest.raises(ValueError, match="3D point coordinates"):
        io.read_points(tmp_path / "xyz.csv", (4, 4))
    (tmp_path / "uvw.csv").write_text("u,v,w\n1,2,3\n")
    with pytest.raises(ValueError, match="header 'u,v,w' must name exactly one"):
        io.read_points(tmp_path / "uvw.csv", (4, 4))
    (tmp_path / "mm.csv").write_text("u,v,depth\n1,2,2500\n")
    assert io.read_points(tmp_path / "mm.csv", (4, 4), scale=1000)[2, 1] == 2.5
    (tmp_path / "m.csv").write_text("u,v,depth\n1,2,2.5\n")
    with pytest.raises(ValueError, match="decimals"):
        io.read_points(tmp_path / "m.csv", (4, 4), scale=1000)


def test_mask_images_must_be_two_valued_and_write_mask_round_trips(tmp_path):
    known = np.zeros((5, 6), bool)
    known[1:3, 2:5] = True
    for convention in ("known", "fill"):
        io.write_mask(tmp_path / f"{convention}.png", known, convention=convention)
        assert np.array_equal(io.read_mask(tmp_path / f"{convention}.png", convention=convention), known)
    stored = np.asarray(Image.open(tmp_path / "fill.png"))
    assert set(np.unique(stored)) == {0, 255} and stored[0, 0] == 255
    io.write_mask(tmp_path / "k.npy", known)
    assert np.array_equal(io.read_mask(tmp_path / "k.npy"), known)
    gradient = (np.arange(30, dtype=np.uint8).reshape(5, 6) * 8).astype(np.uint8)
    Image.fromarray(gradient).save(tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"g\.png is not binary: 29 of 30 pixels"):
        io.read_mask(tmp_path / "g.png")
    with pytest.raises(FileExistsError):
        io.write_mask(tmp_path / "known.png", known)


def test_atomic_write_names_the_path_of_an_os_error(tmp_path, depth):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as raised:
        io.write_depth_npy(tmp_path / "file" / "d.npy", depth)
    assert "file" in str(raised.value.filename)


def test_describe_known_depth():
    depth = np.zeros((10, 10), np.float32)
    depth[0, :5] = [0.713, 2, 3, 4, 9.981]
    text = io.describe_known_depth(depth, scale=1000, unit="m")
    assert text == "known depth 0.71-9.98 m after /1000 (5 of 100 px, 5 %)"
    assert io.panel_caption("guided", depth > 0, 0.5) == "guided | known 5 % (5 of 100 px) | 0.50 s"
