"""One entry point for every completion method: :func:`complete`, and the one method registry.

Methods: ``depthlab`` (the diffusion model), the classical fills ``guided``, ``linear``,
``nearest``, ``lidar`` and ``align:<model>`` (a monocular model aligned to the known depth). Each
is one :class:`Method` record in the registry; :func:`complete`, ``depthlab complete --method``,
``depthlab eval`` and anything built later read the registry, and :func:`register_method` adds a
method (see ``docs/architecture.md``, "Adding a method").

``method="auto"`` runs DepthLab when a pipeline is given or its weights are found on this machine
(checkpoint folder, ``$DEPTHLAB_CHECKPOINTS``, huggingface_hub cache) and torch is installed;
otherwise it runs the classical ``guided`` fill. ``output.info["method_reason"]`` says which
method ran and why.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from depthlab import classical
from depthlab.inputs import check_completion_inputs, resolve_known_mask, to_depth_array, to_rgb_uint8
from depthlab.outputs import DepthLabOutput

__all__ = [
    "METHODS",
    "Method",
    "PreparedMethod",
    "register_method",
    "get_method",
    "method_names",
    "describe_methods",
    "check_method",
    "prepare_method",
    "complete",
    "resolve_method",
    "load_pipeline",
    "DEPTHLAB_OPTION_RULES",
    "check_depthlab_options",
    "estimate_cpu_seconds",
]

logger = logging.getLogger(__name__)

# options of ``complete`` that are used to load the pipeline, not passed to its call
_LOAD_OPTIONS = ("device", "torch_dtype", "low_memory", "channels_last", "compile", "tiny_vae")
MethodRunner = Callable[[Any, np.ndarray, np.ndarray], Any]


# DepthLab call options that are checked up front by ``complete`` for every method (an invalid
# value is an error even when ``auto`` falls back to a classical method):
# name -> (kind, rule): "int" (minimum), "float" ((low, low included, high or None, as text)),
# "choice" (the allowed values).
DEPTHLAB_OPTION_RULES: dict[str, tuple[str, Any]] = {
    "num_inference_steps": ("int", 1),
    "ensemble_size": ("int", 1),
    "batch_size": ("int", 1),
    "processing_resolution": ("int", 0),
    "strength": ("float", (0.0, False, 1.0, "in (0, 1]")),
    "normalize_scale": ("float", (0.0, False, None, "> 0")),
    "guidance_scale": ("float", (1.0, True, None, ">= 1")),
    "preserve_known": ("choice", ("none", "exact", "smooth")),
    "resize_mode": ("choice", ("auto", "nearest", "preserve")),
    "fill_mode": ("choice", ("exact", "fast", "auto")),
    "timestep_spacing": ("choice", (None, "leading", "trailing", "linspace")),
}


# options whose None means "the model's default" (stored with its weights)
_MODEL_DEFAULTS = ("num_inference_steps", "processing_resolution", "strength")


def check_depthlab_options(options: dict[str, Any]) -> None:
    """Range-check the DepthLab options in ``options`` (others are left alone).

    Raises:
        ValueError / TypeError naming the option and its value, e.g. ``num_inference_steps=0``.
    """
    for name, value in options.items():
        rule = DEPTHLAB_OPTION_RULES.get(name)
        if rule is None or (value is None and name in _MODEL_DEFAULTS):
            continue
        kind, spec = rule
        if kind == "choice":
            if value not in spec:
                shown = ", ".join(repr(v) for v in spec)
                raise ValueError(f"`{name}` must be one of {shown}; got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"`{name}` must be a number; got {value!r}")
        if kind == "int":
            if not isinstance(value, (int, np.integer)):
                raise TypeError(f"`{name}` must be an integer; got {value!r}")
            if value < spec:
                raise ValueError(f"`{name}` must be >= {spec}; got {value}")
            continue
        low, low_included, high, text = spec
        inside = bool(np.isfinite(value)) and (value >= low if low_included else value > low)
        if not inside or (high is not None and value > high):
            raise ValueError(f"`{name}` must be {text}; got {value}")
    steps, strength = options.get("num_inference_steps"), options.get("strength")
    if steps is not None and strength is not None and int(steps * strength) < 1:
        raise ValueError(
            f"`strength`={strength} with `num_inference_steps`={steps} keeps no denoising step "
            "(int(steps * strength) must be >= 1)"
        )


# Measured on a 2-core x86 CPU, full-size DepthLab (benchmarks/results/pipeline_speed_cpu.md):
# one estimation U-Net step at 576x768 takes 7.8 s in float32 and 5.2 s in bfloat16; the fixed
# work (reference U-Net, 4 VAE encodes, decode, CLIP) costs about 7 steps. Time scales with the
# number of processed pixels and inversely with the cores.
_CPU_STEP_SECONDS = {"fp32": 7.8, "bf16": 5.2, "fp16": 7.8}
_CPU_REFERENCE_PIXELS = 576 * 768
_CPU_REFERENCE_THREADS = 2
_FIXED_STEPS = 7


def estimate_cpu_seconds(
    image_size: tuple[int, int],
    *,
    num_inference_steps: int = 50,
    strength: float = 0.8,
    processing_resolution: int = 768,
    ensemble_size: int = 1,
    dtype: str = "fp32",
    threads: int | None = None,
    **_: Any,
) -> float:
    """Rough seconds per image of DepthLab on this machine's CPU (for a warning before it runs).

    Args:
        image_size: ``(H, W)`` of the input; the model runs at ``processing_resolution`` (longest
            side; 0 = input size).
        num_inference_steps: DDIM steps, as in the pipeline call.
        strength: as in the pipeline call; ``int(steps * strength)`` steps run.
        processing_resolution: longest side at which the model runs (0 = input size).
        ensemble_size: members per image (each runs every step).
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        threads: CPU threads torch uses (None -> ``os.cpu_count()``).
    """
    import os

    height, width = (int(v) for v in image_size)
    longest = processing_resolution or max(height, width)
    ratio = longest / max(height, width)
    pixels = max(1.0, height * ratio) * max(1.0, width * ratio)
    cores = threads or os.cpu_count() or 1
    step = _CPU_STEP_SECONDS.get(dtype, 7.8) * pixels / _CPU_REFERENCE_PIXELS
    step *= _CPU_REFERENCE_THREADS / min(cores, 16)
    steps = max(1, int(num_inference_steps * strength)) * max(1, ensemble_size) + _FIXED_STEPS
    return float(step * steps)


@dataclass(frozen=True)
class Method:
    """One completion method of the registry.

    Attributes:
        name: what users type, e.g. ``"guided"``; a method with an ``argument`` is spelt
            ``"<name>:<argument>"`` (``"align:depth-anything/Depth-Anything-V2-Small-hf"``).
        function: the implementation, or ``"module:attribute"`` imported on first use (so that
            registering a method imports nothing heavy). Two kinds:

            * a fill (``loader=False``): ``function(rgb, depth, known_mask, **options) -> depth``
              (``needs_image``) or ``function(depth, known_mask, **options) -> depth``, with
              ``rgb`` uint8 ``[H, W, 3]``, ``depth`` float32 ``[H, W]`` (0 at unknown pixels),
              ``known_mask`` bool ``[H, W]``; returns float32 ``[H, W]`` in the input units. Its
              keyword-only parameters are the options the method takes.
            * a loader (``loader=True``): ``function(argument, **options) -> run`` loads the
              expensive state once; ``run(rgb, depth, known_mask)`` returns the depth or a
              :class:`~depthlab.outputs.DepthLabOutput`.
        needs_torch: needs ``depthlab[diffusion]`` (torch).
        memory: what the method holds in memory, for users sizing a job.
        description: one line for ``--help`` and ``depthlab info``.
        needs_image: uses the RGB image (False: ``image`` may be None).
        argument: name of the required argument (``"model"``) or None.
        loader: ``function`` is a loader (see above).
    """

    name: str
    function: Callable[..., Any] | str
    needs_torch: bool = False
    memory: str = ""
    description: str = ""
    needs_image: bool = True
    argument: str | None = None
    loader: bool = False

    @property
    def spelling(self) -> str:
        """How the method is written: ``guided`` or ``align:<model>``."""
        return f"{self.name}:<{self.argument}>" if self.argument else self.name

    def implementation(self) -> Callable[..., Any]:
        """The function, importing ``"module:attribute"`` on first use."""
        if callable(self.function):
            return self.function
        module_name, _, attribute = self.function.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def option_names(self) -> list[str] | None:
        """Keyword-only options a fill takes (None: not known in advance, e.g. loaders)."""
        if self.loader:
            return None
        parameters = inspect.signature(self.implementation()).parameters.values()
        return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


_REGISTRY: dict[str, Method] = {}
# method names that take no argument, ``auto`` first; kept up to date by register_method
METHODS: tuple[str, ...] = ("auto",)


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` to the registry (``replace=True`` to override an existing name).

    Raises:
        ValueError: the name is taken (and not ``replace``), is ``"auto"``, or contains ``":"``.
    """
    if not method.name or ":" in method.name or method.name == "auto":
        raise ValueError(f"method name must be non-empty, without ':' and not 'auto'; got {method.name!r}")
    if method.name in _REGISTRY and not replace:
        raise ValueError(f"method {method.name!r} is already registered (pass replace=True to override)")
    global METHODS
    _REGISTRY[method.name] = method
    METHODS = ("auto", *(m.name for m in _REGISTRY.values() if not m.argument))
    return method


