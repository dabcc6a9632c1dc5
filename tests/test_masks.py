import numpy as np
import pytest

from depthlab import masks


@pytest.fixture
def valid():
    valid = np.ones((60, 80), dtype=bool)
    valid[:5] = False  # an invalid band at the top
    valid[30, 40] = False
    return valid


def rng(seed=0):
    return np.random.default_rng(seed)


def test_random_ratio_count_and_validity(valid):
    known = masks.random_ratio(valid, 0.05, rng())
    assert known.dtype == np.bool_ and known.shape == valid.shape
    assert known.sum() == int(np.floor(0.05 * valid.sum() + 0.5))
    assert not (known & ~valid).any()


def test_random_ratio_matches_documented_rule(valid):
    # docs/protocols.md rule: row-major valid pixels, rng.choice without replacement
    k = max(1, int(np.floor(0.1 * valid.sum() + 0.5)))
    flat = np.flatnonzero(valid)
    expected = np.zeros(valid.size, dtype=bool)
    expected[flat[np.random.default_rng(3).choice(flat.size, k, replace=False)]] = True
    np.testing.assert_array_equal(masks.random_ratio(valid, 0.1, rng(3)), expected.reshape(valid.shape))


def test_random_ratio_keeps_at_least_one_and_rejects_bad_ratio(valid):
    assert masks.random_ratio(valid, 1e-9, rng()).sum() == 1
    assert masks.random_ratio(valid, 1.0, rng()).sum() == valid.sum()
    with pytest.raises(ValueError, match="ratio"):
        masks.random_ratio(valid, 5, rng())
    with pytest.raises(ValueError, match="ratio"):
        masks.random_ratio(valid, 0.0, rng())


def test_random_points_exact_count(valid):
    known = masks.random_points(valid, 500, rng())
    assert known.sum() == 500 and not (known & ~valid).any()
    tiny = np.zeros((4, 4), dtype=bool)
    tiny[0, :3] = True
    assert masks.random_points(tiny, 500, rng()).sum() == 3
    with pytest.raises(ValueError, match="`n`"):
        masks.random_points(valid, 0, rng())


def test_rng_must_be_generator(valid):
    with pytest.raises(TypeError, match="rng"):
        masks.random_points(valid, 5, 0)


def test_valid_must_be_2d_binary():
    with pytest.raises(ValueError, match="valid"):
        masks.random_points(np.ones((2, 3, 3), dtype=bool), 2, rng())
    with pytest.raises(ValueError, match="valid"):
        masks.random_points(np.full((3, 3), 2), 2, rng())


@pytest.mark.parametrize("coverage", [0.1, 0.3, 0.6])
def test_large_holes_meet_coverage(coverage):
    valid = np.ones((120, 160), dtype=bool)
    for seed in range(3):
        known = masks.large_holes(valid, coverage, rng(seed))
        achieved = 1.0 - known.mean()
        assert abs(achieved - coverage) <= 0.01 + 1e-9


@pytest.mark.parametrize("shape", masks.HOLE_SHAPES)
def test_large_holes_single_shape_kinds(shape):
    valid = np.ones((100, 100), dtype=bool)
    known = masks.large_holes(valid, 0.25, rng(1), shapes=(shape,))
    assert abs((1 - known.mean()) - 0.25) <= 0.01 + 1e-9


def test_large_holes_respect_validity_and_reject_bad_args(valid):
    known = masks.large_holes(valid, 0.3, rng())
    assert not (known & ~valid).any()
    with pytest.raises(ValueError, match="coverage"):
        masks.large_holes(valid, 1.0, rng())
    with pytest.raises(ValueError, match="shapes"):
        masks.large_holes(valid, 0.3, rng(), shapes=("triangles",))


def test_large_holes_are_large_connected_regions():
    # holes are a few big blobs, not salt-and-pepper noise
    from scipy import ndimage

    known = masks.large_holes(np.ones((120, 160), dtype=bool), 0.3, rng(2))
    labels, n = ndimage.label(~known)
    assert 1 <= n <= 60
    assert np.bincount(labels.ravel())[1:].max() > 0.02 * known.size


def test_lidar_lines_structure():
    valid = np.ones((100, 200), dtype=bool)
    known = masks.lidar_lines(valid, rng(), n_beams=16)
    rows_with_points = np.flatnonzero(known.any(axis=1))
    # at the centre column every beam hits its own row, from row 0 (top beam) to row H-1
    centre = known[:, 99:101].any(axis=1)
    assert centre[0] and centre[-1]
    assert 14 <= centre.sum() <= 17
    assert rows_with_points.size < 100
    # each line covers most columns
    assert known.sum() > 16 * 200 * 0.8
    fewer = masks.lidar_lines(valid, rng(), n_beams=16, keep_every=4)
    assert fewer.sum() < known.sum() / 3
    assert not (masks.lidar_lines(np.zeros_like(valid), rng())).any()


