"""3D files: PLY point clouds / meshes (plyfile) and GLB scenes (trimesh).

Library choice:

* **PLY via plyfile** -- it writes exactly the element, field names, dtypes and byte order we ask
  for. A point cloud is one ``vertex`` element, binary little-endian, with ``x, y, z`` float32,
  ``nx, ny, nz`` float32, ``red, green, blue`` uchar: the fields (and the library) that 3D
  Gaussian Splatting's ``fetchPly`` reads for its initial points. trimesh's PLY exporter picks
  its own layout (RGBA colours, no normals for point clouds), which that loader does not read.
* **GLB via trimesh** -- glTF needs buffers, accessors and materials laid out to the spec; trimesh
  builds them from a ``trimesh.Scene`` (the approach DUSt3R's demo takes) and every glTF viewer
  opens the result. plyfile has no glTF support.

Frames: PLY keeps the coordinates as given (OpenCV camera/world frame). GLB files are viewed in
glTF's y-up, z-backward frame, so :func:`write_glb` applies :data:`OPENCV_TO_OPENGL`
(``diag(1, -1, -1, 1)``) to the geometry, once, here; a viewer then shows the scene upright,
looking down -z as the camera did.

Both libraries come with the ``3d`` extra (``pip install 'depthlab[3d]'``); plyfile is GPL-3.0,
so it is not a core dependency of this Apache-2.0 package. Both writers are atomic (:func:`depthlab.io.atomic_write`) and refuse to replace a file unless
``overwrite=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from depthlab.geometry.mesh import Mesh
from depthlab.geometry.points import PointCloud
from depthlab.io import atomic_write

__all__ = ["write_ply", "read_ply", "write_glb", "OPENCV_TO_OPENGL", "PLY_VERTEX_DTYPE"]

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
PLY_VERTEX_DTYPE = np.dtype(
    [
        ("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
        ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4"),
        ("red", "u1"), ("green", "u1"), ("blue", "u1"),
    ]
)  # fmt: skip
_GREY = 128


def _plyfile() -> Any:
    try:
        import plyfile
    except ImportError as error:  # pragma: no cover - installed with the 3d extra
        raise ImportError(
            "PLY files need plyfile: `pip install 'depthlab[3d]'` (or `pip install plyfile`)"
        ) from error
    return plyfile


def _vertex_array(points: np.ndarray, colors: np.ndarray | None, normals: np.ndarray | None) -> np.ndarray:
    vertices = np.zeros(len(points), dtype=PLY_VERTEX_DTYPE)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    if normals is not None:
        for axis, name in enumerate(("nx", "ny", "nz")):
            vertices[name] = np.nan_to_num(normals[:, axis])
    if colors is None:
        colors = np.full((len(points), 3), _GREY, dtype=np.uint8)
    for axis, name in enumerate(("red", "green", "blue")):
        vertices[name] = colors[:, axis]
    return vertices


def write_ply(path: str | os.PathLike, cloud: PointCloud | Mesh, overwrite: bool = False) -> Path:
    """Write a point cloud (or a mesh: vertices + ``face`` element) as binary little-endian PLY.

    Vertex fields: ``x, y, z, nx, ny, nz`` float32, ``red, green, blue`` uchar. Missing normals
    are written as 0 and missing colours as grey (128). Mesh faces are a ``vertex_indices``
    list (uchar count, int32 indices).

    Returns:
        The written path.
    """
    plyfile = _plyfile()
    if isinstance(cloud, Mesh):
        vertices = _vertex_array(np.asarray(cloud.vertices, np.float32), cloud.colors, None)
        faces = np.zeros(len(cloud.faces), dtype=[("vertex_indices", "i4", (3,))])
        faces["vertex_indices"] = cloud.faces
        elements = [
            plyfile.PlyElement.describe(vertices, "vertex"),
            plyfile.PlyElement.describe(faces, "face", len_types={"vertex_indices": "u1"}),
        ]
    elif isinstance(cloud, PointCloud):
        elements = [
            plyfile.PlyElement.describe(_vertex_array(cloud.points, cloud.colors, cloud.normals), "vertex")
        ]
    else:
        raise TypeError(f"`cloud` must be a PointCloud or a Mesh; got {type(cloud).__name__}")
    data = plyfile.PlyData(
        elements, text=False, byte_order="<", comments=["written by depthlab (OpenCV frame)"]
    )
    return atomic_write(path, lambda tmp: data.write(str(tmp)), overwrite=overwrite)


def read_ply(path: str | os.PathLike) -> PointCloud:
    """Read the ``vertex`` element of a PLY file as a :class:`PointCloud` (colours/normals if present)."""
    plyfile = _plyfile()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    try:
        vertex = plyfile.PlyData.read(str(path))["vertex"].data
    except Exception as error:
        raise ValueError(f"cannot read PLY {path}: {error}") from None
    names = vertex.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise ValueError(f"PLY {path}: the vertex element has no x, y, z fields")
    points = np.stack([vertex[n] for n in "xyz"], axis=1)
    colors = np.stack([vertex[n] for n in ("red", "green", "blue")], axis=1) if "red" in names else None
    normals = np.stack([vertex[n] for n in ("nx", "ny", "nz")], axis=1) if "nx" in names else None
    return PointCloud(points, colors, normals)


def write_glb(path: str | os.PathLike, cloud_or_mesh: PointCloud | Mesh, overwrite: bool = False) -> Path:
    """Write a point cloud or mesh as a binary glTF (``.glb``) scene, OpenGL frame (see module doc).

    Returns:
        The written path.
    """
    try:
        import trimesh
    except ImportError as error:  # pragma: no cover - installed with the 3d extra
        raise ImportError(
            "GLB files need trimesh: `pip install 'depthlab[3d]'` (or `pip install trimesh`)"
        ) from error
    flip = OPENCV_TO_OPENGL[:3, :3]
    if isinstance(cloud_or_mesh, Mesh):
        colors = cloud_or_mesh.colors
        geometry = trimesh.Trimesh(
            vertices=np.asarray(cloud_or_mesh.vertices, np.float64) @ flip.T,
            faces=np.asarray(cloud_or_mesh.faces, np.int64),
            vertex_colors=None if colors is None else np.asarray(colors, np.uint8),
            process=False,
        )
    elif isinstance(cloud_or_mesh, PointCloud):
        colors = cloud_or_mesh.colors
        geometry = trimesh.PointCloud(
            vertices=cloud_or_mesh.points.astype(np.float64) @ flip.T,
            colors=None if colors is None else np.asarray(colors, np.uint8),
        )
    else:
        raise TypeError(f"`cloud_or_mesh` must be a PointCloud or a Mesh; got {type(cloud_or_mesh).__name__}")
    scene = trimesh.Scene(geometry)
    data = scene.export(file_type="glb")

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(path, write, overwrite=overwrite)
