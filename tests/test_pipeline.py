"""DepthLabPipeline behaviour with tiny random-weight models (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depthlab import DepthLabPipeline, preprocessing  # noqa: E402
from depthlab.models.loading import check_device_dtype, resolve_dtype  # noqa: E402

STEPS = dict(num_inference_steps=4, processing_resolution=64, show_progress_bar=False)


def run(pipeline: DepthLabPipeline, *args, **kwargs):
    """Call the pipeline with the fast test settings, overridable."""
    return pipeline(*args, **{**STEPS, **kwargs})


def test_output_contract_any_size(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene(44, 60)  # not multiples of 8 at processing_resolution 0
    out = run(tiny_pipeline, rgb, depth, processing_resolution=0, generator=torch.Generator().manual_seed(0))
    assert out.depth.shape == (44, 60) and out.depth.dtype == np.float32
    assert np.isfinite(out.depth).all() and (out.depth >= 0).all()
    np.testing.assert_array_equal(out.known_mask, known)  # default mask: finite and > 0
    assert out.uncertainty is None and out.latent is None and out.method == "depthlab"
    assert out.info["processing_size"] == [[44, 60]]
    # The denormalisation maps the decoded range onto the known range: values stay near it.
    lo, hi = depth[known].min(), depth[known].max()
    assert out.depth.min() > lo - 2 * (hi - lo) and out.depth.max() < hi + 2 * (hi - lo)


def test_processing_resolution_resizes_back(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene(50, 70)
    out = run(tiny_pipeline, rgb, depth, known, processing_resolution=35, output_latent=True)
    assert out.depth.shape == (50, 70)
    assert out.info["processing_size"] == [[25, 35]]
    assert tuple(out.latent.shape) == (1, 4, 4, 5)  # 25x35 padded to 32x40


def test_same_generator_same_output_and_seed_matters(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    outs = [
        run(tiny_pipeline, rgb, depth, known, generator=torch.Generator().manual_seed(s)).depth
        for s in (3, 3, 4)
    ]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.abs(outs[0] - outs[2]).max() > 1e-4


def test_batch_equals_single(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    scenes = [make_scene(seed=0), make_scene(seed=1)]
    scenes[1] = (scenes[1][0][:, ::-1].copy(), scenes[1][1] * 1.5, scenes[1][2])
    noise = torch.randn(2, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    batch = run(
        tiny_pipeline,
        [s[0] for s in scenes],
        [s[1] for s in scenes],
        [s[2] for s in scenes],
        noise=noise,
        batch_size=2,
        output_latent=True,
    )
    assert batch.depth.shape == (2, 44, 60)
    for i, (rgb, depth, known) in enumerate(scenes):
        single = run(tiny_pipeline, rgb, depth, known, noise=noise[i : i + 1], output_latent=True)
        assert np.abs(batch.latent[i].numpy() - single.latent[0].numpy()).max() < 1e-5
        assert np.abs(batch.depth[i] - single.depth).max() < 1e-4


def test_batch_of_different_sizes_returns_list(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    a, b = make_scene(44, 60), make_scene(36, 52)
    out = run(
        tiny_pipeline,
        [a[0], b[0]],
        [a[1], b[1]],
        processing_resolution=0,
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(out.depth, list) and [d.shape for d in out.depth] == [(44, 60), (36, 52)]


def test_ensemble_mean_and_uncertainty(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    noise = torch.randn(3, 4, 6, 8, generator=torch.Generator().manual_seed(1))
    out = run(tiny_pipeline, rgb, depth, known, ensemble_size=3, noise=noise, batch_size=2)
    members = [run(tiny_pipeline, rgb, depth, known, noise=noise[i : i + 1]).depth for i in range(3)]
    np.testing.assert_allclose(out.depth, np.mean(members, axis=0), atol=1e-4)
    np.testing.assert_allclose(out.uncertainty, np.std(members, axis=0), atol=1e-4)
    assert out.uncertainty.max() > 0


def test_strength_one_uses_latents_and_full_schedule(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    g = torch.Generator().manual_seed(0)
    noise, init = torch.randn(1, 4, 6, 8, generator=g), torch.randn(1, 4, 6, 8, generator=g)
    out = run(tiny_pipeline, rgb, depth, known, strength=1.0, noise=noise, latents=init, output_latent=True)
    assert out.info["timesteps"] == [751, 501, 251, 1]
    other = run(
        tiny_pipeline, rgb, depth, known, strength=1.0, noise=noise, latents=-init, output_latent=True
    )
    assert np.abs(out.latent.numpy() - other.latent.numpy()).max() > 1e-3


def test_trailing_timestep_spacing(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    out = run(tiny_pipeline, rgb, depth, known, strength=1.0, timestep_spacing="trailing")
    assert out.info["timesteps"] == [999, 749, 499, 249]
    assert (
        tiny_pipeline.scheduler.config.timestep_spacing == "leading"
    )  # the pipeline's scheduler is untouched


def test_output_type_pt(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    out = run(tiny_pipeline, rgb, depth, known, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert isinstance(out.depth, torch.Tensor) and out.depth.shape == (44, 60)


def test_inputs_in_any_form_give_the_same_answer(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    from PIL import Image

    rgb, depth, known = make_scene()
    noise = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    reference = run(tiny_pipeline, rgb, depth, known, noise=noise).depth
    variants = [
        (Image.fromarray(rgb), torch.from_numpy(depth), torch.from_numpy(known)),
        (torch.from_numpy(rgb).permute(2, 0, 1), depth[None], known.astype(np.uint8)),
        (rgb.astype(np.float32) / 255.0, depth.astype(np.float64), None),
    ]
    for image, d, m in variants:
        np.testing.assert_allclose(run(tiny_pipeline, image, d, m, noise=noise).depth, reference, atol=1e-5)


# ---------------------------------------------------------------- preserve_known
def test_preserve_known_exact_and_smooth(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    noise = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    base = run(tiny_pipeline, rgb, depth, known, noise=noise).depth
    exact = run(tiny_pipeline, rgb, depth, known, noise=noise, preserve_known="exact").depth
    smooth = run(tiny_pipeline, rgb, depth, known, noise=noise, preserve_known="smooth").depth
    assert np.abs(base[known] - depth[known]).max() > 1e-3  # the model alone does not match them
    np.testing.assert_array_equal(exact[known], depth[known])
    np.testing.assert_array_equal(exact[~known], base[~known])
    np.testing.assert_allclose(smooth[known], depth[known], atol=1e-5)
    # The correction is harmonic on the hole: each unknown pixel is the mean of its 4 neighbours.
    correction = smooth.astype(np.float64) - base
    inner = ~known
    inner[0, :] = inner[-1, :] = inner[:, 0] = inner[:, -1] = False
    rows, cols = np.nonzero(inner)
    neighbours = (
        correction[rows - 1, cols]
        + correction[rows + 1, cols]
        + correction[rows, cols - 1]
        + correction[rows, cols + 1]
    ) / 4
    assert np.abs(correction[rows, cols] - neighbours).max() < 1e-4
    # No seam: the jump across the hole border is smaller than with the plain paste.
    border = known & (np.roll(~known, 1, 0) | np.roll(~known, -1, 0))
    jump_exact = np.abs(exact - np.roll(exact, 1, 0))[border].max()
    jump_smooth = np.abs(smooth - np.roll(smooth, 1, 0))[border].max()
    assert jump_smooth < jump_exact


# ---------------------------------------------------------------- sparse input, resizing
def test_sparse_points_survive_downscaling(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rng = np.random.default_rng(0)
    rgb, dense, _ = make_scene(120, 160)
    known = np.zeros(dense.shape, bool)
    known.flat[rng.choice(dense.size, 40, replace=False)] = True
    depth = np.where(known, 2.0 + rng.random(dense.shape), 0).astype(np.float32)
    resized = preprocessing.resize_inputs(rgb, preprocessing.nearest_fill(depth, known), known, 48)
    assert resized.resize_mode == "preserve"
    rows, cols = np.nonzero(known)
    cells = {(int((r + 0.5) * 36 / 120), int((c + 0.5) * 48 / 160)) for r, c in zip(rows, cols, strict=True)}
    assert int(resized.known_mask.sum()) == len(cells)  # every point kept, one known cell per cell hit
    nearest = preprocessing.resize_inputs(
        rgb, preprocessing.nearest_fill(depth, known), known, 48, resize_mode="nearest"
    )
    assert nearest.known_mask.sum() < len(cells)  # the original's nearest resize drops points
    assert set(np.unique(resized.depth[resized.known_mask])) <= set(np.unique(depth[known]))
    out = run(tiny_pipeline, rgb, depth, known, processing_resolution=48)
    assert out.info["resize_mode"] == ["preserve"]


def test_fast_fill_mode_runs(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    noise = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    exact = run(tiny_pipeline, rgb, depth, known, noise=noise).depth
    fast = run(tiny_pipeline, rgb, depth, known, noise=noise, fill_mode="fast").depth
    assert np.isfinite(fast).all() and np.abs(fast - exact).mean() < 0.05 * np.abs(exact).mean()


# ---------------------------------------------------------------- dtypes, saving, loading
def test_bfloat16_runs_close_to_float32(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    noise = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    reference = run(tiny_pipeline, rgb, depth, known, noise=noise).depth
    low = DepthLabPipeline.build_tiny(seed=0).to(dtype=torch.bfloat16)
    assert low.estimation_unet.dtype == torch.bfloat16
    out = run(low, rgb, depth, known, noise=noise).depth
    assert out.dtype == np.float32 and np.isfinite(out).all()
    spread = depth[known].max() - depth[known].min()
    assert np.abs(out - reference).mean() < 0.1 * spread


def test_save_load_round_trip(tiny_pipeline: DepthLabPipeline, tmp_path, make_scene) -> None:
    rgb, depth, known = make_scene()
    noise = torch.randn(1, 4, 6, 8, generator=torch.Generator().manual_seed(0))
    reference = run(tiny_pipeline, rgb, depth, known, noise=noise).depth
    tiny_pipeline.save_pretrained(tmp_path / "full")
    loaded = DepthLabPipeline.from_pretrained(tmp_path / "full")
    np.testing.assert_array_equal(run(loaded, rgb, depth, known, noise=noise).depth, reference)
    with pytest.raises(FileExistsError, match="not empty"):
        tiny_pipeline.save_pretrained(tmp_path / "full")

    tiny_pipeline.save_pretrained(tmp_path / "half", dtype=torch.float16)
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*.safetensors"))  # noqa: E731
    assert size(tmp_path / "half") < 0.6 * size(tmp_path / "full")
    half = DepthLabPipeline.from_pretrained(tmp_path / "half", torch_dtype=torch.float32)
    assert half.estimation_unet.dtype == torch.float32
    weight = tiny_pipeline.estimation_unet.conv_in.weight
    np.testing.assert_array_equal(
        half.estimation_unet.conv_in.weight.detach(), weight.detach().half().float()
    )


def test_call_defaults_are_stored_with_the_weights(tmp_path, make_scene) -> None:
    """None means the model's default (diffusers' register_to_config), saved and loaded with it."""
    from depthlab.models.tiny import tiny_components

    rgb, depth, known = make_scene()
    defaults = dict(default_num_inference_steps=3, default_processing_resolution=32, default_strength=0.7)
    pipe = DepthLabPipeline(**tiny_components(0), **defaults)
    assert {k: pipe.config[k] for k in defaults} == defaults
    assert DepthLabPipeline.build_tiny(seed=0).config.default_num_inference_steps == 50

    def call(pipeline, **kwargs):
        generator = torch.Generator().manual_seed(0)
        return pipeline(rgb, depth, known, generator=generator, show_progress_bar=False, **kwargs)

    implicit = call(pipe)
    explicit = call(pipe, num_inference_steps=3, processing_resolution=32, strength=0.7)
    np.testing.assert_array_equal(implicit.depth, explicit.depth)
    assert implicit.info["processing_size"] == [[23, 32]]  # 44x60 at longest side 32
    other = call(pipe, num_inference_steps=3, processing_resolution=32, strength=1.0)
    assert not np.array_equal(other.depth, implicit.depth)

    pipe.save_pretrained(tmp_path / "saved")
    loaded = DepthLabPipeline.from_pretrained(tmp_path / "saved")
    assert {k: loaded.config[k] for k in defaults} == defaults
    np.testing.assert_array_equal(call(loaded).depth, implicit.depth)

    for name, value, error in (
        ("default_num_inference_steps", 0, ValueError),
        ("default_processing_resolution", 2.5, TypeError),
        ("default_strength", 1.5, ValueError),
    ):
        with pytest.raises(error, match=name):
            DepthLabPipeline(**tiny_components(0), **{name: value})


def test_guidance_above_one_needs_text_encoder(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene()
    with pytest.raises(ValueError, match="text encoder"):
        run(tiny_pipeline, rgb, depth, known, guidance_scale=2.0)


def test_dtype_resolution_and_device_check(monkeypatch) -> None:
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(None) is torch.float32
    assert resolve_dtype("torch.Float16") is torch.float16 and resolve_dtype(None, default=None) is None
    with pytest.raises(ValueError, match="`torch_dtype`='float64'"):
        resolve_dtype("float64")
    with pytest.raises(ValueError, match="`export.dtype`='fp61'"):
        resolve_dtype("fp61", name="export.dtype")
    with pytest.raises(ValueError, match="torch_dtype.*int8"):
        resolve_dtype(torch.int8)
    with pytest.raises(TypeError, match="torch_dtype"):
        resolve_dtype(16)
    with pytest.raises(ValueError, match="bf61"):
        DepthLabPipeline.from_pretrained("unused", torch_dtype="bf61")

    def unsupported(*args, **kwargs):
        raise RuntimeError("\"slow_conv2d_cpu\" not implemented for 'Half'")

    monkeypatch.setattr(torch.nn.functional, "conv2d", unsupported)
    with pytest.raises(ValueError, match="torch_dtype.*not supported on device cpu"):
        check_device_dtype(torch.device("cpu"), torch.float16)


# ---------------------------------------------------------------- input errors
def _call(tiny_pipeline, scene, **overrides):
    rgb, depth, known = scene
    args = dict(image=rgb, depth=depth, known_mask=known)
    args.update({k: v for k, v in overrides.items() if k in args})
    kwargs = {k: v for k, v in overrides.items() if k not in args}
    return run(tiny_pipeline, args["image"], args["depth"], args["known_mask"], **kwargs)


# name: (overrides from the scene (rgb, depth, known), error type, message pattern)
ERROR_CASES = {
    "depth shape mismatch": (
        lambda rgb, depth, known: dict(depth=depth[:-2]),
        ValueError,
        "known_mask.*shape",
    ),
    "image size mismatch": (lambda rgb, depth, known: dict(image=rgb[:-2]), ValueError, "image.*size"),
    "non-finite known depth": (
        lambda rgb, depth, known: dict(depth=np.where(known, np.nan, 0).astype(np.float32)),
        ValueError,
        "non-finite",
    ),
    "negative known depth": (lambda rgb, depth, known: dict(depth=-np.abs(depth)), ValueError, "negative"),
    "no known pixel": (
        lambda rgb, depth, known: dict(known_mask=np.zeros_like(known)),
        ValueError,
        "no known pixel",
    ),
    "every pixel known": (
        lambda rgb, depth, known: dict(known_mask=np.ones_like(known), depth=depth + 1),
        ValueError,
        "every pixel",
    ),
    "mask not binary": (
        lambda rgb, depth, known: dict(known_mask=known * 0.7),
        ValueError,
        "known_mask.*binary",
    ),
    "alpha channel": (
        lambda rgb, depth, known: dict(image=np.dstack([rgb, rgb[..., :1]])),
        ValueError,
        "alpha",
    ),
    "negative resolution": (
        lambda rgb, depth, known: dict(processing_resolution=-1),
        ValueError,
        "processing_resolution",
    ),
    "strength zero": (lambda rgb, depth, known: dict(strength=0.0), ValueError, "strength"),
    "strength above one": (lambda rgb, depth, known: dict(strength=1.5), ValueError, "strength"),
    "strength keeps no step": (lambda rgb, depth, known: dict(strength=0.1), ValueError, "strength"),
    "zero steps": (lambda rgb, depth, known: dict(num_inference_steps=0), ValueError, "num_inference_steps"),
    "float steps": (
        lambda rgb, depth, known: dict(num_inference_steps=2.5),
        TypeError,
        "num_inference_steps",
    ),
    "bad output type": (lambda rgb, depth, known: dict(output_type="pil"), ValueError, "output_type"),
    "bad preserve mode": (
        lambda rgb, depth, known: dict(preserve_known="paste"),
        ValueError,
        "preserve_known",
    ),
    "noise of wrong shape": (
        lambda rgb, depth, known: dict(noise=torch.zeros(1, 4, 5, 5)),
        ValueError,
        r"noise.*\(1, 4, 6, 8\)",
    ),
    "latents with strength < 1": (
        lambda rgb, depth, known: dict(latents=torch.zeros(1, 4, 6, 8)),
        ValueError,
        "latents",
    ),
    "image not an image": (lambda rgb, depth, known: dict(image="photo.png"), TypeError, "image"),
    "list of depths for one image": (
        lambda rgb, depth, known: dict(image=[rgb, rgb]),
        ValueError,
        "depth.*list",
    ),
}


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_errors_name_the_argument(tiny_pipeline: DepthLabPipeline, name: str, make_scene) -> None:
    overrides, error, pattern = ERROR_CASES[name]
    scene = make_scene()
    with pytest.raises(error, match=pattern):
        _call(tiny_pipeline, scene, **overrides(*scene))


LATE_OPTIONS = {
    "resize_mode": "crop",
    "fill_mode": "slow",
    "timestep_spacing": "uniform",
    "output_type": "pil",
    "preserve_known": "paste",
    "noise": torch.zeros(1, 4, 5, 5),
    "generator": [torch.Generator(), torch.Generator()],
    "latents": torch.zeros(1, 4, 6, 8),
}


@pytest.mark.parametrize("option", list(LATE_OPTIONS))
def test_every_option_is_checked_before_any_work(
    tiny_pipeline: DepthLabPipeline, option: str, monkeypatch, make_scene
) -> None:
    def no_work(*args, **kwargs):
        raise AssertionError(f"pre-processing started before `{option}` was checked")

    monkeypatch.setattr(preprocessing, "prepare_input", no_work)
    monkeypatch.setattr(preprocessing, "nearest_fill", no_work)
    with pytest.raises((ValueError, TypeError), match=option):
        _call(tiny_pipeline, make_scene(), **{option: LATE_OPTIONS[option]})


def test_prepare_input_is_pure_and_matches_the_pipeline(tiny_pipeline: DepthLabPipeline, make_scene) -> None:
    rgb, depth, known = make_scene(44, 60)
    copies = [rgb.copy(), depth.copy(), known.copy()]
    a = preprocessing.prepare_input(rgb, depth, known, 64)
    b = preprocessing.prepare_input(rgb, depth, known, 64)
    for before, after in zip(copies, (rgb, depth, known), strict=True):
        np.testing.assert_array_equal(before, after)  # inputs untouched
    np.testing.assert_array_equal(a.masked_filled, b.masked_filled)
    assert a.normalized.shape == (48, 64) and a.latent_size == (6, 8) and a.resized.size == (46, 64)
    assert preprocessing.latent_size(44, 60, 64) == a.latent_size
    np.testing.assert_array_equal(a.masked_filled[a.resized.known_mask], a.normalized[a.resized.known_mask])
    out = run(tiny_pipeline, rgb, depth, known, generator=torch.Generator().manual_seed(0))
    assert out.info["processing_size"] == [list(a.resized.size)]
    assert out.info["known_range"] == [(float(a.lo), float(a.hi))]
    with pytest.raises(ValueError, match="fill_mode"):
        preprocessing.prepare_input(rgb, depth, known, 64, fill_mode="slow")
    with pytest.raises(ValueError, match="refine"):
        preprocessing.prepare_input(rgb, np.where(known, depth, np.nan), known, 64, refine=True)


def test_building_a_pipeline_leaves_the_unets_alone_until_a_call(make_scene) -> None:
    from depthlab.models.reference_attention import ReferenceReadProcessor
    from depthlab.models.tiny import tiny_components

    components = tiny_components(seed=0)
    unets = (components["reference_unet"], components["estimation_unet"])
    before = [dict(unet.attn_processors) for unet in unets]
    pipeline = DepthLabPipeline(**components)
    for unet, old in zip(unets, before, strict=True):
        assert all(unet.attn_processors[name] is processor for name, processor in old.items())
    rgb, depth, known = make_scene()
    out = run(pipeline, rgb, depth, known, generator=torch.Generator().manual_seed(0))
    assert np.isfinite(out.depth).all()
    for unet, old in zip(unets, before, strict=True):  # the call put the processors back
        assert all(unet.attn_processors[name] is processor for name, processor in old.items())
    # Installed for good, a call leaves them installed; the result does not depend on it.
    pipeline.reference_attention.install()
    again = run(pipeline, rgb, depth, known, generator=torch.Generator().manual_seed(0))
    assert isinstance(unets[1].attn_processors[pipeline.reference_attention.names[0]], ReferenceReadProcessor)
    np.testing.assert_array_equal(out.depth, again.depth)
    pipeline.reference_attention.uninstall()
    assert all(unets[1].attn_processors[name] is processor for name, processor in before[1].items())
