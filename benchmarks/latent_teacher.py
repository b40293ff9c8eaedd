#!/usr/bin/env python
"""Latent teachers: the encoder-only feature pass against the full forward it replaces, side by side.

Two random-initialised models of the shapes people use, scaled to run on a CPU (the cost ratio is
a property of the architecture, not of the weights):
- Stable Diffusion-style: an `AutoencoderKL` (x8 down) + a `UNet2DConditionModel` of SD 1.x's block
  layout (3 cross-attention down blocks + 1 plain, 2 layers each, mid block with cross-attention)
  at a quarter of its width; 256 px images, 32 x 32 latents; 77 zero conditioning tokens.
  Teacher: VAE encode + conv_in + down blocks + mid block (`LatentUNetTeacher`, layer mid);
  full: VAE encode + the whole UNet forward (what a forward hook on the mid block would run).
- DiT-S/2-style: the same VAE + a `DiTTransformer2DModel` (hidden 384, 12 blocks, patch 2);
  teacher: patch embedding + the first 6 blocks (layer mid); full: the whole transformer.

Printed: the median seconds of each (interleaved after warm-up), the VAE encoder's share (both
paths run it), and last ``ratio: <SD teacher / SD full forward>`` (the DiT's ratio on the line before).

    python benchmarks/latent_teacher.py          # ~1-2 min on the 2-core CPU
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DiTTransformer2DModel, UNet2DConditionModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repfusion_zoo.teachers import LatentUNetTeacher, TransformerTeacher  # noqa: E402
from repfusion_zoo.teachers.latent import encode_latents  # noqa: E402
from repfusion_zoo.training import configure_cpu_threads  # noqa: E402


def build(image: int) -> tuple[AutoencoderKL, UNet2DConditionModel, DiTTransformer2DModel]:
    torch.manual_seed(0)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(32, 64, 128, 128), latent_channels=4, layers_per_block=1,
                        norm_num_groups=32, sample_size=image).eval()
    unet = UNet2DConditionModel(sample_size=image // 8, block_out_channels=(80, 160, 320, 320), layers_per_block=2,
                                cross_attention_dim=192, attention_head_dim=8, norm_num_groups=16).eval()
    dit = DiTTransformer2DModel(num_attention_heads=6, attention_head_dim=64, in_channels=4, num_layers=12,
                                sample_size=image // 8, patch_size=2, num_embeds_ada_norm=1000).eval()
    return vae, unet, dit


def median_seconds(runs: dict[str, callable], repeats: int) -> dict[str, float]:
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    threads = configure_cpu_threads()
    vae, unet, dit = build(args.image_size)
    context = torch.zeros(1, 77, unet.config.cross_attention_dim)
    sd = LatentUNetTeacher(unet, vae, conditioning=context, conditioning_source="zeros", image_size=args.image_size)
    transformer = TransformerTeacher(dit, vae, image_size=args.image_size)
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1
    t = torch.randint(0, 1000, (args.batch_size,))
    null = torch.full_like(t, 1000)

    @torch.no_grad()
    def sd_full() -> None:
        unet(encode_latents(vae, x), t, encoder_hidden_states=context.expand(len(x), -1, -1))

    @torch.no_grad()
    def dit_full() -> None:
        dit(encode_latents(vae, x), timestep=t, class_labels=null)

    @torch.no_grad()
    def vae_encode() -> None:
        encode_latents(vae, x)

    seconds = median_seconds({"sd teacher": lambda: sd(x, t), "sd full": sd_full, "dit teacher": lambda: transformer(x, t),
                              "dit full": dit_full, "vae encode": vae_encode}, args.repeats)
    print(f"torch {torch.__version__}, {threads} threads, batch {args.batch_size}, {args.image_size} px images, "
          f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M, DiT {sum(p.numel() for p in dit.parameters()) / 1e6:.1f} M, "
          f"VAE {sum(p.numel() for p in vae.parameters()) / 1e6:.1f} M parameters")
    for name, value in seconds.items():
        print(f"{name:>12}: {value * 1000:8.1f} ms")
    denoiser = {k: seconds[k] - seconds["vae encode"] for k in ("sd teacher", "sd full", "dit teacher", "dit full")}
    print(f"without the VAE encoder both share: UNet encoder half / whole UNet {denoiser['sd teacher'] / denoiser['sd full']:.3f}, "
          f"DiT first half / whole DiT {denoiser['dit teacher'] / denoiser['dit full']:.3f}")
    print(f"DiT: teacher (patch embedding + {transformer.blocks} of {transformer.num_layers} blocks) / full forward: "
          f"{seconds['dit teacher'] / seconds['dit full']:.3f}")
    print(f"ratio: {seconds['sd teacher'] / seconds['sd full']:.3f}")


if __name__ == "__main__":
    main()
