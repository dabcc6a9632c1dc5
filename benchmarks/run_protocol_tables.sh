#!/usr/bin/env bash
# Reproduce the published-protocol tables (benchmarks/results/protocol_*) from the real frames in
# ../shared/datasets (research-only data, never copied into the repository). Classical methods.
# Usage (from the repository root):  bash benchmarks/run_protocol_tables.sh [OUT_DIR]
# Protocols: docs/protocols.md ("nyu_nlspn", "kitti_dc", "Sensor-like pattern suite").
# Predictions, masks and figures go to OUT_DIR (default outputs/protocol_tables, git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/datasets
OUT=${1:-outputs/protocol_tables}
RESULTS=benchmarks/results
if [ ! -d "$DATA" ]; then
  echo "no real data at $DATA; nothing to do" >&2
  exit 0
fi
mkdir -p "$OUT" "$RESULTS"
NYU="$DATA/stepi2299__eadir2/data/nyu_samples"
METHODS=(--method guided --method linear --method nearest)

# 1. DepthLab Table 2 layout: NLSPN protocol on the 20 official NYUv2 test frames present
depthlab eval --config table2_nyu_500pts --root "$NYU" "${METHODS[@]}" \
  --table-metric rmse --table-metric abs_rel --table-metric mae --table-metric delta1 \
  --title "NYUv2 NLSPN protocol (20 of the 654 official test frames, 304x228, 500 points), all valid pixels" \
  --out "$OUT/nyu_nlspn" --no-progress

# 2. sensor-like pattern suite on the same frames (NLSPN view), filled region
depthlab eval --config sensor_patterns --root "$NYU" "${METHODS[@]}" \
  --table-metric rmse --table-metric abs_rel \
  --title "NYUv2 NLSPN view (20 test frames): sensor-like patterns and hole types, filled region" \
  --out "$OUT/sensor_patterns" --no-progress

# 3. KITTI at the benchmark size 1216x352 (bottom-centre crop of object frame 000000; no
#    val_selection_cropped frame is available here): the projected 64-line scan subsampled to
#    32 / 16 / 8 lines is the input, the points of the dropped lines are scored (LiDAR holdout).
depthlab eval --config kitti_dc_lines --dataset kitti_object --dataset-opt kb_crop=true \
  --root "$DATA/kuixu__kitti_object_vis/data/object" \
  --protocol lines:32 --protocol lines:16 --protocol lines:8 \
  --method lidar "${METHODS[@]}" --table-region unknown \
  --title "KITTI object 000000, 1216x352 crop: 64-line scan subsampled to 32/16/8 lines, dropped lines scored" \
  --out "$OUT/kitti_lines" --no-progress

# 4. copy the tables and the summaries (not the data, not the predictions) into the repository
for RUN in nyu_nlspn sensor_patterns kitti_lines; do
  cp "$OUT/$RUN/table.md" "$RESULTS/protocol_$RUN.md"
  python - "$OUT/$RUN/summary.json" "$RESULTS/protocol_$RUN.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
keys = ("config", "datasets", "environment", "seconds_total", "method_settings", "results", "failures")
keep = {k: summary[k] for k in keys if k in summary}
for entry in keep["datasets"] + keep["config"]["datasets"]:  # no machine-specific paths
    entry["root"] = entry["root"].split("shared/datasets/")[-1]
keep["config"]["out"] = "<OUT_DIR>"
json.dump(keep, open(sys.argv[2], "w"), indent=1)
PY
done
echo "tables written to $RESULTS/protocol_*.md"
