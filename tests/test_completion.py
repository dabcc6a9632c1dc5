import sys

import numpy as np
import pytest

import depthlab
from depthlab.completion import METHODS, complete, resolve_method


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)
    depth = rng.uniform(1, 3, (32, 40)).astype(np.float32)
    known = rng.random((32, 40)) < 0.2
    return rgb, np.where(known, depth, 0.0), known


@pytest.fixture
def no_weights(no_weights):
    """The root conftest's ``no_weights``, for tests that need torch (DepthLab installed, no weights)."""
    pytest.importorskip("torch")


def test_auto_falls_back_to_guided_without_weights(inputs, no_weights):
    rgb, depth, known = inputs
    out = complete(rgb, depth, known, num_inference_steps=5)
    assert out.method == "guided"
    assert "no DepthLab weights" in out.info["method_reason"]
    assert out.info["ignored_options"] == ["num_inference_steps"]
    assert np.array_equal(out.depth[known], depth[known])
    assert out.depth.dtype == np.float32 and out.known_mask.dtype == np.bool_


def test_auto_without_torch(inputs, monkeypatch):
    monkeypatch.setitem(sys.modules, "depthlab.models.loading", None)
    chosen, reason, _ = resolve_method("auto")
    assert chosen == "guided" and "torch" in reason
    with pytest.raises(ImportError, match="depthlab\\[diffusion\\]"):
        resolve_method("depthlab")


def test_package_level_function_and_mask_from_depth(inputs):
    rgb, depth, _ = inputs
    out = depthlab.complete(rgb, depth, method="nearest")
    assert out.method == "nearest"
    assert np.array_equal(out.known_mask, depth > 0)


@pytest.mark.parametrize("method", ["guided", "linear", "nearest", "lidar"])
def test_each_classical_method(inputs, method):
    rgb, depth, known = inputs
    out = complete(rgb, depth, known, method=method)
    assert out.method == method and out.info["method_reason"] == f"method {method!r} was requested"
    assert np.array_equal(out.depth[known], depth[known])


def test_errors_name_argument_and_value(inputs):
    rgb, depth, known = inputs
    with pytest.raises(ValueError, match="one of auto, depthlab, guided") as error:
        complete(rgb, depth, known, method="cubic")
    assert "'cubic'" in str(error.value) and all(m in str(error.value) for m in METHODS)
    with pytest.raises(TypeError, match="does not take option\\(s\\) steps"):
        complete(rgb, depth, known, method="guided", steps=3)
    with pytest.raises(ValueError, match="image"):
        complete(None, depth, known, method="guided")
    with pytest.raises(ValueError, match="no known pixel"):
        complete(rgb, np.zeros_like(depth), method="nearest")
    with pytest.raises(ValueError, match="size"):
        complete(rgb[:8], depth, known, method="linear")


def test_depthlab_method_with_tiny_pipeline(inputs):
    torch = pytest.importorskip("torch")
    from depthlab.pipeline import DepthLabPipeline

    if not hasattr(DepthLabPipeline, "build_tiny"):
        pytest.skip("DepthLabPipeline.build_tiny not available yet")
    pipe = DepthLabPipeline.build_tiny(seed=0)
    rgb, depth, known = inputs
    out = complete(
        rgb,
        depth,
        known,
        pipeline=pipe,
        num_inference_steps=2,
        processing_resolution=32,
        strength=0.5,
        generator=torch.Generator().manual_seed(0),
        show_progress_bar=False,
    )
    assert out.method == "depthlab"
    assert out.info["method_reason"] == "a DepthLab pipeline was given"
    assert np.asarray(out.depth).shape == depth.shape


def test_depthlab_requested_without_weights_is_an_error(inputs, no_weights, tmp_path):
    rgb, depth, known = inputs
    with pytest.raises(FileNotFoundError):
        complete(rgb, depth, known, method="depthlab", checkpoints=tmp_path)


def test_known_pixels_need_depth_above_zero(inputs, caplog):
    rgb, depth, known = inputs
    region = np.zeros_like(known)
    region[:, :20] = True  # a 'valid region' mask over sparse depth
    out_known = complete(rgb, depth, region, method="guided")
    out_fill = complete(rgb, depth, ~(~region), method="guided")
    assert "pixels known whose depth is 0" in caplog.text
    assert np.array_equal(out_known.known_mask, region & (depth > 0))
    assert np.array_equal(out_known.depth, out_fill.depth) and np.all(out_known.depth > 0)
    negative = depth.copy()
    negative[0, :3] = -2.0
    with pytest.raises(ValueError, match=r"3 negative values .*min -2"):
        complete(rgb, negative, method="guided")
    with pytest.raises(ValueError, match=r"negative values \(every value\)"):
        complete(rgb, -np.ones_like(depth), method="guided")
    with pytest.raises(ValueError, match="every pixel as known"):
        complete(rgb, depth + 1.0, method="nearest")


def test_depthlab_options_checked_for_every_method(inputs, no_weights, caplog):
    rgb, depth, known = inputs
    with pytest.raises(ValueError, match="`num_inference_steps` must be >= 1; got 0"):
        complete(rgb, depth, known, num_inference_steps=0)
    with pytest.raises(ValueError, match=r"`strength` must be in \(0, 1\]; got 1.5"):
        complete(rgb, depth, known, method="guided", strength=1.5)
    out = complete(rgb, depth, known, num_inference_steps=4, fill_mode="fast")
    assert out.info["ignored_options"] == ["fill_mode", "num_inference_steps"]
    assert "does not use option(s) fill_mode, num_inference_steps" in caplog.text


def test_registry_lists_every_method_and_reads_align_argument():
    from depthlab.completion import get_method, method_names

    assert method_names() == ("auto", "depthlab", "guided", "linear", "nearest", "lidar", "align:<model>")
    entry, argument = get_method("align:depth-anything/Depth-Anything-V2-Small-hf")
    assert entry.name == "align" and argument == "depth-anything/Depth-Anything-V2-Small-hf"
    assert entry.needs_torch and entry.loader
    assert not get_method("nearest")[0].needs_image and get_method("guided")[0].needs_image
    with pytest.raises(ValueError, match="needs a model"):
        get_method("align:")
    with pytest.raises(ValueError, match="takes no argument"):
        get_method("guided:fast")


def test_registered_method_runs_through_complete_and_the_eval_runner(inputs, tmp_path):
    from depthlab.completion import _REGISTRY, Method, prepare_method, register_method
    from depthlab.evaluation.runner import build_method

    def constant_fill(depth, known_mask, *, value=2.0):
        return np.where(known_mask, depth, value).astype(np.float32)

    rgb, depth, known = inputs
    register_method(Method("constant", constant_fill, needs_image=False, description="test fill"))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_method(Method("constant", constant_fill))
        out = complete(None, depth, known, method="constant", value=5.0)
        assert out.method == "constant" and out.info["options"] == {"value": 5.0}
        assert np.all(out.depth[~known] == 5.0) and np.array_equal(out.depth[known], depth[known])
        with pytest.raises(TypeError, match="does not take option\\(s\\) steps; it takes value"):
            complete(None, depth, known, method="constant", steps=1)
        prepared = prepare_method("constant", value=7.0)
        assert np.all(complete(rgb, depth, known, method=prepared).depth[~known] == 7.0)
        run = build_method("constant", {"value": 3.0})
        assert np.all(run(rgb, depth, known)[~known] == 3.0)
    finally:
        _REGISTRY.pop("constant")
