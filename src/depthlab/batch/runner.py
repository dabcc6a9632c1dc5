"""Run a work list: plan (skip what is done), shard, complete and write every item, record the results.

The same per-item functions serve every engine: :func:`prepare_item` (CPU: read and check the
inputs) and :func:`run_item` (complete, write the outputs all or nothing, return the record).
:func:`run_batch` runs them in this process (one shard of a multi-process launch under
``accelerate launch`` / ``torchrun``); :mod:`depthlab.batch.ray_engine` runs them on a Ray
cluster.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depthlab import io
from depthlab.batch import manifest
from depthlab.batch.options import BatchOptions, describe_difference, digest, item_seed
from depthlab.batch.worklist import Item, output_paths
from depthlab.batch.writers import FORMATS, ItemResult, format_settings, write_outputs

__all__ = [
    "BatchReport",
    "LoadedMethod",
    "PreparedItem",
    "Task",
    "check_out_writable",
    "complete_prepared",
    "load_method",
    "plan",
    "prepare_item",
    "run_batch",
    "run_item",
    "shard_items",
]

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# the per-item functions (every engine calls these)
# ----------------------------------------------------------------------------------------------
@dataclass
class PreparedItem:
    """An item's decoded inputs: ``rgb`` uint8 ``[H, W, 3]``, ``depth`` float32 ``[H, W]``, ``known`` bool or None."""

    rgb: np.ndarray
    depth: np.ndarray
    known: np.ndarray | None


def prepare_item(item: Item, options: BatchOptions) -> PreparedItem:
    """Read an item's image, depth (or points) and mask; errors name the file (CPU only)."""
    rgb = io.read_image(item.image, alpha=options.alpha)
    height, width = rgb.shape[:2]
    if item.points is not None:
        depth = io.read_points(item.points, (height, width), scale=options.depth_scale)
    elif item.depth is not None:
        depth = io.read_depth(
            item.depth, scale=options.depth_scale, key=options.depth_key, image_size=(height, width)
        )
    else:
        raise FileNotFoundError(
            f"no depth found for {item.image} (give --depth FILE/DIR, --points, or put "
            f"{item.image.stem}_depth.<ext> next to it)"
        )
    if depth.shape != (height, width):
        raise ValueError(
            f"depth {item.depth} has size {depth.shape} but image {item.image} has {(height, width)} "
            "(H, W); they must be pixel-aligned"
        )
    known = None
    if item.mask is not None:
        # both conventions: pixels marked known over 0/non-finite depth become unknown in
        # depthlab.inputs.resolve_known_mask (with a warning), for every method
        known = io.read_mask(item.mask, convention=options.mask_convention, shape=(height, width))
    if options.keep is not None:
        from depthlab.masks import sparsify

        dense = depth if known is None else np.where(known, depth, 0.0)
        depth, known = sparsify(dense, options.keep, options.seed)
    return PreparedItem(rgb=rgb, depth=np.asarray(depth, np.float32), known=known)


@dataclass
class LoadedMethod:
    """The method a batch runs, resolved once per process or worker (DepthLab loaded once)."""

    name: str
    reason: str
    pipeline: Any = None  # DepthLab (called per item with the item's own generator)
    prepared: Any = None  # any other method: a ``depthlab.completion.PreparedMethod``


def _torch_dtype(name: str | None) -> Any:
    if name is None:
        return None
    names = ("fp32", "fp16", "bf16")
    if name not in names:
        raise ValueError(f"`dtype` (--dtype) must be one of {', '.join(names)}; got {name!r}")
    from depthlab.models.loading import resolve_dtype  # the one dtype-name rule

    return resolve_dtype(name, name="dtype")


def load_method(
    method: str, options: BatchOptions, *, pipeline: Any = None, device: Any = None
) -> LoadedMethod:
    """Resolve ``method`` (``auto`` -> DepthLab or guided) and load the DepthLab pipeline once.

    ``device``: where DepthLab runs (the process's accelerator under ``accelerate``); None:
    ``options.device``, else CUDA when available, else CPU. A given ``pipeline`` is used as is.
    """
    from depthlab.completion import load_pipeline, prepare_method, resolve_method

    chosen, reason, paths = resolve_method(method, pipeline=pipeline, checkpoints=options.checkpoints)
    if chosen != "depthlab":
        return LoadedMethod(name=chosen, reason=reason, prepared=prepare_method(chosen))
    if pipeline is None:
        import torch

        device = device or options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        pipeline = load_pipeline(
            paths,
            device=device,
            torch_dtype=_torch_dtype(options.dtype),
            low_memory=options.low_memory,
            **options.speed,
        )
    return LoadedMethod(name=chosen, reason=reason, pipeline=pipeline)


