#!/usr/bin/env bash
# Full-size memory/time table (benchmarks/results/memory_speed_cpu.{md,json}); run under the heavy lock:
#   flock /tmp/depthlab-heavy.lock bash benchmarks/run_memory_speed.sh /tmp/depthlab-full
# Most important configurations first (the targets are at 256 px fp32); every run appends.
set -euo pipefail
root=${1:-/tmp/depthlab-full}
out=${2:-benchmarks/results/memory_speed_cpu}
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 PYTHONPATH=${PYTHONPATH:-src}
[ -f "$root/CLIP-ViT-H-14-laion2B-s32B-b79K/model.safetensors" ] || python benchmarks/make_full_checkpoints.py "$root"
bench() { python benchmarks/memory_speed.py "$root" --out "$out" "$@"; }
bench --resolutions 256 --dtypes fp32 --low-memory both
bench --resolutions 256 --dtypes bf16 --low-memory both
bench --resolutions 768 --dtypes bf16 --low-memory both
bench --resolutions 768 --dtypes fp32 --low-memory both
