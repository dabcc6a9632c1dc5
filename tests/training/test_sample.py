import numpy as np
import pytest

from depthlab import preprocessing
from depthlab.masks import MaskMixture
from depthlab.training.sample import (
    AugmentationConfig,
    NormalizationConfig,
    augment,
    make_training_sample,
    normalize_training_depth,
)


def scene(height=40, width=48, seed=0):
    from depthlab.data.synthetic import render_scene

    rgb, depth, _ = render_scene(np.random.default_rng(seed), height, width)
    valid = np.ones_like(depth, dtype=bool)
    valid[:3, :5] = False  # some invalid GT
    return rgb, np.where(valid, depth, 0).astype(np.float32), valid


MIXTURE = MaskMixture({"holes:0.3-0.6": 1.0, "ratio:5-20": 1.0, "border:0.1-0.3": 1.0}, min_known=8)


@pytest.mark.parametrize("seed", range(6))
def test_sample_contract(seed):
    rgb, depth, valid = scene(seed=seed)
    rng = np.random.default_rng(seed)
    out = make_training_sample(rgb, depth, valid, rng, MIXTURE, (32, 32), AugmentationConfig((0.7, 1.0), 0.5))
    known, valid_out = out["known_mask"], out["valid_mask"]
    assert out["rgb"].shape == (32, 32, 3) and out["rgb"].dtype == np.uint8
    assert not np.any(known & ~valid_out), "known pixels must be valid"
    np.testing.assert_array_equal(out["unknown"], (~known).astype(np.float32))
    a, b = out["target_range"]
    # Known range is mapped exactly onto [a, b] inside [-1, 1]; all valid depth stays in [-1, 1].
    assert -1 - 1e-5 <= a < b <= 1 + 1e-5
    assert out["depth_norm"][known].min() == pytest.approx(a, abs=1e-4)
    assert out["depth_norm"][known].max() == pytest.approx(b, abs=1e-4)
    assert out["depth_norm"][valid_out].min() >= -1 - 1e-4 and out["depth_norm"][valid_out].max() <= 1 + 1e-4
    # Masked depth: known pixels carry the normalised depth, the rest is the pipeline's linear fill.
    np.testing.assert_array_equal(out["masked_depth"][known], out["depth_norm"][known])
    expected = preprocessing.linear_fill(np.where(known, out["depth_norm"], 0), known, 0.0, exact=False)
    np.testing.assert_allclose(out["masked_depth"], expected, atol=1e-6)
    assert np.all(np.isfinite(out["depth_norm"])), "invalid pixels must be filled for the VAE"


def test_sample_is_a_function_of_the_generator():
    rgb, depth, valid = scene()
    one = make_training_sample(rgb, depth, valid, np.random.default_rng(5), MIXTURE, (32, 32))
    two = make_training_sample(rgb, depth, valid, np.random.default_rng(5), MIXTURE, (32, 32))
    three = make_training_sample(rgb, depth, valid, np.random.default_rng(6), MIXTURE, (32, 32))
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])
    assert not np.array_equal(one["known_mask"], three["known_mask"])


def test_random_normalization_spans_vary_and_respect_bounds():
    rgb, depth, valid = scene()
    known = np.zeros_like(valid)
    known[10:30, 10:30] = True  # known range narrower than the full range
    spans = []
    for seed in range(20):
        normalized, (a, b) = normalize_training_depth(depth, valid, known, np.random.default_rng(seed))
        spans.append(b - a)
        assert normalized[valid].min() >= -1 - 1e-5 and normalized[valid].max() <= 1 + 1e-5
    assert max(spans) - min(spans) > 0.05


def test_inference_normalization_matches_pipeline():
    rgb, depth, valid = scene()
    known = MIXTURE.sample(valid, np.random.default_rng(1))
    ours, (a, b) = normalize_training_depth(
        depth, valid, known, np.random.default_rng(0), NormalizationConfig("inference")
    )
    theirs, _, _ = preprocessing.normalize_depth(depth, known, 1.0)
    np.testing.assert_array_equal(ours, theirs)
    assert (a, b) == (-1.0, 1.0)


def test_masked_depth_matches_the_pipeline_inputs():
    """With inference normalisation, the masked-depth input equals what DepthLabPipeline computes."""
    from depthlab.data.synthetic import render_scene

    rgb, depth, _ = render_scene(np.random.default_rng(2), 32, 32)
    valid = np.ones_like(depth, dtype=bool)
    out = make_training_sample(
        rgb,
        depth,
        valid,
        np.random.default_rng(0),
        MaskMixture({"holes:0.4": 1.0}),
        (32, 32),
        AugmentationConfig((1.0, 1.0), 0.0),
        NormalizationConfig("inference"),
        fill="linear_exact",
    )
    known = out["known_mask"]
    item = preprocessing.prepare_input(rgb, np.where(known, depth, 0), known, 0, 1.0)  # the pipeline's
    np.testing.assert_allclose(out["masked_depth"], item.masked_filled, atol=1e-6)
    np.testing.assert_allclose(out["depth_norm"][known], item.normalized[known], atol=1e-6)
    np.testing.assert_array_equal(out["unknown"], (~item.resized.known_mask).astype(np.float32))


def test_augment_flip_and_crop():
    rgb, depth, valid = scene(40, 40)
    config = AugmentationConfig((1.0, 1.0), 1.0)
    out_rgb, out_depth, out_valid = augment(rgb, depth, valid, (40, 40), np.random.default_rng(0), config)
    np.testing.assert_array_equal(out_depth, depth[:, ::-1])
    np.testing.assert_array_equal(out_rgb, rgb[:, ::-1])
    np.testing.assert_array_equal(out_valid, valid[:, ::-1])
    small = augment(
        rgb, depth, valid, (16, 24), np.random.default_rng(0), AugmentationConfig((0.5, 1.0), 0.0)
    )
    assert small[0].shape == (16, 24, 3) and small[1].shape == (16, 24)
    # Nearest resampling: every output depth value exists in the input.
    assert np.isin(small[1], depth).all()


@pytest.mark.parametrize("bad", [{"crop_scale": (0.0, 1.0)}, {"crop_scale": (0.9, 0.5)}, {"hflip_p": 2.0}])
def test_augmentation_config_errors(bad):
    with pytest.raises(ValueError):
        AugmentationConfig.from_config(bad)


def test_normalization_config_errors():
    with pytest.raises(ValueError, match="mode"):
        NormalizationConfig.from_config({"mode": "x"})
    with pytest.raises(ValueError, match="min_span"):
        NormalizationConfig.from_config({"min_span": 0})
