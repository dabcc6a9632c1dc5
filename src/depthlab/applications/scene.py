"""Warp-and-complete: move an RGB-D view to a new camera, complete it, grow a fused point cloud.

This is the paper's scene-generation loop (its Figure 1, "text to scene"): for each new pose

1. render what the scene already holds into the new camera (z-buffered splatting): a partial
   depth map, its known mask and the warped RGB;
2. inpaint the RGB of the unknown pixels with **a callable you pass in** -- depthlab ships no RGB
   inpainter. Any diffusers inpainting pipeline works, e.g.::

       from PIL import Image
       pipe = StableDiffusionInpaintPipeline.from_pretrained(...)
       def inpainter(rgb, unknown):  # uint8 [H, W, 3], bool [H, W] -> uint8 [H, W, 3]
           out = pipe(prompt="a living room", image=Image.fromarray(rgb),
                      mask_image=Image.fromarray(unknown.astype(np.uint8) * 255)).images[0]
           return np.asarray(out.resize(rgb.shape[1::-1]))

   (or pass the new view's RGB yourself);
3. complete the partial depth guided by that RGB (:func:`depthlab.complete`, scale kept);
4. add **only the new pixels** (unknown in step 1) to the cloud, in the world frame.

Poses are 4x4 camera-to-world matrices (OpenCV camera axes, :mod:`depthlab.geometry`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from depthlab.applications.common import MethodChoice, choose_method, run_completion
from depthlab.geometry import (
    Camera,
    PointCloud,
    WarpResult,
    check_rigid,
    invert_pose,
    project,
    unproject,
    warp,
)
from depthlab.outputs import DepthLabOutput

__all__ = [
    "Inpainter",
    "WarpCompletion",
    "warp_and_complete",
    "SceneStep",
    "Scene",
    "grow_scene",
    "WarpConfig",
    "WarpReport",
    "run_warp",
]

Inpainter = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``inpainter(rgb uint8 [H, W, 3], unknown bool [H, W]) -> uint8 [H, W, 3]`` (the known pixels may change)."""


@dataclass
class WarpCompletion:
    """``warped``: the partial view at the target pose; ``completed``: its completion (None without a target RGB)."""

    warped: WarpResult
    completed: DepthLabOutput | None = None


def warp_and_complete(
    image: np.ndarray,
    depth: np.ndarray,
    camera: Camera,
    pose: Any,
    target_image: np.ndarray | None = None,
    *,
    target_camera: Camera | None = None,
    method: str | MethodChoice = "auto",
    splat_radius: int = 1,
    seed: int | None = 0,
    depthlab_options: dict[str, Any] | None = None,
) -> WarpCompletion:
    """Warp an RGB-D view to a new camera; with ``target_image``, complete the warped depth.

    Args:
        image: uint8 ``[H, W, 3]`` source image.
        depth: ``[H, W]`` source z-depth.
        camera: source intrinsics.
        pose: 4x4 camera-to-world pose of the target camera, with the source camera as the world
            (``np.eye(4)`` = the same view).
        target_image: the target view's RGB (e.g. your inpainting of ``warped.rgb``), or None.
        target_camera: target intrinsics (default: ``camera``).
        method: completion method name or a loaded :class:`~depthlab.applications.MethodChoice`.
        splat_radius: see :func:`depthlab.geometry.warp` (1 closes the cracks of small forward moves).
        seed: DepthLab's noise seed.
        depthlab_options: DepthLab call options.
    """
    target_camera = target_camera or camera
    src_to_dst = invert_pose(check_rigid(pose, "pose"))
    warped = warp(depth, image, camera, src_to_dst, target_camera, splat_radius=splat_radius)
    if target_image is None:
        return WarpCompletion(warped)
    target_image = np.asarray(target_image)
    if target_image.shape[:2] != (target_camera.height, target_camera.width):
        target_camera.check_size(target_image.shape[1], target_image.shape[0], "--target-image")
    if not warped.known_mask.any():
        raise ValueError(
            "no source pixel lands in the target view (check the pose: camera-to-world, OpenCV axes)"
        )
    choice = method if isinstance(method, MethodChoice) else choose_method(method)
    completed = run_completion(
        choice, target_image, warped.depth, warped.known_mask, seed=seed, depthlab_options=depthlab_options
    )
    return WarpCompletion(warped, completed)


@dataclass
class SceneStep:
    """One view added to a :class:`Scene`.

    Attributes:
        pose: its 4x4 camera-to-world pose.
        warped: the scene rendered into it before completion.
        rgb: the RGB used (inpainted or given), uint8 ``[H, W, 3]``.
        depth: the completed depth, float32 ``[H, W]``.
        new_points: how many points this view added.
    """

    pose: np.ndarray
    warped: WarpResult
    rgb: np.ndarray
    depth: np.ndarray
    new_points: int


