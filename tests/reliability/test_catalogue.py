"""The bad-input catalogue of issue 9, as tests: one row per case, CLI (subprocess) and API.

Every error row runs ``python -m depthlab.cli complete ...`` in a fresh folder and checks: exit
status 2, exactly one ``error:`` line on stderr that matches the row's pattern (it names the
argument or the file), no ``Traceback``, and no file that existed before the run changed (the
folder is hashed before and after). Rows with an API call check that it raises the same kind of
error with the same pattern, and leaves every file as it was.

Behaviour rows (``expect="ok"``) document what happens when the input is valid but unusual (a
mask over zero depth, a ``v,u,depth`` header, ...): exit status 0 and a check of the written
result.

Add a case by adding a :class:`Case` to ``CASES``. Cases that need real NYUv2 frames take them
from ``../shared/datasets`` and are skipped when it is absent. The CLI runs are started in
parallel once per session (each is a fresh interpreter, about a second of CPU).

Environment faults: a read-only ``--out`` is a real read-only tmpfs mount and a full disk a real
64 kB tmpfs (both need root and ``mount``; skipped otherwise); ``--out`` below a regular file
needs nothing. No monkeypatching in the CLI rows.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import depthlab
from depthlab import io, masks

REPO = Path(__file__).resolve().parents[2]
NYU = REPO.parent / "shared" / "datasets" / "stepi2299__eadir2" / "data" / "nyu_samples" / "nyu2_test"
H, W = 24, 32


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
def _rgb(folder: Path, name: str = "rgb.png", size: tuple[int, int] = (H, W)) -> Path:
    rng = np.random.default_rng(0)
    path = folder / name
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _sparse_metres(size: tuple[int, int] = (H, W)) -> np.ndarray:
    rng = np.random.default_rng(1)
    depth = rng.uniform(1.0, 4.0, size).astype(np.float32)
    depth[rng.random(size) < 0.7] = 0.0
    return depth


def _npy(folder: Path, array: np.ndarray, name: str = "depth.npy") -> Path:
    np.save(folder / name, array)
    return folder / name


def _png16(folder: Path, array: np.ndarray, name: str = "depth.png") -> Path:
    Image.fromarray(array.astype(np.uint16)).save(folder / name)
    return folder / name


def _text(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / name


def _nyu(folder: Path) -> tuple[Path, Path]:
    if not (NYU / "00000_colors.png").exists():
        pytest.skip(f"NYUv2 frames not found in {NYU}")
    rgb = shutil.copy(NYU / "00000_colors.png", folder / "00000_colors.png")
    depth = shutil.copy(NYU / "00000_depth.png", folder / "00000_depth.png")
    return Path(rgb), Path(depth)


def _mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and `mount`")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


def _unmount(folder: Path) -> None:
    if os.path.ismount(folder):
        subprocess.run(["umount", str(folder)], check=False)


# ----------------------------------------------------------------------------------------------
# the catalogue
# ----------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One catalogue row.

    Attributes:
        id: short name (the pytest id).
        setup: builds the inputs in the given folder and returns the CLI arguments after
            ``depthlab complete``; may return ``(args, api)`` where ``api`` is a callable
            running the same input through the Python API.
        pattern: regex the one-line error (or, for ``expect="ok"``, stdout + stderr) must match.
        expect: ``"error"`` (exit status 2) or ``"ok"`` (exit status 0).
        check: for ``"ok"`` rows, ``check(folder)`` asserts on the written outputs.
        api_error: exception type(s) the API call must raise.
        forbid: regex that must NOT appear in the message (e.g. a misleading hint).
        mounts: sub-folders that are tmpfs mounts ``(name, options)``, made before ``setup``.
        api: whether ``setup`` also returns an API call (False: a CLI-only case, e.g. a flag).
        api_pattern: regex for the API's message when it differs from the CLI's (no flag names).
    """

    id: str
    setup: Callable[[Path], Any]
    pattern: str
    expect: str = "error"
    check: Callable[[Path], None] | None = None
    api_error: Any = ValueError
    forbid: str | None = None
    mounts: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    api: bool = True
    api_pattern: str | None = None


def _basic(folder: Path, depth_path: Path, *extra: str) -> list[str]:
    """CLI arguments for rgb.png + ``depth_path``; ``--method nearest`` (no torch import, fast)
    unless ``extra`` names a method."""
    method = [] if "--method" in extra else ["--method", "nearest"]
    return [str(_rgb(folder)), "--depth", str(depth_path), "--out", str(folder / "out"), *method, *extra]


