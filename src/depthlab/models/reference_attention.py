"""Reference-feature fusion between two U-Nets, through diffusers attention processors.

DepthLab's estimation U-Net attends, in the self-attention of every transformer block, to its own
tokens *and* to the tokens the reference U-Net had at the same place (the input of the
self-attention, i.e. the output of ``norm1``), computed once from the RGB latent at timestep 0.

A :class:`ReferenceAttention` controller installs two processors with
``UNet2DConditionModel.set_attn_processor``, only when asked to (building it, or a pipeline around
the U-Nets, leaves their processors as they are):

* :class:`ReferenceWriteProcessor` on the reference U-Net's self-attention layers: stores its
  input tokens ``[B, N, C]`` in the shared :class:`ReferenceAttention` controller, then runs the
  stock attention.
* :class:`ReferenceReadProcessor` on the estimation U-Net's self-attention layers: queries from the
  block's own tokens, keys/values from ``cat([own tokens, reference tokens], dim=1)``.

Installing: :meth:`ReferenceAttention.install` / :meth:`ReferenceAttention.uninstall` (the
previous processors are restored), the :meth:`ReferenceAttention.installed` context (installs for
its duration when not installed; what ``DepthLabPipeline.__call__`` does), or the first
:meth:`~ReferenceAttention.capture` / :meth:`~ReferenceAttention.set_features`, which install the
processors if they are not (they stay until ``uninstall()``).

Blocks are paired by module name (both U-Nets have the same architecture). The projections
``to_k``/``to_v`` of the reference tokens are the same at every denoising step, so they are
computed once per image and cached (``cache_reference_kv=True``), which saves a third of the
self-attention projections without changing the result beyond float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

__all__ = ["ReferenceAttention", "ReferenceWriteProcessor", "ReferenceReadProcessor"]

_SELF_ATTENTION_SUFFIX = ".attn1.processor"


def self_attention_names(unet: UNet2DConditionModel) -> list[str]:
    """Processor names of the self-attention layers of every transformer block."""
    return [name for name in unet.attn_processors if name.endswith(_SELF_ATTENTION_SUFFIX)]


def _check_plain_attention(attn: Attention, name: str) -> None:
    """The processors below implement the SD2 self-attention path only; refuse anything else."""
    unsupported = {
        "spatial_norm": attn.spatial_norm is not None,
        "group_norm": attn.group_norm is not None,
        "norm_q/norm_k": getattr(attn, "norm_q", None) is not None
        or getattr(attn, "norm_k", None) is not None,
        "residual_connection": bool(attn.residual_connection),
        "rescale_output_factor": attn.rescale_output_factor != 1.0,
        "cross_attention_norm": attn.norm_cross is not None and attn.norm_cross is not False,
    }
    bad = [key for key, flag in unsupported.items() if flag]
    if bad:
        raise ValueError(f"self-attention {name!r} uses {bad}, which reference fusion does not support")


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, tokens, channels = x.shape
    return x.view(batch, tokens, heads, channels // heads).transpose(1, 2)


class _ReferenceProcessor:
    """Attention processor bound to one named block of a :class:`ReferenceAttention` controller."""

    def __init__(self, controller: ReferenceAttention, name: str) -> None:
        self.controller = controller
        self.name = name
        self.attention = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        return self.attend(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

    def attend(
        self, attn: Attention, hidden_states: torch.Tensor, *rest: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


class ReferenceWriteProcessor(_ReferenceProcessor):
    """Stock self-attention that also stores its input tokens in the controller when capturing."""

    def attend(
        self, attn: Attention, hidden_states: torch.Tensor, *rest: torch.Tensor | None
    ) -> torch.Tensor:
        if self.controller.capturing:
            self.controller._store(self.name, hidden_states)  # [B, N, C]
        return self.attention(attn, hidden_states, *rest)


class ReferenceReadProcessor(_ReferenceProcessor):
    """Self-attention whose keys/values also include the reference tokens of the same block."""

    def attend(
        self, attn: Attention, hidden_states: torch.Tensor, *rest: torch.Tensor | None
    ) -> torch.Tensor:
        reference = self.controller._reference_for(self.name) if self.controller.enabled else None
        if reference is None:
            return self.attention(attn, hidden_states, *rest)
        if any(x is not None for x in rest[:2]):  # encoder_hidden_states, attention_mask
            raise ValueError("reference self-attention takes no attention mask or context")
        batch = hidden_states.shape[0]
        query = attn.to_q(hidden_states)  # [B, N, C]
        if self.controller.cache_reference_kv:
            ref_key, ref_value = self.controller._reference_kv(self.name, attn, reference)
            key = torch.cat([attn.to_k(hidden_states), _expand(ref_key, batch)], dim=1)
            value = torch.cat([attn.to_v(hidden_states), _expand(ref_value, batch)], dim=1)
        else:
            context = torch.cat([hidden_states, _expand(reference, batch)], dim=1)  # [B, 2N, C]
            key, value = attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        out = F.scaled_dot_product_attention(
            _split_heads(query, heads), _split_heads(key, heads), _split_heads(value, heads)
        )  # [B, heads, N, C / heads]
        out = out.transpose(1, 2).reshape(batch, -1, heads * (out.shape[-1])).to(query.dtype)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _expand(reference: torch.Tensor, batch: int) -> torch.Tensor:
    """Repeat reference rows ``[B_ref, N, C]`` to ``batch`` rows (each ref row for B/B_ref rows)."""
    if reference.shape[0] == batch:
        return reference
    if batch % reference.shape[0]:
        raise ValueError(
            f"estimation batch {batch} is not a multiple of the reference batch {reference.shape[0]}"
        )
    return reference.repeat_interleave(batch // reference.shape[0], dim=0)


class ReferenceAttention:
    """Controller that wires a reference U-Net to an estimation U-Net.

    Usage (inference and training alike)::

        fusion = ReferenceAttention(reference_unet, estimation_unet)
        fusion.install()                                                    # or `with fusion.installed():`
        with fusion.capture():
            reference_unet(rgb_latent, 0, encoder_hidden_states=context)   # stores features
        estimation_unet(x, t, encoder_hidden_states=context)               # reads them
        fusion.clear()
        fusion.uninstall()                                                  # previous processors back

    Args:
        reference_unet: U-Net whose self-attention inputs are captured (its output is unused).
        estimation_unet: denoising U-Net that attends to them.
        fp16_rounding: round the stored features to float16 before use, as the original release
            does (it keeps the bank in float16 even when computing in float32).
        cache_reference_kv: cache ``to_k``/``to_v`` of the reference tokens across calls (only
            when the estimation U-Net is not being trained, see ``_reference_kv``).
    """

    def __init__(
        self,
        reference_unet: UNet2DConditionModel,
        estimation_unet: UNet2DConditionModel,
        fp16_rounding: bool = True,
        cache_reference_kv: bool = True,
    ) -> None:
        writer_names = self_attention_names(reference_unet)
        reader_names = self_attention_names(estimation_unet)
        if writer_names != reader_names or not reader_names:
            raise ValueError(
                "reference and estimation U-Nets must have the same transformer blocks; got "
                f"{len(writer_names)} and {len(reader_names)} self-attention layers"
            )
        self.names = reader_names
        self.fp16_rounding = fp16_rounding
        self.cache_reference_kv = cache_reference_kv
        self.capturing = False
        self.enabled = True
        self.features: dict[str, torch.Tensor] = {}
        self._kv_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        modules = dict(estimation_unet.named_modules())
        for name in self.names:
            _check_plain_attention(modules[name.removesuffix(".processor")], name)
        self.reference_unet = reference_unet
        self.estimation_unet = estimation_unet
        self._previous: tuple[dict, dict] | None = None  # processors replaced by install()

    # ------------------------------------------------------------------ installation
    @property
    def is_installed(self) -> bool:
        """True between :meth:`install` and :meth:`uninstall`."""
        return self._previous is not None

    def install(self) -> None:
        """Put the write/read processors on the U-Nets (stock SDPA attention on the other layers).

        The processors they had are kept and put back by :meth:`uninstall`. No-op if installed.
        """
        if self._previous is not None:
            return
        previous = (dict(self.reference_unet.attn_processors), dict(self.estimation_unet.attn_processors))
        self._set_processors(self.reference_unet, ReferenceWriteProcessor)
        self._set_processors(self.estimation_unet, ReferenceReadProcessor)
        self._previous = previous

    def uninstall(self) -> None:
        """Restore the processors the U-Nets had before :meth:`install`; drop stored features."""
        if self._previous is None:
            return
        reference_processors, estimation_processors = self._previous
        self.reference_unet.set_attn_processor(reference_processors)
        self.estimation_unet.set_attn_processor(estimation_processors)
        self._previous = None
        self.clear()

    @contextlib.contextmanager
    def installed(self) -> Iterator[ReferenceAttention]:
        """Installed within this context; restored after it unless it was installed before."""
        was_installed = self.is_installed
        self.install()
        try:
            yield self
        finally:
            if not was_installed:
                self.uninstall()

    def _set_processors(self, unet: UNet2DConditionModel, processor_class: type) -> None:
        processors = {}
        for name in unet.attn_processors:
            if name in self.names:
                processors[name] = processor_class(self, name)
            else:
                processors[name] = AttnProcessor2_0()
        unet.set_attn_processor(processors)

    # ------------------------------------------------------------------ features

    @contextlib.contextmanager
    def capture(self) -> Iterator[ReferenceAttention]:
        """Within this context, the reference U-Net's forward pass stores its features.

        Installs the processors first if they are not (they then stay until :meth:`uninstall`).
        """
        self.install()
        self.clear()
        self.capturing = True
        try:
            yield self
        finally:
            self.capturing = False
        missing = [name for name in self.names if name not in self.features]
        if missing:
            raise RuntimeError(f"the reference U-Net did not reach {missing}")

    @contextlib.contextmanager
    def disabled(self) -> Iterator[ReferenceAttention]:
        """Plain self-attention in the estimation U-Net (the unconditional branch of guidance)."""
        previous, self.enabled = self.enabled, False
        try:
            yield self
        finally:
            self.enabled = previous

    def clear(self) -> None:
        """Drop stored features (and their cached projections)."""
        self.features = {}
        self._kv_cache = {}

    def set_features(self, features: dict[str, torch.Tensor]) -> None:
        """Use previously captured features (e.g. several images stacked along the batch axis).

        Installs the processors if they are not (they then stay until :meth:`uninstall`).
        """
        missing = [name for name in self.names if name not in features]
        if missing:
            raise ValueError(f"reference features are missing for {missing}")
        self.install()
        self.features = dict(features)
        self._kv_cache = {}

    def _store(self, name: str, hidden_states: torch.Tensor) -> None:
        if self.fp16_rounding:
            hidden_states = hidden_states.to(torch.float16).to(hidden_states.dtype)
        self.features[name] = hidden_states

    def _reference_for(self, name: str) -> torch.Tensor | None:
        feature = self.features.get(name)
        if feature is None:
            raise RuntimeError(
                f"no reference features for {name!r}: run the reference U-Net inside "
                "`ReferenceAttention.capture()` (or call `set_features`) first"
            )
        return feature

    def _reference_kv(
        self, name: str, attn: Attention, reference: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``to_k``/``to_v`` of the reference tokens; cached unless gradients flow through them."""
        if torch.is_grad_enabled() and (attn.to_k.weight.requires_grad or reference.requires_grad):
            return attn.to_k(reference), attn.to_v(reference)
        cached = self._kv_cache.get(name)
        if cached is None or cached[0].dtype != attn.to_k.weight.dtype:
            reference = reference.to(attn.to_k.weight.dtype)
            cached = (attn.to_k(reference), attn.to_v(reference))
            self._kv_cache[name] = cached
        return cached
