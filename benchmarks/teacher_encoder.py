"""Encoder-only DiffusionTeacher vs the authors' full UNet forward + mid-block hook.

ddpm-cifar10-32 architecture (random init from tests/configs/ddpm-cifar10-32.json), batch 64,
32 px, fp32 on this CPU, both under torch.no_grad, interleaved repeats, medians.
Last line: ``ratio: <encoder-only time / full-forward-plus-hook time>`` (goal: <= 0.55).

    python benchmarks/teacher_encoder.py [--repeats 5] [--batch 64]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel

from repfusion_zoo.teachers import DiffusionTeacher

CONFIG = Path(__file__).resolve().parents[1] / "tests" / "configs" / "ddpm-cifar10-32.json"


def full_forward_with_hook(unet: UNet2DModel):
    """What the authors ran: the whole UNet forward, the mid-block output caught by a hook."""
    caught: dict[str, torch.Tensor] = {}
    unet.mid_block.register_forward_hook(lambda module, inputs, output: caught.__setitem__("mid", output))

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            unet(x, t)
        return caught["mid"]

    return run


def timed(fn, *args) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    unet = UNet2DModel.from_config(json.loads(CONFIG.read_text())).eval()
    teacher = DiffusionTeacher(unet)
    baseline = full_forward_with_hook(unet)
    x = torch.rand(args.batch, 3, 32, 32) * 2 - 1
    t = torch.randint(0, 1000, (args.batch,))

    timed(teacher, x, t)  # warm-up (allocator, kernels)
    timed(baseline, x, t)
    encoder_times, full_times = [], []
    for _ in range(args.repeats):  # interleaved so load changes hit both alike
        seconds, feature = timed(teacher, x, t)
        encoder_times.append(seconds)
        seconds, hooked = timed(baseline, x, t)
        full_times.append(seconds)
    torch.testing.assert_close(feature, hooked, rtol=0, atol=1e-4)

    encoder, full = statistics.median(encoder_times), statistics.median(full_times)
    print(f"device: cpu, torch threads {torch.get_num_threads()}, batch {args.batch}, 32 px, ddpm-cifar10-32 architecture, {args.repeats} interleaved repeats")
    print(f"encoder-only teacher (layer mid):      median {encoder * 1000:8.1f} ms  (all: {', '.join(f'{s * 1000:.0f}' for s in encoder_times)})")
    print(f"full UNet forward + mid-block hook:    median {full * 1000:8.1f} ms  (all: {', '.join(f'{s * 1000:.0f}' for s in full_times)})")
    print(f"ratio: {encoder / full:.3f}")


if __name__ == "__main__":
    main()
