import functools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _no_weights(no_weights):
    """`auto` must not find real weights on the test machine (the root conftest's ``no_weights``)."""


def _write_nyu_frames(
    nyu: Path, folder: Path, count: int, size: tuple[int, int] = (60, 80), keep: float = 0.05
) -> list[str]:
    """``count`` real NYUv2 frames, downsized to ``size`` (H, W), depth thinned to ``keep`` of the pixels.

    ``nyu``: the frames' folder (root conftest ``nyu_samples``). Written to ``folder`` (a
    temporary folder: the data is never copied into the repository).
    """
    folder.mkdir(parents=True, exist_ok=True)
    stems = sorted(p.name[: -len("_colors.png")] for p in nyu.glob("*_colors.png"))[:count]
    rng = np.random.default_rng(0)
    for stem in stems:
        rgb = Image.open(nyu / f"{stem}_colors.png").convert("RGB").resize(size[::-1], Image.BILINEAR)
        depth = np.asarray(Image.open(nyu / f"{stem}_depth.png").resize(size[::-1], Image.NEAREST))
        depth = np.where(rng.random(depth.shape) < keep, depth, 0).astype(np.uint16)
        rgb.save(folder / f"{stem}_colors.png")
        Image.fromarray(depth).save(folder / f"{stem}_depth.png")
    return stems


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
def write_nyu_frames(nyu_samples):
    """``write_nyu_frames(folder, count, size=(60, 80), keep=0.05)``; skips when the frames are absent."""
    return functools.partial(_write_nyu_frames, nyu_samples)


@pytest.fixture
def tree():
    return _tree


@pytest.fixture
def records():
    return _records
