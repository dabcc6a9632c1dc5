"""Training and fine-tuning of DepthLab (``depthlab train``; docs/training.md).

Configs are loaded by :mod:`depthlab.config` (layered YAML; packaged configs in
``src/depthlab/configs/train/``). Modules: :mod:`~depthlab.training.model_setup`
(models from Marigold / DepthLab / tiny), :mod:`~depthlab.training.sample` and
:mod:`~depthlab.training.data` (training samples and the sample stream),
:mod:`~depthlab.training.objective` (v-prediction loss), :mod:`~depthlab.training.trainer`
(accelerate loop, checkpoints, validation), :mod:`~depthlab.training.export`.
Importing this package does not import torch; import the submodules.
"""

__all__: list[str] = []
