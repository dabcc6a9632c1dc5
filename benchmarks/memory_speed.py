"""Peak memory and time per image of ``DepthLabPipeline`` on full-size checkpoints in the original layout.

Every configuration (processing resolution x dtype x ``low_memory``) runs in a fresh process that

1. loads ``DepthLabPipeline.from_pretrained(<root>, torch_dtype=..., low_memory=...)`` from the
   files written by ``benchmarks/make_full_checkpoints.py`` (same names, formats and sizes as the
   release: a full 3.9 GB CLIP file with its text tower, two 3.5 GB ``.pth`` U-Nets);
2. runs one call at the original's defaults: 50 steps x strength 0.8 (40 denoising steps) with
   blending, exact fills, on a ``0.75 R x R`` image whose depth is known outside an elliptic hole.

Reported: peak RSS during the load and during the call separately (Linux ``VmHWM``; the
high-water mark is reset between the two through ``/proc/self/clear_refs``, so the call's peak
includes the resident weights, not the load's transient), the RSS the process starts from, wall
and CPU seconds of each phase, and the pipeline's own stage timings. On CUDA: peak allocated
(``torch.cuda.max_memory_allocated``, reset between the phases) as well.

Run it ONLY under the heavy lock (full-size models need up to ~12 GB)::

    flock /tmp/depthlab-heavy.lock python benchmarks/make_full_checkpoints.py /tmp/depthlab-full
    flock /tmp/depthlab-heavy.lock python benchmarks/memory_speed.py /tmp/depthlab-full \\
        --resolutions 256 768 --dtypes fp32 bf16 --low-memory both --out benchmarks/results/memory_speed_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

# The original release on the same files and machine (issue 13: 256 px, fp32, 2 threads, quiet).
ORIGINAL = {(256, "fp32"): {"call_s": 98.3, "peak_gb": 11.6}}
TARGETS = {"peak": 0.90, "peak_low_memory": 0.65, "speed_256": 2.2, "speed_768": 2.5}


def status_bytes(key: str) -> int:
    """``VmRSS`` / ``VmHWM`` of this process in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scene(resolution: int):
    """RGB ``[0.75 R, R, 3]`` uint8, depth ``[0.75 R, R]`` (m), known mask (60 % known, one hole)."""
    import numpy as np

    height, width = resolution * 3 // 4 // 8 * 8, resolution
    yy, xx = np.mgrid[:height, :width]
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    depth = (2.0 + np.sin(xx / 40.0) + yy / height).astype(np.float32)
    known = ((yy - height / 2) ** 2 / (height / 3) ** 2 + (xx - width / 2) ** 2 / (width / 3) ** 2) > 1
    return rgb, depth, known


