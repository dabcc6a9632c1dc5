import numpy as np
import pytest

from depthlab.geometry import Camera


@pytest.fixture
def camera():
    return Camera(60.0, 55.0, 31.3, 23.7, 64, 48)


@pytest.fixture
def scene_depth(camera):
    """A slanted plane with a box in front of it and a few unknown pixels, [48, 64] metres."""
    rows, cols = np.mgrid[0 : camera.height, 0 : camera.width]
    depth = (3.0 + 0.02 * cols + 0.01 * rows).astype(np.float32)
    depth[15:30, 20:35] = 1.5
    depth[5, 5] = 0.0
    depth[40, 60] = np.nan
    return depth
