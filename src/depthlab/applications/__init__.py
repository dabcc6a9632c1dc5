"""The paper's downstream uses of completed depth, as consumers of :func:`depthlab.complete` + geometry.

* :mod:`~depthlab.applications.lidar` -- LiDAR (KITTI scans, or points already in the camera
  frame) -> dense depth (``depthlab lidar``).
* :mod:`~depthlab.applications.refine` -- a rough dense map (DUSt3R/MASt3R/VGGT) whose
  low-confidence pixels are re-completed, scale kept (``depthlab refine``).
* :mod:`~depthlab.applications.scene` -- warp an RGB-D view to a new camera, complete it, and grow
  a fused point cloud over a sequence of poses (``depthlab warp``).

Each use is a documented function taking plain values; the CLI only parses arguments into the
dataclass these functions take.
"""

from depthlab.applications.common import MethodChoice, choose_method, run_completion

__all__ = ["MethodChoice", "choose_method", "run_completion"]
