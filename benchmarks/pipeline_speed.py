"""Speed and memory of the full-size DepthLab architecture (random weights, no download).

Builds the real model sizes from configs (SD2/Marigold U-Net x2, SD2 VAE, CLIP ViT-H/14 vision
tower, 1024x1024 projection), fills them with random weights and measures, for each processing
resolution and dtype:

* seconds per denoising step of the estimation U-Net as depthlab runs it (one batch row at
  guidance scale 1, reference key/value projections cached), and as the original release runs
  it (two batch rows: the unconditional branch it computes and then multiplies by zero, keys and
  values of the reference tokens recomputed every step);
* the one-off costs per image: reference U-Net, four VAE encodes, the decode, CLIP, and the
  exact/fast pre-fill + linear fill on a dense mask;
* peak memory of the process (CPU: max RSS of a fresh subprocess; CUDA: max allocated).

Every configuration runs in its own subprocess so the peak memory is its own.

Usage::

    python benchmarks/pipeline_speed.py --resolutions 256 768 --dtypes float32 bfloat16 \
        --out benchmarks/results/pipeline_speed.md
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from depthlab.models.reference_attention import ReferenceReadProcessor

FULL_UNET = {
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "sample_size": 96,
}
FULL_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "sample_size": 768,
}
FULL_CLIP_VISION = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}


class OriginalLikeReadProcessor(ReferenceReadProcessor):
    """Cost model of the original's read mode: reference attention on all rows, then a second,
    plain self-attention for the first (unconditional) row that replaces its result."""

    def attend(self, attn, hidden_states, *rest):
        import torch

        out = super().attend(attn, hidden_states, *rest)
        plain = self.attention(attn, hidden_states[:1], *rest)
        return torch.cat([plain, out[1:]])


def build_full_pipeline(dtype, device):
    """DepthLabPipeline with the full architecture and random weights (std 0.02)."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from depthlab import DepthLabPipeline
    from depthlab.models.components import ImageProjection, remove_output_head
    from depthlab.models.tiny import MARIGOLD_SCHEDULER_CONFIG

    generator = torch.Generator().manual_seed(0)

    def materialise(model):
        model.to_empty(device="cpu")
        with torch.no_grad():
            for name, tensor in model.state_dict(keep_vars=True).items():
                if tensor.is_floating_point():
                    if name.endswith("norm.weight") or ".norm" in name and name.endswith("weight"):
                        tensor.fill_(1.0)
                    else:
                        tensor.normal_(0.0, 0.02, generator=generator)
        return model.to(device=device, dtype=dtype)

    with init_empty_weights(include_buffers=False):
        vae = AutoencoderKL(**FULL_VAE)
        reference = remove_output_head(UNet2DConditionModel(**{**FULL_UNET, "in_channels": 4}))
        estimation = UNet2DConditionModel(**{**FULL_UNET, "in_channels": 12})
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**FULL_CLIP_VISION))
        projection = ImageProjection(1024, 1024)
    models = [materialise(m) for m in (vae, reference, estimation, encoder, projection)]
    encoder.vision_model.embeddings.position_ids = torch.arange(257, device=device)[None]
    return DepthLabPipeline(*models, DDIMScheduler(**MARIGOLD_SCHEDULER_CONFIG))


