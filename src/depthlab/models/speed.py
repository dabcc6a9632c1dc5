"""Speed options of the pipeline: ``channels_last``, ``torch.compile`` and the tiny-VAE decoder.

:meth:`depthlab.DepthLabPipeline.optimize` applies them; this module holds the pieces, each
through a public API (``Module.to(memory_format=...)``, ``Module.compile()``,
``AutoencoderTiny.from_pretrained``), so no model's ``forward`` is replaced and ``state_dict``
keys stay the same (a compiled pipeline saves and loads like any other).

What each does to the answer and the time is measured in ``benchmarks/speed_options.py``
(results in ``benchmarks/results/speed_options.md``):

* ``channels_last``: same algorithm, other convolution kernels; float32 rounding differences only.
* ``compile``: inductor-generated kernels for the estimation U-Net (the module run every step);
  float32 rounding differences only. The first call pays the compilation (tens of seconds on
  CPU, needs a C++ compiler), later calls with the same shapes reuse it.
* tiny VAE (``AutoencoderTiny``, e.g. ``madebyollin/taesd``, the distilled decoder of the SD
  latent space that Marigold's VAE shares): **approximate**. It is a different decoder, trained
  on images, not depth; the output differs from the original's by far more than the conformance
  tolerances. Use it for previews; ``output.info["approximate"]`` says so on every output it made.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderTiny
from torch import nn

__all__ = [
    "TINY_VAE_DEFAULT",
    "COMPILE_MODES",
    "TinyVAENotFoundError",
    "load_tiny_vae",
    "to_channels_last",
    "compile_module",
    "tiny_vae_decode",
    "is_compiled",
]

TINY_VAE_DEFAULT = "madebyollin/taesd"  # TAESD for the SD 1.x / 2.x latent space (Marigold's VAE)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class TinyVAENotFoundError(FileNotFoundError):
    """The tiny VAE could not be loaded (not a folder, not in the hub cache, hub unreachable)."""


def load_tiny_vae(
    source: str | Path,
    *,
    torch_dtype: torch.dtype = torch.float32,
    local_files_only: bool | None = None,
) -> AutoencoderTiny:
    """``AutoencoderTiny`` from a local folder or a hub id (downloaded when online, then cached).

    Args:
        source: a folder with ``config.json`` + weights, or a hub id such as
            ``"madebyollin/taesd"``.
        torch_dtype: dtype of the weights.
        local_files_only: never touch the network (default: only when ``HF_HUB_OFFLINE`` is set).

    Raises:
        TinyVAENotFoundError: one line naming ``source`` and why (offline and not cached, ...).
        TypeError: ``source`` is not a string or path.
    """
    if not isinstance(source, (str, Path)) or not str(source):
        raise TypeError(f"`tiny_vae` must be a hub id or a folder; got {source!r}")
    kwargs: dict[str, Any] = {"torch_dtype": torch_dtype}
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        return AutoencoderTiny.from_pretrained(str(source), **kwargs).eval().requires_grad_(False)
    except Exception as error:  # OSError / EnvironmentError / HF errors: name the source, one line
        reason = " ".join(str(error).split())[:200]
        raise TinyVAENotFoundError(
            f"`tiny_vae`={str(source)!r} could not be loaded: not a local AutoencoderTiny folder and "
            f"not downloadable here (offline, or not in the huggingface_hub cache): {reason}"
        ) from None


def to_channels_last(modules: Iterable[nn.Module | None], enabled: bool = True) -> None:
    """Put the 4-d parameters of every module in channels-last (NHWC) memory format, or back."""
    memory_format = torch.channels_last if enabled else torch.contiguous_format
    for module in modules:
        if module is not None:
            module.to(memory_format=memory_format)


def compile_module(module: nn.Module, mode: str | None = None, dynamic: bool | None = None) -> None:
    """``module.compile(...)`` in place (``torch.compile`` through ``nn.Module.compile``).

    Args:
        module: compiled in place; its parameters, hooks and ``state_dict`` are untouched.
        mode: one of :data:`COMPILE_MODES` (None: ``"default"``).
        dynamic: passed to ``torch.compile`` (None: recompile once for a new shape, then dynamic).
    """
    if mode is not None and mode not in COMPILE_MODES:
        raise ValueError(f"`compile_mode` must be one of {COMPILE_MODES}; got {mode!r}")
    module.compile(mode=mode, dynamic=dynamic)


def is_compiled(module: nn.Module | None) -> bool:
    """Whether ``module.compile()`` was called on ``module``."""
    return module is not None and getattr(module, "_compiled_call_impl", None) is not None


@torch.no_grad()
def tiny_vae_decode(tiny_vae: AutoencoderTiny, latent: torch.Tensor) -> torch.Tensor:
    """Scaled SD latent ``[B, 4, h, w]`` -> image ``[B, 3, 8h, 8w]`` in about [-1, 1] (approximate).

    TAESD decodes the *scaled* latent (``config.scaling_factor`` is 1), i.e. exactly what the
    denoiser produces; the KL decoder divides by its 0.18215 first.
    """
    latent = latent.to(tiny_vae.device, tiny_vae.dtype) / tiny_vae.config.scaling_factor
    return tiny_vae.decode(latent).sample
