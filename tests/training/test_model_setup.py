import pytest
import torch
from diffusers import UNet2DConditionModel

from depthlab.models.loading import CheckpointError, load_component_weights
from depthlab.training.model_setup import (
    estimation_conv_in,
    models_from_marigold,
    models_tiny,
    reference_conv_in,
    unets_from_marigold_state,
    write_tiny_marigold_checkpoint,
)


@pytest.fixture(scope="module")
def marigold_root(tmp_path_factory):
    return write_tiny_marigold_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=1)


@pytest.fixture(scope="module")
def marigold_state(marigold_root):
    return load_component_weights(marigold_root / "marigold-depth-v1-0" / "unet")


def test_models_from_marigold_conv_in_surgery(marigold_root, marigold_state):
    models = models_from_marigold(marigold_root)
    weight, bias = marigold_state["conv_in.weight"], marigold_state["conv_in.bias"]
    ref, est = models.reference_unet, models.estimation_unet
    assert ref.config.in_channels == 4 and est.config.in_channels == 12
    torch.testing.assert_close(ref.conv_in.weight, weight[:, :4], rtol=0, atol=0)
    torch.testing.assert_close(est.conv_in.weight[:, 0:4], 0.5 * weight[:, 4:8], rtol=0, atol=0)
    assert torch.count_nonzero(est.conv_in.weight[:, 4:8]) == 0
    torch.testing.assert_close(est.conv_in.weight[:, 8:12], 0.5 * weight[:, 4:8], rtol=0, atol=0)
    torch.testing.assert_close(est.conv_in.bias, bias, rtol=0, atol=0)
    # Every other tensor is Marigold's; the reference U-Net has no output head.
    for name, tensor in est.state_dict().items():
        if not name.startswith("conv_in."):
            torch.testing.assert_close(tensor, marigold_state[name], rtol=0, atol=0)
    assert not any(k.startswith(("conv_out.", "conv_norm_out.")) for k in ref.state_dict())
    assert models.image_encoder.config.projection_dim == models.image_projection.config.in_features


def test_unets_do_not_share_storage(marigold_root):
    models = models_from_marigold(marigold_root)
    ref_ptrs = {t.data_ptr() for t in models.reference_unet.state_dict().values()}
    est_ptrs = {t.data_ptr() for t in models.estimation_unet.state_dict().values()}
    assert not ref_ptrs & est_ptrs
    with torch.no_grad():
        models.estimation_unet.mid_block.resnets[0].conv1.weight.add_(1.0)
    assert not torch.equal(
        models.estimation_unet.mid_block.resnets[0].conv1.weight,
        models.reference_unet.mid_block.resnets[0].conv1.weight,
    )


def test_initial_response_matches_marigold_depth_path(marigold_state):
    """Fully known input (masked depth == noisy latent): first-layer response == Marigold's depth path."""
    weight, bias = marigold_state["conv_in.weight"], marigold_state["conv_in.bias"]
    new_weight, new_bias = estimation_conv_in(weight, bias)
    latent, mask = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    ours = torch.nn.functional.conv2d(torch.cat([latent, mask, latent], 1), new_weight, new_bias, padding=1)
    marigold = torch.nn.functional.conv2d(
        torch.cat([torch.zeros_like(latent), latent], 1), weight, bias, padding=1
    )
    torch.testing.assert_close(ours, marigold, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("init", ["rgb", "zero"])
def test_other_masked_depth_inits(marigold_state, init):
    weight = marigold_state["conv_in.weight"]
    new_weight, _ = estimation_conv_in(weight, None, init)
    torch.testing.assert_close(new_weight[:, 0:4], weight[:, 4:8], rtol=0, atol=0)
    expected = weight[:, 0:4] if init == "rgb" else torch.zeros_like(weight[:, 0:4])
    torch.testing.assert_close(new_weight[:, 8:12], expected, rtol=0, atol=0)


def test_conv_errors(marigold_state):
    with pytest.raises(CheckpointError, match=r"\[C, 8, k, k\]"):
        reference_conv_in(torch.zeros(4, 12, 3, 3), None)
    with pytest.raises(ValueError, match="masked_depth_init"):
        estimation_conv_in(marigold_state["conv_in.weight"], None, "bogus")


def test_strict_load_names_unexpected_and_missing_keys(marigold_root, marigold_state):
    config = dict(UNet2DConditionModel.load_config(marigold_root / "marigold-depth-v1-0" / "unet"))
    extra = {**marigold_state, "mystery.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="mystery.weight"):
        unets_from_marigold_state(config, extra)
    missing = {k: v for k, v in marigold_state.items() if k != "mid_block.resnets.0.conv1.bias"}
    with pytest.raises(CheckpointError, match=r"mid_block\.resnets\.0\.conv1\.bias"):
        unets_from_marigold_state(config, missing)


def test_set_trainable_freezes_encoders():
    models = models_tiny(0)
    names = models.set_trainable(["estimation_unet"])
    assert names == ["estimation_unet"]
    assert all(p.requires_grad for p in models.estimation_unet.parameters())
    for module in (models.reference_unet, models.vae, models.image_encoder, models.image_projection):
        assert not any(p.requires_grad for p in module.parameters())
    with pytest.raises(ValueError, match="trainable"):
        models.set_trainable(["vae"])


def test_missing_marigold_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="Marigold"):
        models_from_marigold(tmp_path / "empty")
