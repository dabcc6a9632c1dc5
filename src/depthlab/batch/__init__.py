"""Batch completion: work lists, resume manifest, sharding (accelerate / torchrun), Ray Data adapter.

Backend-free core (numpy, :mod:`depthlab.io`, :func:`depthlab.complete`)::

    from depthlab.batch import BatchOptions, WorkListSpec, collect_items, run_batch

    items = collect_items(WorkListSpec(images=["data/"], out="outputs"))
    report = run_batch(items, "guided", BatchOptions(depth_scale=1000), "outputs")

``python -m depthlab.batch ARGS`` is ``depthlab complete ARGS``; under ``accelerate launch`` or
``torchrun`` every process takes its share of the items (``docs/scale-out.md``). Ray clusters:
:func:`depthlab.batch.ray_engine.run_batch_ray` (``depthlab complete --engine ray``).
"""

from depthlab.batch.manifest import load as load_results
from depthlab.batch.manifest import merge as merge_results
from depthlab.batch.options import BatchOptions, RayOptions, item_seed
from depthlab.batch.runner import (
    BatchReport,
    LoadedMethod,
    PreparedItem,
    Task,
    check_out_writable,
    complete_batch,
    complete_prepared,
    load_method,
    plan,
    prepare_item,
    run_batch,
    run_item,
    shard_items,
)
from depthlab.batch.worklist import RESULTS_NAME, Item, WorkListSpec, collect_items, output_paths
from depthlab.batch.writers import FORMATS, ItemResult, OutputFormat, write_outputs

__all__ = [
    "BatchOptions",
    "BatchReport",
    "FORMATS",
    "Item",
    "ItemResult",
    "LoadedMethod",
    "OutputFormat",
    "PreparedItem",
    "RESULTS_NAME",
    "Task",
    "WorkListSpec",
    "RayOptions",
    "check_out_writable",
    "collect_items",
    "complete_batch",
    "complete_prepared",
    "item_seed",
    "load_method",
    "load_results",
    "merge_results",
    "output_paths",
    "plan",
    "prepare_item",
    "run_batch",
    "run_item",
    "shard_items",
    "write_outputs",
]
