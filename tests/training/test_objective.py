import numpy as np
import pytest
import torch

from depthlab.data.synthetic import SyntheticDataset
from depthlab.masks import MaskMixture
from depthlab.training.data import PositionBatchSampler, TrainingDataset
from depthlab.training.model_setup import models_tiny
from depthlab.training.objective import (
    DepthLabTrainModule,
    ObjectiveConfig,
    compute_loss,
    latent_loss_weights,
    multi_resolution_noise,
    noise_scheduler_from_config,
)


@pytest.fixture(scope="module")
def setup():
    models = models_tiny(0)
    models.set_trainable(["reference_unet", "estimation_unet", "image_projection"])
    dataset = TrainingDataset(
        [(SyntheticDataset(length=20, height=40, width=40, seed=0), 1.0)],
        MaskMixture({"holes:0.3-0.6": 1.0, "ratio:5-20": 1.0}, min_known=4),
        (32, 32),
        seed=0,
        image_processor=models.image_processor,
    )
    batch = torch.utils.data.default_collate([dataset[i] for i in range(2)])
    return models, batch


def fresh_module(models):
    models = models_tiny(0)
    models.set_trainable(["reference_unet", "estimation_unet", "image_projection"])
    module = DepthLabTrainModule(models.reference_unet, models.estimation_unet, models.image_projection)
    return models, module


def test_one_step_changes_weights_and_gives_finite_loss(setup):
    models, batch = setup
    models, module = fresh_module(models)
    scheduler = noise_scheduler_from_config(models.scheduler_config)
    before = {k: v.detach().clone() for k, v in module.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    loss, stats = compute_loss(
        module, models.vae, models.image_encoder, scheduler, batch, torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    module.fusion.clear()
    # Gradients reach all three trainable parts (the reference U-Net through the fused attention).
    for part in ("reference_unet", "estimation_unet", "image_projection"):
        grads = [p.grad for p in getattr(module, part).parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, part
    optimizer.step()
    changed = [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("reference_unet.") for k in changed)
    assert any(k.startswith("estimation_unet.conv_in") for k in changed)
    assert any(k.startswith("image_projection.") for k in changed)
    # Frozen encoders untouched and without gradients.
    assert all(p.grad is None for p in models.vae.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(setup):
    models, batch = setup
    grads = []
    for checkpointing in (False, True):
        models, module = fresh_module(models)
        if checkpointing:
            models.reference_unet.enable_gradient_checkpointing()
            models.estimation_unet.enable_gradient_checkpointing()
        module.train()
        scheduler = noise_scheduler_from_config(models.scheduler_config)
        loss, _ = compute_loss(
            module, models.vae, models.image_encoder, scheduler, batch, torch.Generator().manual_seed(1)
        )
        loss.backward()
        module.fusion.clear()
        grads.append(
            torch.cat([p.grad.flatten() for p in models.reference_unet.parameters() if p.grad is not None])
        )
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_overfitting_one_batch_lowers_the_loss(setup):
    models, batch = setup
    models, module = fresh_module(models)
    scheduler = noise_scheduler_from_config(models.scheduler_config)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-3)
    config = ObjectiveConfig(multi_res_noise=False)
    losses = []
    for _ in range(40):
        loss, _ = compute_loss(
            module,
            models.vae,
            models.image_encoder,
            scheduler,
            batch,
            torch.Generator().manual_seed(0),
            config,
        )
        loss.backward()
        module.fusion.clear()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.65 * np.mean(losses[:3]), losses


def test_multi_resolution_noise():
    a = multi_resolution_noise((2, 4, 16, 16), torch.Generator().manual_seed(0))
    b = multi_resolution_noise((2, 4, 16, 16), torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (2, 4, 16, 16) and abs(float(a.std()) - 1.0) < 1e-4

    # Pyramid noise is spatially correlated, plain noise is not.
    def neighbour_corr(x):
        return float(torch.corrcoef(torch.stack([x[..., :, :-1].flatten(), x[..., :, 1:].flatten()]))[0, 1])

    strong = multi_resolution_noise((4, 4, 32, 32), torch.Generator().manual_seed(1), 0.9, "every_layer")
    assert neighbour_corr(strong) > 0.3
    assert abs(neighbour_corr(torch.randn(4, 4, 32, 32, generator=torch.Generator().manual_seed(1)))) < 0.1
    # Zero strength (annealed at t = 0) is plain Gaussian noise, normalised.
    flat = multi_resolution_noise((2, 4, 16, 16), torch.Generator().manual_seed(0), torch.zeros(2))
    assert abs(neighbour_corr(flat)) < 0.15
    with pytest.raises(ValueError, match="downscale_strategy"):
        multi_resolution_noise((1, 4, 8, 8), torch.Generator(), 0.9, "bogus")


def test_latent_loss_weights():
    valid = torch.ones(1, 1, 16, 16)
    valid[..., 0, 0] = 0  # one invalid pixel -> its 8x8 cell is excluded
    unknown = torch.zeros(1, 1, 16, 16)
    unknown[..., 15, 15] = 1
    weight = latent_loss_weights(valid, unknown, unknown_weight=3.0)
    assert weight.shape == (1, 1, 2, 2)
    torch.testing.assert_close(weight[0, 0], torch.tensor([[0.0, 1.0], [1.0, 3.0]]))


def test_position_sampler_covers_the_stream_without_overlap():
    seen = []
    for rank in range(2):
        sampler = PositionBatchSampler(
            0, 3, micro_batch_size=2, accumulation_steps=2, world_size=2, rank=rank
        )
        assert len(sampler) == 6
        seen += [p for batch in sampler for p in batch]
    assert sorted(seen) == list(range(24))
    resumed = list(PositionBatchSampler(2, 3, 2, 2, 2, 1))
    assert resumed == list(PositionBatchSampler(0, 3, 2, 2, 2, 1))[4:]


def test_objective_config_errors():
    with pytest.raises(ValueError, match="downscale_strategy"):
        ObjectiveConfig.from_config({"multi_res_noise": {"downscale_strategy": "x"}})
    with pytest.raises(ValueError, match="unknown_weight"):
        ObjectiveConfig.from_config({"unknown_weight": -1})
