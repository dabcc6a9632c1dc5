"""The installed wheel, not the clone: packaged configs work after ``pip install``.

Builds a wheel from a copy of the source tree, installs it (``--no-deps``) into a venv made with
``--system-site-packages`` (so torch & co. come from this machine), and runs ``depthlab eval`` and
``depthlab train`` with packaged config names from an empty temporary folder, and every
``depthlab`` command of docs/geometry.md as written (on ../shared/datasets; skipped without it).
About 20 s of CPU plus about 60 s for the geometry commands; deselect with ``-m "not wheel"``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.wheel, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="2", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """``{"python", "depthlab", "work"}``: a venv with the freshly built wheel installed."""
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # build from a copy: no build/ or egg-info left in the clone
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(base / "dist"),
            ".",
        ],
        cwd=source,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (base / "dist").glob("depthlab-*.whl")
    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=base)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if made.returncode != 0 or not python.is_file():
        pytest.skip(f"cannot create a venv here: {made.stderr.strip()[-300:]}")
    pip = _run([str(python), "-m", "pip", "install", "--no-deps", "--ignore-installed", str(wheel)], cwd=base)
    if pip.returncode != 0 and "No module named pip" in pip.stderr:
        pytest.skip("the venv has no pip (python3-venv without ensurepip)")
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = base / "work"
    work.mkdir()
    where = _run([str(python), "-c", "import depthlab; print(depthlab.__file__)"], cwd=work)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), f"not the installed copy: {where.stdout}"
    return {"python": python, "depthlab": python.parent / "depthlab", "work": work}


def test_installed_eval_runs_a_packaged_config_by_name(installed):
    from PIL import Image

    work = installed["work"]
    data = work / "data"
    (data / "rgb").mkdir(parents=True)
    (data / "depth").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(data / "rgb" / "a.png")
    np.save(data / "depth" / "a.npy", np.linspace(1, 3, 48 * 64, dtype=np.float32).reshape(48, 64))
    command = [str(installed["depthlab"]), "eval", "--config", "table2_nyu_500pts", "--dataset", "folder"]
    command += ["--root", "data", "--method", "nearest", "--out", "out", "--no-progress", "num_figures=0"]
    result = _run(command, cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = yaml.safe_load((work / "out" / "config.yaml").read_text())
    assert saved["protocols"] == ["points:500"]  # from the packaged table config
    assert saved["table_metrics"] == ["rmse", "abs_rel", "delta1"]
    assert saved["regions"] == ["unknown", "known", "all"]  # from its packaged base_config
    assert saved["num_figures"] == 0 and saved["methods"] == ["nearest"]
    assert "| `nearest` |" in (work / "out" / "table.md").read_text()

    unknown = _run([str(installed["depthlab"]), "eval", "--config", "table9"], cwd=work)
    assert unknown.returncode == 2
    message = unknown.stderr.strip()
    assert "\n" not in message and "'table9'" in message and "table2_nyu_500pts" in message


def test_installed_train_runs_smoke_tiny_by_name(installed):
    work = installed["work"]
    overrides = [
        "run.output_dir=run",
        "run.max_steps=1",
        "run.checkpoint_every=0",
        "model.vae_warmup.steps=1",
        "model.vae_warmup.batch_size=1",
        "model.vae_warmup.pool_size=2",
        "validation.at_start=false",
        "validation.at_end=false",
        "data.size=[32, 32]",
        "batch.effective_batch_size=1",
        "batch.micro_batch_size=1",
        "export.save_pretrained=false",
        "export.original_layout=false",
    ]
    command = [str(installed["depthlab"]), "train", "--config", "smoke_tiny", "--no-progress", *overrides]
    result = _run(command, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained steps 0..1" in result.stdout
    saved = yaml.safe_load((work / "run" / "config.yaml").read_text())
    assert saved["model"]["init"] == "tiny"  # smoke_tiny itself
    assert saved["objective"]  # inherited from the packaged train base config
    assert saved["run"]["max_steps"] == 1 and saved["data"]["size"] == [32, 32]


SHARED = REPO / ".." / "shared" / "datasets"
NYU = SHARED / "stepi2299__eadir2" / "data" / "nyu_samples" / "nyu2_test"


def _documented_commands(markdown: str) -> tuple[dict[str, str], list[str]]:
    """Shell variables (``K=...``) and ``depthlab ...`` command lines of the fenced blocks of a doc."""
    variables: dict[str, str] = {}
    commands: list[str] = []
    for block in markdown.split("```")[1::2]:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("depthlab "):
                commands.append(line)
            elif "=" in line and line.split("=", 1)[0].isidentifier() and " " not in line:
                name, value = line.split("=", 1)
                variables[name] = value
    return variables, commands


def test_installed_geometry_commands_run_as_docs_geometry_says(installed):
    """Every ``depthlab`` command of docs/geometry.md, run by the installed console script."""
    if not (SHARED / "kuixu__kitti_object_vis").is_dir() or not NYU.is_dir():
        pytest.skip(f"the doc's frames are not under {SHARED}")
    from PIL import Image

    from depthlab.geometry import load_camera, unproject

    # the doc's paths are relative to a checkout: ../shared next to the working folder
    root = installed["work"] / "geometry"
    run = root / "run"
    run.mkdir(parents=True)
    (root / "shared").symlink_to((REPO / ".." / "shared").resolve())
    # inputs the doc tells the user to bring
    nyu_k = "518.8579,519.4696,325.5824,253.7362"
    for frame in ("00000", "00001", "00008"):
        Image.open(NYU / f"{frame}_colors.png").convert("RGB").save(run / f"nyu_{frame}.png")
    gt = {
        f: np.asarray(Image.open(NYU / f"{f}_depth.png"), np.float32) / 1000
        for f in ("00000", "00001", "00008")
    }
    holed = gt["00001"].copy()
    holed[140:340, 220:440] = 0
    np.save(run / "nyu_00001_depth.npy", holed)
    np.save(run / "nyu_00008_depth.npy", gt["00008"])
    pose = np.eye(4)
    pose[:3, 3] = [0.3, 0.0, 0.2]
    np.savetxt(run / "pose.txt", pose)
    shutil.copy(run / "nyu_00008.png", run / "inpainted.png")
    shutil.copy(run / "nyu_00000.png", run / "view0.png")
    camera = load_camera(nyu_k, 640, 480)
    np.save(run / "pts3d.npy", unproject(gt["00000"], camera).points.reshape(480, 640, 3))
    np.save(run / "conf.npy", np.random.default_rng(0).uniform(1, 5, (480, 640)).astype(np.float32))
    np.save(run / "mp_confidence.npy", np.full((256, 320), 5.0, np.float32))

    variables, commands = _documented_commands((REPO / "docs" / "geometry.md").read_text())
    assert {"lidar", "refine", "complete", "warp"} <= {c.split()[1] for c in commands}
    for command in commands:
        for name in sorted(variables, key=len, reverse=True):  # $K after $KEY, if there were one
            command = command.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
        argv = [str(installed["depthlab"]), *shlex.split(command)[1:]]
        result = _run(argv, cwd=run)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
    assert (run / "lidar" / "000000_metrics.json").is_file()
    assert (run / "ply" / "nyu_00001_points.ply").is_file()
    assert (run / "warp_done" / "nyu_00008_warped_depth.npy").is_file()
