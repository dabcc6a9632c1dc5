"""Speed options of DepthLabPipeline on CPU: what each costs or saves, and whether the answer holds.

Measured back to back in one process (variants interleaved, repeats alternating, so that load
from other processes hits every variant alike), wall and process CPU seconds:

1. the VAE encodes of one image: four calls (RGB, mask, masked depth, depth) vs one call of 4
   (``batch_vae_encodes``), for the golden (tiny), a mid-size and the full-size SD2 VAE;
2. whole pipeline calls with ``optimize()`` off / ``channels_last`` / ``compile`` for the tiny
   (golden checkpoint) and a mid-size random-weight model; compile time reported separately;
3. decoding: the KL VAE decoder vs ``AutoencoderTiny`` (the TAESD architecture, random weights:
   speed only, approximate by construction);
4. conformance: every golden case end to end with each option, max |depth - golden| against the
   5e-5 tolerance of ``tests/test_conformance.py``.

    flock /tmp/depthlab-heavy.lock python benchmarks/speed_options.py \
        --out benchmarks/results/speed_options
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from PIL import Image

from depthlab import DepthLabPipeline
from depthlab.models import conditioning
from depthlab.models.components import remove_output_head
from depthlab.models.tiny import TINY_UNET_CONFIG, tiny_components

GOLDEN = Path(
    os.environ.get("DEPTHLAB_GOLDEN", Path(__file__).resolve().parents[1] / ".." / "shared" / "golden")
)
TOLERANCE = 5e-5
MID_UNET = {  # the tiny U-Net's layout, 4x the channels
    **TINY_UNET_CONFIG,
    "block_out_channels": (32, 64, 128, 128),
    "attention_head_dim": (2, 4, 8, 8),
    "norm_num_groups": 16,
}
MID_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "block_out_channels": (32, 64, 128, 128),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}
FULL_VAE = {
    **MID_VAE,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "block_out_channels": (128, 256, 512, 512),
}


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> dict[str, float]:
    wall, cpu = clock()
    return {"wall_s": wall - start[0], "cpu_s": cpu - start[1]}


def interleaved(variants: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Median wall/CPU seconds of each variant; one warm-up each, then repeats in ABAB order."""
    for fn in variants.values():
        fn()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = clock()
            fn()
            samples[name].append(since(start))
    return {
        name: {key: float(np.median([s[key] for s in values])) for key in ("wall_s", "cpu_s")}
        for name, values in samples.items()
    }