@dataclass
class Task:
    """What to do with one item.

    Attributes:
        item: the item.
        write: formats to write now.
        formats: formats finished with this run's settings once ``write`` is written.
        base: the item's last successful record (its outputs stay recorded), or None.
    """

    item: Item
    write: list[str]
    formats: list[str]
    base: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item.to_dict(), "write": self.write, "formats": self.formats, "base": self.base}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        return cls(Item.from_dict(data["item"]), list(data["write"]), list(data["formats"]), data["base"])


def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path, out)).as_posix()


def complete_prepared(
    prepared: PreparedItem,
    loaded: LoadedMethod,
    key: str,
    options: BatchOptions,
    *,
    show_progress_bar: bool = False,
) -> Any:
    """Complete one item's decoded inputs with the loaded method: step 2 of :func:`run_item`.

    DepthLab runs with ``options.method_options`` and draws its noise from a CPU generator seeded
    with ``item_seed(options.seed, key)`` (unless ``method_options`` holds a ``generator``), so
    the result depends on the item, not on the order, process or worker. Other methods run as
    prepared once (:func:`depthlab.completion.prepare_method`). Returns a
    :class:`depthlab.DepthLabOutput`.
    """
    from depthlab.completion import complete

    if loaded.pipeline is None:
        return complete(prepared.rgb, prepared.depth, prepared.known, method=loaded.prepared)
    import torch

    call_options = dict(options.method_options)
    call_options["show_progress_bar"] = show_progress_bar
    if call_options.get("generator") is None:
        # the pipeline draws its noise on the CPU, so the generator lives there too
        call_options["generator"] = torch.Generator().manual_seed(item_seed(options.seed, key))
    return complete(
        prepared.rgb,
        prepared.depth,
        prepared.known,
        method="depthlab",
        pipeline=loaded.pipeline,
        **call_options,
    )


class _PrepareError(Exception):
    """An error raised while decoding an item in another process, as its one-line description."""


def run_item(
    task: Task,
    loaded: LoadedMethod,
    options: BatchOptions,
    out: str | os.PathLike,
    *,
    prepared: PreparedItem | str | None = None,
    show_progress_bar: bool = False,
    raise_errors: bool = False,
) -> dict[str, Any]:
    """Complete one item and write its outputs; return its results-manifest record.

    A failure is returned as a record with ``status="failed"`` and the error (re-raised after
    the record is built when ``raise_errors``). ``prepared``: inputs already decoded by
    :func:`prepare_item` (the Ray engine decodes in a separate CPU stage), or the one-line error
    (``"Type: message"``) that decoding raised.
    """
    out = Path(out)
    item = task.item
    settings = options.recorded(loaded.name)
    record: dict[str, Any] = {
        "item": item.key,
        "method": loaded.name,
        "settings": settings,
        "digest": digest(settings),
    }
    # outputs of earlier runs that still exist stay recorded (they are never taken as inputs)
    kept = [rel for rel in (task.base or {}).get("outputs", []) if (out / rel).exists()]
    start = time.perf_counter()
    try:
        # 1. read
        if isinstance(prepared, str):
            raise _PrepareError(prepared)
        if prepared is None:
            prepared = prepare_item(item, options)
        # 2. complete (DepthLab: noise from the item's own seed)
        output = complete_prepared(prepared, loaded, item.key, options, show_progress_bar=show_progress_bar)
        # what was read, e.g. "known depth 0.71-9.98 m after /1000 (500 of 307200 px, 0.163 %)"
        known_depth = io.describe_known_depth(
            prepared.depth, output.known_mask, scale=options.depth_scale, unit=options.unit
        )
        result = ItemResult(
            rgb=prepared.rgb,
            depth=prepared.depth,
            known_mask=np.asarray(output.known_mask, bool),
            completed=np.asarray(output.depth, np.float32),
            method=loaded.name,
            info=output.info,
        )
        # 3. write (all of the item's new files, or none)
        written = write_outputs(result, output_paths(item, task.write), options)
    except Exception as error:
        message = str(error) if isinstance(error, _PrepareError) else f"{type(error).__name__}: {error}"
        record.update(
            status="failed",
            formats=[],
            outputs=kept,
            written=[],
            previous=task.base,
            seconds=round(time.perf_counter() - start, 3),
            error=message,
        )
        if raise_errors:
            error.depthlab_record = record  # type: ignore[attr-defined]
            raise
        return record
    all_paths = output_paths(item, task.formats)
    previous_formats = (task.base or {}).get("format_settings", {})
    record.update(
        status="ok",
        formats=sorted(task.formats),
        format_settings={
            f: (format_settings(f, options) if f in task.write else previous_formats.get(f, {}))
            for f in sorted(task.formats)
        },
        outputs=sorted(set(kept) | {_relative(p, out) for p in all_paths.values()}),
        written=[_relative(p, out) for p in written],
        seconds=round(time.perf_counter() - start, 3),
        known_depth=known_depth,
        error=None,
    )
    return record


