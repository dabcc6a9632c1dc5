"""The demo's page: Gradio components and the handlers that connect them to :mod:`.runner`.

Import this module only once Gradio is installed (``pip install ".[demo]"``); ``depthlab demo``
imports it inside the command. :func:`build_demo` returns the ``gr.Blocks`` and the arguments
for ``launch`` (theme, CSS) that Gradio 6 takes there.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from depthlab.completion import METHODS, load_pipeline, resolve_method
from depthlab.demo import runner

__all__ = ["DemoSettings", "build_demo", "EXAMPLE_DIR"]

logger = logging.getLogger(__name__)

EXAMPLE_DIR = Path(__file__).parent / "examples" / "room"
"""The bundled example (a copy of ``examples/room/rgb.png`` and ``depth.png``)."""
EXAMPLE_INTRINSICS = "260,260,159.5,119.5"
"""The example's camera (``examples/make_example.py``: focal 260 px, 320x240; pixel centres at integers)."""

DEPTH_FILE_TYPES = [".npy", ".npz", ".png", ".tif", ".tiff", ".pfm", ".exr", ".csv", ".txt"]
IMAGE_FILE_TYPES = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"]

METHOD_HELP = {
    "auto": "DepthLab if its weights are here, else guided",
    "depthlab": "the DepthLab diffusion model",
    "guided": "RGB-guided least squares (classical)",
    "linear": "Delaunay interpolation (classical)",
    "nearest": "nearest known pixel (classical)",
    "lidar": "morphological fill for LiDAR scan lines (classical)",
}

INTRO = """
# depthlab: complete partial depth in your browser

Give an RGB image and a depth map with holes or only sparse points (a depth camera's dropouts,
LiDAR scan lines), choose which region to fill, and get a complete depth map **in the units of
your depth**. Known depth is kept exactly. Use DepthLab, a diffusion model, or one of four
classical fills that run offline on any CPU. Download the result as `.npy`, a 16-bit PNG or a
PLY point cloud, and look at it in 3D.
"""

POLARITY = """
**Mask polarity: what you paint is filled.** Magenta = the region to fill (unknown). Everything
else that has depth in the file is *known* and comes back unchanged. Cyan = pixels the depth
file has no value for; tick *Also fill the pixels with no depth* to fill them too.
"""

CSS = """
.dl-polarity {border-left: 4px solid #d946ef; padding: 6px 12px !important; background: rgba(217,70,239,0.06);}
.dl-status {min-height: 2.5em;}
footer {display: none !important;}
"""


@dataclass
class DemoSettings:
    """What the page needs to know about this machine.

    Attributes:
        workdir: the demo's own temporary folder; every file it writes goes below it.
        checkpoints: where to look for DepthLab weights (None: ``$DEPTHLAB_CHECKPOINTS``, hub cache).
        device: torch device for DepthLab (None: the pipeline's default).
        torch_dtype: torch dtype for DepthLab (None: float32).
    """

    workdir: Path
    checkpoints: str | None = None
    device: str | None = None
    torch_dtype: Any = None


class _PipelineCache:
    """Loads DepthLab once, on first use, and shares it between visitors."""

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pipeline: Any = None

    def get(self, paths: Any) -> Any:
        with self._lock:
            if self._pipeline is None:
                self._pipeline = load_pipeline(
                    paths, device=self.settings.device, torch_dtype=self.settings.torch_dtype
                )
            return self._pipeline


def _session_folder(settings: DemoSettings, request: gr.Request | None) -> Path:
    session = getattr(request, "session_hash", None) or "anonymous"
    safe = "".join(c for c in str(session) if c.isalnum() or c in "-_")[:64] or "anonymous"
    return settings.workdir / "sessions" / safe


def _new_run_folder(settings: DemoSettings, request: gr.Request | None) -> Path:
    base = _session_folder(settings, request)
    base.mkdir(parents=True, exist_ok=True)
    number = 1 + sum(1 for p in base.iterdir() if p.name.startswith("run-"))
    folder = base / f"run-{number:03d}"
    folder.mkdir()
    return folder


def _layers(editor: Any) -> list[Any]:
    if isinstance(editor, dict):
        return [layer for layer in editor.get("layers") or [] if layer is not None]
    return []


def _region_inputs(
    rgb_file: Any,
    depth_file: Any,
    depth_scale: Any,
    editor: Any,
    use_invalid: bool,
    mask_file: Any,
    mask_convention: str,
) -> tuple[runner.Upload, runner.Region]:
    upload = runner.load_upload(rgb_file, depth_file, _number(depth_scale))
    shape = upload.depth.shape
    painted = runner.painted_region(_layers(editor), shape)
    extra = runner.mask_file_region(mask_file, mask_convention, shape) if mask_file else None
    return upload, runner.build_region(upload, painted, bool(use_invalid), extra)


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise runner.DemoInputError(f"Expected a number; got {value!r}") from None