def measure(root: str, resolution: int, dtype: str, low_memory: bool, device: str, steps: int) -> dict:
    """One configuration (inside a fresh process)."""
    import torch

    from depthlab import DepthLabPipeline

    cuda = device.startswith("cuda")
    result: dict = {"resolution": resolution, "dtype": dtype, "low_memory": low_memory, "device": device}
    result["rss_start_gb"] = status_bytes("VmRSS") / 2**30
    start, cpu = time.perf_counter(), cpu_seconds()
    pipe = DepthLabPipeline.from_pretrained(root, torch_dtype=dtype, device=device, low_memory=low_memory)
    result["load_s"], result["load_cpu_s"] = time.perf_counter() - start, cpu_seconds() - cpu
    result["peak_load_gb"] = status_bytes("VmHWM") / 2**30
    result["rss_after_load_gb"] = status_bytes("VmRSS") / 2**30
    if cuda:
        result["cuda_peak_load_gb"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    result["peak_reset"] = reset_peak()
    rgb, depth, known = scene(resolution)
    result["size"] = list(depth.shape)
    start, cpu = time.perf_counter(), cpu_seconds()
    out = pipe(
        rgb,
        depth,
        known,
        num_inference_steps=steps,
        strength=0.8,
        blend=True,
        processing_resolution=resolution,
        generator=torch.Generator().manual_seed(0),
        show_progress_bar=False,
    )
    if cuda:
        torch.cuda.synchronize()
    result["call_s"], result["call_cpu_s"] = time.perf_counter() - start, cpu_seconds() - cpu
    result["peak_call_gb"] = status_bytes("VmHWM") / 2**30
    if cuda:
        result["cuda_peak_call_gb"] = torch.cuda.max_memory_allocated() / 2**30
    result["peak_gb"] = max(result["peak_load_gb"], result["peak_call_gb"])
    result["stage_s"] = {k: round(v, 3) for k, v in out.info["seconds"].items()}
    result["finite"] = bool(torch.isfinite(torch.from_numpy(out.depth)).all())
    result["threads"] = torch.get_num_threads()
    return result


def row(r: dict) -> str:
    if "error" in r:
        return f"| {r['resolution']} | {r['dtype']} | {'yes' if r['low_memory'] else 'no'} | error: {r['error']} |||||||"
    original = ORIGINAL.get((r["resolution"], r["dtype"]))
    vs_time = f"{original['call_s'] / r['call_s']:.2f}x" if original else "n/a"
    vs_peak = f"{r['peak_gb'] / original['peak_gb']:.2f}x" if original else "n/a"
    return (
        f"| {r['resolution']} ({r['size'][0]}x{r['size'][1]}) | {r['dtype']} | {'yes' if r['low_memory'] else 'no'} "
        f"| {r['load_s']:.1f} | {r['peak_load_gb']:.2f} | {r['call_s']:.1f} ({r['call_cpu_s']:.0f} CPU) "
        f"| {r['peak_call_gb']:.2f} | **{r['peak_gb']:.2f}** | {vs_peak} | {vs_time} "
        f"| {r['load_avg'][0]:.1f} / {r['load_avg_after'][0]:.1f} |"
    )


def write_report(results: list[dict], out: Path, command: str) -> None:
    lines = [
        "# Peak memory and time per image, full-size checkpoints in the original layout",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, 2 torch threads, "
        "no GPU. Original's defaults: 50 steps x strength 0.8 (40 denoising steps), blending, exact fills, "
        "guidance 1. Files: `benchmarks/make_full_checkpoints.py` (random weights, release sizes and formats; "
        "CLIP file with its text tower).",
        "",
        "| res (image) | dtype | low_memory | load (s) | peak RSS load (GB) | call (s) | peak RSS call (GB) "
        "| peak RSS load+call (GB) | vs original peak | original time / ours | load avg before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[row(r) for r in results],
        "",
        "- GB = 2^30 bytes. Peak RSS: Linux `VmHWM` of the measuring process, reset between load and "
        "call (`/proc/self/clear_refs`), so *call* is the call's own high-water mark including the "
        "resident weights; *load+call* is the larger of the two (what the process needs).",
        "- The original code is not on this machine (`../shared` holds its spec and golden outputs, "
        "not its code), so it could not be timed back to back: its numbers are the ones measured in "
        "issue 13 on the same kind of files (256 px, fp32, 2 threads, quiet machine): 98.3 s per call, "
        "11.6 GB peak. No original measurement exists for bf16 or 768 px (n/a).",
        "- Timings were taken while other jobs shared the 2 cores (load average in the last column): "
        "wall seconds are pessimistic; CPU seconds are given for the call. Memory is not affected.",
        f"- Targets (issue 13): peak load+256-px call <= {TARGETS['peak']}x the original "
        f"(<= {TARGETS['peak_low_memory']}x with low_memory).",
        "",
        "Stage seconds of each call (pipeline `info['seconds']`):",
        "",
    ]
    for r in results:
        if "stage_s" in r:
            lines.append(f"- {r['resolution']} {r['dtype']} low_memory={r['low_memory']}: {r['stage_s']}")
    lines += ["", f"Raw results: `{out.with_suffix('.json').name}`.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder written by benchmarks/make_full_checkpoints.py")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 768])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--low-memory", choices=("no", "yes", "both"), default="both")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/memory_speed_cpu"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: "res:dtype:low_memory"
    args = parser.parse_args()
    if args.one:
        resolution, dtype, low = args.one.split(":")
        print(
            "RESULT "
            + json.dumps(measure(args.root, int(resolution), dtype, low == "1", args.device, args.steps))
        )
        return
    lows = {"no": [False], "yes": [True], "both": [False, True]}[args.low_memory]
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    results = []
    previous = (
        json.loads(args.out.with_suffix(".json").read_text())["results"]
        if args.out.with_suffix(".json").is_file()
        else []
    )
    for resolution in args.resolutions:
        for dtype in args.dtypes:
            for low in lows:
                one = f"{resolution}:{dtype}:{int(low)}"
                print(f"measuring {one} ...", flush=True)
                env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
                load_before = os.getloadavg()
                cmd = [
                    sys.executable,
                    __file__,
                    args.root,
                    "--one",
                    one,
                    "--device",
                    args.device,
                    "--steps",
                    str(args.steps),
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    tail = (
                        proc.stderr.strip().splitlines()[-1]
                        if proc.stderr.strip()
                        else f"exit {proc.returncode}"
                    )
                    r = {"resolution": resolution, "dtype": dtype, "low_memory": low, "error": tail}
                else:
                    r = json.loads(lines[-1][len("RESULT ") :])
                r["load_avg"], r["load_avg_after"] = list(load_before), list(os.getloadavg())
                print(json.dumps(r), flush=True)
                results = [
                    x
                    for x in previous
                    if (x["resolution"], x["dtype"], x["low_memory"]) != (resolution, dtype, low)
                ]
                previous = results + [r]
                results = sorted(
                    previous, key=lambda x: (x["resolution"], x["dtype"] != "fp32", x["low_memory"])
                )
                write_report(results, args.out, command)  # after every run: partial results survive


if __name__ == "__main__":
    main()
