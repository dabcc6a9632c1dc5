import numpy as np
import pytest
from PIL import Image

CALIB = "P2: 100 0 50 0 0 100 40 0 0 0 1 0\nR0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"


def velodyne_scan(rng, n=3000):
    """Points on a slanted wall 6-10 m ahead (velodyne frame: x forward, y left, z up)."""
    y = rng.uniform(-3, 3, n)
    z = rng.uniform(-2.5, 2.5, n)
    x = 8.0 + 0.3 * y + 0.2 * z
    return np.c_[x, y, z, rng.uniform(0, 1, n)].astype(np.float32)


def write_object_frame(base, frame, rng, width=100, height=80):
    for sub in ("image_2", "velodyne", "calib"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        base / "image_2" / f"{frame}.png"
    )
    velodyne_scan(rng).tofile(base / "velodyne" / f"{frame}.bin")
    (base / "calib" / f"{frame}.txt").write_text(CALIB)


@pytest.fixture
def kitti():
    """Helpers for synthetic KITTI data: ``calib`` text, ``scan(rng, n)``, ``object_frame(base, frame, rng)``."""

    class Helpers:
        calib = CALIB
        scan = staticmethod(velodyne_scan)
        object_frame = staticmethod(write_object_frame)

    return Helpers


@pytest.fixture(scope="session")
def tiny_method():
    """The tiny random-weight DepthLab pipeline as a method choice, built once for the applications tests."""
    pytest.importorskip("torch")
    from depthlab import DepthLabPipeline
    from depthlab.applications import MethodChoice

    return MethodChoice("depthlab", "tiny test pipeline", DepthLabPipeline.build_tiny(seed=0))
