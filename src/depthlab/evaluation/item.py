"""One item of an evaluation run: predict and score one sample under one protocol and method.

:func:`known_mask_for` draws the seeded known mask, :func:`predict` runs the method (or reuses
the saved prediction, so an interrupted run resumes), :func:`score_rows` scores the prediction on
each region. :class:`MethodCache` builds each method once (:func:`build_method`, via the method
registry in :mod:`depthlab.completion`) and remembers a method that could not be set up.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depthlab import masks as mask_protocols
from depthlab.evaluation.metrics import METRIC_NAMES, clip_prediction, compute_metrics, region_mask

__all__ = [
    "BatchMethod",
    "MethodFn",
    "MethodCache",
    "build_method",
    "known_mask_for",
    "predict",
    "score_rows",
    "save_npy",
    "load_prediction",
    "method_settings",
    "RECORDED_PIPELINE_OPTIONS",
]

logger = logging.getLogger(__name__)

MethodFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class BatchMethod:
    """A method built once and run through the batch's per-item step (:func:`depthlab.batch.complete_prepared`).

    Called as ``method(rgb, depth, known, key=...)``: DepthLab draws its noise from a seed derived
    from ``key`` (the evaluation item, ``"<dataset>/<protocol>/<sample>"``) and ``seed``, so a
    prediction does not depend on the order of the run or on what ran before it, exactly as in
    ``depthlab complete``.
    """

    def __init__(self, loaded: Any, options: Any) -> None:
        self.loaded = loaded
        self.options = options

    def __call__(self, rgb: np.ndarray, depth: np.ndarray, known: np.ndarray, *, key: str = "") -> np.ndarray:
        from depthlab.batch import PreparedItem, complete_prepared

        output = complete_prepared(PreparedItem(rgb, depth, known), self.loaded, key, self.options)
        return np.asarray(output.depth, dtype=np.float32)


def build_method(method: str, options: Mapping[str, Any] | None = None) -> MethodFn:
    """Callable ``(rgb [H,W,3] uint8, depth [H,W], known_mask [H,W], key=...) -> depth [H,W]`` for a name.

    Any method of the registry (:func:`depthlab.completion.method_names`). Expensive state (the
    DepthLab pipeline, a monocular model) is loaded once, here. ``options``: the method's options
    (DepthLab: the pipeline call's arguments, ``pipeline``, ``checkpoints``, ``device``,
    ``torch_dtype``, and ``seed``, the base of the per-item seeds, default 0).
    """
    from depthlab.batch import BatchOptions, LoadedMethod
    from depthlab.completion import load_pipeline, prepare_method, resolve_method

    options = dict(options or {})
    seed = int(options.pop("seed", 0))
    pipeline = options.get("pipeline")
    chosen, reason, paths = resolve_method(method, pipeline=pipeline, checkpoints=options.get("checkpoints"))
    if chosen == "depthlab":
        options.pop("pipeline", None)
        options.pop("checkpoints", None)
        load_options = {k: options.pop(k) for k in ("device", "torch_dtype") if k in options}
        if pipeline is None:
            pipeline = load_pipeline(paths, **load_options)
        loaded = LoadedMethod(name=chosen, reason=reason, pipeline=pipeline)
        batch_options = BatchOptions(method_options=options, seed=seed)
    else:
        prepared = prepare_method(method, **options)
        loaded = LoadedMethod(name=prepared.name, reason=prepared.reason, prepared=prepared)
        batch_options = BatchOptions(seed=seed)
    logger.info("method %s: %s", method, reason)
    return BatchMethod(loaded, batch_options)


class MethodCache:
    """Method callables by name, built on first use; a failed setup is remembered, not retried.

    Args:
        methods: prebuilt callables (tests, custom methods) by name.
        options: ``{method: {option: value}}`` for :func:`build_method`.
    """

    def __init__(self, methods: Mapping[str, MethodFn] | None, options: Mapping[str, Mapping[str, Any]]):
        self._functions: dict[str, MethodFn] = dict(methods or {})
        self._errors: dict[str, str] = {}
        self._options = options

    def get(self, method: str) -> MethodFn:
        """The callable of ``method``; raises ``RuntimeError`` if it cannot be set up."""
        if method in self._errors:
            raise RuntimeError(self._errors[method])
        if method not in self._functions:
            try:
                self._functions[method] = build_method(method, self._options.get(method))
            except Exception as error:  # noqa: BLE001 - reported for every item of the method
                self._errors[method] = f"could not set up method: {type(error).__name__}: {error}"
                raise RuntimeError(self._errors[method]) from error
        return self._functions[method]


RECORDED_PIPELINE_OPTIONS = (
    "processing_resolution",
    "resize_mode",
    "num_inference_steps",
    "ensemble_size",
    "fill_mode",
    "preserve_known",
)


def method_settings(method: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options a result was made with (recorded with every row and under every table).

    The given options plus, for DepthLab, the pipeline's defaults of :data:`RECORDED_PIPELINE_OPTIONS` (processing resolution, resize mode, steps,
    ensemble, ...) so a table row says how it was made. Objects (a given pipeline) are named by type.
    """
    settings: dict[str, Any] = {}
    for key, value in (options or {}).items():
        plain = value is None or isinstance(value, (bool, int, float, str, list, tuple))
        settings[key] = value if plain else type(value).__name__
    if method in ("depthlab", "auto"):
        import inspect

        from depthlab.pipeline import DepthLabPipeline

        parameters = inspect.signature(DepthLabPipeline.__call__).parameters
        for key in RECORDED_PIPELINE_OPTIONS:
            default = parameters[key].default
            # None = the loaded pipeline's own default (e.g. its default_num_inference_steps)
            settings.setdefault(key, "pipeline default" if default is None else default)
        settings.setdefault("seed", 0)
    return dict(sorted(settings.items()))