def test_lidar_lines_projection_formula():
    valid = np.ones((50, 300), dtype=bool)
    fy, cy, fx, cx = 100.0, 10.0, 100.0, 150.0
    known = masks.lidar_lines(
        valid,
        rng(),
        n_beams=2,
        vertical_fov=(-10.0, 0.0),
        fy=fy,
        cy=cy,
        fx=fx,
        cx=cx,
        azimuth_resolution=0.1,
    )
    # the 0-degree beam is the horizontal row v = cy everywhere
    assert known[10].sum() > 250
    # the -10 degree beam is at v = cy + fy * tan(10 deg) / cos(phi): curves down at the sides
    v_centre = cy + fy * np.tan(np.radians(10))
    assert known[int(round(v_centre)), 150]
    phi = np.arctan((290 - cx) / fx)
    v_side = int(round(cy + fy * np.tan(np.radians(10)) / np.cos(phi)))
    assert known[v_side - 1 : v_side + 2, 288:293].any()
    assert v_side > round(v_centre) + 5


def test_border_all_sides():
    valid = np.ones((100, 200), dtype=bool)
    known = masks.border(valid, rng(), width_fraction=0.2, sides="all")
    expected = np.zeros_like(valid)
    expected[20:80, 40:160] = True
    np.testing.assert_array_equal(known, expected)


def test_border_random_sides_and_errors():
    valid = np.ones((100, 200), dtype=bool)
    for seed in range(5):
        known = masks.border(valid, rng(seed))
        assert 0 < (~known).sum() < valid.size
    left = masks.border(valid, rng(), width_fraction=0.25, sides=["left"])
    assert not left[:, :50].any() and left[:, 50:].all()
    with pytest.raises(ValueError, match="sides"):
        masks.border(valid, rng(), sides=["middle"])
    with pytest.raises(ValueError, match="width_fraction"):
        masks.border(valid, rng(), width_fraction=0.6)


def test_sensor_holes_is_validity(valid):
    known = masks.sensor_holes(valid)
    np.testing.assert_array_equal(known, valid)
    assert known is not valid


@pytest.mark.parametrize(
    "protocol",
    [
        "ratio:5",
        "points:50",
        "holes:0.3",
        "lidar:32",
        "lidar:64:4",
        "border:0.1",
        "sensor",
        "ratio:1-10",
        "points:10-20",
        "holes:0.2-0.5",
        "border:0.1-0.3",
    ],
)
def test_make_mask_seeded_and_within_valid(valid, protocol):
    a = masks.make_mask(protocol, valid, 7)
    b = masks.make_mask(protocol, valid, 7)
    np.testing.assert_array_equal(a, b)
    assert not (a & ~valid).any() and a.any()


def test_make_mask_dispatch(valid):
    assert masks.make_mask("points:50", valid, 0).sum() == 50
    np.testing.assert_array_equal(
        masks.make_mask("ratio:5", valid, 3), masks.random_ratio(valid, 0.05, rng(3))
    )
    assert masks.make_mask("points:10-20", valid, 0).sum() in range(10, 21)
    assert not np.array_equal(masks.make_mask("ratio:5", valid, 1), masks.make_mask("ratio:5", valid, 2))


@pytest.mark.parametrize("bad", ["", "ratio", "ratio:x", "foo:3", "sensor:1", "ratio:5-1"])
def test_make_mask_bad_protocol(valid, bad):
    with pytest.raises(ValueError):
        masks.make_mask(bad, valid, 0)


def test_make_mask_bad_seed(valid):
    with pytest.raises(TypeError, match="seed"):
        masks.make_mask("ratio:5", valid, "0")


def test_protocol_rng_depends_on_every_key():
    a = masks.protocol_rng(0, "frame1", "ratio:5").random()
    assert a == masks.protocol_rng(0, "frame1", "ratio:5").random()
    assert a != masks.protocol_rng(0, "frame2", "ratio:5").random()
    assert a != masks.protocol_rng(1, "frame1", "ratio:5").random()


def test_mask_mixture_weights_and_config(valid):
    mixture = masks.MaskMixture.from_config({"components": {"points:10": 3, "sensor": 1}})
    np.testing.assert_allclose(mixture.weights, [0.75, 0.25])
    generator = rng(0)
    picked = [mixture.sample(valid, generator, return_protocol=True)[1] for _ in range(400)]
    share = picked.count("points:10") / len(picked)
    assert 0.68 < share < 0.82
    with pytest.raises(ValueError):
        masks.MaskMixture({"points:10": -1})
    with pytest.raises(ValueError):
        masks.MaskMixture({"nope:1": 1})


def test_mask_mixture_min_known_fallback():
    valid = np.ones((20, 20), dtype=bool)
    mixture = masks.MaskMixture({"points:1": 1.0}, min_known=5)
    assert mixture.sample(valid, rng()).sum() == 5


def test_sparsify_keeps_seeded_valid_pixels():
    depth = np.random.default_rng(0).uniform(1, 5, (30, 40)).astype(np.float32)
    depth[:, :5] = 0
    sparse, kept = masks.sparsify(depth, "points:50", seed=3)
    again, kept_again = masks.sparsify(depth, "points:50", seed=3)
    assert kept.sum() == 50 and np.array_equal(kept, kept_again) and np.array_equal(sparse, again)
    assert not kept[:, :5].any() and np.array_equal(sparse[kept], depth[kept]) and np.all(sparse[~kept] == 0)
    with pytest.raises(ValueError, match="unknown mask protocol"):
        masks.sparsify(depth, "pionts:50")
    with pytest.raises(ValueError, match="without valid"):
        masks.sparsify(np.zeros((4, 4)), "points:5")
