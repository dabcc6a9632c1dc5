import numpy as np
import pytest

from depthlab.applications.scene import Scene, grow_scene, warp_and_complete
from depthlab.geometry import Camera, project
from depthlab.geometry.camera import invert_pose


@pytest.fixture
def view(rng):
    camera = Camera(40.0, 40.0, 23.5, 17.5, 48, 36)
    rows, cols = np.mgrid[0:36, 0:48]
    depth = (4.0 + 0.02 * cols).astype(np.float32)
    rgb = np.zeros((36, 48, 3), np.uint8)
    rgb[..., 0] = (cols * 5).astype(np.uint8)
    rgb[..., 1] = (rows * 7).astype(np.uint8)
    return camera, rgb, depth


def translation(x=0.0, y=0.0, z=0.0):
    pose = np.eye(4)
    pose[:3, 3] = [x, y, z]
    return pose


def grey_inpainter(calls):
    def inpaint(rgb, unknown):
        calls.append(int(unknown.sum()))
        out = rgb.copy()
        out[unknown] = 128
        return out

    return inpaint


def test_warp_and_complete(view):
    camera, rgb, depth = view
    same = warp_and_complete(rgb, depth, camera, np.eye(4), splat_radius=0)
    assert (
        same.completed is None and same.warped.known_mask.all() and np.array_equal(same.warped.depth, depth)
    )
    moved = warp_and_complete(rgb, depth, camera, translation(x=0.5), target_image=rgb, method="linear")
    known = moved.warped.known_mask
    assert 0.5 < known.mean() < 1.0 and not known[:, -3:].any()  # the right edge was not seen
    completed = moved.completed.depth
    assert (completed > 0).all() and np.array_equal(completed[known], moved.warped.depth[known])
    with pytest.raises(ValueError, match="pose: not a rigid transform"):
        warp_and_complete(rgb, depth, camera, np.diag([1.0, 1.0, 2.0, 1.0]))


def test_scene_adds_only_new_points(view):
    camera, rgb, depth = view
    calls = []
    scene = Scene(camera, method="linear", inpainter=grey_inpainter(calls))
    first = scene.add_first_view(rgb, depth)
    assert first.new_points == 36 * 48 == len(scene.cloud)
    # the same pose again: everything is known, nothing is added
    assert scene.add_view(np.eye(4)).new_points == 0 and calls == [0]
    step = scene.add_view(translation(x=0.6))
    assert step.new_points == calls[-1] == int((~step.warped.known_mask).sum()) > 0
    assert len(scene.cloud) == 36 * 48 + step.new_points
    # the new points are grey (inpainted) and lie on the completed surface of that view
    new = scene.cloud.select(slice(36 * 48, None))
    assert (new.colors == 128).all()
    rendered, index = project(new, camera, invert_pose(translation(x=0.6)))
    hit = index >= 0
    np.testing.assert_allclose(rendered[hit], step.depth[hit], rtol=1e-5)
    # seen from the new pose the scene now has no holes
    assert scene.render(translation(x=0.6)).known_mask.all()


def test_grow_scene_and_errors(view):
    camera, rgb, depth = view
    calls = []
    scene = grow_scene(
        rgb, depth, camera, [translation(x=0.3), translation(x=0.6)], grey_inpainter(calls), method="nearest"
    )
    assert len(scene.steps) == 3 and len(calls) == 2
    assert len(scene.cloud) == sum(s.new_points for s in scene.steps)
    bare = Scene(camera, method="nearest")
    bare.add_first_view(rgb, depth)
    with pytest.raises(ValueError, match="depthlab ships none"):
        bare.add_view(translation(x=0.3))
    with pytest.raises(ValueError, match="uint8 \\[36, 48, 3\\]"):
        bare.add_view(translation(x=0.3), rgb=rgb[:10])
    with pytest.raises(ValueError, match="not visible"):
        bare.add_view(translation(z=-100.0) @ np.diag([1.0, -1.0, -1.0, 1.0]))
