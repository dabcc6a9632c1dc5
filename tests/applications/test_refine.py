import numpy as np
import pytest
from PIL import Image

from depthlab.applications.refine import (
    RefineConfig,
    confidence_mask,
    read_rough_depth,
    refine_depth,
    run_refine,
)
from depthlab.geometry import Camera, unproject


@pytest.fixture
def rough(rng):
    rows, cols = np.mgrid[0:40, 0:56]
    truth = (2.0 + 0.03 * cols + 0.02 * rows).astype(np.float32)
    confidence = rng.uniform(1, 10, truth.shape)
    noisy = truth.copy()
    bad = confidence < 3
    noisy[bad] += rng.uniform(0.5, 2.0, bad.sum()).astype(np.float32)  # low confidence = wrong depth
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    return rgb, truth, noisy, confidence, bad


def test_low_confidence_pixels_are_recompleted_scale_kept(rough):
    rgb, truth, noisy, confidence, bad = rough
    result = refine_depth(rgb, noisy, confidence, min_confidence=3.0, method="linear")
    assert np.array_equal(result.known_mask, ~bad) and result.threshold == 3.0
    refined = result.output.depth
    assert np.array_equal(refined[~bad], noisy[~bad]) and result.scale_ratio == 1.0
    # the wrong pixels move back towards the truth (a plane: linear interpolation recovers it)
    assert np.abs(refined[bad] - truth[bad]).mean() < 0.05 < np.abs(noisy[bad] - truth[bad]).mean()


def test_quantile_threshold_and_pointmap(rough, tmp_path):
    rgb, truth, noisy, confidence, _ = rough
    known, threshold = confidence_mask(noisy, confidence, confidence_quantile=0.25)
    assert abs(known.mean() - 0.75) < 0.01 and threshold == pytest.approx(np.quantile(confidence, 0.25))
    camera = Camera(50.0, 50.0, 27.5, 19.5, 56, 40)
    pointmap = unproject(noisy, camera).points.reshape(40, 56, 3)
    np.save(tmp_path / "pts3d.npy", pointmap)
    assert np.allclose(read_rough_depth(tmp_path / "pts3d.npy"), noisy)
    via_pointmap = refine_depth(rgb, pointmap, confidence, confidence_quantile=0.25, method="nearest")
    via_depth = refine_depth(rgb, noisy, confidence, confidence_quantile=0.25, method="nearest")
    assert np.array_equal(via_pointmap.output.depth, via_depth.output.depth)


def test_errors(rough):
    rgb, _, noisy, confidence, _ = rough
    with pytest.raises(ValueError, match="exactly one of --min-confidence"):
        confidence_mask(noisy, confidence)
    with pytest.raises(ValueError, match="need a --confidence"):
        confidence_mask(noisy, None, min_confidence=1.0)
    with pytest.raises(ValueError, match="--confidence has shape"):
        confidence_mask(noisy, confidence[:10], min_confidence=1.0)
    with pytest.raises(ValueError, match="no pixel has confidence >= 100"):
        confidence_mask(noisy, confidence, min_confidence=100.0)
    with pytest.raises(ValueError, match="--confidence-quantile must be in"):
        confidence_mask(noisy, confidence, confidence_quantile=1.5)


def test_depthlab_refine_mode_keeps_the_scale(rough, tiny_method):
    rgb, _, noisy, confidence, bad = rough
    noisy = noisy.copy()
    noisy[0, 0] = np.nan  # refine=True needs a finite map: filled from the neighbours first
    result = refine_depth(rgb, noisy, confidence, min_confidence=3.0, method=tiny_method,
                          depthlab_options={"num_inference_steps": 2, "strength": 0.5, "processing_resolution": 32})  # fmt: skip
    assert result.output.method == "depthlab" and np.isfinite(result.output.depth).all()
    assert 0.9 < result.scale_ratio < 1.1  # the known (confident) pixels set the scale, even untrained


def test_run_refine_files(rough, tmp_path):
    rgb, _, noisy, confidence, _ = rough
    Image.fromarray(rgb).save(tmp_path / "view.png")
    np.save(tmp_path / "depth.npy", noisy)
    np.save(tmp_path / "conf.npy", confidence)
    config = RefineConfig(image=str(tmp_path / "view.png"), depth=str(tmp_path / "depth.npy"), confidence=str(tmp_path / "conf.npy"),
                          min_confidence=3.0, intrinsics="50,50,27.5,19.5", out=str(tmp_path / "out"), method="linear",
                          formats=("npy", "color", "panel", "ply"))  # fmt: skip
    result, paths, _ = run_refine(config)
    assert set(paths) == {"npy", "color", "panel", "ply"} and all(p.is_file() for p in paths.values())
    assert np.array_equal(np.load(paths["npy"]), result.output.depth)
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_refine(config)