def _float_npy_with_scale(f: Path):
    depth = _npy(f, _sparse_metres())
    return _basic(f, depth, "--depth-scale", "1000"), lambda: io.read_depth(depth, scale=1000)


def _integer_npy_without_scale(f: Path):
    depth = _npy(f, (_sparse_metres() * 1000).astype(np.uint16))
    return _basic(f, depth), lambda: io.read_depth(depth)


def _png_without_scale(f: Path):
    depth = _png16(f, _sparse_metres() * 1000)
    return _basic(f, depth), lambda: io.read_depth(depth)


def _float_tiff_with_scale(f: Path):
    depth = io.write_depth_tiff(f / "depth.tif", _sparse_metres())
    return _basic(f, depth, "--depth-scale", "256"), lambda: io.read_depth(depth, scale=256)


def _png16_hint(f: Path):
    depth = _npy(f, _sparse_metres())
    return _basic(f, depth, "--format", "npy,png16")


def _negative(f: Path):
    array = _sparse_metres()
    array[0, :5] = -1.0
    depth = _npy(f, array)
    return _basic(f, depth), lambda: depthlab.complete(_read_rgb(f), array, method="guided")


def _all_negative(f: Path):
    array = -np.abs(_sparse_metres()) - 1.0
    depth = _npy(f, array)
    return _basic(f, depth), lambda: depthlab.complete(_read_rgb(f), array, method="guided")


def _all_zero(f: Path):
    depth = _npy(f, np.zeros((H, W), np.float32))
    return _basic(f, depth), lambda: depthlab.complete(_read_rgb(f), np.zeros((H, W)), method="guided")


def _all_nan(f: Path):
    array = np.full((H, W), np.nan, np.float32)
    depth = _npy(f, array)
    return _basic(f, depth), lambda: depthlab.complete(_read_rgb(f), array, method="guided")


def _everything_known(f: Path):
    array = np.random.default_rng(2).uniform(1, 3, (H, W)).astype(np.float32)
    depth = _npy(f, array)
    return _basic(f, depth), lambda: depthlab.complete(_read_rgb(f), array, method="guided")


def _everything_known_nyu(f: Path):
    rgb, depth = _nyu(f)
    args = [
        str(rgb),
        "--depth",
        str(depth),
        "--depth-scale",
        "1000",
        "--out",
        str(f / "out"),
        "--method",
        "linear",
    ]
    return args, lambda: depthlab.complete(
        io.read_image(rgb), io.read_depth(depth, scale=1000), method="linear"
    )


def _mask_over_zero_everywhere(f: Path):
    depth = _npy(f, np.zeros((H, W), np.float32))
    mask = io.write_mask(f / "mask.png", np.ones((H, W), bool))
    args = _basic(f, depth, "--mask", str(mask))
    return args, lambda: depthlab.complete(_read_rgb(f), np.zeros((H, W)), np.ones((H, W), bool), "guided")


def _gradient_mask(f: Path):
    depth = _npy(f, _sparse_metres())
    gradient = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    Image.fromarray(gradient).save(f / "mask.png")
    return _basic(f, depth, "--mask", str(f / "mask.png")), lambda: io.read_mask(f / "mask.png")


def _mask_npy_not_binary(f: Path):
    depth = _npy(f, _sparse_metres())
    mask = _npy(f, np.full((H, W), 2, np.int64), "mask.npy")
    return _basic(f, depth, "--mask", str(mask)), lambda: io.read_mask(mask)


def _mask_wrong_size(f: Path):
    depth = _npy(f, _sparse_metres())
    mask = io.write_mask(f / "mask.png", np.ones((H + 1, W), bool))
    return _basic(f, depth, "--mask", str(mask)), lambda: io.read_mask(mask, shape=(H, W))


def _points(f: Path, text: str, *extra: str):
    rgb = _rgb(f)
    points = _text(f, "points.csv", text)
    args = [str(rgb), "--points", str(points), "--out", str(f / "out"), "--method", "nearest", *extra]
    return args, lambda: io.read_points(points, (H, W), scale=None if not extra else float(extra[-1]))


def _xyz_header(f: Path):
    return _points(f, "x,y,z\n1,2,3\n4,5,6\n")


def _unknown_header(f: Path):
    return _points(f, "a,b,c\n1,2,3\n4,5,6\n")