# ----------------------------------------------------------------------------------------------
# planning: skip what is done, never mix settings
# ----------------------------------------------------------------------------------------------
@dataclass
class Skip:
    item: Item
    reason: str  # "done" or a sentence saying why outputs were kept


def plan(
    items: Sequence[Item], method: str, options: BatchOptions, out: str | os.PathLike
) -> tuple[list[Task], list[Skip]]:
    """Split items into tasks (to compute) and skips, from the results manifest in ``out``.

    An item is skipped when its requested outputs were finished by a run with the same settings
    (``"done"``), or when some of them exist from a run with other settings or no recorded run
    (never mixed with new ones; ``overwrite`` recomputes). A failed item is retried. An item
    done with the same settings but missing some requested formats is recomputed and only the
    missing files are written.
    """
    out = Path(out)
    previous = manifest.load(out)
    current = options.recorded(method)
    current_digest = digest(current)
    tasks: list[Task] = []
    skips: list[Skip] = []
    for item in items:
        formats = list(options.formats)
        paths = output_paths(item, formats)
        existing = {f for f, p in paths.items() if p.exists()}
        record = previous.get(item.key)
        base = record.get("previous") if record and record.get("status") != "ok" else record
        if options.overwrite:
            tasks.append(Task(item, formats, formats, base))
        elif base is not None and base.get("digest") == current_digest:
            recorded = base.get("format_settings", {})
            ours = {f for f in base.get("formats", []) if output_paths(item, [f])[f].exists()}
            finished = {f for f in ours if recorded.get(f) == format_settings(f, options)}
            stale = sorted((ours & existing) - finished)
            missing = [f for f in formats if f not in finished]
            if not missing:
                skips.append(Skip(item, "done"))
            elif stale:
                diff = "; ".join(
                    f"{f} {describe_difference(recorded.get(f, {}), format_settings(f, options))}"
                    for f in stale
                )
                skips.append(Skip(item, f"outputs exist from a run with {diff}"))
            elif existing - finished:
                skips.append(Skip(item, "outputs exist that no recorded run wrote"))
            else:
                tasks.append(Task(item, missing, sorted(finished | set(formats)), base))
        elif existing:
            if base is not None:
                diff = describe_difference(base.get("settings", {}), current)
                skips.append(Skip(item, f"outputs exist from a run with {diff}"))
            else:
                skips.append(Skip(item, "outputs exist that no recorded run wrote"))
        else:
            tasks.append(Task(item, formats, formats, base))
    return tasks, skips


def summarize_skips(skips: Sequence[Skip]) -> dict[str, int]:
    """``{reason: count}``."""
    counts: dict[str, int] = {}
    for skip in skips:
        counts[skip.reason] = counts.get(skip.reason, 0) + 1
    return counts


