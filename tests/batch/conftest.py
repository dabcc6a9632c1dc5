from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
NYU = SHARED / "stepi2299__eadir2" / "data" / "nyu_samples" / "nyu2_test"


@pytest.fixture(autouse=True)
def no_weights(monkeypatch, tmp_path_factory):
    """`auto` must not find real weights on the test machine."""
    monkeypatch.setenv("DEPTHLAB_CHECKPOINTS", str(tmp_path_factory.mktemp("no_weights")))
    try:
        import depthlab.models.loading as loading
    except ImportError:
        return
    monkeypatch.setattr(loading, "find_checkpoints", lambda source=None: None)


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


def _write_nyu_frames(
    folder: Path, count: int, size: tuple[int, int] = (60, 80), keep: float = 0.05
) -> list[str]:
    """``count`` real NYUv2 frames, downsized to ``size`` (H, W), depth thinned to ``keep`` of the pixels.

    Written to ``folder`` (a temporary folder: the data is never copied into the repository).
    Skips the test when the shared data is absent.
    """
    if not NYU.is_dir():
        pytest.skip(f"NYUv2 frames not available at {NYU}")
    folder.mkdir(parents=True, exist_ok=True)
    stems = sorted(p.name[: -len("_colors.png")] for p in NYU.glob("*_colors.png"))[:count]
    rng = np.random.default_rng(0)
    for stem in stems:
        rgb = Image.open(NYU / f"{stem}_colors.png").convert("RGB").resize(size[::-1], Image.BILINEAR)
        depth = np.asarray(Image.open(NYU / f"{stem}_depth.png").resize(size[::-1], Image.NEAREST))
        depth = np.where(rng.random(depth.shape) < keep, depth, 0).astype(np.uint16)
        rgb.save(folder / f"{stem}_colors.png")
        Image.fromarray(depth).save(folder / f"{stem}_depth.png")
    return stems


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random-weight DepthLab pipeline saved in the save_pretrained layout."""
    pytest.importorskip("torch")
    from depthlab.pipeline import DepthLabPipeline

    folder = tmp_path_factory.mktemp("tiny") / "tiny"
    DepthLabPipeline.build_tiny(seed=0).save_pretrained(folder)
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    """``{relative path: bytes}`` of every output file below ``folder`` (not the manifest, no temporaries)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".jsonl"
    }


def _records(folder: Path) -> dict[str, dict]:
    """The results manifest without the timings (what must agree between engines)."""
    import json

    out = {}
    for line in (folder / "depthlab-results.jsonl").read_text().splitlines():
        record = json.loads(line)
        record.pop("seconds")
        out[record["item"]] = record
    return out


@pytest.fixture
def write_item():
    return _write_item


@pytest.fixture
def write_nyu_frames():
    return _write_nyu_frames


@pytest.fixture
def tree():
    return _tree


@pytest.fixture
def records():
    return _records
