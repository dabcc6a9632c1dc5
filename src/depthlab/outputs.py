"""The result type shared by every completion method (diffusion and classical)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DepthLabOutput"]


@dataclass
class DepthLabOutput:
    """Result of a depth completion.

    Attributes:
        depth: completed depth in the units of the known depth. ``[H, W]`` float32 for a single
            input; for a list input ``[N, H, W]`` when all items have the same size, else a list of
            ``[H, W]`` arrays. numpy arrays (``output_type="np"``) or torch tensors (``"pt"``).
        known_mask: boolean, True where depth was given; same layout as ``depth``.
        uncertainty: per-pixel standard deviation of the ensemble members (depth units), same
            layout as ``depth``; None when ``ensemble_size == 1`` or for classical methods.
        latent: the final latent before decoding, ``[N * ensemble_size, 4, h, w]`` (torch), when
            ``output_latent=True``; else None.
        method: name of the method that produced the result (``"depthlab"``, ``"guided"``, ...).
        info: what was done, for the record: processing size, resize mode, timings, ...
    """

    depth: Any
    known_mask: Any
    uncertainty: Any = None
    latent: Any = None
    method: str = "depthlab"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.depth, np.ndarray) and isinstance(self.known_mask, np.ndarray):
            if self.depth.shape != self.known_mask.shape:
                raise ValueError(
                    f"depth {self.depth.shape} and known_mask {self.known_mask.shape} differ in shape"
                )