def _header_two_depths(f: Path):
    return _points(f, "u,v,depth,z\n1,2,3,4\n")


def _decimal_points_with_scale(f: Path):
    return _points(f, "u,v,depth\n1,2,3.25\n4,5,2.5\n", "--depth-scale", "1000")


def _point_outside(f: Path):
    return _points(f, "u,v,depth\n1,2,3\n40,5,2\n")


def _points_and_depth(f: Path):
    depth = _npy(f, _sparse_metres())
    points = _text(f, "points.csv", "1,2,3\n")
    return _basic(f, depth, "--points", str(points))


def _device(name: str) -> Callable[[Path], list[str]]:
    def setup(f: Path) -> list[str]:
        return _basic(f, _npy(f, _sparse_metres()), "--device", name)

    return setup


def _flag(*extra: str) -> Callable[[Path], list[str]]:
    def setup(f: Path) -> list[str]:
        return _basic(f, _npy(f, _sparse_metres()), *extra)

    return setup


def _option(flag: str, value: str, **api_option: Any) -> Callable[[Path], Any]:
    """A DepthLab option out of range; ``auto`` falls back to guided here, and it is still an error."""

    def setup(f: Path):
        array = _sparse_metres()
        args = _basic(f, _npy(f, array), "--method", "auto", flag, value)
        return args, lambda: depthlab.complete(_read_rgb(f), array, method="auto", **api_option)

    return setup


def _keep_bad(f: Path):
    array = _sparse_metres()
    args = _basic(f, _npy(f, array), "--keep", "pionts:500")
    return args, lambda: masks.sparsify(array, "pionts:500", 0)


def _out_below_file(f: Path):
    depth = _npy(f, _sparse_metres())
    _text(f, "notes.txt", "a regular file\n")
    target = f / "notes.txt" / "out"
    args = [str(_rgb(f)), "--depth", str(depth), "--out", str(target), "--method", "nearest"]
    return args, lambda: io.write_depth_npy(target / "a.npy", _sparse_metres())


def _out_read_only(f: Path):
    depth = _npy(f, _sparse_metres())
    target = f / "ro" / "out"
    args = [str(_rgb(f)), "--depth", str(depth), "--out", str(target), "--method", "nearest"]
    return args, lambda: io.write_depth_npy(target / "a.npy", _sparse_metres())


def _disk_full(f: Path):
    rgb = _rgb(f, size=(200, 300))
    depth = np.random.default_rng(3).uniform(1, 4, (200, 300)).astype(np.float32)
    depth[np.random.default_rng(4).random((200, 300)) < 0.5] = 0
    depth_path = _npy(f, depth)
    target = f / "tiny" / "out"
    args = [
        str(rgb),
        "--depth",
        str(depth_path),
        "--out",
        str(target),
        "--format",
        "npy,panel",
        "--method",
        "nearest",
    ]
    return args, lambda: io.write_depth_npy(target / "a.npy", np.ones((200, 300), np.float32))


def _missing_image(f: Path):
    return [str(f / "nothere.png"), "--out", str(f / "out")], lambda: io.read_image(f / "nothere.png")


def _corrupt_image(f: Path):
    path = _text(f, "rgb.png", "not a png")
    depth = _npy(f, _sparse_metres())
    args = [str(path), "--depth", str(depth), "--out", str(f / "out"), "--method", "nearest"]
    return args, lambda: io.read_image(path)


def _missing_depth(f: Path):
    return _basic(f, f / "none.npy"), lambda: io.read_depth(f / "none.npy")


def _colour_depth(f: Path):
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(f / "depth.png")
    args = _basic(f, f / "depth.png", "--depth-scale", "1000")
    return args, lambda: io.read_depth(f / "depth.png", scale=1000)


def _size_mismatch(f: Path):
    array = _sparse_metres((H, W + 2))
    depth = _npy(f, array)
    return _basic(f, depth), lambda: depthlab.complete(_read_rgb(f), array, method="guided")


def _npz_two_arrays(f: Path):
    np.savez(f / "depth.npz", a=_sparse_metres(), b=_sparse_metres())
    return _basic(f, f / "depth.npz"), lambda: io.read_depth(f / "depth.npz")


def _manifest_without_image_column(f: Path):
    manifest = _text(f, "list.csv", "rgb,depth\na.png,b.npy\n")
    return ["--manifest", str(manifest), "--out", str(f / "out")], lambda: io.read_manifest(manifest)


