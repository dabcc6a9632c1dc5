"""Speed options (models/speed.py, DepthLabPipeline.optimize): same answer, or marked approximate."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from diffusers import AutoencoderTiny  # noqa: E402

from depthlab import DepthLabPipeline, preprocessing  # noqa: E402
from depthlab.models import conditioning, speed  # noqa: E402

CALL = dict(num_inference_steps=3, processing_resolution=0, show_progress_bar=False)


def scene(height: int = 40, width: int = 56, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    depth = (1.0 + yy / height + 0.3 * np.sin(xx / 5.0)).astype(np.float32)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    known = rng.random((height, width)) < 0.4
    return rgb, np.where(known, depth, 0).astype(np.float32), known


def run(pipe: DepthLabPipeline, **kwargs):
    rgb, depth, known = scene()
    return pipe(rgb, depth, known, generator=torch.Generator().manual_seed(0), **{**CALL, **kwargs})


@pytest.fixture(scope="module")
def baseline():
    return run(DepthLabPipeline.build_tiny(seed=0))


def tiny_autoencoder(seed: int = 0) -> AutoencoderTiny:
    """A random TAESD-architecture decoder (4 latent channels, 8x upsampling), a few thousand weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderTiny(
            encoder_block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
        )


def test_one_vae_call_matches_separate_calls() -> None:
    vae = DepthLabPipeline.build_tiny(seed=0).vae
    rgb, depth, known = scene()
    rgb = rgb[:32, :48]
    unknown = ~known[:32, :48]
    masked, full = depth[:32, :48], depth[:32, :48] * 0.5
    one = conditioning.encode_conditioning(vae, rgb, unknown, masked, full)
    calls = []
    vae.encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    separate = conditioning.encode_conditioning(vae, rgb, unknown, masked, full, one_call=False)
    conditioning.encode_conditioning(vae, rgb, unknown, masked, full)
    assert calls == [1, 1, 1, 1, 4]  # four encoder calls of batch 1, then one of batch 4
    for name in ("rgb", "mask", "masked_depth", "depth"):
        a, b = getattr(one, name), getattr(separate, name)
        assert a.shape == (1, 4, 4, 6)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    without_depth = conditioning.encode_conditioning(vae, rgb, unknown, masked)
    assert without_depth.depth is None
    torch.testing.assert_close(without_depth.rgb, one.rgb, rtol=0, atol=1e-5)


def test_encode_conditioning_rejects_mismatched_sizes() -> None:
    vae = DepthLabPipeline.build_tiny(seed=0).vae
    rgb, depth, known = scene()
    with pytest.raises(ValueError, match="must agree"):
        conditioning.encode_conditioning(vae, rgb, ~known, depth[:32])


def test_separate_encodes_give_the_same_answer(baseline) -> None:
    out = run(DepthLabPipeline.build_tiny(seed=0).optimize(batch_vae_encodes=False))
    assert out.info["optimizations"]["batch_vae_encodes"] is False
    assert baseline.info["optimizations"]["batch_vae_encodes"] is True
    np.testing.assert_allclose(out.depth, baseline.depth, rtol=0, atol=1e-4)


def test_channels_last_same_answer(baseline) -> None:
    pipe = DepthLabPipeline.build_tiny(seed=0).optimize(channels_last=True)
    weight = pipe.estimation_unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    out = run(pipe)
    assert out.info["optimizations"]["channels_last"] is True
    assert "approximate" not in out.info
    np.testing.assert_allclose(out.depth, baseline.depth, rtol=0, atol=1e-4)
    pipe.optimize(channels_last=False)
    assert pipe.estimation_unet.conv_in.weight.is_contiguous()


def test_compile_is_in_place_and_keeps_state_dict() -> None:
    pipe = DepthLabPipeline.build_tiny(seed=0)
    keys = list(pipe.estimation_unet.state_dict())
    pipe.optimize(compile=True)  # lazy: nothing is compiled before the first call
    assert speed.is_compiled(pipe.estimation_unet) and not speed.is_compiled(pipe.reference_unet)
    assert list(pipe.estimation_unet.state_dict()) == keys
    assert pipe.reference_attention.is_installed  # the compiled graph always sees the same processors
    assert pipe.optimizations()["compile"] == "default"
    with pytest.raises(ValueError, match="already compiled"):
        pipe.optimize(compile=False)