def method_names(*, auto: bool = True) -> tuple[str, ...]:
    """Every method as users write it: ``auto``, ``depthlab``, ..., ``align:<model>``."""
    return (("auto",) if auto else ()) + tuple(m.spelling for m in _REGISTRY.values())


def describe_methods() -> str:
    """``name: description`` for each method, one per line (``--help`` texts)."""
    lines = ["auto: DepthLab if its weights are found (and torch is installed), else guided"]
    lines += [f"{m.spelling}: {m.description}" for m in _REGISTRY.values()]
    return "\n".join(lines)


def get_method(method: str) -> tuple[Method, str | None]:
    """``(Method, argument)`` for a method string; ``"align:foo"`` -> ``(align, "foo")``.

    Raises:
        ValueError: unknown method, missing or unexpected argument (the message lists the methods).
    """
    if not isinstance(method, str) or not method:
        raise ValueError(f"`method` must be a non-empty string; got {method!r}")
    name, colon, argument = method.partition(":")
    entry = _REGISTRY.get(name)
    if entry is None or method == "auto":
        raise ValueError(f"unknown method {method!r}: `method` must be one of {', '.join(method_names())}")
    if entry.argument and not argument:
        raise ValueError(f"method {name!r} needs a {entry.argument}: {entry.spelling}; got {method!r}")
    if not entry.argument and colon:
        raise ValueError(f"method {name!r} takes no argument; got {method!r}")
    return entry, (argument or None)