@dataclass
class Scene:
    """A fused, coloured point cloud grown view by view (world frame = the first camera by default).

    Attributes:
        camera: intrinsics of every view.
        method: completion method (name or loaded choice; resolved on first use).
        inpainter: RGB inpainter for new views (see the module docstring), or None (then every
            :meth:`add_view` needs its ``rgb``).
        splat_radius: splat radius used when rendering the cloud into a new view.
        seed: DepthLab noise seed of view ``k`` is ``seed + k``.
        depthlab_options: DepthLab call options.
        cloud: the fused cloud (``pixels`` None).
        steps: the views added, in order.
    """

    camera: Camera
    method: str | MethodChoice = "auto"
    inpainter: Inpainter | None = None
    splat_radius: int = 1
    seed: int = 0
    depthlab_options: dict[str, Any] = field(default_factory=dict)
    cloud: PointCloud = field(
        default_factory=lambda: PointCloud(np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    )
    steps: list[SceneStep] = field(default_factory=list)

    def _choice(self) -> MethodChoice:
        if not isinstance(self.method, MethodChoice):
            self.method = choose_method(self.method)
        return self.method

    def render(self, pose: Any) -> WarpResult:
        """The cloud seen from ``pose`` (4x4 camera-to-world): depth, known mask, RGB."""
        world_to_cam = invert_pose(check_rigid(pose, "pose"))
        depth, index = project(self.cloud, self.camera, world_to_cam, splat_radius=self.splat_radius)
        known = index >= 0
        rgb = np.zeros((self.camera.height, self.camera.width, 3), np.uint8)
        if self.cloud.colors is not None:
            rgb[known] = self.cloud.colors[index[known]]
        return WarpResult(depth, known, rgb, np.full(index.shape, -1, np.int64))

    def _add(
        self, pose: np.ndarray, rgb: np.ndarray, depth: np.ndarray, new: np.ndarray, warped: WarpResult
    ) -> SceneStep:
        added = unproject(depth, self.camera, mask=new, cam_to_world=pose, rgb=rgb)
        added.pixels = None
        self.cloud = PointCloud.concatenate([self.cloud, added])
        step = SceneStep(pose, warped, rgb, depth, len(added))
        self.steps.append(step)
        return step

    def add_first_view(self, rgb: np.ndarray, depth: np.ndarray, pose: Any = None) -> SceneStep:
        """Start the scene from a known RGB-D view (every valid pixel becomes a point)."""
        pose = np.eye(4) if pose is None else check_rigid(pose, "pose")
        rgb = np.asarray(rgb, np.uint8)
        depth = np.asarray(depth, np.float32)
        self.camera.check_size(depth.shape[1], depth.shape[0], "depth")
        empty = WarpResult(
            np.zeros_like(depth), np.zeros(depth.shape, bool), np.zeros_like(rgb), np.full(depth.shape, -1)
        )
        return self._add(pose, rgb, depth, np.isfinite(depth) & (depth > 0), empty)

    def add_view(self, pose: Any, rgb: np.ndarray | None = None) -> SceneStep:
        """Render the scene at ``pose``, inpaint (or take ``rgb``), complete, add the new pixels."""
        pose = check_rigid(pose, "pose")
        warped = self.render(pose)
        if not warped.known_mask.any():
            raise ValueError("the scene is not visible from this pose; add views closer to the existing ones")
        if rgb is None:
            if self.inpainter is None:
                raise ValueError(
                    "no `rgb` for the new view and no `inpainter` to make one (depthlab ships none)"
                )
            rgb = self.inpainter(warped.rgb.copy(), ~warped.known_mask)
        rgb = np.asarray(rgb)
        if rgb.shape != (self.camera.height, self.camera.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"the new view's RGB must be uint8 [{self.camera.height}, {self.camera.width}, 3]; "
                f"got {rgb.dtype} {rgb.shape}"
            )
        output = run_completion(
            self._choice(),
            rgb,
            warped.depth,
            warped.known_mask,
            seed=self.seed + len(self.steps),
            depthlab_options=self.depthlab_options,
        )
        depth = np.asarray(output.depth, np.float32)
        new = ~warped.known_mask & np.isfinite(depth) & (depth > 0)
        return self._add(pose, rgb, depth, new, warped)


def grow_scene(
    rgb: np.ndarray,
    depth: np.ndarray,
    camera: Camera,
    poses: list[Any],
    inpainter: Inpainter,
    *,
    method: str | MethodChoice = "auto",
    splat_radius: int = 1,
    seed: int = 0,
    depthlab_options: dict[str, Any] | None = None,
) -> Scene:
    """Grow a scene from one RGB-D view (the world frame) over ``poses`` (camera-to-world)."""
    scene = Scene(camera, method, inpainter, splat_radius, seed, dict(depthlab_options or {}))
    scene.add_first_view(rgb, depth)
    for pose in poses:
        scene.add_view(pose)
    return scene


# ----------------------------------------------------------------------------------------------
# files in, files out (``depthlab warp``)
# ----------------------------------------------------------------------------------------------
@dataclass
class WarpConfig:
    """A ``depthlab warp`` run as plain values (what the CLI fills in).

    Attributes:
        image / depth / intrinsics: the source view (files; intrinsics may be ``"fx,fy,cx,cy"``).
        pose: file with the target camera's 4x4 camera-to-world pose (source camera = world).
        target_image: RGB of the target view (completes its depth), or None.
        target_intrinsics: target intrinsics (default: the source's).
        depth_scale / depth_key: how to read the depth file.
        splat_radius: splat radius in pixels.
        out: output folder; outputs are ``<out>/<image stem>_warped<suffix>``.
        formats: completed-depth outputs (with ``target_image``), see
            :data:`depthlab.applications.common.OUTPUT_SUFFIXES`.
        method / depthlab_options / checkpoints / device / dtype / seed: the completion.
        out_scale / cmap / ply_region / overwrite: outputs.
    """

    image: str
    depth: str
    intrinsics: str
    pose: str
    target_image: str | None = None
    target_intrinsics: str | None = None
    depth_scale: float | None = None
    depth_key: str | None = None
    splat_radius: int = 1
    out: str = "outputs"
    formats: tuple[str, ...] = ("npy", "color", "panel")
    method: str = "auto"
    depthlab_options: dict[str, Any] = field(default_factory=dict)
    checkpoints: str | None = None
    device: str | None = None
    dtype: str | None = None
    seed: int = 0
    out_scale: float | None = None
    cmap: str = "Spectral"
    ply_region: str = "all"
    overwrite: bool = False


@dataclass
class WarpReport:
    """``known_fraction`` of the target view known from the source, ``method`` that completed it (or None), ``paths`` written."""

    known_fraction: float
    method: str | None
    paths: dict[str, Any]


def run_warp(config: WarpConfig) -> WarpReport:
    """Read the source view and the pose, warp, optionally complete, write the outputs."""
    from pathlib import Path

    from depthlab import io
    from depthlab.applications.common import check_formats, output_paths, write_outputs
    from depthlab.geometry import load_camera, load_pose

    formats = check_formats(config.formats)
    rgb = io.read_image(config.image)
    height, width = rgb.shape[:2]
    depth = io.read_depth(config.depth, scale=config.depth_scale, key=config.depth_key)
    if depth.shape != (height, width):
        raise ValueError(
            f"--depth {config.depth} has size {depth.shape} but IMAGE {config.image} has {(height, width)} (H, W)"
        )
    camera = load_camera(config.intrinsics, width, height)
    pose = load_pose(config.pose, "--pose")
    target_rgb = None if config.target_image is None else io.read_image(config.target_image)
    if config.target_intrinsics is not None:
        size = (width, height) if target_rgb is None else (target_rgb.shape[1], target_rgb.shape[0])
        target_camera = load_camera(config.target_intrinsics, *size)
    else:
        target_camera = camera
    if target_rgb is not None:
        target_camera.check_size(
            target_rgb.shape[1], target_rgb.shape[0], "--target-image (vs the target intrinsics)"
        )
    prefix = Path(config.out) / f"{Path(config.image).stem}_warped"
    paths: dict[str, Any] = {
        "partial": Path(f"{prefix}_partial.npy"),
        "known": Path(f"{prefix}_known.png"),
        "rgb": Path(f"{prefix}_rgb.png"),
        "partial_color": Path(f"{prefix}_partial_color.png"),
    }
    if target_rgb is not None:
        paths.update(output_paths(prefix, formats))
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not config.overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace it")
    method: str | MethodChoice = config.method
    if target_rgb is not None:
        method = choose_method(
            config.method, checkpoints=config.checkpoints, device=config.device, dtype=config.dtype
        )
    result = warp_and_complete(
        rgb,
        depth,
        camera,
        pose,
        target_rgb,
        target_camera=target_camera,
        method=method,
        splat_radius=config.splat_radius,
        seed=config.seed,
        depthlab_options=config.depthlab_options,
    )
    warped = result.warped
    overwrite = config.overwrite
    io.write_depth_npy(paths["partial"], warped.depth, overwrite=overwrite)
    io.write_image(
        paths["known"],
        np.repeat((warped.known_mask * 255).astype(np.uint8)[..., None], 3, axis=2),
        overwrite=overwrite,
    )
    io.write_image(paths["rgb"], warped.rgb, overwrite=overwrite)
    io.write_color(paths["partial_color"], warped.depth, cmap=config.cmap, overwrite=overwrite)
    if result.completed is not None:
        write_outputs(
            {f: paths[f] for f in formats},
            rgb=target_rgb,
            input_depth=warped.depth,
            known_mask=warped.known_mask,
            completed=np.asarray(result.completed.depth, np.float32),
            camera=target_camera,
            out_scale=config.out_scale or config.depth_scale,
            cmap=config.cmap,
            ply_region=config.ply_region,
            overwrite=overwrite,
        )
    return WarpReport(
        float(warped.known_mask.mean()), None if result.completed is None else result.completed.method, paths
    )
