"""Datasets for evaluation and training: a base class with hooks and a name registry.

``get_dataset("nyuv2", root)`` returns a :class:`DepthDataset` whose items are
:class:`DepthSample` (RGB, GT depth in metres, validity, optional partial input depth,
intrinsics). Layouts and split lists: ``docs/datasets.md``.
"""

from depthlab.data.base import DepthDataset, DepthSample, SampleRef, read_split_file
from depthlab.data.registry import get_dataset, get_dataset_class, list_datasets, register_dataset

__all__ = [
    "DepthDataset",
    "DepthSample",
    "SampleRef",
    "get_dataset",
    "get_dataset_class",
    "list_datasets",
    "read_split_file",
    "register_dataset",
]