def check_method(method: str) -> str:
    """Return ``method`` if it names a registered method (or ``auto``); else raise ``ValueError``."""
    if method != "auto":
        get_method(method)
    return method


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
    check_method(method)
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
        "DepthLab weights were requested and found" if method == "depthlab" else "DepthLab weights were found"
    )
    return "depthlab", f"{reason} ({paths.layout} layout, {found})", paths


def load_pipeline(
    paths: Any,
    *,
    device: Any = None,
    torch_dtype: Any = None,
    low_memory: bool = False,
    channels_last: bool | None = None,
    compile: bool | None = None,
    tiny_vae: Any = None,
) -> Any:
    """Load :class:`depthlab.DepthLabPipeline` from found checkpoint paths (or a folder/None).

    ``low_memory``: see :meth:`depthlab.DepthLabPipeline.from_pretrained`; ``channels_last``,
    ``compile``, ``tiny_vae``: see :meth:`depthlab.DepthLabPipeline.optimize`.
    """
    from depthlab.pipeline import DepthLabPipeline

    if paths is not None and hasattr(paths, "layout"):
        source = paths.root if paths.layout == "depthlab" else _original_root(paths)
    else:
        source = paths
    pipe = DepthLabPipeline.from_pretrained(
        source, torch_dtype=torch_dtype, device=device, low_memory=bool(low_memory)
    )
    if channels_last or compile or tiny_vae:
        pipe.optimize(channels_last=channels_last, compile=compile, tiny_vae=tiny_vae)
    return pipe


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


@dataclass
class PreparedMethod:
    """A method with its expensive state loaded (from :func:`prepare_method`), ready to run.

    Attributes:
        name: the method that runs (``"guided"``, ``"depthlab"``, ``"align:<model>"``).
        reason: one sentence saying why it was chosen (``info["method_reason"]``).
        method: its registry record.
        run: ``run(rgb, depth, known_mask)`` -> depth ``[H, W]`` or a ``DepthLabOutput``.
        options: the options it runs with.
        ignored_options: options given but not taken (``method="auto"`` or a given pipeline).
    """

    name: str
    reason: str
    method: Method
    run: MethodRunner
    options: dict[str, Any] = field(default_factory=dict)
    ignored_options: list[str] = field(default_factory=list)


def _split_options(entry: Method, options: dict[str, Any], lenient: bool) -> tuple[dict[str, Any], list[str]]:
    """``(options the method takes, names ignored)``; unknown options raise unless ``lenient``."""
    accepted = entry.option_names()
    if accepted is None:
        return dict(options), []
    unknown = sorted(set(options) - set(accepted))
    if unknown and not lenient:
        raise TypeError(
            f"method {entry.name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(accepted) or 'none'}"
        )
    return {k: v for k, v in options.items() if k in accepted}, unknown


