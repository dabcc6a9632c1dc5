"""Drive the running demo through ``gradio_client``, as an API user would.

Checks that the classical outputs are exactly those of ``depthlab complete`` / ``depthlab.complete``
on the same inputs and mask, and that bad uploads come back as one-line messages.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from depthlab import io

from .conftest import EXAMPLE, REPO

gradio_client = pytest.importorskip("gradio_client")

PAINT = (slice(60, 100), slice(100, 180))  # rows, cols of the painted rectangle (back wall and box)


def _layer(path, shape, region=PAINT):
    layer = np.zeros((*shape, 4), np.uint8)
    layer[region] = (255, 0, 255, 255)
    Image.fromarray(layer, "RGBA").save(path)
    return path


def _predict(
    client,
    *,
    depth=EXAMPLE / "depth.png",
    layer=None,
    use_invalid=True,
    method="guided",
    mask_file=None,
    intrinsics="260,260,159.5,119.5",
    steps=50,
    resolution=768,
    ensemble=1,
    seed=0,
):
    handle = gradio_client.handle_file
    editor = {
        "background": handle(str(EXAMPLE / "rgb.png")),
        "layers": [handle(str(layer))] if layer else [],
        "composite": None,
        "id": None,
    }
    return client.predict(
        handle(str(EXAMPLE / "rgb.png")),
        handle(str(depth)),
        1000,
        editor,
        use_invalid,
        handle(str(mask_file)) if mask_file else None,
        "known",
        method,
        steps,
        0.8,
        resolution,
        ensemble,
        seed,
        "smooth",
        None,
        intrinsics,
        60,
        "points",
        api_name="/complete",
    )


def _files(result):
    return {p.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]: p for p in result[5]}


def test_classical_outputs_equal_the_library_and_the_cli(demo_server, tmp_path):
    client = gradio_client.Client(demo_server.url, verbose=False, download_files=str(tmp_path / "dl"))
    rgb = io.read_image(EXAMPLE / "rgb.png")
    depth = io.read_depth(EXAMPLE / "depth.png", scale=1000)
    painted = np.zeros(depth.shape, bool)
    painted[PAINT] = True
    known = (depth > 0) & ~painted
    layer = _layer(tmp_path / "layer.png", depth.shape)

    # guided through the API == `depthlab complete` with the same known mask
    result = _predict(client, layer=layer, method="guided")
    assert "Method used: `guided`" in result[0], result[0]
    files = _files(result)
    assert set(files) >= {"rgb_depth.npy", "rgb_depth.png", "rgb_known_mask.png"}, files
    served = np.load(files["rgb_depth.npy"])
    np.testing.assert_array_equal(io.read_mask(files["rgb_known_mask.png"]), known)
    Image.fromarray(known.astype(np.uint8) * 255).save(tmp_path / "known.png")
    out = tmp_path / "cli"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "depthlab.cli",
            "complete",
            str(EXAMPLE / "rgb.png"),
            "--depth",
            str(EXAMPLE / "depth.png"),
            "--depth-scale",
            "1000",
            "--mask",
            str(tmp_path / "known.png"),
            "--method",
            "guided",
            "--format",
            "npy,png16",
            "--out",
            str(out),
            "--quiet",
        ],
        check=True,
        cwd=REPO,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        timeout=120,
    )
    np.testing.assert_array_equal(served, np.load(out / "rgb_depth.npy"))
    np.testing.assert_array_equal(
        io.read_depth(files["rgb_depth.png"], scale=1000), io.read_depth(out / "rgb_depth.png", scale=1000)
    )
    assert np.all(np.isfinite(served[painted])) and np.all(served[painted] > 0)
    np.testing.assert_array_equal(served[known], depth[known])
    assert not np.array_equal(served[painted], depth[painted])  # the painted depth was replaced
    plyfile = pytest.importorskip("plyfile")
    vertices = plyfile.PlyData.read(files["rgb_points.ply"])["vertex"]
    assert vertices.count == served.size  # every pixel was filled
    z = np.sort(np.asarray(vertices["z"]))
    np.testing.assert_allclose(z, np.sort(served.ravel()), rtol=1e-6)  # z-depth of each pixel
    assert result[4].endswith(".glb")

    # the other classical methods == depthlab.complete
    import depthlab

    for method in ("linear", "nearest", "lidar"):
        served = np.load(_files(_predict(client, layer=layer, method=method))["rgb_depth.npy"])
        expected = depthlab.complete(rgb, depth, known, method=method).depth
        np.testing.assert_array_equal(served, expected, err_msg=method)

    # unticked "use invalid pixels": only the painted region is filled, holes stay empty (NaN)
    served = np.load(_files(_predict(client, layer=layer, use_invalid=False))["rgb_depth.npy"])
    assert np.all(
        np.isnan(served[depth == 0] if not painted[depth == 0].any() else served[(depth == 0) & ~painted])
    )
    assert np.all(np.isfinite(served[painted]))


def test_bad_uploads_are_messages(demo_server, tmp_path):
    client = gradio_client.Client(demo_server.url, verbose=False, download_files=str(tmp_path / "dl"))
    depth = io.read_depth(EXAMPLE / "depth.png", scale=1000)
    small = tmp_path / "small.npy"
    np.save(small, np.ones((10, 12), np.float32))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a PNG")
    every = _layer(tmp_path / "all.png", depth.shape, region=(slice(None), slice(None)))
    cases = [
        (dict(depth=small), "must be pixel-aligned"),
        (dict(depth=broken), "Cannot read the depth file"),
        (dict(use_invalid=False), "Nothing to fill"),  # no stroke and holes not chosen: all known
        (dict(layer=every), "No known depth left"),  # everything painted: nothing known
        (dict(layer=tmp_path / "all.png", intrinsics="1,2"), "No known depth left"),
    ]
    for kwargs, message in cases:
        with pytest.raises(Exception) as caught:
            _predict(client, **kwargs)
        text = str(caught.value)
        assert message in text, (kwargs, text)
        assert "Traceback" not in text
    layer = _layer(tmp_path / "layer.png", depth.shape)
    with pytest.raises(Exception, match="Intrinsics"):
        _predict(client, layer=layer, intrinsics="not,numbers")


def test_depthlab_with_options_and_uncertainty(demo_server, tmp_path):
    if not demo_server.has_depthlab:
        pytest.skip("torch is not installed: no tiny DepthLab checkpoint for the server")
    client = gradio_client.Client(demo_server.url, verbose=False, download_files=str(tmp_path / "dl"))
    depth = io.read_depth(EXAMPLE / "depth.png", scale=1000)
    layer = _layer(tmp_path / "layer.png", depth.shape)
    painted = np.zeros(depth.shape, bool)
    painted[PAINT] = True
    known = (depth > 0) & ~painted
    runs = [
        _predict(client, layer=layer, method="depthlab", steps=2, resolution=64, ensemble=2, seed=seed)
        for seed in (3, 3, 4)
    ]
    assert "Method used: `depthlab`" in runs[0][0], runs[0][0]
    shown = runs[0][3]  # the uncertainty picture, shown for ensemble_size 2 (a visibility update)
    assert shown["visible"] is True and shown["value"], shown
    first, again, other = (np.load(_files(r)["rgb_depth.npy"]) for r in runs)
    np.testing.assert_array_equal(first, again)  # same seed, same output
    assert not np.array_equal(first[painted], other[painted])  # the seed matters
    np.testing.assert_array_equal(first[known], depth[known])  # preserve_known="smooth": exact
    assert np.all(np.isfinite(first))
    one = _predict(client, layer=layer, method="depthlab", steps=2, resolution=64, ensemble=1)
    assert one[3]["visible"] is False and one[3]["value"] is None


def test_readme_api_example_runs(demo_server, tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    blocks = [b.split("```")[0] for b in text.split("```python")[1:]]
    block = next(b for b in blocks if "from gradio_client" in b)
    block = block.replace("http://127.0.0.1:7860/", demo_server.url + "/")
    block = block.replace('"rgb.png"', repr(str(EXAMPLE / "rgb.png"))).replace(
        '"depth.png"', repr(str(EXAMPLE / "depth.png"))
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert "Method used: `guided`" in namespace["status"]
    served = np.load(next(f for f in namespace["files"] if f.endswith(".npy")))
    depth = io.read_depth(EXAMPLE / "depth.png", scale=1000)
    np.testing.assert_array_equal(served[depth > 0], depth[depth > 0])
    assert np.all(np.isfinite(served))
