"""Optimizer, learning-rate schedule with warm-up, and a small exponential moving average."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["build_optimizer", "build_lr_schedule", "lr_factor", "EMA"]


def build_optimizer(parameters: Iterable[nn.Parameter], config: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``optim.optimizer``: ``adamw`` (default) or ``adam``; ``lr``, ``betas``, ``eps``, ``weight_decay``."""
    name = str(config.get("optimizer", "adamw")).lower()
    lr = float(config.get("lr", 3e-5))
    if lr <= 0:
        raise ValueError(f"`optim.lr` must be > 0; got {lr}")
    kwargs = {
        "lr": lr,
        "betas": tuple(float(b) for b in config.get("betas", (0.9, 0.999))),
        "eps": float(config.get("eps", 1e-8)),
        "weight_decay": float(config.get("weight_decay", 0.0)),
    }
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameter (check `model.trainable`)")
    if name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    if name == "adam":
        return torch.optim.Adam(params, **kwargs)
    raise ValueError(f"`optim.optimizer` must be 'adamw' or 'adam'; got {name!r}")


def lr_factor(step: int, schedule: Mapping[str, Any]) -> float:
    """Multiplier of the base LR at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` (factor ``(step + 1) / warmup_steps``), times the decay:
    ``constant``; ``exponential`` = ``final_ratio ** (min(step, decay_steps) / decay_steps)``
    (Marigold's ``IterExponential``); ``cosine`` from 1 to ``final_ratio`` over ``decay_steps``;
    ``linear`` from 1 to ``final_ratio``.
    """
    name = schedule.get("name", "constant")
    warmup = int(schedule.get("warmup_steps", 0))
    factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if name == "constant":
        return factor
    decay_steps = max(1, int(schedule.get("decay_steps", 1)))
    final = float(schedule.get("final_ratio", 0.01))
    progress = min(step, decay_steps) / decay_steps
    if name == "exponential":
        return factor * final**progress
    if name == "cosine":
        return factor * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    if name == "linear":
        return factor * (1.0 + (final - 1.0) * progress)
    raise ValueError(f"`optim.lr_schedule.name` must be constant/exponential/cosine/linear; got {name!r}")


def build_lr_schedule(
    optimizer: torch.optim.Optimizer, schedule: Mapping[str, Any]
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` following :func:`lr_factor` (stepped once per optimizer step)."""
    schedule = dict(schedule)
    lr_factor(0, schedule)  # validate the name early
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, schedule))


class EMA:
    """Exponential moving average of parameters (float32 shadow copies).

    ``decay_t = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the usual warm-up), no update
    before ``update_after`` optimizer steps (the shadow is then a copy).
    """

    def __init__(
        self, parameters: Iterable[nn.Parameter], decay: float = 0.9999, update_after: int = 0
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"`ema.decay` must be in (0, 1); got {decay}")
        self.parameters = [p for p in parameters if p.requires_grad]
        self.decay = float(decay)
        self.update_after = int(update_after)
        self.num_updates = 0
        self.shadow = [p.detach().float().clone() for p in self.parameters]
        self._backup: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self, step: int) -> None:
        if step < self.update_after:
            for shadow, param in zip(self.shadow, self.parameters, strict=True):
                shadow.copy_(param.detach().float())
            return
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        self.num_updates += 1
        for shadow, param in zip(self.shadow, self.parameters, strict=True):
            shadow.lerp_(param.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def swap_in(self) -> None:
        """Put the EMA weights into the model (keeps a backup for :meth:`swap_out`)."""
        self._backup = [p.detach().clone() for p in self.parameters]
        for shadow, param in zip(self.shadow, self.parameters, strict=True):
            param.copy_(shadow.to(param.dtype))

    @torch.no_grad()
    def swap_out(self) -> None:
        """Restore the training weights saved by :meth:`swap_in`."""
        if self._backup is None:
            raise RuntimeError("EMA.swap_out() without swap_in()")
        for backup, param in zip(self._backup, self.parameters, strict=True):
            param.copy_(backup)
        self._backup = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": [s.clone() for s in self.shadow],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError(
                f"EMA state has {len(state['shadow'])} tensors; the model has {len(self.shadow)}"
            )
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for shadow, saved in zip(self.shadow, state["shadow"], strict=True):
            shadow.copy_(saved)