def _prepare(
    chosen: str, reason: str, paths: Any, *, lenient: bool, pipeline: Any, options: dict[str, Any]
) -> PreparedMethod:
    entry, argument = get_method(chosen)
    options, ignored = _split_options(entry, options, lenient)
    if entry.loader:
        if entry.name == "depthlab":
            if pipeline is not None:
                ignored += sorted(k for k in _LOAD_OPTIONS if k in options)
                options = {k: v for k, v in options.items() if k not in _LOAD_OPTIONS}
            argument = pipeline if pipeline is not None else paths
        run = entry.implementation()(argument, **options)
    else:
        fill = entry.implementation()

        def run(rgb: Any, depth: np.ndarray, known: np.ndarray) -> np.ndarray:
            return fill(rgb, depth, known, **options) if entry.needs_image else fill(depth, known, **options)

    return PreparedMethod(chosen, reason, entry, run, dict(options), ignored)


def prepare_method(
    method: str = "auto", *, pipeline: Any = None, checkpoints: Any = None, **options: Any
) -> PreparedMethod:
    """Choose a method and load what it needs once (pipeline, monocular model).

    Pass the result as ``complete(..., method=prepared)`` to run it on many images without
    reloading. Arguments as for :func:`complete`.
    """
    check_depthlab_options(options)
    chosen, reason, paths = resolve_method(method, pipeline=pipeline, checkpoints=checkpoints)
    prepared = _prepare(chosen, reason, paths, lenient=method == "auto", pipeline=pipeline, options=options)
    _warn_ignored(prepared)
    return prepared


def _warn_ignored(prepared: PreparedMethod) -> None:
    if prepared.ignored_options:
        logger.warning(
            "method %r does not use option(s) %s; they were ignored (%s)",
            prepared.name,
            ", ".join(prepared.ignored_options),
            prepared.reason,
        )


def _load_depthlab(source: Any, **options: Any) -> MethodRunner:
    """Loader of ``depthlab``: ``source`` is a pipeline or found checkpoint paths (see resolve_method)."""
    if callable(source) and not hasattr(source, "layout"):
        pipeline = source
    else:
        load_options = {k: options.pop(k) for k in _LOAD_OPTIONS if k in options}
        pipeline = load_pipeline(source, **load_options)

    def run(rgb: Any, depth: np.ndarray, known: np.ndarray) -> DepthLabOutput:
        output = pipeline(rgb, depth, known, **options)
        output.method = "depthlab"
        return output

    return run


