"""Few-step student vs its teacher on held-out synthetic scenes (the distillation table).

Reproduce (2-core CPU: teacher ~19 min, student ~6 min, this script ~80 CPU-s; heavy, so under the
shared lock)::

    flock /tmp/depthlab-heavy.lock depthlab train --config teacher_tiny
    flock /tmp/depthlab-heavy.lock depthlab train --config distill_tiny
    flock /tmp/depthlab-heavy.lock python benchmarks/distill_tiny.py --threads 1 --out runs/eval/distill_tiny.md

Writes the table (``.md``), the numbers (``.json``), a picture of outputs (``.png``) and the error
vs CPU seconds per image plot (``_tradeoff.png``). On a shared machine use ``--threads 1``: two
OpenMP threads on an oversubscribed CPU spend most of their time spin-waiting.

For every configuration (teacher = DDIM at 40/4/2 steps, student = LCM at 4/2/1 steps; all at the
original's strength 0.8 with blending; processing at the input size, ``fill_mode="fast"``) the
script runs the real ``DepthLabPipeline`` on the held-out frames (synthetic seed 1000, never seen
in training), scores the unknown region against the ground truth and against teacher@40's own
output, and times each call (wall and CPU seconds per image, after one warm-up call).
``--device cuda`` runs the same on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from depthlab.data import get_dataset
from depthlab.evaluation.metrics import compute_metrics, region_mask
from depthlab.pipeline import DepthLabPipeline
from depthlab.training.data import build_validation_items

CONFIGS = [
    ("teacher@40", "teacher", 40, None),
    ("teacher@4", "teacher", 4, None),
    ("teacher@2", "teacher", 2, None),
    ("teacher@4 trailing", "teacher", 4, "trailing"),
    ("teacher@2 trailing", "teacher", 2, "trailing"),
    ("student@4", "student", 4, None),
    ("student@2", "student", 2, None),
    ("student@1", "student", 1, None),
]
MASKS = ["holes:0.3", "holes:0.5", "ratio:5", "lidar:64:2", "border:0.2", "points:100"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", default="runs/teacher_tiny/final/depthlab")
    parser.add_argument("--student", default="runs/distill_tiny/final/depthlab")
    parser.add_argument("--frames", type=int, default=48, help="held-out frames (synthetic, seed 1000)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/distill_tiny.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipes = {
        "teacher": DepthLabPipeline.from_pretrained(args.teacher, device=args.device),
        "student": DepthLabPipeline.from_pretrained(args.student, device=args.device),
    }
    dataset = get_dataset("synthetic", None, length=args.frames, height=args.size, width=args.size, seed=1000)
    items = build_validation_items(dataset, MASKS, limit=args.frames, seed=0)

    predictions: dict[str, list[np.ndarray]] = {}
    timing: dict[str, dict[str, float]] = {}
    for name, which, steps, spacing in CONFIGS:
        pipe = pipes[which]
        outs, walls, cpus, evals = [], [], [], 0
        for index, item in enumerate([items[0], *items]):  # the first call warms up (not timed)
            wall, cpu = time.perf_counter(), time.process_time()
            out = pipe(
                item.rgb,
                np.where(item.known_mask, item.depth, 0.0).astype(np.float32),
                item.known_mask,
                num_inference_steps=steps,
                strength=args.strength,
                processing_resolution=0,
                fill_mode="fast",
                timestep_spacing=spacing,
                generator=torch.Generator().manual_seed(index),
                show_progress_bar=False,
            )
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if index > 0:
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
                outs.append(np.asarray(out.depth, dtype=np.float32))
                evals = len(out.info["timesteps"])
        predictions[name] = outs
        timing[name] = {"wall": float(np.mean(walls)), "cpu": float(np.mean(cpus)), "unet_evals": evals}
        print(f"{name}: {timing[name]}", flush=True)

    rows = []
    reference = predictions["teacher@40"]
    for name, *_ in CONFIGS:
        vs_gt, vs_teacher = [], []
        for item, pred, ref in zip(items, predictions[name], reference, strict=True):
            scored = region_mask(item.valid, item.known_mask, "unknown")
            if not scored.any():
                continue
            vs_gt.append(compute_metrics(pred, item.depth, scored, ("abs_rel", "rmse")))
            vs_teacher.append(compute_metrics(pred, ref, scored & (ref > 0), ("abs_rel", "rmse")))
        rows.append(
            {
                "config": name,
                **{f"gt_{k}": float(np.mean([m[k] for m in vs_gt])) for k in ("abs_rel", "rmse")},
                **{f"t40_{k}": float(np.mean([m[k] for m in vs_teacher])) for k in ("abs_rel", "rmse")},
                **timing[name],
                "frames": len(vs_gt),
            }
        )
    write_results(Path(args.out), rows, args, len(items))
    save_picture(Path(args.out).with_suffix(".png"), items, predictions)
    save_tradeoff_plot(Path(args.out).with_name(Path(args.out).stem + "_tradeoff.png"), rows)


def _run_summary(checkpoint: str) -> dict:
    """``summary.json`` of the run that exported ``checkpoint`` (``<run>/final/depthlab``), or ``{}``."""
    path = Path(checkpoint).parent.parent / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_results(path: Path, rows: list[dict], args: argparse.Namespace, n_items: int) -> None:
    by_name = {row["config"]: row for row in rows}
    base = by_name["teacher@40"]
    runs = {"teacher": _run_summary(args.teacher), "student": _run_summary(args.student)}
    lines = [
        "# Few-step student (latent consistency distillation) vs teacher, tiny model, held-out synthetic scenes",
        "",
        f"`python benchmarks/distill_tiny.py --frames {args.frames} --device {args.device}` "
        f"({n_items} frames {args.size}x{args.size}, masks {', '.join(MASKS)}, strength {args.strength}, "
        "blend on, `fill_mode=fast`, processing at input size; torch "
        f"{torch.__version__}, {platform.machine()}, {args.threads} threads). Unknown region only. "
        '"vs teacher@40" scores each output against teacher@40\'s output on the same frame and seed.',
        "",
        "| config | U-Net evals | AbsRel vs GT | RMSE vs GT (m) | AbsRel vs teacher@40 | RMSE vs teacher@40 (m) "
        "| s / image (wall) | CPU s / image | cost vs teacher@40 (CPU s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row['unet_evals']} | {row['gt_abs_rel']:.4f} | {row['gt_rmse']:.4f} | "
            f"{row['t40_abs_rel']:.4f} | {row['t40_rmse']:.4f} | {row['wall']:.4f} | {row['cpu']:.4f} | "
            f"{base['cpu'] / row['cpu']:.1f}x lower |"
        )
    teacher_s = runs["teacher"].get("train_seconds")
    student_s = runs["student"].get("train_seconds")
    lines += [
        "",
        f"Teacher: `{args.teacher}` ({runs['teacher'].get('end_step', '?')} training steps, "
        + (f"{teacher_s:.0f} s" if teacher_s else "time unknown")
        + f"). Student: `{args.student}` ({runs['student'].get('steps', '?')} distillation steps, "
        + (f"{student_s:.0f} s" if student_s else "time unknown")
        + ").",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    record = {
        "rows": rows,
        "settings": {
            "frames": n_items,
            "size": args.size,
            "strength": args.strength,
            "masks": MASKS,
            "threads": args.threads,
            "device": args.device,
            "torch": torch.__version__,
            "teacher": args.teacher,
            "student": args.student,
        },
        "runs": {
            name: {k: summary.get(k) for k in ("steps", "end_step", "train_seconds")}
            for name, summary in runs.items()
        },
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(lines))


def save_picture(path: Path, items: list, predictions: dict[str, list[np.ndarray]]) -> None:
    """Rows: 4 frames; columns: RGB, GT, teacher@40, teacher@2, student@2, student@1 (shared range)."""
    from PIL import Image

    from depthlab.visualize import colorize

    columns = ["teacher@40", "teacher@2", "student@2", "student@1"]
    rows = []
    for index in range(min(4, len(items))):
        item = items[index]
        lo, hi = np.percentile(item.depth[item.valid], [1, 99])
        tiles = [item.rgb, colorize(np.where(item.valid, item.depth, 0), vmin=lo, vmax=hi)]
        tiles += [colorize(predictions[c][index], vmin=lo, vmax=hi) for c in columns]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)


def save_tradeoff_plot(path: Path, rows: list[dict]) -> None:
    """Error (AbsRel vs teacher@40 and vs GT, unknown region) against CPU seconds per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for axis, key, title in (
        (axes[0], "t40_abs_rel", "AbsRel vs teacher@40 output"),
        (axes[1], "gt_abs_rel", "AbsRel vs ground truth"),
    ):
        for row in rows:
            student = row["config"].startswith("student")
            axis.scatter(
                row["cpu"], row[key], marker="o" if student else "s", color="C1" if student else "C0"
            )
            axis.annotate(
                row["config"], (row["cpu"], row[key]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        axis.set_xscale("log")
        axis.set_xlabel("CPU seconds per image (log)")
        axis.set_ylabel("AbsRel, unknown region")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    axes[0].scatter([], [], marker="s", color="C0", label="teacher (DDIM)")
    axes[0].scatter([], [], marker="o", color="C1", label="student (LCM)")
    axes[0].legend(loc="best", fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
