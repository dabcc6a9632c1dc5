"""One entry point for every completion method: :func:`complete`.

``method="auto"`` runs DepthLab when a pipeline is given or its weights are found on this machine
(checkpoint folder, ``$DEPTHLAB_CHECKPOINTS``, huggingface_hub cache) and torch is installed;
otherwise it runs the classical ``guided`` fill. ``output.info["method_reason"]`` says which
method ran and why.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import numpy as np

from depthlab import classical
from depthlab.inputs import check_completion_inputs, resolve_known_mask, to_depth_array, to_rgb_uint8
from depthlab.outputs import DepthLabOutput

__all__ = ["METHODS", "complete", "resolve_method", "load_pipeline"]

logger = logging.getLogger(__name__)

METHODS = ("auto", "depthlab", "guided", "linear", "nearest", "lidar")
# options of ``complete`` that are used to load the pipeline, not passed to its call
_LOAD_OPTIONS = ("device", "torch_dtype")
_CLASSICAL_FUNCTIONS = {
    "guided": classical.guided,
    "linear": classical.linear,
    "nearest": classical.nearest,
    "lidar": classical.lidar,
}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}")


def resolve_method(
    method: str = "auto", *, pipeline: Any = None, checkpoints: Any = None
) -> tuple[str, str, Any]:
    """Decide which method runs.

    Returns:
        ``(method, reason, checkpoint_paths)``: the concrete method name, one sentence saying why,
        and for ``"depthlab"`` without a given pipeline the found checkpoint paths (else None).

    Raises:
        ValueError: unknown method.
        FileNotFoundError: ``method="depthlab"`` but no pipeline and no weights were found.
        ImportError: ``method="depthlab"`` without torch installed.
    """
    _check_method(method)
    if method not in ("auto", "depthlab"):
        return method, f"method {method!r} was requested", None
    if pipeline is not None:
        return "depthlab", "a DepthLab pipeline was given", None
    try:
        from depthlab.models.loading import find_checkpoints
    except ImportError as error:
        if method == "depthlab":
            raise ImportError(
                f"method 'depthlab' needs torch and diffusers ({error}); install them with "
                "`pip install 'depthlab[diffusion]'`"
            ) from error
        return (
            "guided",
            f"DepthLab needs torch, which is not installed ({error.name or error}); "
            "using the classical 'guided' fill",
            None,
        )
    paths = find_checkpoints(checkpoints)
    if paths is None:
        where = f"{str(checkpoints)!r}, " if checkpoints else ""
        if method == "depthlab":
            from depthlab.models.loading import CheckpointNotFoundError, resolve_checkpoints

            try:  # raises CheckpointNotFoundError saying what is missing and how to get it
                resolve_checkpoints(checkpoints)
            except CheckpointNotFoundError:
                raise
            except Exception as error:  # a bug in the search must not hide the real problem
                logger.debug("resolve_checkpoints failed: %r", error)
            raise FileNotFoundError(
                f"no DepthLab weights found in {where}$DEPTHLAB_CHECKPOINTS or the hub cache"
            )
        return (
            "guided",
            f"no DepthLab weights found (looked in {where}$DEPTHLAB_CHECKPOINTS and the "
            "huggingface_hub cache); using the classical 'guided' fill",
            None,
        )
    found = paths.root or paths.depthlab or paths.marigold
    reason = (
        "DepthLab weights were requested and found" if method == "depthlab"
        else "DepthLab weights were found"
    )
    return "depthlab", f"{reason} ({paths.layout} layout, {found})", paths


def load_pipeline(paths: Any, *, device: Any = None, torch_dtype: Any = None) -> Any:
    """Load :class:`depthlab.DepthLabPipeline` from found checkpoint paths (or a folder/None)."""
    from depthlab.pipeline import DepthLabPipeline

    if paths is not None and hasattr(paths, "layout"):
        source = paths.root if paths.layout == "depthlab" else _original_root(paths)
    else:
        source = paths
    return DepthLabPipeline.from_pretrained(source, torch_dtype=torch_dtype, device=device)


def _original_root(paths: Any) -> Any:
    """The folder holding the original layout, or None (hub cache) when the parts are apart."""
    parents = {p.parent for p in (paths.marigold, paths.clip) if p is not None}
    if len(parents) == 1 and paths.depthlab is not None:
        root = parents.pop()
        try:
            paths.depthlab.relative_to(root)
            return root
        except ValueError:
            return None
    return None


def _check_options(method: str, options: dict[str, Any]) -> None:
    function = _CLASSICAL_FUNCTIONS[method]
    accepted = [
        name for name, p in inspect.signature(function).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"method {method!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(accepted) or 'none'}"
        )


def complete(
    image: Any,
    depth: Any,
    known_mask: Any = None,
    method: str = "auto",
    *,
    pipeline: Any = None,
    checkpoints: Any = None,
    memory_limit: int | None = None,
    **options: Any,
) -> DepthLabOutput:
    """Complete a partial depth map with the chosen method.

    Args:
        image: RGB image aligned with ``depth`` (PIL, numpy ``[H, W, 3]``, torch ``[3, H, W]``);
            may be None for ``nearest``, ``linear`` and ``lidar``, which do not use it.
        depth: ``[H, W]`` depth in any units; values at unknown pixels are ignored.
        known_mask: ``[H, W]`` bool, True = known; None -> ``isfinite(depth) & (depth > 0)``.
        method: ``"auto"`` (DepthLab if available, else ``"guided"``), ``"depthlab"``,
            ``"guided"``, ``"linear"``, ``"nearest"`` or ``"lidar"``.
        pipeline: a loaded :class:`depthlab.DepthLabPipeline` (reused, not reloaded).
        checkpoints: where to look for DepthLab weights (folder in the original or the
            ``save_pretrained`` layout); None -> ``$DEPTHLAB_CHECKPOINTS`` and the hub cache.
        memory_limit: bytes a classical method may use; None -> the memory available on this
            machine now. A classical method whose estimate (:func:`depthlab.classical.memory_estimate`)
            exceeds it raises before any work.
        **options: passed to the method: the pipeline call's arguments for DepthLab
            (``num_inference_steps``, ``processing_resolution``, ``generator``, ...; plus
            ``device`` and ``torch_dtype`` used to load it), or the keyword options of the
            classical function (:func:`depthlab.classical.guided` etc.). With ``method="auto"``,
            options the chosen method does not take are ignored and listed in
            ``info["ignored_options"]``.

    Returns:
        :class:`depthlab.outputs.DepthLabOutput` with ``depth`` float32 ``[H, W]`` in the input
        units, ``known_mask``, ``method`` (the method that ran) and ``info`` (``method_reason``,
        ``seconds``, ...).

    Raises:
        ValueError / TypeError: bad inputs, unknown method or options (messages name them).
        FileNotFoundError: ``method="depthlab"`` and no weights found.
        depthlab.classical.InsufficientMemoryError: (a ``MemoryError`` and ``ValueError``) the
            classical method would need more memory than ``memory_limit``; names both.
    """
    _check_method(method)
    start = time.perf_counter()
    # 1. standardise and check the inputs once, for every method
    depth_array = to_depth_array(depth)
    known = resolve_known_mask(known_mask, depth_array)
    rgb = None if image is None else to_rgb_uint8(image)
    check_completion_inputs(rgb, depth_array, known, allow_all_known=True)

    # 2. choose the method
    chosen, reason, paths = resolve_method(method, pipeline=pipeline, checkpoints=checkpoints)
    if rgb is None and chosen in ("depthlab", "guided"):
        raise ValueError(f"`image` is None but method {chosen!r} needs the RGB image")
    ignored: list[str] = []

    # 3. run it
    if chosen == "depthlab":
        load_options = {k: options.pop(k) for k in _LOAD_OPTIONS if k in options}
        if pipeline is None:
            pipeline = load_pipeline(paths, **load_options)
        elif load_options:
            ignored += sorted(load_options)
        output = pipeline(rgb, depth_array, known, **options)
        output.method = "depthlab"
    else:
        if method == "auto":
            accepted = set(inspect.signature(_CLASSICAL_FUNCTIONS[chosen]).parameters)
            ignored = sorted(k for k in options if k not in accepted)
            options = {k: v for k, v in options.items() if k in accepted}
        _check_options(chosen, options)
        need = classical.check_memory(chosen, depth_array.shape, known, available=memory_limit)
        if chosen == "guided":
            filled = classical.guided(rgb, depth_array, known, **options)
        else:
            filled = _CLASSICAL_FUNCTIONS[chosen](depth_array, known, **options)
        output = DepthLabOutput(
            depth=filled.astype(np.float32),
            known_mask=known,
            method=chosen,
            info={"options": dict(options), "memory_estimate_bytes": need},
        )
    output.info["method_reason"] = reason
    output.info["seconds"] = time.perf_counter() - start
    if ignored:
        output.info["ignored_options"] = ignored
        logger.info("complete: method %r ignored option(s) %s", chosen, ", ".join(ignored))
    return output
