from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from depthlab.config import deep_merge

TINY_RUN: dict[str, Any] = {
    "run": {
        "output_dir": None,
        "seed": 3,
        "max_steps": 3,
        "checkpoint_every": 0,
        "keep_checkpoints": 0,
        "resume": None,
        "stop_at_step": None,
        "cpu": True,
    },
    "model": {"init": "tiny", "tiny_seed": 0, "gradient_checkpointing": False},
    "data": {
        "size": [32, 32],
        "fill": "linear_fast",
        "num_workers": 0,
        "augmentation": {"crop_scale": [0.8, 1.0], "hflip_p": 0.5},
        "datasets": [
            {"name": "synthetic", "length": 50, "height": 40, "width": 40, "seed": 0, "weight": 1.0}
        ],
    },
    "masks": {"min_known": 4, "components": {"holes:0.2-0.6": 1.0, "ratio:5-20": 1.0, "border:0.1-0.3": 0.5}},
    "normalization": {"mode": "random", "min_span": 0.5},
    "objective": {
        "multi_res_noise": {"enabled": True, "strength": 0.9, "annealed": True},
        "unknown_weight": 2.0,
    },
    "batch": {"effective_batch_size": 4, "micro_batch_size": 2},
    "mixed_precision": "no",
    "optim": {
        "optimizer": "adamw",
        "lr": 1.0e-3,
        "max_grad_norm": 1.0,
        "lr_schedule": {"name": "cosine", "warmup_steps": 1, "decay_steps": 10, "final_ratio": 0.1},
    },
    "ema": {"enabled": True, "decay": 0.9, "update_after": 0},
    "validation": {"every": 0, "at_start": False, "at_end": False, "dataset": None},
    "logging": {"every": 1, "tensorboard": False},
    "export": {"ema": True, "save_pretrained": False, "original_layout": False},
}


@pytest.fixture
def tiny_config(tmp_path: Path):
    """``tiny_config(name, **section_overrides)`` -> a merged tiny training config writing under tmp_path."""

    def make(name: str = "run", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        config = copy.deepcopy(TINY_RUN)
        config["run"]["output_dir"] = str(tmp_path / name)
        return deep_merge(config, overrides or {})

    return make
