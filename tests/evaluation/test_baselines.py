import numpy as np
import pytest

from depthlab.monocular import AlignBaseline, detect_backend


@pytest.fixture
def scene():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:30, 0:40]
    depth = (2.0 + 0.1 * xx + 0.05 * yy).astype(np.float32)
    known = rng.random(depth.shape) < 0.1
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    return rgb, depth, known


def test_align_baseline_with_exact_disparity_predictor(scene):
    rgb, depth, known = scene
    baseline = AlignBaseline(lambda image: 7.0 / depth + 0.3, "disparity", name="oracle")
    output = baseline(rgb, np.where(known, depth, 0), known)
    np.testing.assert_allclose(output.depth, depth, rtol=1e-4)
    assert output.method == "align:oracle" and output.info["space"] == "disparity"
    assert output.info["n_fit"] == known.sum()


def test_align_baseline_depth_space_and_errors(scene):
    rgb, depth, known = scene
    baseline = AlignBaseline(lambda image: (depth - 1.0) / 4.0, "depth", align_method="robust")
    np.testing.assert_allclose(baseline(rgb, depth, known).depth, depth, rtol=1e-4)
    with pytest.raises(ValueError, match="prediction_kind"):
        AlignBaseline(lambda image: depth, "metric")
    wrong = AlignBaseline(lambda image: np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="predicted"):
        wrong(rgb, depth, known)


@pytest.fixture(scope="module")
def tiny_depth_anything(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    backbone = transformers.Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        patch_size=14,
        image_size=28,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # make the random head output vary with the image
        model.head.conv3.bias.fill_(1.0)
    folder = tmp_path_factory.mktemp("tiny_depth_anything")
    model.save_pretrained(folder)
    transformers.DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False).save_pretrained(
        folder
    )
    return folder


def test_align_baseline_tiny_transformers_model_end_to_end(tiny_depth_anything, scene):
    rgb, depth, known = scene
    assert detect_backend(tiny_depth_anything) == "transformers"
    baseline = AlignBaseline.from_pretrained(str(tiny_depth_anything))
    assert baseline.prediction_kind == "disparity"
    output = baseline(rgb, np.where(known, depth, 0), known)
    assert output.depth.shape == depth.shape and output.depth.dtype == np.float32
    assert np.isfinite(output.depth).all() and (output.depth > 0).all()
    # least squares in disparity space: the fitted disparity residual on known pixels is minimal
    scale, shift = output.info["scale"], output.info["shift"]
    prediction = baseline.predictor(rgb)
    residual = scale * prediction[known] + shift - 1.0 / depth[known]
    assert abs(residual.mean()) < 1e-4


def test_align_method_through_complete_matches_the_baseline(tiny_depth_anything, scene):
    from depthlab.completion import complete

    rgb, depth, known = scene
    sparse = np.where(known, depth, 0)
    out = complete(rgb, sparse, known, method=f"align:{tiny_depth_anything}", align_method="scale")
    assert out.method == f"align:{tiny_depth_anything}"
    assert out.info["method_reason"] == f"method 'align:{tiny_depth_anything}' was requested"
    direct = AlignBaseline.from_pretrained(str(tiny_depth_anything), align_method="scale")(rgb, sparse, known)
    np.testing.assert_array_equal(out.depth, direct.depth)
    assert out.info["scale"] == direct.info["scale"] and out.info["shift"] == 0


def test_runner_with_align_method(tiny_depth_anything, tmp_path):
    from PIL import Image

    from depthlab.evaluation import runner

    root = tmp_path / "data"
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    Image.fromarray(np.zeros((20, 24, 3), np.uint8) + 90).save(root / "rgb" / "a.png")
    np.save(root / "depth" / "a.npy", np.linspace(1, 3, 480, dtype=np.float32).reshape(20, 24))
    method = f"align:{tiny_depth_anything}"
    config = runner.merge_config(
        {},
        {
            "dataset": "folder",
            "root": str(root),
            "protocols": ["ratio:20"],
            "methods": [method],
            "out": str(tmp_path / "out"),
            "num_figures": 1,
        },
    )
    summary = runner.run_evaluation(config, show_progress=False)
    assert not summary["failures"]
    result = [r for r in summary["results"] if r["region"] == "unknown"][0]
    assert result["n_ok"] == 1 and np.isfinite(result["abs_rel"])


def test_detect_backend(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    assert detect_backend(tmp_path) == "diffusers"
    assert detect_backend("prs-eth/marigold-depth-v1-0") == "diffusers"
    assert detect_backend("depth-anything/Depth-Anything-V2-Small-hf") == "transformers"
    with pytest.raises(FileNotFoundError):
        detect_backend(tmp_path / "..")
