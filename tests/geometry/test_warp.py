import numpy as np

from depthlab.geometry import Camera, warp
from depthlab.geometry.camera import invert_pose


def test_identity_warp_gives_the_input(camera, scene_depth, rng):
    rgb = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
    result = warp(scene_depth, rgb, camera, np.eye(4), camera)
    valid = np.isfinite(scene_depth) & (scene_depth > 0)
    assert np.array_equal(result.known_mask, valid)
    assert np.array_equal(result.depth[valid], scene_depth[valid]) and not result.depth[~valid].any()
    assert np.array_equal(result.rgb[valid], rgb[valid])
    rows, cols = np.nonzero(valid)
    assert np.array_equal(result.source_index[valid], rows * camera.width + cols)


def test_integer_pixel_shift_there_and_back():
    cam = Camera(50.0, 50.0, 15.5, 11.5, 32, 24)
    depth = np.full((24, 24 + 8), 5.0, np.float32)
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    # moving the camera 0.4 m to the right shifts a plane at 5 m by 50 * 0.4 / 5 = 4 pixels left
    src_to_dst = np.eye(4)
    src_to_dst[0, 3] = -0.4
    there = warp(depth, rgb, cam, src_to_dst, cam)
    assert there.known_mask[:, :28].all() and not there.known_mask[:, 28:].any()
    assert np.array_equal(there.rgb[:, :28], rgb[:, 4:])
    back = warp(there.depth, there.rgb, cam, invert_pose(src_to_dst), cam)
    visible = np.zeros((24, 32), bool)
    visible[:, 4:] = True  # the part of A that B saw
    assert np.array_equal(back.known_mask, visible)
    assert np.array_equal(back.depth[visible], depth[visible]) and np.array_equal(
        back.rgb[visible], rgb[visible]
    )


def test_a_to_b_to_a_general_motion(camera, scene_depth):
    angle = 0.05
    cam_to_world_b = np.eye(4)
    cam_to_world_b[:3, :3] = [
        [np.cos(angle), 0, np.sin(angle)],
        [0, 1, 0],
        [-np.sin(angle), 0, np.cos(angle)],
    ]
    cam_to_world_b[:3, 3] = [0.15, -0.05, 0.1]
    a_to_b = invert_pose(cam_to_world_b)  # A is the world frame
    there = warp(scene_depth, None, camera, a_to_b, camera)
    assert there.rgb is None
    # the box occludes part of the plane and the motion disoccludes some of it: unknown in B
    assert 0.6 < there.known_mask.mean() < 0.99
    back = warp(there.depth, None, camera, cam_to_world_b, camera)
    both = back.known_mask & np.isfinite(scene_depth) & (scene_depth > 0)
    assert both.sum() > 0.6 * scene_depth.size
    # the visible part comes back; pixel rounding moves points by < 1 px, so compare away from edges
    error = np.abs(back.depth[both] - scene_depth[both]) / scene_depth[both]
    assert np.median(error) < 1e-3 and np.mean(error < 0.02) > 0.97


def test_zoom_in_without_cracks_needs_a_splat(camera, scene_depth):
    tele = Camera(camera.fx * 2, camera.fy * 2, camera.cx, camera.cy, camera.width, camera.height)
    plain = warp(scene_depth, None, camera, np.eye(4), tele)
    splat = warp(scene_depth, None, camera, np.eye(4), tele, splat_radius=1)
    centre = (slice(10, 38), slice(12, 52))
    assert plain.known_mask[centre].mean() < 0.5 and splat.known_mask[centre].mean() > 0.99
