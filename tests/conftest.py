"""Fixtures shared by the whole test suite.

* Paths into ``../shared`` (beside the repository; ``$DEPTHLAB_SHARED`` overrides): ``shared_dir``,
  ``golden_dir``, ``shared_datasets``, ``nyu_samples``, ``kitti_object_root``. The ones naming data
  skip the test cleanly when it is absent; the data is only read, never copied into the repository.
* Tiny random-weight models built in code: ``tiny_pipeline`` (one per test module, so a module
  that changes it cannot affect another), ``tiny_checkpoint`` (saved once per session).
* ``make_scene``: a synthetic RGB-D scene with a hole, the same one every time for the same size
  and seed.
* ``write_item``: writes an RGB PNG and a sparse 16-bit millimetre depth PNG (batch/CLI inputs).
* ``no_weights``: DepthLab's ``auto`` method cannot find real weights on the test machine.
* ``rng``: ``numpy.random.default_rng(0)``.

The ``slow`` marker (pyproject.toml) labels the slowest tests; they run by default, as with the
README's test line; ``-m "not slow"`` leaves them out for a quick run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DEPTHLAB_SHARED", REPO.parent / "shared"))
NYU_SAMPLES = SHARED / "datasets" / "stepi2299__eadir2" / "data" / "nyu_samples" / "nyu2_test"
KITTI_OBJECT = SHARED / "datasets" / "kuixu__kitti_object_vis" / "data" / "object" / "training"

Scene = tuple[np.ndarray, np.ndarray, np.ndarray]


# ------------------------------------------------------------------------------------- paths
@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository (may not exist)."""
    return SHARED


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Reference outputs of the original code (``../shared/golden``); skips when absent."""
    path = Path(os.environ.get("DEPTHLAB_GOLDEN", SHARED / "golden"))
    if not path.is_dir():
        pytest.skip(f"golden files not available at {path}")
    return path


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data folder (``../shared/datasets``, research-only); skips when absent."""
    path = SHARED / "datasets"
    if not path.is_dir():
        pytest.skip(f"real data not available at {path}")
    return path


@pytest.fixture(scope="session")
def nyu_samples() -> Path:
    """Real NYUv2 frames (``NNNNN_colors.png`` + ``NNNNN_depth.png``, uint16 mm); skips when absent."""
    if not (NYU_SAMPLES / "00000_colors.png").is_file():
        pytest.skip(f"NYUv2 frames not available at {NYU_SAMPLES}")
    return NYU_SAMPLES


@pytest.fixture(scope="session")
def kitti_object_root() -> Path:
    """A real KITTI object frame (``image_2``, ``velodyne``, ``calib``); skips when absent."""
    if not (KITTI_OBJECT / "velodyne" / "000000.bin").is_file():
        pytest.skip(f"KITTI object frame not available under {KITTI_OBJECT}")
    return KITTI_OBJECT


# ------------------------------------------------------------------------------------- data
@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _make_scene(height: int = 44, width: int = 60, seed: int = 0) -> Scene:
    """RGB uint8 ``[H, W, 3]``, depth ``[H, W]`` in metres (0 = unknown) with an elliptic hole, known mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    depth = (2.0 + 3.0 * yy / height + 0.5 * np.sin(xx / 7.0)).astype(np.float32)
    rgb = np.clip(
        np.stack([depth * 40, 255 - depth * 30, xx * 4.0], -1) + rng.normal(0, 5, (height, width, 3)), 0, 255
    )
    known = ((yy - height / 2) ** 2 / (height / 4) ** 2 + (xx - width / 2) ** 2 / (width / 4) ** 2) > 1
    return rgb.astype(np.uint8), np.where(known, depth, 0).astype(np.float32), known


def _write_item(folder: Path, stem: str, seed: int, h: int = 24, w: int = 32, image_suffix: str = "_colors"):
    """RGB ``<stem><image_suffix>.png`` and sparse uint16 mm depth ``<stem>_depth.png``; returns the depth."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
        folder / f"{stem}{image_suffix}.png"
    )
    depth = rng.integers(1000, 4000, (h, w)).astype(np.uint16)
    depth[rng.random((h, w)) < 0.6] = 0
    Image.fromarray(depth).save(folder / f"{stem}_depth.png")
    return depth


@pytest.fixture(scope="session")
def write_item() -> Callable[..., np.ndarray]:
    """``write_item(folder, stem, seed, h=24, w=32, image_suffix="_colors")``: see :func:`_write_item`."""
    return _write_item


@pytest.fixture(scope="session")
def make_scene() -> Callable[..., Scene]:
    """``make_scene(height=44, width=60, seed=0) -> (rgb, depth, known)`` (see :func:`_make_scene`)."""
    return _make_scene


# ------------------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def tiny_pipeline():
    """A tiny random-weight ``DepthLabPipeline`` (seed 0), built once per test module."""
    pytest.importorskip("torch")
    from depthlab.pipeline import DepthLabPipeline

    return DepthLabPipeline.build_tiny(seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny pipeline (seed 0) saved in the ``save_pretrained`` layout, once per session."""
    pytest.importorskip("torch")
    from depthlab.pipeline import DepthLabPipeline

    folder = tmp_path_factory.mktemp("tiny") / "tiny"
    DepthLabPipeline.build_tiny(seed=0).save_pretrained(folder)
    return folder


@pytest.fixture
def no_weights(monkeypatch, tmp_path_factory) -> None:
    """Make sure ``auto`` cannot find real weights on the test machine."""
    monkeypatch.setenv("DEPTHLAB_CHECKPOINTS", str(tmp_path_factory.mktemp("no_weights")))
    try:
        import depthlab.models.loading as loading
    except ImportError:  # no torch: there is no DepthLab to find
        return
    monkeypatch.setattr(loading, "find_checkpoints", lambda source=None: None)