def test_bad_options_name_the_argument() -> None:
    pipe = DepthLabPipeline.build_tiny(seed=0)
    with pytest.raises(TypeError, match="`channels_last`"):
        pipe.optimize(channels_last="yes")
    with pytest.raises(ValueError, match="`compile_mode`"):
        pipe.optimize(compile=True, compile_mode="fastest")
    assert not speed.is_compiled(pipe.estimation_unet)
    with pytest.raises(ValueError, match="latent channels"):
        pipe.optimize(
            tiny_vae=AutoencoderTiny(
                latent_channels=8, num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4
            )
        )


def test_tiny_vae_from_folder_is_marked_approximate(tmp_path, baseline) -> None:
    tiny_autoencoder().save_pretrained(tmp_path / "taesd")
    pipe = DepthLabPipeline.build_tiny(seed=0).optimize(tiny_vae=tmp_path / "taesd", local_files_only=True)
    assert isinstance(pipe.tiny_vae, AutoencoderTiny)
    out = run(pipe)
    assert out.depth.shape == baseline.depth.shape and np.isfinite(out.depth).all()
    assert "approximate" in out.info["approximate"] and "taesd" in out.info["approximate"]
    assert out.info["optimizations"]["tiny_vae"] == str(tmp_path / "taesd")
    # the denoised latent is the same; only the decoder differs
    torch.testing.assert_close(
        run(pipe, output_latent=True).latent,
        run(DepthLabPipeline.build_tiny(seed=0), output_latent=True).latent,
    )
    assert np.abs(out.depth - baseline.depth).max() > 1e-3  # a different decoder: not the same answer
    pipe.optimize(tiny_vae=False)
    back = run(pipe)
    assert "approximate" not in back.info
    np.testing.assert_array_equal(back.depth, baseline.depth)


def test_tiny_vae_decodes_scaled_latents() -> None:
    tiny = tiny_autoencoder()
    latent = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    image = speed.tiny_vae_decode(tiny, latent)
    assert image.shape == (1, 3, 24, 40)
    torch.testing.assert_close(image, tiny.decoder(latent))  # scaling_factor 1: the latent as is


def test_tiny_vae_missing_offline_is_one_line(tmp_path) -> None:
    pipe = DepthLabPipeline.build_tiny(seed=0)
    with pytest.raises(speed.TinyVAENotFoundError) as info:
        pipe.optimize(tiny_vae="depthlab-tests/no-such-taesd", local_files_only=True)
    message = str(info.value)
    assert "\n" not in message and "'depthlab-tests/no-such-taesd'" in message
    assert pipe.tiny_vae is None
    with pytest.raises(TypeError, match="`tiny_vae`"):
        speed.load_tiny_vae(3)


def test_fill_mode_auto_is_exact(baseline) -> None:
    assert preprocessing.resolve_fill_mode("auto") == "exact"
    assert preprocessing.resolve_fill_mode("fast") == "fast"
    with pytest.raises(ValueError, match="`fill_mode`"):
        preprocessing.resolve_fill_mode("quick")
    out = run(DepthLabPipeline.build_tiny(seed=0), fill_mode="auto")
    assert out.info["fill_mode"] == "exact" and baseline.info["fill_mode"] == "exact"
    np.testing.assert_array_equal(out.depth, baseline.depth)


def test_cli_flags_reach_the_loaded_pipeline(tiny_checkpoint, tmp_path) -> None:
    from depthlab.batch.options import BatchOptions
    from depthlab.batch.runner import load_method
    from depthlab.cli import build_parser
    from depthlab.cli.complete_cmd import batch_options

    tiny_autoencoder().save_pretrained(tmp_path / "taesd")
    args = build_parser().parse_args(
        [
            "complete",
            "x.png",
            "--out",
            str(tmp_path / "out"),
            "--channels-last",
            "--tiny-vae",
            str(tmp_path / "taesd"),
        ]
    )
    options = batch_options(args)
    assert options.speed == {"channels_last": True, "tiny_vae": str(tmp_path / "taesd")}
    assert "speed" in options.recorded("depthlab") and "speed" not in BatchOptions().recorded("depthlab")
    options.checkpoints = str(tiny_checkpoint)
    loaded = load_method("depthlab", options, device="cpu")
    assert loaded.pipeline.optimizations()["channels_last"] is True
    assert loaded.pipeline.optimizations()["tiny_vae"] == str(tmp_path / "taesd")
