"""3D geometry for depth maps: cameras, point clouds, z-buffered projection, warping, meshes, LiDAR.

numpy/SciPy only: importable without torch; imports nothing above :mod:`depthlab.io`.

Conventions (stated once, used by every function here):

* **Camera frame: OpenCV.** x right, y down, z forward (into the scene). A depth map stores the
  *z-depth* (distance along the optical axis), not the ray length; :func:`depth_to_range` converts.
* **Pixels.** The centre of pixel ``(row, col)`` is at image coordinates ``(u, v) = (col, row)``;
  the top-left pixel's centre is ``(0, 0)``. A 3D point projects to the pixel
  ``(round(v), round(u))`` (numpy rounding).
* **Intrinsics.** :class:`Camera` holds ``fx, fy, cx, cy`` in pixels for an image of
  ``width x height`` pixels; ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
* **Poses.** 4x4 rigid matrices, **camera-to-world** (``X_world = T @ X_cam``). A transform named
  ``src_to_dst`` maps points of the source camera frame into the destination camera frame
  (``inv(cam_to_world_dst) @ cam_to_world_src``).
* **Depth values.** 0, negative or non-finite = unknown. Units are whatever the depth is in
  (metres for metric depth); points come out in the same units.
* **3D files** (:mod:`depthlab.geometry.export`): PLY in this camera/world frame; GLB with the
  OpenGL flip ``diag(1, -1, -1)`` applied once on export (glTF is y up, z backward).
"""

from depthlab.geometry.camera import Camera, check_rigid, invert_pose, load_camera, load_pose
from depthlab.geometry.conversions import (
    depth_to_disparity,
    depth_to_range,
    disparity_to_depth,
    range_to_depth,
)
from depthlab.geometry.export import OPENCV_TO_OPENGL, write_glb, write_ply
from depthlab.geometry.lidar import (
    KittiCalibration,
    parse_kitti_calib,
    parse_velodyne,
    read_kitti_calib,
    read_kitti_raw_calib,
    read_velodyne,
    scan_to_depth,
)
from depthlab.geometry.mesh import Mesh, depth_to_mesh
from depthlab.geometry.points import (
    PointCloud,
    estimate_normals,
    project,
    render_points,
    transform_points,
    unproject,
)
from depthlab.geometry.warp import WarpResult, warp

__all__ = [
    "Camera",
    "load_camera",
    "load_pose",
    "check_rigid",
    "invert_pose",
    "depth_to_range",
    "range_to_depth",
    "disparity_to_depth",
    "depth_to_disparity",
    "PointCloud",
    "unproject",
    "project",
    "transform_points",
    "estimate_normals",
    "render_points",
    "WarpResult",
    "warp",
    "Mesh",
    "depth_to_mesh",
    "write_ply",
    "write_glb",
    "OPENCV_TO_OPENGL",
    "KittiCalibration",
    "parse_kitti_calib",
    "read_kitti_calib",
    "read_kitti_raw_calib",
    "parse_velodyne",
    "read_velodyne",
    "scan_to_depth",
]
