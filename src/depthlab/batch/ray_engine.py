"""Ray Data engine: the batch's items as a streaming Ray Data pipeline (``depthlab complete --engine ray``).

Stages (``docs/scale-out.md``)::

    items (driver: planned against the results manifest, done items left out)
      -> map(prepare)                   CPU tasks: read and check image / depth / mask
      -> map_batches(CompletionWorker)  N actors (``concurrency=N, num_gpus=G``), each builds the
                                        method (the DepthLab pipeline) once in ``__init__`` and
                                        calls the same :func:`depthlab.batch.run_item` as one process
      -> records                        each actor appends its records to its own manifest part
                                        right after writing an item's files; merged at the end

Outputs and records equal those of :func:`depthlab.batch.run_batch`: seeds come from the item
key, writes are atomic per item. A failing item is recorded, not fatal. A worker that dies loses
only the items in flight (no record, no output): Ray retries them, or a rerun computes them.
"""

from __future__ import annotations

import io as _io
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from depthlab.batch import manifest
from depthlab.batch.options import BatchOptions, RayOptions
from depthlab.batch.runner import (
    BatchReport,
    LoadedMethod,
    PreparedItem,
    Task,
    check_out_writable,
    load_method,
    plan,
    prepare_item,
    run_item,
    summarize_skips,
)
from depthlab.batch.worklist import Item

__all__ = ["CompletionWorker", "prepare_row", "run_batch_ray"]


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"--engine ray needs Ray Data ({error}); install it with `pip install 'depthlab[ray]'`"
        ) from None
    return ray


def _encode(prepared: PreparedItem) -> bytes:
    buffer = _io.BytesIO()
    arrays = {"rgb": prepared.rgb, "depth": prepared.depth}
    if prepared.known is not None:
        arrays["known"] = prepared.known
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _decode(data: bytes) -> PreparedItem:
    with np.load(_io.BytesIO(data)) as arrays:
        known = arrays["known"] if "known" in arrays.files else None
        return PreparedItem(rgb=arrays["rgb"], depth=arrays["depth"], known=known)


def prepare_row(row: dict[str, Any], options: BatchOptions) -> dict[str, Any]:
    """CPU stage: decode one task's inputs (an error is carried to the worker, which records it)."""
    task = Task.from_dict(json.loads(row["task"]))
    try:
        return {"task": row["task"], "prepared": _encode(prepare_item(task.item, options)), "error": ""}
    except Exception as error:
        return {"task": row["task"], "prepared": b"", "error": f"{type(error).__name__}: {error}"}


class CompletionWorker:
    """A Ray Data actor: loads the method once, completes and writes items, records each one."""

    def __init__(self, method: str, options: BatchOptions, out: str, threads: int = 1) -> None:
        if method == "depthlab":  # use the CPUs the actor reserved, no more (and the same float sums)
            import torch

            torch.set_num_threads(threads)
        self.options = options
        self.out = out
        self.loaded: LoadedMethod = load_method(method, options)
        self.writer = manifest.PartWriter(out, tag=f"ray{os.getpid()}")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        records = []
        for task_json, prepared, error in zip(batch["task"], batch["prepared"], batch["error"], strict=True):
            task = Task.from_dict(json.loads(task_json))
            decoded: PreparedItem | str = str(error) if error else _decode(bytes(prepared))
            record = run_item(task, self.loaded, self.options, self.out, prepared=decoded)
            self.writer.write(record)
            records.append(json.dumps(record))
        return {"record": records}

    def __del__(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()


_PREPARE_CPUS = 0.25  # CPUs reserved per decoding task


def _check_resources(ray_module: Any, settings: RayOptions) -> None:
    """Refuse a pool that cannot start or leaves no CPU for decoding (it would wait forever)."""
    resources = ray_module.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if settings.workers * settings.gpus_per_worker > gpus:
        raise ValueError(
            f"--workers {settings.workers} x --gpus-per-worker {settings.gpus_per_worker:g} needs "
            f"{settings.workers * settings.gpus_per_worker:g} GPUs; the Ray cluster has {gpus:g}"
        )
    if settings.workers * settings.cpus_per_worker + _PREPARE_CPUS > cpus:
        raise ValueError(
            f"--workers {settings.workers} x --cpus-per-worker {settings.cpus_per_worker:g} leaves no CPU "
            f"for decoding on a Ray cluster with {cpus:g} CPUs; use fewer workers or fewer CPUs per worker"
        )


def run_batch_ray(
    items: Sequence[Item],
    method: str = "auto",
    options: BatchOptions | None = None,
    out: str | os.PathLike = "outputs",
    *,
    ray: RayOptions | None = None,
    on_method: Callable[[LoadedMethod], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> BatchReport:
    """:func:`depthlab.batch.run_batch` on Ray Data; same outputs, same manifest.

    Joins ``ray.address`` (or the Ray instance this process already started, or starts a local
    one, which it shuts down at the end). The items still to compute are planned on the driver;
    ``ray.workers`` actors with ``ray.gpus_per_worker`` GPUs each complete them.
    """
    from depthlab.completion import resolve_method

    ray_module = _ray()
    options = options or BatchOptions()
    settings = ray or RayOptions()
    log = log or (lambda message: None)
    start = time.perf_counter()
    out = check_out_writable(out)

    # 1. the method (resolved here to plan and to say which; loaded in every worker)
    chosen, reason, _ = resolve_method(method, checkpoints=options.checkpoints)
    announced = LoadedMethod(name=chosen, reason=reason)
    if on_method is not None:
        on_method(announced)
    tasks, skips = plan(items, chosen, options, out)

    # 2. the pipeline
    started = False
    if not ray_module.is_initialized():
        if settings.address is None:  # a local instance for this run, on the loopback interface only
            ray_module.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        else:
            ray_module.init(address=settings.address, log_to_driver=False)
        started = True
    records: list[dict[str, Any]] = []
    try:
        if tasks:
            context = ray_module.data.DataContext.get_current()
            context.enable_progress_bars = options.progress
            rows = [{"task": json.dumps(task.to_dict())} for task in tasks]
            dataset = ray_module.data.from_items(rows, override_num_blocks=len(rows))
            _check_resources(ray_module, settings)
            dataset = dataset.map(prepare_row, fn_kwargs={"options": options}, num_cpus=_PREPARE_CPUS)
            dataset = dataset.map_batches(
                CompletionWorker,
                fn_constructor_kwargs={
                    "method": chosen,
                    "options": options,
                    "out": str(out),
                    "threads": max(1, int(settings.cpus_per_worker)),
                },
                batch_size=settings.batch_size,
                compute=ray_module.data.ActorPoolStrategy(size=settings.workers),
                num_gpus=settings.gpus_per_worker,
                num_cpus=settings.cpus_per_worker,
                batch_format="numpy",
            )
            for row in dataset.iter_rows():
                record = json.loads(row["record"])
                records.append(record)
                if record["status"] != "ok":
                    log(f"failed: {record['item']}: {record['error']}")
    finally:
        path = manifest.merge(out)
        if started:
            ray_module.shutdown()
    completed = sorted((r for r in records if r["status"] == "ok"), key=lambda r: r["item"])
    failed = sorted((r for r in records if r["status"] != "ok"), key=lambda r: r["item"])
    return BatchReport(
        method=chosen,
        reason=reason,
        completed=completed,
        failed=failed,
        skipped=summarize_skips(skips),
        manifest=path,
        seconds=time.perf_counter() - start,
    )
