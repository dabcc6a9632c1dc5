"""Full-size DepthLab training throughput (samples/s, peak memory), random weights, no download.

Builds the FULL architecture from the configs in ``depthlab.training.model_setup`` (SD2/Marigold
U-Net x2, SD2 VAE, OpenCLIP ViT-H/14 vision tower), runs the real training step
(``depthlab.training.objective.compute_loss``: frozen VAE + CLIP, reference U-Net at t=0 with fused
attention, estimation U-Net, v-prediction loss, AdamW step) on random inputs of the training
size, and reports steady-state samples/s and peak accelerator memory.

    python benchmarks/train_throughput.py --device cuda --dtype bf16 --batch 2 --size 576 768 \
        --steps 10 --warmup 3 --gradient-checkpointing --out benchmarks/results/train_throughput.json

On CPU it falls back to a tiny smoke of the same code path (``--tiny``), since the full model
needs a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from depthlab.models.loading import resolve_dtype


def build_models(tiny: bool, dtype: torch.dtype, device: torch.device):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from depthlab.models.components import ImageProjection, remove_output_head
    from depthlab.models.tiny import (
        MARIGOLD_SCHEDULER_CONFIG,
        TINY_CLIP_VISION_CONFIG,
        TINY_UNET_CONFIG,
        TINY_VAE_CONFIG,
    )
    from depthlab.training.model_setup import FULL_CLIP_VISION_CONFIG, FULL_UNET_CONFIG, FULL_VAE_CONFIG

    unet_config = TINY_UNET_CONFIG if tiny else FULL_UNET_CONFIG
    with torch.device(device):
        vae = AutoencoderKL(**(TINY_VAE_CONFIG if tiny else FULL_VAE_CONFIG))
        reference = remove_output_head(UNet2DConditionModel(**{**unet_config, "in_channels": 4}))
        estimation = UNet2DConditionModel(**{**unet_config, "in_channels": 12})
        clip = CLIPVisionModelWithProjection(
            CLIPVisionConfig(**(TINY_CLIP_VISION_CONFIG if tiny else FULL_CLIP_VISION_CONFIG))
        )
        projection = ImageProjection(1024, 1024)
    frozen_dtype = dtype if dtype != torch.float32 else torch.float32
    vae.to(device, frozen_dtype).requires_grad_(False).eval()
    clip.to(device, frozen_dtype).requires_grad_(False).eval()
    return vae, reference, estimation, clip, projection, DDIMScheduler(**MARIGOLD_SCHEDULER_CONFIG).config


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--batch", type=int, default=2, help="micro-batch size per device")
    parser.add_argument("--size", type=int, nargs=2, default=(576, 768), metavar=("H", "W"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU smoke of the same code path)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from depthlab.training.objective import (
        DepthLabTrainModule,
        ObjectiveConfig,
        compute_loss,
        noise_scheduler_from_config,
    )

    device = torch.device(args.device)
    tiny = args.tiny or device.type == "cpu"
    if tiny and not args.tiny:
        print("no GPU: running the tiny models (pass --device cuda on a GPU machine for the full size)")
    dtype = resolve_dtype(args.dtype)
    vae, reference, estimation, clip, projection, scheduler_config = build_models(tiny, dtype, device)
    module = DepthLabTrainModule(reference, estimation, projection).to(device).train()
    if args.gradient_checkpointing:
        reference.enable_gradient_checkpointing()
        estimation.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    scheduler = noise_scheduler_from_config(scheduler_config)
    n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)

    height, width = args.size
    generator = torch.Generator().manual_seed(0)
    batch = {
        "rgb": torch.randint(0, 256, (args.batch, height, width, 3), generator=generator, dtype=torch.uint8),
        "depth_norm": torch.rand(args.batch, 1, height, width, generator=generator) * 2 - 1,
        "masked_depth": torch.rand(args.batch, 1, height, width, generator=generator) * 2 - 1,
        "unknown": (torch.rand(args.batch, 1, height, width, generator=generator) < 0.5).float(),
        "valid": torch.ones(args.batch, 1, height, width),
        "clip_pixel_values": torch.randn(args.batch, 3, 224, 224, generator=generator),
    }
    autocast = (
        torch.autocast(device.type, dtype=dtype)
        if dtype != torch.float32
        else torch.autocast(device.type, enabled=False)
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(seed: int) -> float:
        with autocast:
            loss, _ = compute_loss(
                module, vae, clip, scheduler, batch, torch.Generator().manual_seed(seed), ObjectiveConfig()
            )
        loss.backward()
        module.fusion.clear()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    for i in range(args.warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(100 + i)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    result = {
        "model": "tiny" if tiny else "full (SD2/Marigold U-Net x2, SD2 VAE, CLIP ViT-H/14)",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "dtype": args.dtype,
        "micro_batch": args.batch,
        "size": [height, width],
        "gradient_checkpointing": args.gradient_checkpointing,
        "trainable_parameters": n_params,
        "steps": args.steps,
        "seconds_per_step": seconds / args.steps,
        "samples_per_s": args.batch * args.steps / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