# ----------------------------------------------------------------------------------------------
# sharding and checks
# ----------------------------------------------------------------------------------------------
def shard_items(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """Process ``rank``'s contiguous share of ``items`` (the split of ``split_between_processes``)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"`shard` must be (rank, world_size) with 0 <= rank < world_size; got {(rank, world_size)}"
        )
    per, extra = divmod(len(items), world_size)
    start = rank * per + min(rank, extra)
    return list(items[start : start + per + (1 if rank < extra else 0)])


def check_out_writable(out: str | os.PathLike) -> Path:
    """Create ``out`` and prove it writable with a probe file, before any work (``ValueError`` if not)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot create the folder ({error.strerror or error})") from None
    try:
        handle, name = tempfile.mkstemp(prefix=".depthlab-write-test.", dir=out)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        raise ValueError(f"--out {out} is not writable ({error.strerror or error})") from None
    return out


def _distributed_state(options: BatchOptions) -> Any:
    """The ``accelerate.PartialState`` when launched with several processes (accelerate/torchrun), else None.

    Each process runs on its own accelerator (``state.device``); on machines without one, or with
    ``device="cpu"``, the processes run on the CPU (gloo).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=options.device == "cpu" or not torch.cuda.is_available())


# ----------------------------------------------------------------------------------------------
# the single-process / one-shard engine
# ----------------------------------------------------------------------------------------------
@dataclass
class BatchReport:
    """What a batch did (over all processes of a multi-process launch).

    Attributes:
        method / reason: the method that ran and why.
        completed: records of the items computed in this run (``status == "ok"``).
        failed: records of the items that failed.
        skipped: ``{reason: count}`` of items not computed (``"done"``: finished earlier with the
            same settings).
        manifest: path of the results manifest.
        seconds: wall time of the run.
        process_index: this process's rank in a multi-process launch (0: the main process,
            which reports).
    """

    method: str
    reason: str
    completed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    manifest: Path | None = None
    seconds: float = 0.0
    process_index: int = 0

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())


def _merge_counts(parts: Sequence[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for reason, count in part.items():
            merged[reason] = merged.get(reason, 0) + count
    return merged


def run_batch(
    items: Sequence[Item],
    method: str = "auto",
    options: BatchOptions | None = None,
    out: str | os.PathLike = "outputs",
    shard: tuple[int, int] | None = None,
    *,
    pipeline: Any = None,
    raise_errors: bool = False,
    on_method: Callable[[LoadedMethod], None] | None = None,
    log: Callable[[str], None] | None = None,
    on_item: Callable[[dict[str, Any]], None] | None = None,
) -> BatchReport:
    """Complete every item (this process's shard), skipping finished ones; record results in ``out``.

    Args:
        items: the work list (:func:`depthlab.batch.collect_items`).
        method: ``auto``, ``depthlab`` or a classical method.
        options: how items are read, completed and written.
        out: output folder; checked writable before any work. Results manifest:
            ``out/depthlab-results.jsonl``.
        shard: ``(rank, world_size)``: process only this contiguous share of ``items`` (the
            manifest parts are merged by a later run or :func:`depthlab.batch.merge_results`).
            None: one process, or every process of an ``accelerate launch`` / ``torchrun`` launch
            (shares from accelerate's ``split_between_processes``, manifest merged at the end).
        pipeline: a loaded DepthLab pipeline to use instead of loading one.
        raise_errors: re-raise an item's error after recording it (single-image use).
        on_method: called with the resolved method before the first item (main process).
        log: called with a one-line message per failed item (default: ``logger.warning``).
        on_item: called with the record of each item completed (main process of a launch).

    Returns:
        :class:`BatchReport`. Per-item seeds derive from the item key, so outputs do not depend on
        ``shard`` or the number of processes.
    """
    from tqdm import tqdm

    options = options or BatchOptions()
    log = log or logger.warning
    unknown = [f for f in options.formats if f not in FORMATS]
    if unknown or not options.formats:
        raise ValueError(
            f"`formats` (--format) must be a non-empty subset of {', '.join(FORMATS)}; got {options.formats}"
        )
    start = time.perf_counter()
    out = check_out_writable(out)

    # 1. who am I: the whole list, an explicit shard, or one process of a launch
    state = _distributed_state(options) if shard is None else None
    rank, world = (state.process_index, state.num_processes) if state is not None else (shard or (0, 1))
    is_main = rank == 0

    # 2. the method, once per process
    loaded = load_method(method, options, pipeline=pipeline, device=None if state is None else state.device)
    if on_method is not None and is_main:
        on_method(loaded)

    # 3. the work of this process: under a launch every process plans from the same manifest
    #    and the items still to compute are split (balanced); an explicit shard takes its share of
    #    the whole list (shards run at different times must not depend on each other's progress)
    if state is not None:
        tasks, skips = plan(items, loaded.name, options, out)
        state.wait_for_everyone()  # nobody writes a part before everybody has planned
        with state.split_between_processes(tasks) as mine:
            my_tasks = list(mine)
        my_skips = skips if is_main else []
    else:
        my_tasks, my_skips = plan(shard_items(items, rank, world), loaded.name, options, out)
    # 4. run; each record is on disk before the next item starts
    writer = manifest.PartWriter(out, tag=f"r{rank}")
    completed: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    single = len(items) == 1
    bar = tqdm(
        my_tasks,
        desc="completing",
        unit="image",
        disable=not options.progress or single or not is_main,
        file=sys.stderr,
    )
    try:
        for task in bar:
            record = run_item(
                task,
                loaded,
                options,
                out,
                show_progress_bar=options.progress and single,
                raise_errors=raise_errors and single,
            )
            writer.write(record)
            if record["status"] == "ok":
                completed.append(record)
                if on_item is not None:
                    on_item(record)
            else:
                failed.append(record)
                log(f"failed: {task.item.image}: {record['error']}")
    except BaseException as error:
        writer.close()
        record = getattr(error, "depthlab_record", None)
        if record is not None:
            writer.write(record)
            writer.close()
        if state is None and shard is None:
            manifest.merge(out)
        raise
    finally:
        bar.close()
        writer.close()

    # 5. gather the reports, merge the manifest parts (main process, after everybody finished)
    skip_counts = summarize_skips(my_skips)
    if state is not None:
        from accelerate.utils import gather_object

        state.wait_for_everyone()
        completed = list(gather_object(completed))
        failed = list(gather_object(failed))
        skip_counts = _merge_counts(gather_object([skip_counts]))
    path = manifest.manifest_path(out)
    if is_main and (shard is None or world == 1):
        path = manifest.merge(out)
    if state is not None:
        state.wait_for_everyone()
    completed.sort(key=lambda r: r["item"])
    failed.sort(key=lambda r: r["item"])
    return BatchReport(
        method=loaded.name,
        reason=loaded.reason,
        completed=completed,
        failed=failed,
        skipped=skip_counts,
        manifest=path,
        seconds=time.perf_counter() - start,
        process_index=rank,
    )


def complete_batch(
    spec: Any,
    method: str = "auto",
    options: BatchOptions | None = None,
    *,
    engine: str = "local",
    ray: Any = None,
    on_method: Callable[[LoadedMethod], None] | None = None,
    log: Callable[[str], None] | None = None,
    on_item: Callable[[dict[str, Any]], None] | None = None,
) -> BatchReport:
    """Collect the work list of ``spec`` (:class:`WorkListSpec`) and run it: what ``depthlab complete`` calls.

    ``engine``: ``"local"`` (this process; one share of an accelerate/torchrun launch) or ``"ray"``
    (:func:`depthlab.batch.ray_engine.run_batch_ray` with ``ray``, a :class:`RayOptions`). A
    single image re-raises its error instead of recording it.
    """
    from depthlab.batch.worklist import collect_items

    options = options or BatchOptions()
    if engine not in ("local", "ray"):
        raise ValueError(f"`engine` (--engine) must be 'local' or 'ray'; got {engine!r}")
    items = collect_items(spec, options.formats)
    check_out_writable(spec.out)  # before any model is loaded or item computed
    if engine == "ray":
        from depthlab.batch.ray_engine import run_batch_ray

        return run_batch_ray(items, method, options, spec.out, ray=ray, on_method=on_method, log=log)
    return run_batch(
        items,
        method,
        options,
        spec.out,
        raise_errors=len(items) == 1,
        on_method=on_method,
        log=log,
        on_item=on_item,
    )
