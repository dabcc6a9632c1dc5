"""Training and fine-tuning of DepthLab (``depthlab train``; docs/training.md).

Modules: :mod:`~depthlab.training.config` (layered YAML), :mod:`~depthlab.training.model_setup`
(models from Marigold / DepthLab / tiny), :mod:`~depthlab.training.sample` and
:mod:`~depthlab.training.data` (training samples and the sample stream),
:mod:`~depthlab.training.objective` (v-prediction loss), :mod:`~depthlab.training.trainer`
(accelerate loop, checkpoints, validation), :mod:`~depthlab.training.export`.
Importing this package does not import torch; import the submodules.
"""

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """``python -m depthlab.training --config X [overrides]`` (what ``accelerate launch -m`` runs)."""
    from depthlab.cli.train_cmd import main as train_main

    return train_main(argv)
