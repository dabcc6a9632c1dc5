"""The ``align:<model>`` method: a monocular depth model + least-squares alignment to known depth.

This is the paper's "align" baseline; it is registered in :mod:`depthlab.completion` as
``align:<hub id or folder>`` (``depthlab.complete(..., method="align:<model>")``, ``depthlab eval
--method align:<model>``).

The model predicts relative depth from the RGB image alone; its prediction is aligned to the known
depth on the known pixels (:func:`depthlab.alignment.align_depth`): in disparity space
for relative-disparity models (Depth Anything, DPT/MiDaS), in depth space for affine-invariant
depth models (Marigold). Models come from

* transformers -- ``AutoModelForDepthEstimation`` + ``AutoImageProcessor`` (hub id or a local
  folder written by ``save_pretrained``), e.g. ``depth-anything/Depth-Anything-V2-Small-hf``;
* diffusers -- ``MarigoldDepthPipeline`` (hub id or local folder with ``model_index.json``), e.g.
  ``prs-eth/marigold-depth-v1-0``.

Example::

    baseline = AlignBaseline.from_pretrained("depth-anything/Depth-Anything-V2-Small-hf")
    output = baseline(rgb, sparse_depth, known_mask)   # DepthLabOutput, depth in input units
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from depthlab.alignment import ALIGN_METHODS, SPACES, align_depth
from depthlab.inputs import resolve_known_mask, to_depth_array, to_rgb_uint8
from depthlab.outputs import DepthLabOutput

__all__ = ["AlignBaseline", "detect_backend", "load_align"]

logger = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]


def detect_backend(model: str | Path) -> str:
    """``"diffusers"`` or ``"transformers"`` for a hub id or local folder.

    A local folder with ``model_index.json`` is a diffusers pipeline, one with ``config.json`` a
    transformers model. A hub id containing ``marigold`` is taken as diffusers, anything else as
    transformers (pass ``backend=`` to override).
    """
    path = Path(str(model))
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return "diffusers"
        if (path / "config.json").is_file():
            return "transformers"
        raise FileNotFoundError(
            f"{path} has neither model_index.json (diffusers) nor config.json (transformers)"
        )
    return "diffusers" if "marigold" in str(model).lower() else "transformers"


def _torch_dtype(value: Any) -> Any:
    from depthlab.models.loading import resolve_dtype

    return resolve_dtype(value, default=None)


def _transformers_predictor(
    model_id: str, *, device: str | None, torch_dtype: Any, local_files_only: bool
) -> tuple[Predictor, str]:
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    dtype = _torch_dtype(torch_dtype) or torch.float32
    processor = AutoImageProcessor.from_pretrained(model_id, local_files_only=local_files_only)
    model = AutoModelForDepthEstimation.from_pretrained(
        model_id, local_files_only=local_files_only, torch_dtype=dtype
    ).eval()
    if device is not None:
        model = model.to(device)
    config = model.config
    metric = getattr(config, "depth_estimation_type", "relative") == "metric" or config.model_type in (
        "zoedepth",
        "glpn",
    )
    kind = "depth" if metric else "disparity"
    model_device = next(model.parameters()).device

    def predict(rgb: np.ndarray) -> np.ndarray:
        inputs = processor(images=rgb, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(device=model_device, dtype=dtype)
        with torch.no_grad():
            predicted = model(pixel_values=pixel_values).predicted_depth  # [1, h, w]
        predicted = predicted.float().unsqueeze(1)  # [1, 1, h, w]
        resized = torch.nn.functional.interpolate(
            predicted, size=rgb.shape[:2], mode="bicubic", align_corners=False
        )  # [1, 1, H, W]
        return resized[0, 0].cpu().numpy().astype(np.float32)

    return predict, kind


def _diffusers_predictor(
    model_id: str,
    *,
    device: str | None,
    torch_dtype: Any,
    local_files_only: bool,
    num_inference_steps: int | None,
    ensemble_size: int,
    processing_resolution: int | None,
    seed: int,
) -> tuple[Predictor, str]:
    import torch
    from diffusers import MarigoldDepthPipeline

    dtype = _torch_dtype(torch_dtype) or torch.float32
    pipe = MarigoldDepthPipeline.from_pretrained(
        model_id, torch_dtype=dtype, local_files_only=local_files_only
    )
    if device is not None:
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)

    def predict(rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        generator = torch.Generator(device=pipe.device).manual_seed(seed)
        result = pipe(
            Image.fromarray(rgb),
            num_inference_steps=num_inference_steps,
            ensemble_size=ensemble_size,
            processing_resolution=processing_resolution,
            output_type="np",
            generator=generator,
        )
        prediction = np.asarray(result.prediction, dtype=np.float32)  # [1, H, W, 1] in [0, 1]
        return prediction.reshape(prediction.shape[-3], prediction.shape[-2])

    return predict, "depth"


class AlignBaseline:
    """Monocular prediction aligned to the known depth.

    Args:
        predictor: ``rgb uint8 [H, W, 3] -> relative prediction float32 [H, W]``.
        prediction_kind: ``"disparity"`` (relative inverse depth) or ``"depth"`` (affine-invariant).
        space: fit space (default: ``prediction_kind``).
        align_method: ``"lstsq"`` (scale + shift, default), ``"scale"``, ``"robust"``,
            ``"robust_scale"``.
        name: shown in ``DepthLabOutput.method`` (``"align:<name>"``).
    """

    def __init__(
        self,
        predictor: Predictor,
        prediction_kind: str = "disparity",
        *,
        space: str | None = None,
        align_method: str = "lstsq",
        name: str = "model",
    ) -> None:
        if prediction_kind not in SPACES:
            raise ValueError(f"`prediction_kind` must be one of {SPACES}; got {prediction_kind!r}")
        if space is not None and space not in SPACES:
            raise ValueError(f"`space` must be one of {SPACES}; got {space!r}")
        if align_method not in ALIGN_METHODS:
            raise ValueError(f"`align_method` must be one of {ALIGN_METHODS}; got {align_method!r}")
        self.predictor = predictor
        self.prediction_kind = prediction_kind
        self.space = space
        self.align_method = align_method
        self.name = name

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        *,
        backend: str = "auto",
        prediction_kind: str | None = None,
        space: str | None = None,
        align_method: str = "lstsq",
        device: str | None = None,
        torch_dtype: Any = None,
        local_files_only: bool | None = None,
        num_inference_steps: int | None = None,
        ensemble_size: int = 1,
        processing_resolution: int | None = None,
        seed: int = 0,
    ) -> AlignBaseline:
        """Load a transformers depth-estimation model or a diffusers Marigold pipeline.

        Args:
            model: hub id or local folder.
            backend: ``"auto"`` (:func:`detect_backend`), ``"transformers"`` or ``"diffusers"``.
            prediction_kind: override what the model predicts (``"disparity"``/``"depth"``);
                default: disparity for relative transformers models, depth for metric ones and
                for Marigold.
            space: fit space (default: the prediction kind).
            align_method: ``"lstsq"``, ``"scale"``, ``"robust"`` or ``"robust_scale"``.
            device: torch device string (None: the library default, CPU).
            torch_dtype: ``torch.float32`` (default), ``"float16"``, ...
            local_files_only: default True for local folders, False for hub ids (the hub cache is
                used; nothing is downloaded when offline and cached).
            num_inference_steps: Marigold denoising steps (None: the model's default).
            ensemble_size: Marigold ensemble size.
            processing_resolution: Marigold processing resolution (None: the model's default).
            seed: Marigold noise seed.
        """
        model = str(model)
        if backend == "auto":
            backend = detect_backend(model)
        if backend not in ("transformers", "diffusers"):
            raise ValueError(f"`backend` must be 'auto', 'transformers' or 'diffusers'; got {backend!r}")
        if local_files_only is None:
            local_files_only = Path(model).is_dir()
        if backend == "transformers":
            predictor, kind = _transformers_predictor(
                model, device=device, torch_dtype=torch_dtype, local_files_only=local_files_only
            )
        else:
            predictor, kind = _diffusers_predictor(
                model,
                device=device,
                torch_dtype=torch_dtype,
                local_files_only=local_files_only,
                num_inference_steps=num_inference_steps,
                ensemble_size=ensemble_size,
                processing_resolution=processing_resolution,
                seed=seed,
            )
        logger.info("align baseline %s: %s backend, predicts %s", model, backend, prediction_kind or kind)
        return cls(predictor, prediction_kind or kind, space=space, align_method=align_method, name=model)

    def __call__(self, image: Any, depth: Any, known_mask: Any = None) -> DepthLabOutput:
        """Predict from ``image``, align to ``depth`` on ``known_mask``; depth in input units."""
        rgb = to_rgb_uint8(image)
        depth_array = to_depth_array(depth)
        known = resolve_known_mask(known_mask, depth_array)
        if rgb.shape[:2] != depth_array.shape:
            raise ValueError(f"`image` is {rgb.shape[:2]} but `depth` is {depth_array.shape}")
        prediction = np.asarray(self.predictor(rgb), dtype=np.float32)
        if prediction.shape != depth_array.shape:
            raise ValueError(f"the model predicted {prediction.shape}; expected {depth_array.shape}")
        fit_mask = known & np.isfinite(depth_array) & (depth_array > 0)
        result = align_depth(
            prediction,
            depth_array,
            fit_mask,
            prediction_kind=self.prediction_kind,
            space=self.space,
            method=self.align_method,
        )
        return DepthLabOutput(
            depth=result.depth,
            known_mask=known,
            method=f"align:{self.name}",
            info={
                "scale": result.scale,
                "shift": result.shift,
                "space": result.space,
                "n_fit": result.n_fit,
                "prediction_kind": self.prediction_kind,
                "align_method": self.align_method,
            },
        )


def load_align(model: str, **options: Any) -> AlignBaseline:
    """The registry's loader of ``align:<model>``: :meth:`AlignBaseline.from_pretrained` (loaded once).

    The returned baseline is called as ``baseline(rgb, depth, known_mask) -> DepthLabOutput``.
    """
    return AlignBaseline.from_pretrained(model, **options)
