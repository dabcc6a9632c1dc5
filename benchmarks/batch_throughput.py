"""Batch throughput: items/s of each engine against a plain loop, classical and tiny DepthLab pipeline.

Work: ``--items`` NYUv2 test frames from ../shared (resized to ``--size``, depth thinned to 5 %
known, uint16 mm), written to a temporary folder. Methods: ``guided`` (classical) and the tiny
random-weight DepthLab pipeline (``DepthLabPipeline.build_tiny``, ``--steps`` DDIM steps at
``--resolution`` px). For each method:

* ``loop``: a plain Python loop (read inputs, ``depthlab.complete``, ``np.save``), the floor;
* ``local``: :func:`depthlab.batch.run_batch` in this process (manifest, atomic writes, plan);
* ``torchrun x2``: ``torchrun --nproc_per_node 2 -m depthlab.batch`` (2 CPU processes, gloo),
  timed as a subprocess; its start-up (interpreters, imports, pipeline load, rendezvous) is
  measured with a second run where every item is already done, and reported apart;
* ``ray x1`` / ``ray x2``: :func:`depthlab.batch.ray_engine.run_batch_ray` on a local Ray
  instance (``num_cpus=2``, started once, not timed) with 1 and 2 workers (actor start-up and
  the pipeline load in each actor are inside the timing, as a user sees it).

Per-item overhead = (engine seconds - loop seconds) / items. Wall time and this process's CPU
time (plus its children's for subprocesses) are reported. The machine has 2 cores and is shared
with other jobs: absolute numbers are noisy; ratios are measured back to back.

Usage: ``flock /tmp/depthlab-heavy.lock python benchmarks/batch_throughput.py [--items 12]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NYU = ROOT / ".." / "shared" / "datasets" / "stepi2299__eadir2" / "data" / "nyu_samples" / "nyu2_test"


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def write_frames(folder: Path, count: int, size: tuple[int, int]) -> int:
    stems = sorted(p.name[: -len("_colors.png")] for p in NYU.glob("*_colors.png"))[:count]
    if not stems:
        sys.exit(f"no NYUv2 frames at {NYU}")
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for stem in stems:
        rgb = Image.open(NYU / f"{stem}_colors.png").convert("RGB").resize(size[::-1], Image.BILINEAR)
        depth = np.asarray(Image.open(NYU / f"{stem}_depth.png").resize(size[::-1], Image.NEAREST))
        rgb.save(folder / f"{stem}_colors.png")
        Image.fromarray(np.where(rng.random(depth.shape) < 0.05, depth, 0).astype(np.uint16)).save(
            folder / f"{stem}_depth.png"
        )
    return len(stems)


def timed(function) -> dict[str, float]:
    cpu, wall = _cpu(), time.perf_counter()
    function()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu() - cpu}


def cli_args(method: str, options, checkpoint: Path | None) -> list[str]:
    args = ["--depth-scale", "1000", "--method", method, "--format", "npy", "--quiet"]
    if checkpoint is not None:
        mo = options.method_options
        args += ["--checkpoints", str(checkpoint), "--device", "cpu", "--steps", str(mo["num_inference_steps"]),
                 "--processing-resolution", str(mo["processing_resolution"]), "--strength", "1.0"]  # fmt: skip
    return args


def bench_method(label, method, options, data, work, n, checkpoint, ray_module) -> dict[str, dict]:
    from depthlab import complete
    from depthlab.batch import RayOptions, WorkListSpec, collect_items, load_method, prepare_item, run_batch
    from depthlab.batch.ray_engine import run_batch_ray

    results: dict[str, dict] = {}
    items = collect_items(WorkListSpec(images=[str(data)], out=str(work / f"{label}_loop")))

    # 1. plain loop (method loaded once, outside the timing, like every engine's own load)
    loaded = load_method(method, options)

    def loop() -> None:
        import torch

        for item in items:
            prepared = prepare_item(item, options)
            extra = {}
            if loaded.pipeline is not None:
                extra = {
                    **options.method_options,
                    "show_progress_bar": False,
                    "generator": torch.Generator().manual_seed(0),
                }
                result = complete(prepared.rgb, prepared.depth, prepared.known, method="depthlab",
                                  pipeline=loaded.pipeline, **extra)  # fmt: skip
            else:
                result = complete(prepared.rgb, prepared.depth, prepared.known, method=loaded.prepared)
            item.out_prefix.parent.mkdir(parents=True, exist_ok=True)
            np.save(f"{item.out_prefix}_depth.npy", np.asarray(result.depth, np.float32))

    results["loop"] = timed(loop)

    # 2. run_batch in this process
    out = work / f"{label}_local"
    local_items = collect_items(WorkListSpec(images=[str(data)], out=str(out)))
    results["local"] = timed(lambda: run_batch(local_items, method, options, out, pipeline=loaded.pipeline))

    # 3. torchrun, 2 processes
    out = work / f"{label}_torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", "29733", "-m", "depthlab.batch", str(data),
               "--out", str(out), *cli_args(method, options, checkpoint)]  # fmt: skip
    results["torchrun x2"] = timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True))
    results["torchrun x2 start-up"] = timed(
        lambda: subprocess.run(command, env=env, check=True, capture_output=True)
    )

    # 4. Ray, 1 and 2 workers (the instance is already up)
    for workers in (1, 2):
        out = work / f"{label}_ray{workers}"
        ray_items = collect_items(WorkListSpec(images=[str(data)], out=str(out)))
        settings = RayOptions(workers=workers, cpus_per_worker=1.0 if workers == 1 else 0.75)
        results[f"ray x{workers}"] = timed(
            lambda i=ray_items, o=out, s=settings: run_batch_ray(i, method, options, o, ray=s)
        )

    # identical outputs across engines (loop aside: its seed is not the per-item one)
    reference = {p.name: p.read_bytes() for p in (work / f"{label}_local").glob("*.npy")}
    for name in ("torchrun", "ray1", "ray2"):
        other = {p.name: p.read_bytes() for p in (work / f"{label}_{name}").glob("*.npy")}
        results.setdefault("identical_to_local", {})[name] = other == reference and len(other) == n
    for value in results.values():
        if "wall_s" in value:
            value["items_per_s"] = n / value["wall_s"]
    base = results["loop"]["wall_s"]
    for key in ("local", "torchrun x2", "ray x1", "ray x2"):
        results[key]["overhead_per_item_s"] = (results[key]["wall_s"] - base) / n
        results[key]["speed_vs_loop"] = base / results[key]["wall_s"]
    startup = results["torchrun x2 start-up"]["wall_s"]
    results["torchrun x2"]["items_per_s_without_startup"] = n / max(
        results["torchrun x2"]["wall_s"] - startup, 1e-9
    )
    del ray_module
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batch_throughput"))
    args = parser.parse_args()

    import ray
    import torch

    from depthlab.batch import BatchOptions
    from depthlab.pipeline import DepthLabPipeline

    torch.set_num_threads(1)  # one thread per worker everywhere: a fair, bit-identical comparison
    work = Path(tempfile.mkdtemp(prefix="depthlab-batch-bench-"))
    n = write_frames(work / "data", args.items, tuple(args.size))
    checkpoint = work / "tiny"
    DepthLabPipeline.build_tiny(seed=0).save_pretrained(checkpoint)
    os.environ["DEPTHLAB_CHECKPOINTS"] = str(work / "none")
    ray_start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}})  # fmt: skip
    ray_init_s = time.perf_counter() - ray_start
    try:
        classical = BatchOptions(depth_scale=1000, formats=("npy",), progress=False)
        tiny = BatchOptions(
            depth_scale=1000, formats=("npy",), progress=False, checkpoints=str(checkpoint), device="cpu",
            method_options={"num_inference_steps": args.steps, "processing_resolution": args.resolution,
                            "strength": 1.0},
        )  # fmt: skip
        results = {
            "guided": bench_method("guided", "guided", classical, work / "data", work, n, None, ray),
            "tiny depthlab": bench_method("tiny", "depthlab", tiny, work / "data", work, n, checkpoint, ray),
        }
    finally:
        ray.shutdown()
    report = {
        "items": n,
        "size_hw": list(args.size),
        "tiny_pipeline": {"steps": args.steps, "processing_resolution": args.resolution},
        "ray_init_s": ray_init_s,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "gpu": torch.cuda.is_available(),
            "note": "2 shared CPU cores, other jobs running; no GPU available",
        },  # fmt: skip
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Batch throughput ({n} NYUv2 frames at {args.size[0]}x{args.size[1]}, 2 shared CPU cores, no GPU)",
        "",
        "| method | engine | wall s | CPU s | items/s | vs loop | overhead s/item |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, rows in results.items():
        for engine, row in rows.items():
            if "wall_s" not in row:
                continue
            lines.append(
                f"| {method} | {engine} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['items_per_s']:.2f} | "
                f"{row.get('speed_vs_loop', 1.0):.2f} | {row.get('overhead_per_item_s', 0.0):+.3f} |"
            )
    lines += ["", f"Ray instance start (not in the rows): {ray_init_s:.1f} s. CPU s: this process and its "
              "subprocesses (Ray workers are not children: their CPU time is not counted).",
              f"Outputs identical to the local engine: {json.dumps({m: r['identical_to_local'] for m, r in results.items()})}"]  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
