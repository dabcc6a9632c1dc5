import numpy as np
import pytest

from depthlab.geometry import Camera, depth_to_mesh, unproject


def test_grid_faces_and_discontinuities():
    cam = Camera(10.0, 10.0, 1.5, 1.0, 4, 3)
    depth = np.full((3, 4), 2.0, np.float32)
    mesh = depth_to_mesh(depth, cam)
    assert len(mesh.vertices) == 12 and len(mesh.faces) == 2 * 2 * 3  # 2 triangles per 2x2 block
    # every face is counter-clockwise seen from the camera: its normal points to -z
    v = mesh.vertices[mesh.faces].astype(np.float64)
    normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    assert (normals[:, 2] < 0).all()
    assert np.array_equal(mesh.vertices, unproject(depth, cam).points)

    jump = depth.copy()
    jump[:, 2:] = 4.0  # a 2x depth step between columns 1 and 2
    cut = depth_to_mesh(jump, cam)
    assert len(cut.faces) == 2 * 2 * 2  # the column of blocks across the step is dropped
    assert len(depth_to_mesh(jump, cam, max_depth_ratio=np.inf).faces) == 12
    hole = depth.copy()
    hole[1, 1] = 0
    assert len(depth_to_mesh(hole, cam).faces) == 12 - 6  # every triangle touching (1, 1)
    with pytest.raises(ValueError, match="max_depth_ratio"):
        depth_to_mesh(depth, cam, max_depth_ratio=0)


def test_slanted_surface_is_kept(camera):
    rows = np.arange(camera.height, dtype=np.float32)[:, None]
    depth = np.broadcast_to(5.0 + 0.1 * rows, (camera.height, camera.width)).copy()  # ~2 % per row
    mesh = depth_to_mesh(depth, camera, rgb=np.zeros((48, 64, 3), np.uint8))
    assert len(mesh.faces) == 2 * 47 * 63 and mesh.colors.shape == (48 * 64, 3)