def save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.npy")
    np.save(temporary, array)
    temporary.replace(path)


def load_prediction(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable prediction %s (%s); recomputing", path, error)
        return None
    if array.shape != shape:
        logger.warning("ignoring prediction %s of shape %s (expected %s)", path, array.shape, shape)
        return None
    return array.astype(np.float32)


def known_mask_for(sample: Any, protocol: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(input_depth, known_mask)`` of one sample under one protocol.

    ``sensor`` and ``lines:N`` draw from the dataset's own partial depth (KITTI-DC
    ``velodyne_raw``) when it has one; ``lines:N`` falls back to the GT depth (a projected LiDAR
    scan, e.g. ``kitti_object``: the lines not kept are scored). ``orb``/``sift`` get the RGB,
    ``range`` the GT depth, ``lines`` the intrinsics.
    """
    kind, _ = mask_protocols.parse_protocol(protocol)
    if kind == "sensor":
        if sample.known_depth is None:
            raise ValueError(
                "protocol 'sensor' needs a dataset with its own partial depth "
                "(e.g. kitti_dc velodyne_raw, nyuv2 marigold raw depth, folder known/)"
            )
        known = mask_protocols.sensor_holes(sample.known_mask)
        return np.where(known, sample.known_depth, 0.0).astype(np.float32), known
    source, source_valid = sample.depth, sample.valid_mask
    if kind == "lines" and sample.known_depth is not None:
        source, source_valid = sample.known_depth, sample.known_mask
    if kind == "lines" and sample.intrinsics is None:
        raise ValueError(f"protocol {protocol!r} needs the camera intrinsics; the dataset gives none")
    rng = mask_protocols.protocol_rng(seed, sample.sample_id, protocol)
    known = mask_protocols.make_mask(
        protocol, source_valid, rng, rgb=sample.rgb, depth=source, intrinsics=sample.intrinsics
    )
    return np.where(known, source, 0.0).astype(np.float32), known


def predict(
    method: Callable[[], MethodFn],
    sample: Any,
    input_depth: np.ndarray,
    known: np.ndarray,
    path: Path,
    key: str = "",
) -> tuple[np.ndarray, float, bool]:
    """``(prediction [H, W] float32, seconds, reused)``; the prediction is saved to ``path``.

    A saved prediction of the right shape is reused (``seconds`` NaN); ``method()`` returns the
    method's callable and is only called when a prediction must be computed. ``key`` names the
    item for the per-item seed of methods built by :func:`build_method`.
    """
    saved = load_prediction(path, sample.depth.shape)
    if saved is not None:
        return saved, math.nan, True
    function = method()
    tic = time.perf_counter()
    if isinstance(function, BatchMethod):
        pred = function(sample.rgb, input_depth, known, key=key)
    else:  # a callable given by the caller
        pred = np.asarray(function(sample.rgb, input_depth, known), np.float32)
    seconds = time.perf_counter() - tic
    if pred.shape != sample.depth.shape:
        raise ValueError(f"prediction shape {pred.shape} != depth shape {sample.depth.shape}")
    save_npy(path, pred)
    return pred, seconds, False


def score_rows(
    pred: np.ndarray,
    sample: Any,
    known: np.ndarray,
    regions: Sequence[str],
    depth_range: tuple[float, float | None] | None,
    record: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One per-sample row per region: ``record`` + status + the metrics of that region.

    ``depth_range``: ``(min, max or None)`` the prediction is clipped to before scoring (None:
    not clipped). A region without pixels gets NaN metrics and ``n_pixels = 0``.
    """
    scored = pred if depth_range is None else clip_prediction(pred, *depth_range)
    rows = []
    for region in regions:
        pixels = region_mask(sample.valid_mask, known, region)
        row: dict[str, Any] = {
            **record,
            "region": region,
            "status": "ok",
            "error": "",
            "n_known": int(known.sum()),
        }
        if pixels.any():
            row.update(compute_metrics(scored, sample.depth, pixels))
        else:
            row.update({name: math.nan for name in METRIC_NAMES}, n_pixels=0.0)
        rows.append(row)
    return rows