def timed(fn, device, repeats: int) -> float:
    import torch

    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def measure(resolution: int, dtype_name: str, device_name: str, repeats: int) -> dict:
    """One configuration (runs inside a fresh subprocess)."""
    import torch

    from depthlab import preprocessing
    from depthlab.models.loading import resolve_dtype

    torch.manual_seed(0)
    device, dtype = torch.device(device_name), resolve_dtype(dtype_name)
    start = time.perf_counter()
    pipe = build_full_pipeline(dtype, device)
    build_s = time.perf_counter() - start
    height, width = resolution * 3 // 4 // 8 * 8, resolution
    h, w = height // 8, width // 8
    result: dict = {
        "resolution": resolution,
        "size": [height, width],
        "dtype": dtype_name,
        "device": device_name,
        "build_s": build_s,
    }

    image = torch.rand(1, 3, height, width, device=device, dtype=dtype) * 2 - 1
    context = torch.randn(1, 1, 1024, device=device, dtype=dtype)
    fusion = pipe.reference_attention
    with torch.no_grad():
        result["vae_encode_s"] = timed(lambda: pipe.encode_to_latent(image), device, 1)
        rgb_latent = pipe.encode_to_latent(image)
        result["vae_decode_s"] = timed(lambda: pipe.decode_from_latent(rgb_latent), device, 1)

        def reference_pass():
            with fusion.capture():
                pipe.reference_unet(rgb_latent, 0, encoder_hidden_states=context)

        result["reference_unet_s"] = timed(reference_pass, device, 1)
        features = dict(fusion.features)
        rgb = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        result["clip_s"] = timed(lambda: pipe.encode_image_condition([rgb]), device, 1)

        x1 = torch.randn(1, 12, h, w, device=device, dtype=dtype)
        t = torch.tensor(501, device=device)

        def depthlab_step():
            pipe.estimation_unet(x1, t, encoder_hidden_states=context)

        fusion.cache_reference_kv = True
        fusion.set_features(features)
        result["step_depthlab_s"] = timed(depthlab_step, device, repeats)

        x2 = x1.repeat(2, 1, 1, 1)
        context2 = context.repeat(2, 1, 1)

        def original_step():
            pipe.estimation_unet(x2, t, encoder_hidden_states=context2)

        # The original: 2 rows (unconditional + conditional) both attending to the reference
        # tokens with k/v recomputed every step, plus a plain self-attention for the
        # unconditional row that replaces its result.
        fusion.cache_reference_kv = False
        fusion.set_features(features)
        processors = pipe.estimation_unet.attn_processors
        pipe.estimation_unet.set_attn_processor(
            {
                n: OriginalLikeReadProcessor(fusion, n) if n in fusion.names else p
                for n, p in processors.items()
            }
        )
        result["step_original_like_s"] = timed(original_step, device, repeats)
        pipe.estimation_unet.set_attn_processor(processors)
        reference_latent2 = rgb_latent.repeat(2, 1, 1, 1)

        def original_reference_pass():  # the original runs the reference U-Net on 2 rows
            with fusion.capture():
                pipe.reference_unet(reference_latent2, 0, encoder_hidden_states=context2)

        result["reference_unet_original_s"] = timed(original_reference_pass, device, 1)

    # Pre-processing fills at processing resolution on a dense mask (60 % known, one big hole).
    yy, xx = np.mgrid[:height, :width]
    known = ((yy - height / 2) ** 2 / (height / 3) ** 2 + (xx - width / 2) ** 2 / (width / 3) ** 2) > 1
    values = np.sin(xx / 50.0).astype(np.float32)
    for mode in ("exact", "fast"):
        start = time.perf_counter()
        preprocessing.nearest_fill(values, known, exact=mode == "exact")
        preprocessing.linear_fill(values, known, exact=mode == "exact")
        result[f"fills_{mode}_s"] = time.perf_counter() - start

    if device.type == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        result["peak_memory_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def per_image_seconds(r: dict, steps: int, original: bool) -> float:
    """Estimated seconds per image at ``steps`` denoising steps (default 50 x strength 0.8 = 40)."""
    step = r["step_original_like_s"] if original else r["step_depthlab_s"]
    reference = r["reference_unet_original_s"] if original else r["reference_unet_s"]
    return (
        steps * step
        + reference
        + 4 * r["vae_encode_s"]
        + r["vae_decode_s"]
        + r["clip_s"]
        + r["fills_exact_s"]
    )


def write_report(results: list[dict], path: Path, command: str) -> None:
    import torch

    lines = [
        "# DepthLab pipeline speed (full-size architecture, random weights)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"device {results[0]['device'] if results else '?'}.",
        "",
        "| res | size | dtype | step depthlab (s) | step original-like (s) | step speed-up | reference U-Net (s) "
        "| VAE encode x1 (s) | decode (s) | CLIP (s) | fills exact / fast (s) | est. s/image (40 steps) "
        "depthlab / original | peak mem (GB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['resolution']} | | {r['dtype']} | error: {r['error']} |||||||||")
            continue
        ours, orig = per_image_seconds(r, 40, False), per_image_seconds(r, 40, True)
        lines.append(
            f"| {r['resolution']} | {r['size'][0]}x{r['size'][1]} | {r['dtype']} | {r['step_depthlab_s']:.3f} "
            f"| {r['step_original_like_s']:.3f} | {r['step_original_like_s'] / r['step_depthlab_s']:.2f}x "
            f"| {r['reference_unet_s']:.3f} | {r['vae_encode_s']:.3f} | {r['vae_decode_s']:.3f} | {r['clip_s']:.3f} "
            f"| {r['fills_exact_s']:.2f} / {r['fills_fast_s']:.3f} | {ours:.1f} / {orig:.1f} ({orig / ours:.2f}x) "
            f"| {r['peak_memory_gb']:.1f} |"
        )
    lines += [
        "",
        "- *step depthlab*: one estimation U-Net call as `DepthLabPipeline` makes it at guidance scale 1 "
        "(1 row, cached reference keys/values). *original-like*: the original's cost model: 2 rows (its "
        "unconditional branch, multiplied by 0 at guidance 1), reference keys/values recomputed every "
        "step, and a second plain self-attention for the unconditional row in every transformer block.",
        "- *est. s/image*: 40 steps (50 x strength 0.8) + reference U-Net (original: 2 rows) + 4 VAE encodes "
        "+ decode + CLIP + exact fills, both sides with the same exact fills (the original's linear fill "
        "also evaluates every known pixel, and it runs a text encoder; neither is counted).",
        "- Peak memory: max RSS of the measuring process (CPU), or max allocated (CUDA); it includes "
        "all weights (2 U-Nets, VAE, CLIP vision tower).",
        "",
        "Raw results:",
        "",
        "```json",
        json.dumps(results, indent=1),
        "```",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 768])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline_speed_cpu.md"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args()
    if args.one:
        resolution, dtype = args.one.split(":")
        print(json.dumps(measure(int(resolution), dtype, args.device, args.repeats)))
        return
    results = []
    for resolution in args.resolutions:
        for dtype in args.dtypes:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                f"{resolution}:{dtype}",
                "--device",
                args.device,
                "--repeats",
                str(args.repeats),
            ]
            print(f"measuring {resolution}px {dtype} on {args.device} ...", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                results.append(
                    {
                        "resolution": resolution,
                        "dtype": dtype,
                        "device": args.device,
                        "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed",
                    }
                )
            else:
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
            write_report(results, args.out, " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]))


if __name__ == "__main__":
    main()
