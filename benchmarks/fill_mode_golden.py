"""Does ``fill_mode="fast"`` reproduce the golden cases? (decides what ``fill_mode="auto"`` picks on CUDA)

Runs every golden case (``../shared/golden`` or ``$DEPTHLAB_GOLDEN``) end to end through the public
API twice, with the exact fills (the original's) and with the fast ones, and reports the largest
difference to the recorded depth against the conformance tolerance (5e-5 end to end).

    python benchmarks/fill_mode_golden.py --out benchmarks/results/fill_mode_golden.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from depthlab import DepthLabPipeline

GOLDEN = Path(
    os.environ.get("DEPTHLAB_GOLDEN", Path(__file__).resolve().parents[1] / ".." / "shared" / "golden")
)
TOLERANCE = 5e-5  # end-to-end depth tolerance of tests/test_conformance.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fill_mode_golden.md"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    cases = json.loads((GOLDEN / "cases" / "index.json").read_text())["cases"]
    pipe = DepthLabPipeline.from_pretrained(GOLDEN / "checkpoints", load_text_encoder=True)
    rows = []
    for name in cases:
        root = GOLDEN / "cases" / name
        params = json.loads((root / "params.json").read_text())
        call = dict(params["pipeline_call"])
        expected = np.load(root / "depth_np.npy")
        known = np.load(root / "mask.npy") == 0
        depth = np.load(root / "known_depth.npy")
        init = root / "noise_init.npy"
        kwargs = dict(
            num_inference_steps=call["denosing_steps"],
            processing_resolution=call["processing_res"],
            strength=call["strength"],
            blend=call["blend"],
            normalize_scale=call["normalize_scale"],
            refine=params["refine"],
            noise=np.load(root / "noise.npy"),
            latents=np.load(init) if init.is_file() else None,
            show_progress_bar=False,
        )
        row = {
            "case": name,
            "refine": bool(params.get("refine", False)),
            "known_fraction": float(known.mean()),
        }
        for mode in ("exact", "fast"):
            out = pipe(Image.open(root / "rgb.png"), depth, known, fill_mode=mode, **kwargs)
            row[mode] = float(np.abs(out.depth.astype(np.float64) - expected).max())
            row[f"{mode}_rel"] = row[mode] / float(np.abs(expected).max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "# `fill_mode` on the golden cases (CPU, float32)",
        "",
        "`python benchmarks/fill_mode_golden.py`: every golden case end to end through the public API, max |depth - golden|,",
        f"conformance tolerance {TOLERANCE:g}.",
        "",
        "| case | known % | refine | exact: max abs diff | fast: max abs diff | fast within tolerance |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {100 * r['known_fraction']:.1f} | {r['refine']} | {r['exact']:.2e} | {r['fast']:.2e} | {'yes' if r['fast'] < TOLERANCE else 'no'} |"
        )
    passed = all(r["fast"] < TOLERANCE for r in rows)
    lines += ["", f"fast fill within tolerance on every case: **{'yes' if passed else 'no'}**.", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    sys.exit(0)


if __name__ == "__main__":
    main()
