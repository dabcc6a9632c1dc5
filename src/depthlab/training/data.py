"""Training data stream: a weighted mixture of datasets turned into training samples.

Every sample is a pure function of ``(seed, position)`` where ``position`` is its index in the
global sample stream: ``np.random.default_rng([seed, position])`` picks the dataset (by weight),
the frame (uniformly, with replacement), the augmentation, the mask and the normalisation. The
stream is cut into micro-batches by :class:`PositionBatchSampler`: optimizer step ``s``, micro-batch
``m`` (of ``A`` accumulation steps), process ``r`` (of ``P``) reads positions
``((s * A + m) * P + r) * B + j`` for ``j < B``. Resuming at step ``s`` therefore reproduces the
exact data order without saving any sampler state, for any number of data-loader workers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from depthlab.data.base import DepthDataset
from depthlab.masks import MaskMixture, make_mask, protocol_rng
from depthlab.training.sample import AugmentationConfig, NormalizationConfig, make_training_sample

logger = logging.getLogger(__name__)

__all__ = [
    "TrainingDataset",
    "PositionBatchSampler",
    "ValidationItem",
    "build_dataset",
    "sample_tensors",
    "build_validation_items",
]

_MAX_RETRIES = 8


def build_dataset(spec: Mapping[str, Any]) -> DepthDataset:
    """``{"name": ..., "root": ..., **options}`` -> a registered dataset (``weight`` is ignored here)."""
    from depthlab.data import get_dataset

    options = {k: v for k, v in dict(spec).items() if k not in ("name", "root", "weight")}
    if "name" not in spec:
        raise ValueError(f"dataset entry needs a `name`; got {dict(spec)}")
    return get_dataset(spec["name"], spec.get("root"), **options)


def sample_tensors(
    item: Mapping[str, np.ndarray], image_processor: Any, position: int = -1
) -> dict[str, Any]:
    """A :func:`~depthlab.training.sample.make_training_sample` dict -> the tensors of one batch row.

    Returns (before collation): ``rgb`` uint8 ``[H, W, 3]``; ``depth_norm``, ``masked_depth``,
    ``unknown`` (1 = unknown), ``valid`` float32 ``[1, H, W]``; ``clip_pixel_values`` float32
    ``[3, 224, 224]`` (the CLIP image processor on the training crop); ``position``.
    """
    pixel_values = image_processor(images=[item["rgb"]], return_tensors="np").pixel_values[0]
    return {
        "rgb": torch.from_numpy(np.ascontiguousarray(item["rgb"])),  # uint8 [H, W, 3]
        "depth_norm": torch.from_numpy(item["depth_norm"])[None],  # [1, H, W]
        "masked_depth": torch.from_numpy(item["masked_depth"])[None],  # [1, H, W]
        "unknown": torch.from_numpy(item["unknown"])[None],  # [1, H, W], 1 = unknown
        "valid": torch.from_numpy(item["valid_mask"].astype(np.float32))[None],  # [1, H, W]
        "clip_pixel_values": torch.from_numpy(np.asarray(pixel_values, dtype=np.float32)),
        "position": int(position),
    }


class TrainingDataset(torch.utils.data.Dataset):
    """Indexable by stream position; see the module docstring.

    Args:
        sources: ``[(dataset, weight), ...]``; weights >= 0 with a positive sum.
        masks: the known-mask mixture.
        size: training size ``(H, W)``.
        seed: stream seed.
        image_processor: the pipeline's CLIP image processor (pixel values computed in the worker).
        augmentation, normalization, fill: see :mod:`depthlab.training.sample`.
    """

    def __init__(
        self,
        sources: Sequence[tuple[DepthDataset, float]],
        masks: MaskMixture,
        size: Sequence[int],
        seed: int,
        image_processor: Any,
        augmentation: AugmentationConfig = AugmentationConfig(),
        normalization: NormalizationConfig = NormalizationConfig(),
        fill: str = "linear_fast",
    ) -> None:
        if not sources:
            raise ValueError("`data.datasets` is empty")
        weights = np.asarray([float(w) for _, w in sources], dtype=np.float64)
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"dataset weights must be >= 0 with a positive sum; got {weights.tolist()}")
        if len(size) != 2 or any(int(v) < 8 or int(v) % 8 for v in size):
            raise ValueError(f"`data.size` must be [H, W], multiples of 8; got {list(size)}")
        self.datasets = [dataset for dataset, _ in sources]
        self.weights = weights / weights.sum()
        self.masks = masks
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.image_processor = image_processor
        self.augmentation = augmentation
        self.normalization = normalization
        self.fill = fill

    def __len__(self) -> int:
        return 2**62  # an endless stream; the batch sampler decides what is read

    def __getitem__(self, position: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, int(position)])
        last_error: Exception | None = None
        for _ in range(_MAX_RETRIES):
            which = int(rng.choice(len(self.datasets), p=self.weights))
            dataset = self.datasets[which]
            index = int(rng.integers(len(dataset)))
            sample = dataset[index]
            try:
                item = make_training_sample(
                    sample.rgb,
                    sample.depth,
                    sample.valid_mask,
                    rng,
                    self.masks,
                    self.size,
                    self.augmentation,
                    self.normalization,
                    self.fill,
                )
            except ValueError as error:  # e.g. no valid depth left after the crop: draw again
                last_error = error
                continue
            return sample_tensors(item, self.image_processor, int(position))
        raise RuntimeError(
            f"no usable sample at stream position {position} after {_MAX_RETRIES} draws: {last_error}"
        )


class PositionBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Micro-batches of stream positions for one process, from ``start_step`` to ``max_steps``."""

    def __init__(
        self,
        start_step: int,
        max_steps: int,
        micro_batch_size: int,
        accumulation_steps: int,
        world_size: int = 1,
        rank: int = 0,
    ) -> None:
        self.start_step, self.max_steps = int(start_step), int(max_steps)
        self.micro_batch_size, self.accumulation_steps = int(micro_batch_size), int(accumulation_steps)
        self.world_size, self.rank = int(world_size), int(rank)

    def positions(self, step: int, micro: int) -> list[int]:
        micro_index = step * self.accumulation_steps + micro
        first = (micro_index * self.world_size + self.rank) * self.micro_batch_size
        return list(range(first, first + self.micro_batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.max_steps):
            for micro in range(self.accumulation_steps):
                yield self.positions(step, micro)

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.accumulation_steps


@dataclass
class ValidationItem:
    """One held-out frame with a fixed known mask."""

    sample_id: str
    protocol: str
    rgb: np.ndarray  # uint8 [H, W, 3]
    depth: np.ndarray  # float32 [H, W], GT
    valid: np.ndarray  # bool [H, W]
    known_mask: np.ndarray  # bool [H, W]


def build_validation_items(
    dataset: DepthDataset, protocols: Sequence[str], limit: int | None = None, seed: int = 0
) -> list[ValidationItem]:
    """Frames ``0..limit-1``; frame ``i`` gets protocol ``protocols[i % len]``, seeded by sample id."""
    if not protocols:
        raise ValueError("`validation.masks` must list at least one mask protocol")
    count = len(dataset) if limit is None else min(len(dataset), int(limit))
    items = []
    for index in range(count):
        sample = dataset[index]
        protocol = protocols[index % len(protocols)]
        known = make_mask(protocol, sample.valid_mask, protocol_rng(seed, sample.sample_id, protocol))
        if known.sum() < 3:
            logger.warning("validation %s: < 3 known pixels (%s); skipped", sample.sample_id, protocol)
            continue
        items.append(
            ValidationItem(sample.sample_id, protocol, sample.rgb, sample.depth, sample.valid_mask, known)
        )
    return items