def scene(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    depth = (1.0 + yy / height + 0.3 * np.sin(xx / 9.0)).astype(np.float32)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    known = rng.random((height, width)) < 0.3
    return rgb, np.where(known, depth, 0).astype(np.float32), known


def mid_pipeline() -> DepthLabPipeline:
    parts = tiny_components(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        parts["vae"] = AutoencoderKL(**MID_VAE)
        parts["reference_unet"] = remove_output_head(UNet2DConditionModel(**MID_UNET, in_channels=4))
        parts["estimation_unet"] = UNet2DConditionModel(**MID_UNET, in_channels=12)
    return DepthLabPipeline(**parts)


def bench_vae_encodes(size: tuple[int, int], repeats: int) -> list[dict]:
    rows = []
    rgb, depth, known = scene(*size)
    vaes = {"golden (tiny)": tiny_components(0)["vae"], "mid": AutoencoderKL(**MID_VAE)}
    vaes["full SD2"] = AutoencoderKL(**FULL_VAE)
    for name, vae in vaes.items():
        vae.eval()

        def encode(one_call: bool, vae=vae):
            with torch.no_grad():
                return conditioning.encode_conditioning(vae, rgb, ~known, depth, depth, one_call=one_call)

        times = interleaved({"4 calls": lambda: encode(False), "1 call": lambda: encode(True)}, repeats)
        a, b = encode(False), encode(True)
        diff = max(
            float((getattr(a, k) - getattr(b, k)).abs().max())
            for k in ("rgb", "mask", "masked_depth", "depth")
        )
        row = {
            "part": "vae_encodes",
            "model": name,
            "size": list(size),
            "times": times,
            "max_latent_diff": diff,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def bench_pipeline(
    name: str, build, size: tuple[int, int], steps: int, repeats: int, compile_too: bool
) -> list[dict]:
    rgb, depth, known = scene(*size)
    kwargs = dict(num_inference_steps=steps, processing_resolution=0, show_progress_bar=False)
    variants = {"default": {}, "channels_last": {"channels_last": True}}
    if compile_too:
        variants["compile"] = {"compile": True}
    pipes = {v: build().optimize(**opts) for v, opts in variants.items()}

    def call(pipe):
        return pipe(rgb, depth, known, generator=torch.Generator().manual_seed(0), **kwargs)

    first = {}
    for v, pipe in pipes.items():  # the first call (compiles with compile=True)
        start = clock()
        call(pipe)
        first[v] = since(start)
    times = interleaved({v: (lambda p=p: call(p)) for v, p in pipes.items()}, repeats)
    reference = call(pipes["default"]).depth
    diffs = {v: float(np.abs(call(p).depth - reference).max()) for v, p in pipes.items()}
    row = {
        "part": "pipeline",
        "model": name,
        "size": list(size),
        "steps": int(steps * 0.8),
        "first_call": first,
        "times": times,
        "max_depth_diff_vs_default": diffs,
    }
    print(json.dumps(row), flush=True)
    return [row]


def bench_decode(size: tuple[int, int], repeats: int) -> list[dict]:
    vae = AutoencoderKL(**FULL_VAE).eval()
    taesd = AutoencoderTiny().eval()  # TAESD architecture (madebyollin/taesd), random weights
    latent = torch.randn(1, 4, size[0] // 8, size[1] // 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        times = interleaved(
            {
                "KL VAE decode": lambda: vae.decode(latent / vae.config.scaling_factor),
                "AutoencoderTiny decode": lambda: taesd.decode(latent),
            },
            repeats,
        )
    row = {"part": "decode", "model": "full SD2 VAE vs TAESD", "size": list(size), "times": times}
    print(json.dumps(row), flush=True)
    return [row]


def golden_conformance(options: dict, cases: list[str]) -> dict:
    pipe = DepthLabPipeline.from_pretrained(GOLDEN / "checkpoints", load_text_encoder=True).optimize(
        **options
    )
    result = {}
    for name in cases:
        root = GOLDEN / "cases" / name
        params = json.loads((root / "params.json").read_text())
        call = params["pipeline_call"]
        init = root / "noise_init.npy"
        out = pipe(
            Image.open(root / "rgb.png"),
            np.load(root / "known_depth.npy"),
            np.load(root / "mask.npy") == 0,
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
        result[name] = float(np.abs(out.depth.astype(np.float64) - np.load(root / "depth_np.npy")).max())
    row = {"part": "conformance", "options": options, "max_abs_diff": result, "tolerance": TOLERANCE}
    print(json.dumps(row), flush=True)
    return row


def write(rows: list[dict], out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": command,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "note": "shared 2-core machine with other jobs running: absolute times are noisy; compare "
        "the ratios, measured back to back with the variants interleaved",
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Speed options on CPU (`DepthLabPipeline.optimize`)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {meta['machine']}. {meta['note'].capitalize()}. Times are medians (wall / process CPU).",
        "",
    ]
    for part, title in (
        ("vae_encodes", "VAE encodes of one image: 4 calls vs 1 call (`batch_vae_encodes`, default on)"),
        ("pipeline", "Whole pipeline call"),
        ("decode", "Decoder: KL VAE vs AutoencoderTiny (tiny VAE, approximate)"),
    ):
        chosen = [r for r in rows if r["part"] == part]
        if not chosen:
            continue
        lines += [f"## {title}", ""]
        for r in chosen:
            times = r["times"]
            names = list(times)
            base = times[names[0]]
            lines.append(
                f"**{r['model']}**, {r['size'][0]}x{r['size'][1]} px"
                + (f", {r['steps']} steps" if "steps" in r else "")
            )
            lines += [
                "",
                "| variant | wall s | CPU s | wall vs first | CPU vs first | notes |",
                "|---|---|---|---|---|---|",
            ]
            for n in names:
                t = times[n]
                note = ""
                if part == "pipeline":
                    note = f"first call {r['first_call'][n]['wall_s']:.1f} s; max depth diff vs default {r['max_depth_diff_vs_default'][n]:.1e}"
                if part == "vae_encodes" and n == "1 call":
                    note = f"max latent diff {r['max_latent_diff']:.1e}"
                lines.append(
                    f"| {n} | {t['wall_s']:.3f} | {t['cpu_s']:.3f} | {base['wall_s'] / t['wall_s']:.2f}x | "
                    f"{base['cpu_s'] / t['cpu_s']:.2f}x | {note} |"
                )
            lines.append("")
    conf = [r for r in rows if r["part"] == "conformance"]
    if conf:
        cases = list(conf[0]["max_abs_diff"])
        lines += ["## Golden cases end to end with each option (max abs depth diff; tolerance 5e-5)", ""]
        lines += ["| options | " + " | ".join(cases) + " | within |", "|---" * (len(cases) + 2) + "|"]
        for r in conf:
            values = [r["max_abs_diff"].get(c) for c in cases]
            ok = all(v is not None and v < TOLERANCE for v in values)
            shown = " | ".join("-" if v is None else f"{v:.2e}" for v in values)
            lines.append(f"| {json.dumps(r['options'])} | {shown} | {'yes' if ok else 'no'} |")
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed_options"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps (x strength 0.8)")
    parser.add_argument("--parts", nargs="+", default=["vae", "pipeline", "decode", "conformance"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes to compile)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    command = "python benchmarks/speed_options.py " + " ".join(sys.argv[1:])
    rows: list[dict] = []
    size = (192, 256)
    if "vae" in args.parts:
        rows += bench_vae_encodes(size, args.repeats)
        write(rows, args.out, command)
    if "pipeline" in args.parts:
        golden = lambda: DepthLabPipeline.from_pretrained(GOLDEN / "checkpoints")  # noqa: E731
        rows += bench_pipeline("golden (tiny)", golden, size, args.steps, args.repeats, args.compile)
        write(rows, args.out, command)
        rows += bench_pipeline("mid", mid_pipeline, size, args.steps, args.repeats, args.compile)
        write(rows, args.out, command)
    if "decode" in args.parts:
        rows += bench_decode(size, args.repeats)
        write(rows, args.out, command)
    if "conformance" in args.parts:
        cases = json.loads((GOLDEN / "cases" / "index.json").read_text())["cases"]
        variants = [{}, {"batch_vae_encodes": False}, {"channels_last": True}]
        if args.compile:
            variants.append({"compile": True})
        for options in variants:  # compile: two cases (each new shape recompiles, minutes each)
            rows.append(golden_conformance(options, cases[:2] if options.get("compile") else cases))
            write(rows, args.out, command)


if __name__ == "__main__":
    main()
