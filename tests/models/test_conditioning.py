"""The model-input contract: training's batch encoding equals the pipeline's latents."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depthlab import DepthLabPipeline, preprocessing  # noqa: E402
from depthlab.data.synthetic import render_scene  # noqa: E402
from depthlab.masks import MaskMixture  # noqa: E402
from depthlab.models import conditioning  # noqa: E402
from depthlab.training.data import sample_tensors  # noqa: E402
from depthlab.training.objective import encode_batch  # noqa: E402
from depthlab.training.sample import AugmentationConfig, NormalizationConfig, make_training_sample  # noqa: E402


def test_rgb_rule_is_the_original_float64_path_for_every_byte() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = np.stack([values, values[::-1], values.T], axis=-1)  # [16, 16, 3]
    expected = (rgb.astype(np.float64) / 255.0 * 2.0 - 1.0).astype(np.float32).transpose(2, 0, 1)
    out = conditioning.rgb_to_vae_input(rgb)
    assert out.shape == (1, 3, 16, 16) and out.dtype == torch.float32
    np.testing.assert_array_equal(out[0].numpy(), expected)
    # The same rule from a batched torch tensor (training) and from float input in [0, 1].
    batched = conditioning.rgb_to_vae_input(torch.from_numpy(np.stack([rgb, rgb])))
    assert torch.equal(batched[1], out[0])
    floats = conditioning.rgb_to_vae_input(np.full((2, 2, 3), 0.25, np.float32))
    assert torch.allclose(floats, torch.full((1, 3, 2, 2), -0.5))


def test_input_builders_shapes_and_polarity() -> None:
    unknown = np.array([[True, False], [False, True]])
    mask = conditioning.mask_to_vae_input(unknown)
    assert mask.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(mask[0, 0].numpy(), [[1.0, -1.0], [-1.0, 1.0]])  # 1 = unknown
    depth = conditioning.to_vae_input(torch.arange(8.0).reshape(2, 1, 2, 2))
    assert depth.shape == (2, 3, 2, 2) and torch.equal(depth[:, 0], depth[:, 2])
    with pytest.raises(ValueError, match="rgb"):
        conditioning.rgb_to_vae_input(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="depth"):
        conditioning.to_vae_input(np.zeros((1, 2, 4, 4)))
    latents = [torch.full((1, 4, 2, 2), float(v)) for v in range(3)]
    stacked = conditioning.estimation_input(*latents)
    assert stacked.shape == (1, conditioning.ESTIMATION_IN_CHANNELS, 2, 2)
    assert [float(stacked[0, c].mean()) for c in (0, 4, 8)] == [0.0, 1.0, 2.0]


def test_training_batch_encoding_equals_the_pipeline_latents(tiny_pipeline: DepthLabPipeline) -> None:
    """A training sample normalised as at inference gives exactly the pipeline's U-Net inputs."""
    rgb, depth, _ = render_scene(np.random.default_rng(5), 32, 40)
    valid = np.ones_like(depth, dtype=bool)
    sample = make_training_sample(
        rgb,
        depth,
        valid,
        np.random.default_rng(1),
        MaskMixture({"holes:0.4": 1.0}),
        (32, 40),
        AugmentationConfig((1.0, 1.0), 0.0),
        NormalizationConfig("inference"),
        fill="linear_exact",
    )
    batch = torch.utils.data.default_collate([sample_tensors(sample, tiny_pipeline.image_processor)])
    trained = encode_batch(tiny_pipeline.vae, tiny_pipeline.image_encoder, batch)

    # The pipeline on the same image and mask; refine=True takes the full depth map as the
    # pipeline's depth input, which is then training's normalised ground truth.
    item = preprocessing.prepare_input(sample["rgb"], depth, sample["known_mask"], 0, 1.0, refine=True)
    encoded = tiny_pipeline._encode_item(item, need_depth_latent=True)
    for key in ("rgb", "mask", "masked_depth", "depth"):
        assert trained[key].shape == encoded[key].shape == (1, 4, 4, 5), key
        torch.testing.assert_close(trained[key], encoded[key], rtol=0, atol=1e-6, msg=key)
    with torch.no_grad():
        pixel_values = tiny_pipeline.image_processor(images=[sample["rgb"]], return_tensors="pt").pixel_values
        embeds = tiny_pipeline.image_encoder(pixel_values).image_embeds
    torch.testing.assert_close(trained["image_embeds"], embeds, rtol=0, atol=1e-6)
