"""``low_memory``: models held only while they run (CPU: re-read from the files), same answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depthlab import DepthLabPipeline  # noqa: E402
from depthlab.cli import main  # noqa: E402
from depthlab.models.loading import LARGE_COMPONENTS  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("low_memory") / "tiny"
    DepthLabPipeline.build_tiny(seed=2).save_pretrained(folder)
    return folder


def inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 5.0, (40, 48)).astype(np.float32)
    known = rng.random((40, 48)) < 0.3
    return image, depth, known


def on_meta(model: torch.nn.Module) -> bool:
    return all(p.device.type == "meta" for p in model.parameters())


def run(pipe: DepthLabPipeline, **options):
    image, depth, known = inputs()
    return pipe(
        image, depth, known, num_inference_steps=4, processing_resolution=48, ensemble_size=2,
        generator=torch.Generator().manual_seed(7), show_progress_bar=False, **options,
    )  # fmt: skip


@pytest.mark.parametrize("dtype", ["fp32"])  # bf16 streaming: tests/models/test_streaming_load.py
def test_low_memory_gives_the_same_answer_and_holds_no_large_model(saved: Path, dtype: str) -> None:
    normal = DepthLabPipeline.from_pretrained(saved, torch_dtype=dtype)
    low = DepthLabPipeline.from_pretrained(saved, torch_dtype=dtype, low_memory=True)
    for name in LARGE_COMPONENTS:  # nothing large is read at load time
        assert on_meta(getattr(low, name)), name
        assert getattr(low, name).dtype == getattr(normal, name).dtype
    assert not on_meta(low.vae) and not on_meta(low.image_projection)
    expected = run(normal)
    out = run(low)
    assert np.array_equal(out.depth, expected.depth)
    assert np.array_equal(out.uncertainty, expected.uncertainty)
    assert all(on_meta(getattr(low, name)) for name in LARGE_COMPONENTS)  # released again
    noise_start = run(low, strength=1.0, blend=False)  # second call: read again
    assert np.array_equal(noise_start.depth, run(normal, strength=1.0, blend=False).depth)


def test_low_memory_pipeline_saves_its_weights(saved: Path, tmp_path: Path) -> None:
    low = DepthLabPipeline.from_pretrained(saved, low_memory=True)
    low.save_pretrained(tmp_path / "again")
    assert on_meta(low.estimation_unet)
    again = DepthLabPipeline.from_pretrained(tmp_path / "again")
    reference = DepthLabPipeline.from_pretrained(saved)
    for key, value in reference.estimation_unet.state_dict().items():
        assert torch.equal(again.estimation_unet.state_dict()[key], value), key


def test_enable_low_memory_on_cpu_needs_checkpoint_files(saved: Path) -> None:
    with pytest.raises(ValueError, match="low_memory.*from_pretrained"):
        DepthLabPipeline.build_tiny().enable_low_memory()
    pipe = DepthLabPipeline.from_pretrained(saved)
    expected = run(pipe)
    pipe.enable_low_memory()  # a loaded pipeline can switch: its models are released now
    assert all(on_meta(getattr(pipe, name)) for name in LARGE_COMPONENTS)
    assert np.array_equal(run(pipe).depth, expected.depth)


def test_cli_low_memory_flag(tmp_path: Path, capsys, monkeypatch, write_item, saved: Path) -> None:
    monkeypatch.undo()  # the real weight search: --checkpoints is looked at first
    write_item(tmp_path / "in", "a", 0)
    args = [
        "complete", str(tmp_path / "in" / "a_colors.png"), "--depth-scale", "1000",
        "--checkpoints", str(saved), "--steps", "2", "--strength", "0.5",
        "--processing-resolution", "32", "--seed", "0", "--device", "cpu", "--format", "npy",
    ]  # fmt: skip
    assert main(args + ["--out", str(tmp_path / "normal")]) == 0
    assert main(args + ["--low-memory", "--out", str(tmp_path / "low")]) == 0
    normal = np.load(tmp_path / "normal" / "a_colors_depth.npy")
    low = np.load(tmp_path / "low" / "a_colors_depth.npy")
    assert np.isfinite(low).all() and np.array_equal(low, normal)
    capsys.readouterr()
    assert main(args + ["--low-memory", "--method", "guided", "--out", str(tmp_path / "g")]) == 0
    assert "--low-memory" in capsys.readouterr().err  # named as ignored: a DepthLab-only flag
