import numpy as np
import pytest

from depthlab.geometry import (
    Camera,
    PointCloud,
    depth_to_disparity,
    depth_to_range,
    disparity_to_depth,
    estimate_normals,
    project,
    range_to_depth,
    render_points,
    unproject,
)
from depthlab.geometry.camera import invert_pose


def test_unproject_project_roundtrip_exact(camera, scene_depth, rng):
    rgb = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
    cloud = unproject(scene_depth, camera, rgb=rgb)
    valid = np.isfinite(scene_depth) & (scene_depth > 0)
    assert len(cloud) == valid.sum() and cloud.points.dtype == np.float32
    assert np.array_equal(cloud.colors, rgb[valid])
    depth, index = project(cloud, camera)
    assert np.array_equal(depth[valid], scene_depth[valid])  # exact, every valid pixel
    assert not depth[~valid].any() and (index[~valid] == -1).all()
    rows, cols = np.nonzero(valid)
    assert np.array_equal(cloud.pixels[index[valid]], np.stack([rows, cols], 1))


def test_roundtrip_through_a_world_pose(camera, scene_depth):
    pose = np.eye(4)
    angle = 0.4
    pose[:3, :3] = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    pose[:3, 3] = [10.0, -2.0, 5.0]
    cloud = unproject(scene_depth, camera, cam_to_world=pose)
    depth, index = project(cloud, camera, world_to_cam=invert_pose(pose))
    valid = np.isfinite(scene_depth) & (scene_depth > 0)
    assert (index[valid] >= 0).all()
    np.testing.assert_allclose(depth[valid], scene_depth[valid], rtol=1e-5)  # float32 world coords


def test_point_positions_follow_the_opencv_convention():
    cam = Camera(100.0, 100.0, 2.0, 1.0, 5, 3)
    depth = np.zeros((3, 5), np.float32)
    depth[0, 4] = 2.0  # top-right pixel: x right (+), y up from the centre row (-)
    cloud = unproject(depth, cam)
    assert np.allclose(cloud.points, [[(4 - 2) / 100 * 2, (0 - 1) / 100 * 2, 2.0]])
    assert cloud.pixels.tolist() == [[0, 4]]


def test_zbuffer_nearest_wins_and_ties_go_to_the_lower_index():
    cam = Camera(10.0, 10.0, 1.0, 1.0, 3, 3)
    points = np.array([[0, 0, 5.0], [0, 0, 2.0], [0, 0, 2.0], [0, 0, 9.0], [0, 0, -1.0]] * 50)
    depth, index = project(points, cam)
    assert depth[1, 1] == 2.0 and index[1, 1] == 1
    reordered = points[::-1].copy()
    depth, index = project(reordered, cam)
    assert index[1, 1] == 2  # reversed: [-1, 9, 2, 2, 5, ...]; the first z=2 point wins
    # many points on many pixels, in random order: every pixel holds the minimum z of its points
    rng = np.random.default_rng(1)
    pts = np.column_stack(
        [rng.integers(-1, 2, 5000) * 0.1, rng.integers(-1, 2, 5000) * 0.1, rng.uniform(1, 2, 5000)]
    )
    pts[:, :2] *= pts[:, 2:]
    depth, index = project(pts, cam)
    for r in range(3):
        for c in range(3):
            on = (np.round(10 * pts[:, 0] / pts[:, 2] + 1) == c) & (
                np.round(10 * pts[:, 1] / pts[:, 2] + 1) == r
            )
            assert (
                depth[r, c] == np.float32(pts[on, 2].min())
                and index[r, c] == np.flatnonzero(on)[pts[on, 2].argmin()]
            )


def test_splat_radius_fills_cracks():
    cam = Camera(10.0, 10.0, 4.0, 4.0, 9, 9)
    depth, index = project(np.array([[0.0, 0.0, 1.0]]), cam, splat_radius=1)
    assert (depth[3:6, 3:6] == 1.0).all() and depth.sum() == 9
    with pytest.raises(ValueError, match="splat_radius"):
        project(np.zeros((1, 3)), cam, splat_radius=-1)


def test_mask_rgb_and_shape_checks(camera, scene_depth):
    mask = np.zeros(scene_depth.shape, bool)
    mask[:10] = True
    cloud = unproject(scene_depth, camera, mask=mask)
    assert (cloud.pixels[:, 0] < 10).all() and len(cloud) == mask.sum() - 1  # (5, 5) is unknown
    with pytest.raises(ValueError, match="camera: the intrinsics are for a 64x48"):
        unproject(scene_depth[:, :32], camera)
    with pytest.raises(ValueError, match="rgb"):
        unproject(scene_depth, camera, rgb=np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="cam_to_world: not a rigid"):
        unproject(scene_depth, camera, cam_to_world=np.diag([2.0, 2, 2, 1]))


def test_normals_of_a_plane(camera):
    # plane z = 2 + 0.5 x  (normal proportional to (-0.5, 0, 1), facing the camera: (0.5, 0, -1))
    rays = camera.rays()
    depth = (2.0 / (1.0 - 0.5 * rays[..., 0])).astype(np.float32)
    normals = estimate_normals(depth, camera)
    expected = np.array([0.5, 0.0, -1.0]) / np.linalg.norm([0.5, 0.0, -1.0])
    np.testing.assert_allclose(normals.reshape(-1, 3), np.broadcast_to(expected, (depth.size, 3)), atol=1e-4)
    cloud = unproject(depth, camera, normals=True)
    assert cloud.normals.shape == (depth.size, 3)


def test_range_and_disparity(camera, scene_depth):
    distance = depth_to_range(scene_depth, camera)
    valid = np.isfinite(scene_depth) & (scene_depth > 0)
    cloud = unproject(scene_depth, camera)
    np.testing.assert_allclose(distance[valid], np.linalg.norm(cloud.points, axis=1), rtol=1e-6)
    np.testing.assert_allclose(range_to_depth(distance, camera)[valid], scene_depth[valid], rtol=1e-6)
    assert distance[5, 5] == 0
    disparity = depth_to_disparity(scene_depth, 720.0, 0.54)
    np.testing.assert_allclose(disparity[valid], 720 * 0.54 / scene_depth[valid], rtol=1e-6)
    np.testing.assert_allclose(
        disparity_to_depth(disparity, 720.0, 0.54)[valid], scene_depth[valid], rtol=1e-6
    )
    with pytest.raises(ValueError, match="baseline"):
        disparity_to_depth(disparity, 720.0, 0.0)


def test_render_points(camera, scene_depth):
    rgb = np.zeros((camera.height, camera.width, 3), np.uint8)
    rgb[..., 0] = 200
    image = render_points(unproject(scene_depth, camera, rgb=rgb), camera, splat_radius=0)
    assert image.shape == (48, 64, 3) and (image[20, 20] == [200, 0, 0]).all() and (image[5, 5] == 255).all()


def test_pointcloud_concatenate_and_select():
    a = PointCloud(np.zeros((2, 3)), colors=np.full((2, 3), 7))
    b = PointCloud(np.ones((3, 3)))
    joined = PointCloud.concatenate([a, b])
    assert len(joined) == 5 and joined.colors is None
    assert len(a.select(np.array([True, False]))) == 1
    with pytest.raises(ValueError, match="colors"):
        PointCloud(np.zeros((2, 3)), colors=np.zeros((3, 3)))
