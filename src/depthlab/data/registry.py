"""Dataset registry: name -> :class:`~depthlab.data.base.DepthDataset` subclass.

Register a subclass with the decorator::

    @register_dataset("hypersim")
    class HypersimDataset(DepthDataset): ...

The built-in modules (and, when present, ``hypersim``, ``vkitti``, ``synthetic``) are imported the
first time a name is looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from depthlab.data.base import DepthDataset

__all__ = ["register_dataset", "get_dataset", "get_dataset_class", "list_datasets"]

_REGISTRY: dict[str, type[DepthDataset]] = {}
_BUILTIN_MODULES = ("nyuv2", "kitti", "eth3d", "scannet", "diode", "folder")
_OPTIONAL_MODULES = ("hypersim", "vkitti", "synthetic")
_loaded = False

T = TypeVar("T", bound=type[DepthDataset])


def register_dataset(name: str, *aliases: str) -> Callable[[T], T]:
    """Class decorator: register a dataset class under ``name`` (and ``aliases``)."""

    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, DepthDataset)):
            raise TypeError(f"@register_dataset({name!r}) must decorate a DepthDataset subclass")
        for key in (name, *aliases):
            key = key.lower()
            if key in _REGISTRY and _REGISTRY[key] is not cls:
                raise ValueError(f"dataset name {key!r} is already registered by {_REGISTRY[key]}")
            _REGISTRY[key] = cls
        cls.name = name
        return cls

    return decorator


def _load_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"depthlab.data.{module}")
    for module in _OPTIONAL_MODULES:
        full_name = f"depthlab.data.{module}"
        try:
            importlib.import_module(full_name)
        except ModuleNotFoundError as error:
            if error.name != full_name:
                raise


def list_datasets() -> list[str]:
    """Registered dataset names (aliases included), sorted."""
    _load_modules()
    return sorted(_REGISTRY)


def get_dataset_class(name: str) -> type[DepthDataset]:
    _load_modules()
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def get_dataset(name: str, root: str | Path, **kwargs: Any) -> DepthDataset:
    """Instantiate the dataset registered as ``name`` on ``root`` (keyword options passed on)."""
    return get_dataset_class(name)(root, **kwargs)