def _read_rgb(f: Path) -> np.ndarray:
    return io.read_image(f / "rgb.png")


# behaviour rows ------------------------------------------------------------------------------
def _valid_region_mask(convention: str) -> Callable[[Path], list[str]]:
    """A 'valid region' mask over sparse depth: the zeros under it must become unknown."""

    def setup(f: Path) -> list[str]:
        depth = _npy(f, _sparse_metres())
        region = np.zeros((H, W), bool)
        region[:, : W // 2] = True
        stored = region if convention == "known" else ~region
        mask = io.write_mask(f / "mask.png", stored)
        return _basic(f, depth, "--mask", str(mask), "--mask-convention", convention)

    return setup


def _check_no_zero_depth(f: Path) -> None:
    out = np.load(f / "out" / "rgb_depth.npy")
    given = np.load(f / "depth.npy")
    region = np.zeros((H, W), bool)
    region[:, : W // 2] = True
    assert np.all(out > 0.9), "a zero under the known mask leaked into the output"
    measured = region & (given > 0)
    assert np.array_equal(out[measured], given[measured])


def _vu_header(f: Path) -> list[str]:
    _rgb(f, size=(8, 8))
    _text(f, "points.csv", "v,u,depth\n1,6,2.5\n5,0,3.5\n")
    return [
        str(f / "rgb.png"),
        "--points",
        str(f / "points.csv"),
        "--out",
        str(f / "out"),
        "--method",
        "nearest",
    ]


def _check_vu(f: Path) -> None:
    points = io.read_points(f / "points.csv", (8, 8))
    assert points[1, 6] == 2.5 and points[5, 0] == 3.5 and np.count_nonzero(points) == 2
    out = np.load(f / "out" / "rgb_depth.npy")
    assert out[1, 6] == 2.5 and out[5, 0] == 3.5


def _nyu_keep(f: Path) -> list[str]:
    rgb, depth = _nyu(f)
    return [
        str(rgb),
        "--depth",
        str(depth),
        "--depth-scale",
        "1000",
        "--keep",
        "points:500",
        "--seed",
        "7",
        "--method",
        "linear",
        "--out",
        str(f / "out"),
        "--format",
        "npy,panel",
    ]


def _check_nyu_keep(f: Path) -> None:
    out = np.load(f / "out" / "00000_colors_depth.npy")
    gt = io.read_depth(f / "00000_depth.png", scale=1000)
    assert out.shape == gt.shape and np.all(out > 0)
    assert np.count_nonzero(out == gt) >= 500  # the kept points are exact
    assert 0.01 < float(np.mean(np.abs(out - gt))) < 0.5  # a completion, not a copy of the dense map
    assert (f / "out" / "00000_colors_panel.png").exists()


CASES = [
    # item 2: --depth-scale only for integer data; the png16 hint
    Case("float-npy-with-scale", _float_npy_with_scale, r"depth\.npy.*float.*--depth-scale.*integer"),
    Case("float-tiff-with-scale", _float_tiff_with_scale, r"depth\.tif.*float.*integer"),
    Case("integer-npy-without-scale", _integer_npy_without_scale, r"depth\.npy.*integers.*--depth-scale"),
    Case("png16-depth-without-scale", _png_without_scale, r"depth\.png.*integers.*--depth-scale"),
    Case(
        "png16-output-hint", _png16_hint, r"--format png16 needs --out-scale", forbid="depth-scale", api=False
    ),
    # item 3 and quiet acceptance: what counts as known
    Case("negative-depth", _negative, r"5 negative values.*min -1"),
    Case("all-negative-depth", _all_negative, r"negative values \(every value\)"),
    Case("all-zero-depth", _all_zero, r"no known pixel"),
    Case("all-nan-depth", _all_nan, r"no known pixel.*non-finite"),
    Case("mask-over-zero-depth-only", _mask_over_zero_everywhere, r"marks 768 pixels known.*depth is 0"),
    Case("everything-known", _everything_known, r"every pixel as known.*--keep"),
    Case("everything-known-nyu", _everything_known_nyu, r"every pixel as known \(307200"),
    Case("gradient-mask-image", _gradient_mask, r"mask\.png is not binary: \d+ of 768 pixels"),
    Case("mask-npy-value-2", _mask_npy_not_binary, r"binary.*768 values"),
    Case("mask-wrong-size", _mask_wrong_size, r"mask.*size \(25, 32\)"),
    # item 6: CSV headers
    Case("points-header-xyz", _xyz_header, r"points\.csv.*'x,y,z'.*u,v,depth"),
    Case("points-header-unknown", _unknown_header, r"points\.csv.*header 'a,b,c'"),
    Case("points-header-two-depths", _header_two_depths, r"points\.csv.*exactly one"),
    Case("points-decimals-with-scale", _decimal_points_with_scale, r"points\.csv.*decimals.*--depth-scale"),
    Case("point-outside-image", _point_outside, r"points\.csv: 1 points fall outside"),
    Case("points-and-depth", _points_and_depth, r"--depth .* or --points .*not both", api=False),
    # item 8: environment
    Case("device-gpu0", _device("gpu0"), r"--device.*invalid device 'gpu0'", api=False),
    Case("device-cuda-on-cpu-build", _device("cuda"), r"--device 'cuda'.*(no CUDA|no GPU)", api=False),
    Case("device-cuda-index", _device("cuda:7"), r"--device 'cuda:7'", api=False),
    Case(
        "out-below-a-file", _out_below_file, r"notes\.txt.*(Not a directory|File exists)", api_error=OSError
    ),
    Case(
        "out-read-only",
        _out_read_only,
        r"ro/out.*Read-only file system",
        api_error=OSError,
        mounts=(("ro", "ro,size=64k"),),
    ),
    Case(
        "disk-full",
        _disk_full,
        r"tiny/out/\.?rgb_depth\.npy.*(No space left|disk is .*full)",
        api_error=OSError,
        mounts=(("tiny", "size=64k"),),
    ),
    # options invalid for every method (auto falls back to guided here)
    Case(
        "steps-0",
        _option("--steps", "0", num_inference_steps=0),
        r"--steps: must be >= 1; got 0",
        api_pattern=r"`num_inference_steps` must be >= 1; got 0",
    ),
    Case(
        "strength-1.5",
        _option("--strength", "1.5", strength=1.5),
        r"--strength: must be > 0 and <= 1; got 1.5",
        api_pattern=r"`strength` must be in \(0, 1\]; got 1.5",
    ),
    Case("ensemble-0", _flag("--ensemble", "0"), r"--ensemble: must be >= 1", api=False),
    Case("guidance-0.5", _flag("--guidance-scale", "0.5"), r"--guidance-scale: must be >= 1", api=False),
    Case("depth-scale-0", _flag("--depth-scale", "0"), r"--depth-scale: must be > 0", api=False),
    Case(
        "out-scale-negative",
        _flag("--out-scale", "-5", "--format", "png16"),
        r"--out-scale: must be > 0",
        api=False,
    ),
    Case(
        "keep-bad-protocol",
        _keep_bad,
        r"--keep.*unknown mask protocol 'pionts:500'",
        api_pattern=r"unknown mask protocol 'pionts:500'",
    ),
    Case("keep-bad-number", _flag("--keep", "points:many"), r"--keep.*bad parameter 'many'", api=False),
    Case("fill-mode-bad", _flag("--fill-mode", "slow"), r"--fill-mode: invalid choice", api=False),
    Case("vmax-below-vmin", _flag("--vmin", "3", "--vmax", "1"), r"--vmax \(1.0\) must be larger", api=False),
    Case("format-unknown", _flag("--format", "npy,jpg"), r"--format: unknown format\(s\) jpg", api=False),
    # files
    Case("missing-image", _missing_image, r"nothere\.png", api_error=FileNotFoundError),
    Case("corrupt-image", _corrupt_image, r"cannot read image .*rgb\.png"),
    Case("missing-depth", _missing_depth, r"none\.npy", api_error=FileNotFoundError),
    Case("colour-picture-as-depth", _colour_depth, r"depth\.png.*single-channel"),
    Case("depth-size-mismatch", _size_mismatch, r"(size|shape).*pixel-aligned"),
    Case("npz-two-arrays", _npz_two_arrays, r"depth\.npz holds several arrays.*--depth-key"),
    Case("manifest-no-image-column", _manifest_without_image_column, r"list\.csv.*'image' column"),
    # documented behaviour (exit 0)
    Case(
        "valid-region-mask-known",
        _valid_region_mask("known"),
        r"warning: .*marks \d+ pixels known whose depth is 0",
        expect="ok",
        check=_check_no_zero_depth,
    ),
    Case(
        "valid-region-mask-fill",
        _valid_region_mask("fill"),
        r"warning: .*marks \d+ pixels known whose depth is 0",
        expect="ok",
        check=_check_no_zero_depth,
    ),
    Case("points-header-v-u-depth", _vu_header, r"known depth 2.50-3.50", expect="ok", check=_check_vu),
    Case(
        "auto-ignores-depthlab-flags",
        _flag("--method", "auto", "--steps", "4", "--blend", "--quiet"),
        r"warning: --steps, --blend only apply to DepthLab and are ignored: method guided",
        expect="ok",
    ),
    Case(
        "nyu-keep-points-500",
        _nyu_keep,
        r"known depth \d\.\d\d-\d\.\d\d m after /1000 \(500 of 307200",
        expect="ok",
        check=_check_nyu_keep,
    ),
]


# ----------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------
def _tree_hashes(root: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            hashes[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["DEPTHLAB_CHECKPOINTS"] = str(root / "no-weights")  # `auto` must not find real weights
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_HOME"] = str(root / "no-hf-home")
    env["OMP_NUM_THREADS"] = "1"
    env.pop("DEPTHLAB_TRACEBACK", None)
    return env


@dataclass
class Prepared:
    folder: Path
    args: list[str]
    api: Callable[[], Any] | None
    before: dict[str, str]
    skip: str | None = None
    result: subprocess.CompletedProcess | None = None


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Prepared]:
    """Build every case's inputs, then run all CLI invocations in parallel (once per module)."""
    root = tmp_path_factory.mktemp("catalogue")
    prepared: dict[str, Prepared] = {}
    mounted: list[Path] = []
    for case in CASES:
        folder = root / case.id
        folder.mkdir()
        try:
            for name, options in case.mounts:
                _mount_tmpfs(folder / name, options)
                mounted.append(folder / name)
            made = case.setup(folder)
        except pytest.skip.Exception as skip:
            prepared[case.id] = Prepared(folder, [], None, {}, skip=str(skip))
            continue
        args, api = made if isinstance(made, tuple) else (made, None)
        prepared[case.id] = Prepared(folder, args, api, _tree_hashes(folder))
    env = _environment(root)

    def run(item: Prepared) -> None:
        item.result = subprocess.run(
            [sys.executable, "-m", "depthlab.cli", "complete", *item.args],
            cwd=item.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(run, [p for p in prepared.values() if p.skip is None]))
        yield prepared
    finally:
        for folder in mounted:
            _unmount(folder)


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [name for name, digest in before.items() if after.get(name) != digest]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli(case: Case, runs: dict[str, Prepared]) -> None:
    item = runs[case.id]
    if item.skip:
        pytest.skip(item.skip)
    result = item.result
    assert result is not None
    stderr = result.stderr
    assert "Traceback" not in stderr and "Traceback" not in result.stdout, stderr
    assert not _changed(item.before, _tree_hashes(item.folder)), "an existing file changed"
    if case.expect == "error":
        assert result.returncode == 2, (result.returncode, result.stdout, stderr)
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, stderr
        assert stderr.strip() == errors[0] or all(
            "warning:" in line for line in stderr.splitlines() if line not in errors
        ), stderr
        assert errors[0].startswith("depthlab complete: error: "), errors[0]
        assert re.search(case.pattern, errors[0]), errors[0]
        if case.forbid:
            assert not re.search(case.forbid, errors[0]), errors[0]
    else:
        assert result.returncode == 0, (result.stdout, stderr)
        assert re.search(case.pattern, result.stdout + stderr), result.stdout + stderr
        if case.check is not None:
            case.check(item.folder)


API_CASES = [c for c in CASES if c.expect == "error" and c.api]


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api(case: Case, runs: dict[str, Prepared]) -> None:
    item = runs[case.id]
    if item.skip:
        pytest.skip(item.skip)
    assert item.api is not None, "the row says it has an API call but its setup returned none"
    before = _tree_hashes(item.folder)
    with pytest.raises(case.api_error) as raised:
        item.api()
    message = str(raised.value)
    assert "\n" not in message.strip(), message
    # the same words as the CLI, minus what only the CLI adds (flag names of the CLI's own checks)
    pattern = case.api_pattern or case.pattern.replace("--depth-scale", "(--depth-scale|scale)")
    assert re.search(pattern, message) or (
        isinstance(raised.value, OSError) and item.folder.name in str(raised.value.filename or message)
    ), message
    assert not _changed(before, _tree_hashes(item.folder)), "an existing file changed"