def complete(
    image: Any,
    depth: Any,
    known_mask: Any = None,
    method: str | PreparedMethod = "auto",
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
        method: ``"auto"`` (DepthLab if available, else ``"guided"``), a registered method
            (``"depthlab"``, ``"guided"``, ``"linear"``, ``"nearest"``, ``"lidar"``,
            ``"align:<hub id or folder>"``; :func:`method_names`), or a
            :class:`PreparedMethod` from :func:`prepare_method` (then no other options).
        pipeline: a loaded :class:`depthlab.DepthLabPipeline` (reused, not reloaded).
        checkpoints: where to look for DepthLab weights (folder in the original or the
            ``save_pretrained`` layout); None -> ``$DEPTHLAB_CHECKPOINTS`` and the hub cache.
        memory_limit: bytes a classical method may use; None -> the memory available on this
            machine now. A classical method whose estimate (:func:`depthlab.classical.memory_estimate`)
            exceeds it raises before any work.
        **options: passed to the method: the pipeline call's arguments for DepthLab
            (``num_inference_steps``, ``processing_resolution``, ``generator``, ...; plus
            ``device`` and ``torch_dtype`` used to load it), the keyword options of the
            classical function (:func:`depthlab.classical.guided` etc.), or those of
            :meth:`depthlab.monocular.AlignBaseline.from_pretrained`. DepthLab options are
            range-checked for every method (``num_inference_steps=0`` is an error even when
            ``auto`` falls back to ``guided``). With ``method="auto"``, options the chosen method
            does not take are ignored, named in a logged warning and listed in
            ``info["ignored_options"]``.

    Known pixels: see :func:`depthlab.inputs.resolve_known_mask` (mask pixels over 0/non-finite
    depth become unknown with a warning; negative known depth is an error). When every pixel is
    known there is nothing to complete: ``ValueError``, as in the pipeline (except DepthLab with
    ``refine=True``).

    Returns:
        :class:`depthlab.outputs.DepthLabOutput` with ``depth`` float32 ``[H, W]`` in the input
        units, ``known_mask``, ``method`` (the method that ran) and ``info`` (``method_reason``,
        ``seconds``, ...).

    Raises:
        ValueError / TypeError: bad inputs (including every pixel known), unknown method or
            out-of-range options (messages name them).
        FileNotFoundError: ``method="depthlab"`` and no weights found.
        depthlab.classical.InsufficientMemoryError: (a ``MemoryError`` and ``ValueError``) the
            classical method would need more memory than ``memory_limit``; names both.
    """
    prepared = method if isinstance(method, PreparedMethod) else None
    if prepared is not None and (options or pipeline is not None or checkpoints is not None):
        raise TypeError("`method` is a PreparedMethod: give its options to prepare_method, not here")
    if prepared is None:
        check_method(method)
        check_depthlab_options(options)
    start = time.perf_counter()
    # 1. standardise and check the inputs once, for every method
    depth_array = to_depth_array(depth)
    known = resolve_known_mask(known_mask, depth_array)
    rgb = None if image is None else to_rgb_uint8(image)
    refine = (prepared.options if prepared is not None else options).get("refine", False)
    check_completion_inputs(rgb, depth_array, known, allow_all_known=bool(refine))

    # 2. choose the method, load what it needs
    if prepared is None:
        chosen, reason, paths = resolve_method(method, pipeline=pipeline, checkpoints=checkpoints)
        if rgb is None and get_method(chosen)[0].needs_image:
            raise ValueError(f"`image` is None but method {chosen!r} needs the RGB image")
        lenient = method == "auto"
        prepared = _prepare(chosen, reason, paths, lenient=lenient, pipeline=pipeline, options=options)
        _warn_ignored(prepared)
    elif rgb is None and prepared.method.needs_image:
        raise ValueError(f"`image` is None but method {prepared.name!r} needs the RGB image")

    # 3. check the memory a classical method needs before any work, then run it
    need = None
    if prepared.name in classical.BYTES_PER_PIXEL:
        need = classical.check_memory(prepared.name, depth_array.shape, known, available=memory_limit)
    result = prepared.run(rgb, depth_array, known)
    if isinstance(result, DepthLabOutput):
        output = result
    else:
        output = DepthLabOutput(
            depth=np.asarray(result, dtype=np.float32),
            known_mask=known,
            method=prepared.name,
            info={"options": dict(prepared.options), "memory_estimate_bytes": need},
        )
    output.info["method_reason"] = prepared.reason
    output.info["seconds"] = time.perf_counter() - start
    if prepared.ignored_options:
        output.info["ignored_options"] = list(prepared.ignored_options)
    return output


# ---------------------------------------------------------------------------------------------
# The built-in methods (the order is the order of --help)
# ---------------------------------------------------------------------------------------------
register_method(
    Method(
        "depthlab",
        _load_depthlab,
        needs_torch=True,
        loader=True,
        memory="the diffusion model: about 5 GB of weights in fp32 (2.6 GB in fp16/bf16) plus activations",
        description="the DepthLab diffusion model (needs its weights and depthlab[diffusion])",
    )
)
register_method(
    Method(
        "guided",
        classical.guided,
        memory="a sparse H*W linear system solved coarse to fine (the largest classical fill)",
        description="RGB-guided weighted least-squares fill (classical, no torch)",
    )
)
register_method(
    Method(
        "linear",
        classical.linear,
        needs_image=False,
        memory="a Delaunay triangulation of the known (boundary) pixels plus a few H*W arrays",
        description="linear interpolation over a triangulation of the known pixels (classical)",
    )
)
register_method(
    Method(
        "nearest",
        classical.nearest,
        needs_image=False,
        memory="a few H*W arrays (distance transform)",
        description="value of the nearest known pixel (classical)",
    )
)
register_method(
    Method(
        "lidar",
        classical.lidar,
        needs_image=False,
        memory="a few H*W arrays (morphology)",
        description="morphological fill for LiDAR-like sparse depth (Ku et al. 2018, classical)",
    )
)
register_method(
    Method(
        "align",
        "depthlab.monocular:load_align",
        needs_torch=True,
        argument="model",
        loader=True,
        memory="the monocular model's weights (e.g. ~100 MB for Depth Anything V2 Small, ~2 GB Marigold fp32)",
        description="a monocular depth model (transformers hub id or folder, or a diffusers "
        "Marigold) least-squares aligned to the known depth",
    )
)
