"""Reference-feature fusion through attention processors."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.models.attention_processor import AttnProcessor2_0  # noqa: E402

from depthlab.models.components import remove_output_head  # noqa: E402
from depthlab.models.reference_attention import (  # noqa: E402
    ReferenceAttention,
    ReferenceReadProcessor,
    ReferenceWriteProcessor,
)
from depthlab.models.tiny import TINY_UNET_CONFIG  # noqa: E402


def make_unets(seed: int = 0) -> tuple[UNet2DConditionModel, UNet2DConditionModel]:
    torch.manual_seed(seed)
    reference = remove_output_head(UNet2DConditionModel(**{**TINY_UNET_CONFIG, "in_channels": 4}))
    estimation = UNet2DConditionModel(**{**TINY_UNET_CONFIG, "in_channels": 12})
    return reference, estimation


@pytest.fixture()
def setup():
    reference, estimation = make_unets()
    plain = copy.deepcopy(estimation)
    fusion = ReferenceAttention(reference, estimation, fp16_rounding=False)
    fusion.install()
    g = torch.Generator().manual_seed(0)
    inputs = dict(
        rgb_latent=torch.randn(1, 4, 6, 8, generator=g),
        x=torch.randn(1, 12, 6, 8, generator=g),
        context=torch.randn(1, 1, 1024, generator=g),
    )
    return reference, estimation, plain, fusion, inputs


def test_processors_only_on_self_attention(setup) -> None:
    reference, estimation, _, fusion, _ = setup
    assert len(fusion.names) == 10  # 3 down + 1 mid + 6 up transformer blocks in the tiny U-Net
    for unet, kind in ((reference, ReferenceWriteProcessor), (estimation, ReferenceReadProcessor)):
        for name, processor in unet.attn_processors.items():
            expected = kind if name.endswith("attn1.processor") else AttnProcessor2_0
            assert type(processor) is expected, name


def test_capture_stores_every_block_and_reading_needs_it(setup) -> None:
    reference, estimation, _, fusion, inp = setup
    with pytest.raises(RuntimeError, match="no reference features"):
        estimation(inp["x"], 10, encoder_hidden_states=inp["context"])
    with torch.no_grad(), fusion.capture():
        reference(inp["rgb_latent"], 0, encoder_hidden_states=inp["context"])
    assert set(fusion.features) == set(fusion.names)
    assert fusion.features[fusion.names[0]].shape[0] == 1


def test_disabled_is_plain_self_attention_and_enabled_differs(setup) -> None:
    reference, estimation, plain, fusion, inp = setup
    with torch.no_grad():
        with fusion.capture():
            reference(inp["rgb_latent"], 0, encoder_hidden_states=inp["context"])
        with fusion.disabled():
            off = estimation(inp["x"], 10, encoder_hidden_states=inp["context"]).sample
        on = estimation(inp["x"], 10, encoder_hidden_states=inp["context"]).sample
        stock = plain(inp["x"], 10, encoder_hidden_states=inp["context"]).sample
    assert torch.allclose(off, stock, atol=1e-6)
    assert (on - stock).abs().max() > 1e-3


def test_kv_cache_and_batch_expansion_do_not_change_the_result(setup) -> None:
    reference, estimation, _, fusion, inp = setup
    with torch.no_grad():
        with fusion.capture():
            reference(inp["rgb_latent"], 0, encoder_hidden_states=inp["context"])
        features = dict(fusion.features)
        x3 = torch.cat([inp["x"], inp["x"] * 0.5, -inp["x"]])
        ctx3 = inp["context"].repeat(3, 1, 1)
        fusion.cache_reference_kv = True
        cached = estimation(x3, 10, encoder_hidden_states=ctx3).sample  # 1 reference row for 3 rows
        fusion.cache_reference_kv = False
        fusion.set_features({k: v.repeat(3, 1, 1) for k, v in features.items()})
        recomputed = estimation(x3, 10, encoder_hidden_states=ctx3).sample
    assert torch.allclose(cached, recomputed, atol=1e-5)


def test_gradients_reach_the_reference_unet(setup) -> None:
    reference, estimation, _, fusion, inp = setup
    with fusion.capture():
        reference(inp["rgb_latent"], 0, encoder_hidden_states=inp["context"])
    loss = estimation(inp["x"], 10, encoder_hidden_states=inp["context"]).sample.pow(2).mean()
    loss.backward()
    grads = [p.grad for p in reference.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_mismatched_unets_are_rejected() -> None:
    reference, _ = make_unets()
    other = UNet2DConditionModel(**{**TINY_UNET_CONFIG, "in_channels": 12, "layers_per_block": 2})
    with pytest.raises(ValueError, match="same transformer blocks"):
        ReferenceAttention(reference, other)


def test_install_is_explicit_and_uninstall_restores_the_processors() -> None:
    reference, estimation = make_unets()
    before = [dict(unet.attn_processors) for unet in (reference, estimation)]
    fusion = ReferenceAttention(reference, estimation)
    after_build = [dict(unet.attn_processors) for unet in (reference, estimation)]
    for old, new in zip(before, after_build, strict=True):  # building touches nothing
        assert all(new[name] is processor for name, processor in old.items())
    assert not fusion.is_installed
    with fusion.installed():
        assert fusion.is_installed
        assert isinstance(estimation.attn_processors[fusion.names[0]], ReferenceReadProcessor)
        assert isinstance(reference.attn_processors[fusion.names[0]], ReferenceWriteProcessor)
    assert not fusion.is_installed
    for unet, old in zip((reference, estimation), before, strict=True):
        assert all(unet.attn_processors[name] is processor for name, processor in old.items())
    # Two controllers on the same U-Nets nest: the inner one restores the outer one's processors.
    outer = ReferenceAttention(reference, estimation)
    outer.install()
    outer_processors = dict(estimation.attn_processors)
    with fusion.installed():
        assert estimation.attn_processors[fusion.names[0]].controller is fusion
    assert all(estimation.attn_processors[n] is p for n, p in outer_processors.items())
    outer.uninstall()
    assert all(estimation.attn_processors[n] is p for n, p in before[1].items())
