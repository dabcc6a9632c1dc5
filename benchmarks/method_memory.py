"""Peak memory (bytes per pixel) and run time of every classical method, each call in a fresh process.

For each method, image size and mask protocol a new Python process builds the inputs (a NYUv2
frame from ``../shared`` resized to the size, or a synthetic scene when the data is absent),
then measures the peak resident set size of one method call above the resident size just before
it: the kernel's high-water mark is reset first (``/proc/self/clear_refs``), so the number is the
method's own peak (inputs excluded), not the process's history. Bytes per pixel = that increase /
(H x W). The table also lists the estimate :func:`depthlab.classical.memory_estimate` uses for the
memory guard, which must stay above every measurement.

Usage: ``python benchmarks/method_memory.py [--sizes 1152x864,2304x1728] [--methods guided,...]
[--guided-sizes 4000x3000] [--out benchmarks/results/method_memory.md]``. Run it under the heavy
lock (``flock /tmp/depthlab-heavy.lock ...``): the 12 MP guided call needs about 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NYU = ROOT / ".." / "shared" / "datasets" / "stepi2299__eadir2" / "data" / "nyu_samples" / "nyu2_test"
PROTOCOLS = ("points:500", "holes:0.3", "ratio:50")
METHODS = ("guided", "linear", "nearest", "lidar")

_WORKER = r"""
import json, resource, sys, time
import numpy as np, cv2
from depthlab import classical
from depthlab.masks import make_mask, protocol_rng

method, height, width, protocol, frame = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
if frame:
    rgb = cv2.cvtColor(cv2.imread(frame + "_colors.png"), cv2.COLOR_BGR2RGB)
    gt = cv2.imread(frame + "_depth.png", cv2.IMREAD_UNCHANGED).astype(np.float32) / 1000.0
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    gt = cv2.resize(gt, (width, height), interpolation=cv2.INTER_LINEAR)
else:
    rows, cols = np.mgrid[0:height, 0:width]
    gt = (2.0 + 3.0 * (cols > width // 2) + rows / height).astype(np.float32)
    rgb = np.stack([(cols * 7) % 256, (rows * 3) % 256, 80 * (cols > width // 2)], -1).astype(np.uint8)
known = make_mask(protocol, gt > 0, protocol_rng(0, "memory", protocol))
depth = np.where(known, gt, 0.0).astype(np.float32)
del gt

def status(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None

try:  # reset the high-water mark to the current resident size (Linux >= 4.0)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    source = "VmHWM after clear_refs"
except OSError:
    source = "ru_maxrss"
before = status("VmRSS")
start, cpu = time.perf_counter(), time.process_time()
if method == "guided":
    out = classical.guided(rgb, depth, known)
else:
    out = getattr(classical, method)(depth, known)
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
peak = status("VmHWM") if source != "ru_maxrss" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert np.array_equal(out[known], depth[known])
print(json.dumps({"peak_bytes": peak - before, "seconds": seconds, "cpu_seconds": cpu, "source": source}))
"""


def measure(method: str, height: int, width: int, protocol: str) -> dict:
    """Run one method call in a fresh process; return its peak memory increase and times."""
    frame = str(NYU / "00000") if (NYU / "00000_colors.png").is_file() else ""
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", _WORKER, method, str(height), str(width), protocol, frame],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{method} {height}x{width} {protocol} failed:\n{result.stderr}")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record.update(method=method, height=height, width=width, protocol=protocol, synthetic=not frame)
    record["bytes_per_pixel"] = record["peak_bytes"] / (height * width)
    return record


def _sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        width, height = item.lower().split("x")
        sizes.append((int(height), int(width)))
    return sizes


def main() -> None:
    from depthlab import classical

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1152x864,2304x1728", help="WxH list for every method")
    parser.add_argument("--guided-sizes", default="4000x3000", help="extra WxH list for guided")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "method_memory.md"))
    args = parser.parse_args()
    jobs = []
    for method in args.methods.split(","):
        sizes = _sizes(args.sizes) + (
            _sizes(args.guided_sizes) if method == "guided" and args.guided_sizes else []
        )
        jobs += [(method, h, w, protocol) for h, w in sizes for protocol in PROTOCOLS]
    records = []
    for index, job in enumerate(jobs, 1):
        record = measure(*job)
        records.append(record)
        print(
            f"[{index}/{len(jobs)}] {job[0]} {job[2]}x{job[1]} {job[3]}: "
            f"{record['bytes_per_pixel']:.0f} B/pixel, {record['seconds']:.1f} s wall, {record['cpu_seconds']:.1f} s CPU",
            flush=True,
        )

    lines = [
        "# Peak memory of the classical methods (bytes per pixel)",
        "",
        f"Generated by `python benchmarks/method_memory.py` on {platform.machine()}, {os.cpu_count()} CPU "
        f"cores, {time.strftime('%Y-%m-%d %H:%M')}; load average at the end {os.getloadavg()[0]:.1f} (the "
        "machine is shared with other jobs: wall times are noisy, CPU times are the better guide; memory "
        "is not affected). Input: NYUv2 frame 00000 resized to the size (synthetic scene if absent); "
        "masks from `depthlab.masks` (seed 0). Peak = the resident-set high-water mark of one method "
        "call above the resident size just before it, in a fresh process (high-water mark reset via "
        "`/proc/self/clear_refs`); inputs excluded. `estimate` is `depthlab.classical.BYTES_PER_PIXEL`, "
        "used by the memory guard of `depthlab.complete()`.",
        "",
        "| method | size | protocol | peak MB | bytes/pixel | estimate B/px | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['method']} | {r['width']}x{r['height']} | {r['protocol']} | {r['peak_bytes'] / 1e6:.0f} | "
            f"{r['bytes_per_pixel']:.0f} | {classical.BYTES_PER_PIXEL[r['method']]} | {r['seconds']:.1f} | "
            f"{r['cpu_seconds']:.1f} |"
        )
    worst = {}
    for r in records:
        worst[r["method"]] = max(worst.get(r["method"], 0.0), r["bytes_per_pixel"])
    lines += [
        "",
        "Worst case per method (bytes/pixel): " + ", ".join(f"`{m}` {v:.0f}" for m, v in worst.items()) + ".",
    ]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(records, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