def _page_error(error: Exception) -> gr.Error:
    return gr.Error(str(error), title="Cannot run", print_exception=False)


def build_demo(settings: DemoSettings) -> tuple[gr.Blocks, dict[str, Any]]:
    """Build the page.

    Returns:
        ``(blocks, launch_kwargs)``: the ``gr.Blocks`` and the theme/CSS arguments for ``launch``.
    """
    chosen, weights_reason, _ = resolve_method("auto", checkpoints=settings.checkpoints)
    weights_found = chosen == "depthlab"
    methods = [m for m in METHODS if weights_found or m != "depthlab"]
    pipelines = _PipelineCache(settings)

    # ------------------------------------------------------------------------------------------
    # handlers
    # ------------------------------------------------------------------------------------------
    def load_inputs(rgb_file, depth_file, depth_scale, editor, use_invalid):
        """New files: put the image on the canvas (strokes kept when the size is unchanged).

        Returns the editor value, the mask preview, the mask status and the run status.
        """
        if not rgb_file:
            message = "Upload an RGB image and a depth file, or click the example."
            return None, None, message, message
        if not depth_file:
            try:
                rgb = runner.load_image(rgb_file)
            except runner.DemoInputError as error:
                gr.Warning(str(error))
                return None, None, f"**Problem:** {error}", f"**Problem:** {error}"
            message = "Now upload the depth file."
            return {"background": rgb, "layers": [], "composite": None}, None, message, message
        try:
            upload = runner.load_upload(rgb_file, depth_file, _number(depth_scale))
        except runner.DemoInputError as error:
            gr.Warning(str(error))
            return None, None, f"**Problem:** {error}", f"**Problem:** {error}"
        height, width = upload.depth.shape
        layers = [layer for layer in _layers(editor) if np.asarray(layer).shape[:2] == (height, width)]
        holes = ~upload.valid
        status = (
            f"Loaded {width}x{height}: {int(upload.valid.sum())} pixels with depth, {int(holes.sum())} "
            "without (cyan). Paint the region to fill, then press **Complete depth**."
        )
        preview = (
            runner.overlay(upload.rgb, holes, None)
            if use_invalid
            else runner.overlay(upload.rgb, None, holes)
        )
        value = {"background": runner.overlay(upload.rgb, invalid=holes), "layers": layers, "composite": None}
        return value, preview, status, "Ready: choose a method and press **Complete depth**."

    def preview_mask(rgb_file, depth_file, depth_scale, editor, use_invalid, mask_file, mask_convention):
        """The known / to-fill overlay, redrawn when the strokes or the options change."""
        try:
            upload, region = _region_inputs(
                rgb_file, depth_file, depth_scale, editor, use_invalid, mask_file, mask_convention
            )
        except runner.DemoInputError as error:
            if rgb_file and depth_file:
                return None, f"**Mask:** {error}"
            return None, ""
        fill, known = int(region.fill.sum()), int(region.known.sum())
        return (
            runner.overlay(upload.rgb, region.fill, region.empty),
            f"**Mask:** {fill} pixels to fill (magenta), {known} known, "
            f"{int(region.empty.sum())} left empty (cyan).",
        )

    def show_options(method):
        return gr.update(visible=method == "depthlab")

    def complete(
        rgb_file,
        depth_file,
        depth_scale,
        editor,
        use_invalid,
        mask_file,
        mask_convention,
        method,
        steps,
        strength,
        processing_resolution,
        ensemble_size,
        seed,
        preserve_known,
        out_scale,
        intrinsics,
        fov,
        view,
        request: gr.Request,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Run one completion; returns the pictures, the 3D view, the files and a summary."""
        try:
            upload, region = _region_inputs(
                rgb_file, depth_file, depth_scale, editor, use_invalid, mask_file, mask_convention
            )
            if method not in methods:
                raise runner.DemoInputError(
                    f"Method {method!r} is not available here; choose one of {', '.join(methods)}."
                )
            run_method, reason, paths = resolve_method(method, checkpoints=settings.checkpoints)
            pipeline = None
            if run_method == "depthlab":
                progress(0.0, desc="loading DepthLab (first run only)")
                pipeline = pipelines.get(paths)
            folder = _new_run_folder(settings, request)
            result = runner.run(
                upload,
                region,
                method if pipeline is None else "depthlab",
                folder,
                options={
                    "num_inference_steps": steps,
                    "strength": strength,
                    "processing_resolution": processing_resolution,
                    "ensemble_size": ensemble_size,
                    "preserve_known": preserve_known,
                    "seed": _number(seed),
                },
                pipeline=pipeline,
                checkpoints=settings.checkpoints,
                out_scale=_number(out_scale),
                intrinsics=intrinsics,
                fov_deg=_number(fov),
                view=view,
                progress=progress,
            )
        except runner.DemoInputError as error:
            raise _page_error(error) from None
        except Exception as error:  # shown as one line on the page; the traceback goes to the log
            logger.exception("depthlab demo: run failed")
            raise gr.Error(
                f"{type(error).__name__}: {error}", title="Run failed", print_exception=False
            ) from None
        reason = reason if pipeline is not None else result.reason
        summary = [
            f"**Method used: `{result.method}`** ({reason}). "
            f"**Time: {result.seconds:.2f} s.** Filled {int(region.fill.sum())} pixels; "
            f"{int(region.known.sum())} known pixels kept exactly."
        ]
        summary += [f"- {note}" for note in result.notes]
        has_uncertainty = result.uncertainty is not None
        return (
            "\n".join(summary),
            result.color,
            (result.before, result.after),
            gr.update(value=result.uncertainty, visible=has_uncertainty),
            str(result.model3d) if result.model3d else None,
            [str(f) for f in result.files],
        )

    def end_session(request: gr.Request):
        shutil.rmtree(_session_folder(settings, request), ignore_errors=True)

    # ------------------------------------------------------------------------------------------
    # page
    # ------------------------------------------------------------------------------------------
    with gr.Blocks(
        title="depthlab: depth completion demo", analytics_enabled=False, delete_cache=(1800, 3600)
    ) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(POLARITY, elem_classes=["dl-polarity"])
        if not weights_found:
            gr.Markdown(
                f"**DepthLab weights are not installed on this server**: {weights_reason}. "
                "The classical methods (`guided`, `linear`, `nearest`, `lidar`) work offline; "
                "`auto` uses `guided`. See the README to add the weights (`--checkpoints`)."
            )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                gr.Markdown("### 1. Image and depth")
                with gr.Row():
                    rgb_file = gr.File(label="RGB image", file_types=IMAGE_FILE_TYPES, elem_id="rgb-file")
                    depth_file = gr.File(
                        label="Depth (.npy, 16-bit .png, .tif, .pfm, .exr, .npz, or CSV of u,v,depth points)",
                        file_types=DEPTH_FILE_TYPES,
                        elem_id="depth-file",
                    )
                depth_scale = gr.Number(
                    value=1000,
                    label="Depth scale of integer files (16-bit PNG, integer TIFF)",
                    info="depth = stored value / scale: 1000 for millimetres -> metres, 256 for KITTI. "
                    "Float files (.npy, .pfm, .exr, float TIFF, CSV) are read as they are.",
                    elem_id="depth-scale",
                )
                intrinsics = gr.Textbox(
                    label="Camera intrinsics fx,fy,cx,cy (pixels) for the 3D view",
                    placeholder=f"empty: {runner.DEFAULT_FOV_DEG:g} deg horizontal field of view",
                    elem_id="intrinsics",
                )
                gr.Examples(
                    examples=[
                        [
                            str(EXAMPLE_DIR / "rgb.png"),
                            str(EXAMPLE_DIR / "depth.png"),
                            1000,
                            EXAMPLE_INTRINSICS,
                        ]
                    ],
                    inputs=[rgb_file, depth_file, depth_scale, intrinsics],
                    label="Example: a synthetic room (16-bit PNG depth in mm, with sensor holes)",
                    example_labels=["room (320x240)"],
                )
                gr.Markdown("### 2. Paint the region to fill")
                editor = gr.ImageEditor(
                    label="Paint = fill (magenta brush); the eraser takes strokes back",
                    type="numpy",
                    image_mode="RGBA",
                    format="png",
                    sources=[],
                    transforms=[],
                    brush=gr.Brush(
                        colors=["#ff00ff"], default_color="#ff00ff", color_mode="fixed", default_size=12
                    ),
                    eraser=gr.Eraser(default_size=12),
                    layers=False,
                    elem_id="mask-editor",
                    interactive=True,
                )
                use_invalid = gr.Checkbox(
                    value=True,
                    label="Also fill the pixels with no depth (0, negative or NaN in the file)",
                    info="Unticked: those pixels stay empty in the outputs (NaN in .npy, 0 in the PNG).",
                    elem_id="use-invalid",
                )
                with gr.Accordion("Or upload a mask file", open=False):
                    mask_file = gr.File(
                        label="Mask image or .npy (added to the painted region)",
                        file_types=IMAGE_FILE_TYPES + [".npy"],
                    )
                    mask_convention = gr.Radio(
                        [
                            ("white = known (depthlab, examples/room/mask.png)", "known"),
                            ("white = to fill (original DepthLab)", "fill"),
                        ],
                        value="known",
                        label="What white means in the mask file",
                    )
                mask_preview = gr.Image(
                    label="Known (image) / to fill (magenta) / left empty (cyan)",
                    interactive=False,
                    format="png",
                    elem_id="mask-preview",
                    height=320,
                )
                mask_status = gr.Markdown("", elem_classes=["dl-status"])
            with gr.Column(scale=1):
                gr.Markdown("### 3. Method")
                method = gr.Radio(
                    [(f"{m}: {METHOD_HELP.get(m, m)}", m) for m in methods],
                    value="auto",
                    label="Method",
                    elem_id="method",
                )
                with gr.Group(visible=False, elem_id="depthlab-options") as depthlab_options:
                    gr.Markdown("**DepthLab options**")
                    with gr.Row():
                        steps = gr.Slider(1, 100, value=50, step=1, label="Denoising steps")
                        strength = gr.Slider(0.05, 1.0, value=0.8, step=0.05, label="Strength")
                    with gr.Row():
                        processing_resolution = gr.Slider(
                            0, 1536, value=768, step=64, label="Processing resolution (0 = input size)"
                        )
                        ensemble_size = gr.Slider(
                            1, 10, value=1, step=1, label="Ensemble size (> 1 gives an uncertainty map)"
                        )
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed")
                        preserve_known = gr.Radio(
                            ["smooth", "exact", "none"],
                            value="smooth",
                            label="preserve_known",
                            info="smooth: known depth exact, no seam; exact: pasted back; none: as the original",
                        )
                with gr.Accordion("3D view and output options", open=False):
                    out_scale = gr.Number(
                        value=None,
                        label="Scale of the 16-bit PNG output",
                        info="empty: the depth scale of the input (1000 for float inputs)",
                    )
                    fov = gr.Number(
                        value=runner.DEFAULT_FOV_DEG,
                        label="Horizontal field of view (deg), used when no intrinsics are given",
                    )
                    view = gr.Radio(
                        [("point cloud", "points"), ("mesh", "mesh")], value="points", label="3D view"
                    )
                run_button = gr.Button("Complete depth", variant="primary", elem_id="run")
                status = gr.Markdown(
                    "Upload an RGB image and a depth file, or click the example.",
                    elem_classes=["dl-status"],
                    elem_id="status",
                )
                gr.Markdown("### Result")
                completed = gr.Image(
                    label="Completed depth (white outline: the filled region)",
                    interactive=False,
                    format="png",
                    elem_id="completed",
                    height=340,
                )
                slider = gr.ImageSlider(
                    max_height=380,
                    label="Before / after (magenta: to fill)",
                    format="png",
                    elem_id="before-after",
                )
                uncertainty = gr.Image(
                    label="Uncertainty (std of the ensemble members)",
                    visible=False,
                    interactive=False,
                    format="png",
                    height=340,
                )
                model3d = gr.Model3D(label="3D view (drag to rotate)", elem_id="model3d")
                downloads = gr.File(
                    label="Downloads: .npy (float32), 16-bit PNG, known mask, PLY",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )

        mask_inputs = [rgb_file, depth_file, depth_scale, editor, use_invalid, mask_file, mask_convention]
        for source in (rgb_file, depth_file, depth_scale):
            source.change(
                load_inputs,
                [rgb_file, depth_file, depth_scale, editor, use_invalid],
                [editor, mask_preview, mask_status, status],
                api_visibility="private",
            )
        for source in (editor, use_invalid, mask_file, mask_convention):
            source.change(
                preview_mask,
                mask_inputs,
                [mask_preview, mask_status],
                api_visibility="private",
                show_progress="hidden",
                trigger_mode="always_last",
            )
        method.change(show_options, method, depthlab_options, api_visibility="private")
        run_button.click(
            complete,
            mask_inputs
            + [
                method,
                steps,
                strength,
                processing_resolution,
                ensemble_size,
                seed,
                preserve_known,
                out_scale,
                intrinsics,
                fov,
                view,
            ],
            [status, completed, slider, uncertainty, model3d, downloads],
            api_name="complete",
            api_description="Complete partial depth: RGB file, depth file, painted editor layers "
            "(or a mask file), method and options; returns the summary, pictures, GLB and files.",
        )
        demo.unload(end_session)
    return demo, {"css": CSS, "theme": gr.themes.Default()}
