"""The one 16-bit -> 8-bit RGB rule (issue 8 item 7): every entry point gives the same RGB.

The rule (README "Inputs", :func:`depthlab.inputs.image_to_uint8`): a 16-bit value ``v`` becomes
``round(v * 255 / 65535)``, over the full 16-bit range, never stretched to the image's maximum.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlab import io
from depthlab.inputs import image_to_uint8, to_rgb_uint8


def _expected(values: np.ndarray) -> np.ndarray:
    """The rule written independently: integer arithmetic, round half up (no ties occur: 65535 is odd)."""
    return ((values.astype(np.int64) * 255 * 2 + 65535) // (2 * 65535)).astype(np.uint8)


@pytest.fixture
def gray16() -> np.ndarray:
    """A dark 16-bit gray image (max well below 65535) with values where ``v >> 8`` and the rule differ."""
    rng = np.random.default_rng(7)
    values = rng.integers(0, 20000, (12, 16)).astype(np.uint16)
    values[0, :4] = [0, 128, 129, 65535]  # 128 -> 0, 129 -> 1 (v / 257 = 0.502), 65535 -> 255
    return values


@pytest.fixture
def rgb16() -> np.ndarray:
    rng = np.random.default_rng(8)
    return rng.integers(0, 65536, (12, 16, 3)).astype(np.uint16)


def test_the_rule_itself(gray16):
    expected = _expected(gray16)
    assert list(expected[0, :4]) == [0, 0, 1, 255]
    assert np.array_equal(image_to_uint8(gray16), expected)
    # a dark image stays dark: no stretching to its own maximum
    assert image_to_uint8(gray16).max() == 255 and _expected(np.array([19999])).item() == 78
    # float v / 65535 gives the same as uint16 v
    assert np.array_equal(image_to_uint8(gray16.astype(np.float64) / 65535.0), expected)
    # and it is not Pillow's 8-bit conversion of 48-bit PNGs (v >> 8): the test can tell them apart
    assert not np.array_equal(expected, (gray16 >> 8).astype(np.uint8))


def test_gray16_same_rgb_as_array_pil_and_file(tmp_path, gray16):
    expected = np.repeat(_expected(gray16)[..., None], 3, axis=2)
    Image.fromarray(gray16).save(tmp_path / "g.png")  # 16-bit gray PNG
    Image.fromarray(gray16).save(tmp_path / "g.tif")
    pil16 = Image.open(tmp_path / "g.png")
    assert pil16.mode.startswith("I")
    results = {
        "uint16 array": to_rgb_uint8(gray16),
        "uint16 [H, W, 1]": to_rgb_uint8(gray16[..., None]),
        "float array": to_rgb_uint8(gray16 / 65535.0),
        "PIL I;16": to_rgb_uint8(Image.fromarray(gray16)),
        "PIL from file": to_rgb_uint8(pil16),
        "PIL mode I": to_rgb_uint8(Image.fromarray(gray16.astype(np.int32))),
        "PNG file": io.read_image(tmp_path / "g.png"),
        "TIFF file": io.read_image(tmp_path / "g.tif"),
    }
    for how, rgb in results.items():
        assert rgb.dtype == np.uint8 and rgb.shape == (12, 16, 3), how
        assert np.array_equal(rgb, expected), how


def test_rgb48_same_rgb_as_array_and_file(tmp_path, rgb16):
    cv2 = pytest.importorskip("cv2")
    tifffile = pytest.importorskip("tifffile")
    expected = _expected(rgb16)
    cv2.imwrite(str(tmp_path / "c.png"), np.ascontiguousarray(rgb16[..., ::-1]))  # 48-bit PNG (BGR on disk)
    tifffile.imwrite(tmp_path / "c.tif", rgb16)
    results = {
        "uint16 array": to_rgb_uint8(rgb16),
        "float array": to_rgb_uint8(rgb16 / 65535.0),
        "48-bit PNG file": io.read_image(tmp_path / "c.png"),
        "48-bit TIFF file": io.read_image(tmp_path / "c.tif"),
    }
    for how, rgb in results.items():
        assert np.array_equal(rgb, expected), how

    # 64-bit RGBA: composited onto black at full depth, the same from PNG and TIFF
    alpha = np.random.default_rng(9).integers(0, 65536, rgb16.shape[:2]).astype(np.uint16)
    rgba16 = np.dstack([rgb16, alpha])
    cv2.imwrite(str(tmp_path / "a.png"), np.ascontiguousarray(rgba16[..., [2, 1, 0, 3]]))
    tifffile.imwrite(tmp_path / "a.tif", rgba16, photometric="rgb", extrasamples=["unassalpha"])
    composite = image_to_uint8(rgb16 / 65535.0 * (alpha[..., None] / 65535.0))
    assert np.array_equal(io.read_image(tmp_path / "a.png"), composite)
    assert np.array_equal(io.read_image(tmp_path / "a.tif"), composite)
    assert np.array_equal(io.read_image(tmp_path / "a.tif", alpha="drop"), expected)


def _sparse_depth(shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(3)
    depth = rng.integers(1000, 4000, shape).astype(np.uint16)
    depth[rng.random(shape) < 0.7] = 0
    return depth


def test_rgb48_same_result_through_complete_batch_and_cli(tmp_path, rgb16, monkeypatch):
    """The guided fill depends on the RGB, so equal depth maps mean equal RGB at every entry point."""
    cv2 = pytest.importorskip("cv2")
    from depthlab.batch import BatchOptions, prepare_item
    from depthlab.batch.worklist import Item
    from depthlab.cli import main
    from depthlab.completion import complete

    monkeypatch.setenv("DEPTHLAB_CHECKPOINTS", str(tmp_path / "no_weights"))
    depth_mm = _sparse_depth(rgb16.shape[:2])
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.ascontiguousarray(rgb16[..., ::-1]))
    Image.fromarray(depth_mm).save(folder / "a_depth.png")
    depth = depth_mm.astype(np.float32) / 1000

    from_array = complete(rgb16, depth, method="guided").depth
    from_pil_float = complete(rgb16 / 65535.0, depth, method="guided").depth
    # the 8-bit image an older rule (v >> 8) would give changes the result: the comparison can fail
    other_rule = complete((rgb16 >> 8).astype(np.uint8), depth, method="guided").depth
    assert not np.array_equal(from_array, other_rule)
    assert np.array_equal(from_pil_float, from_array)

    item = Item(
        key="a", image=folder / "a.png", depth=folder / "a_depth.png", mask=None, points=None,
        out_prefix=tmp_path / "b" / "a",
    )  # fmt: skip
    prepared = prepare_item(item, BatchOptions(formats=("npy",), depth_scale=1000.0))
    assert np.array_equal(prepared.rgb, _expected(rgb16))

    out = tmp_path / "out"
    args = ["complete", str(folder / "a.png"), "--method", "guided", "--depth-scale", "1000"]
    assert main([*args, "--out", str(out), "--format", "npy"]) == 0
    assert np.array_equal(np.load(Path(out) / "a_depth.npy"), from_array)
