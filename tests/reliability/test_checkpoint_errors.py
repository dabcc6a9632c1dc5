"""Broken checkpoint files: one line naming the file and the tensor, exit status 2, no traceback.

Cases (issue 9, item 8): a truncated ``.pth``, a mis-shaped tensor (must name *that* tensor, not
one whose shape merely follows from it), a ``.pth`` holding a pickle payload (refused without
relaying torch's advice to retry with ``weights_only=False``), and a truncated ``.safetensors``.
Each through the Python API (``DepthLabPipeline.from_pretrained``) and the CLI (subprocess).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from depthlab import DepthLabPipeline, io  # noqa: E402
from depthlab.models.loading import CheckpointError  # noqa: E402
from depthlab.training.export import export_original_layout  # noqa: E402
from depthlab.training.model_setup import models_tiny  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    """A tiny checkpoint in the original release's layout."""
    root = tmp_path_factory.mktemp("original") / "checkpoints"
    export_original_layout(models_tiny(seed=2), root)
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    io.write_depth_npy(
        folder / "depth.npy", np.where(rng.random((24, 32)) < 0.5, 2.0, 0.0).astype(np.float32)
    )
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / "rgb.png")
    return folder / "rgb.png", folder / "depth.npy"


def broken_copy(original: Path, tmp_path: Path, case: str) -> tuple[Path, Path, str]:
    """Copy ``original`` and break one file; returns (root, broken file, tensor named or '')."""
    root = tmp_path / "ckpt"
    shutil.copytree(original, root)
    depthlab = root / "DepthLab"
    if case == "truncated_pth":
        target = depthlab / "denoising_unet.pth"
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        return root, target, ""
    if case == "mis_shaped_mapping":
        target = depthlab / "mapping_layer.pth"
        state = torch.load(target, weights_only=True)
        state["mapping_layer.weight"] = torch.zeros(1024, 512)  # the bias keeps its right shape
        torch.save(state, target)
        return root, target, "mapping_layer.weight"
    if case == "mis_shaped_unet":
        target = depthlab / "reference_unet.pth"
        state = torch.load(target, weights_only=True)
        state["conv_in.bias"] = torch.zeros(3)
        torch.save(state, target)
        return root, target, "conv_in.bias"
    if case == "pickle_payload":
        target = depthlab / "reference_unet.pth"

        class Payload:
            def __reduce__(self):
                return (os.system, ("echo this must never run",))

        state = torch.load(target, weights_only=True)
        state["conv_in.weight"] = Payload()
        with open(target, "wb") as handle:
            pickle.dump(state, handle)
        return root, target, ""
    if case == "truncated_safetensors":
        target = root / "CLIP-ViT-H-14-laion2B-s32B-b79K" / "model.safetensors"
        data = target.read_bytes()
        target.write_bytes(data[: len(data) - 1000])
        return root, target, ""
    raise AssertionError(case)


CASES = ["truncated_pth", "mis_shaped_mapping", "mis_shaped_unet", "pickle_payload", "truncated_safetensors"]


@pytest.mark.parametrize("case", CASES)
def test_api_error_names_file_and_tensor(original: Path, tmp_path: Path, case: str) -> None:
    root, broken, tensor = broken_copy(original, tmp_path, case)
    with pytest.raises(CheckpointError) as info:
        DepthLabPipeline.from_pretrained(root)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(broken) in message, message
    if tensor:
        assert tensor in message, message
        assert "mis-shaped" in message
    if case == "mis_shaped_mapping":
        assert "mapping_layer.bias" not in message  # the module is built from the config, not the file
    assert "weights_only=False" not in message
    assert isinstance(info.value, ValueError)  # what the CLI maps to exit status 2


@pytest.mark.slow
@pytest.mark.parametrize("case", ["truncated_pth", "mis_shaped_mapping", "pickle_payload"])
def test_cli_exits_2_with_one_line(
    original: Path, inputs: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    root, broken, tensor = broken_copy(original, tmp_path, case)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    rgb, depth = inputs
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "depthlab.cli", "complete", str(rgb), "--depth", str(depth)]
    command += ["--method", "depthlab", "--checkpoints", str(root), "--out", str(tmp_path / "out")]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, proc.stderr
    assert str(broken) in errors[0] and (not tensor or tensor in errors[0]), errors[0]
    assert "weights_only=False" not in proc.stderr and "this must never run" not in proc.stdout
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before  # nothing changed
