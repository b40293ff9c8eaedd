"""Cache builder vs the bare encoder-only teacher pass, on the same (image, view, t) inputs.

ddpm-cifar10-32 architecture (random init from tests/configs/ddpm-cifar10-32.json), digits at
32 px x 3 channels (the first --images of the train split), views identity + hflip, --timesteps,
batch 64 (benchmarks/teacher_encoder.py's batch), fp16 cache, this CPU. Both sides in one
process, interleaved repeats, medians:
- builder: the whole `build_feature_cache` call into a fresh folder (teacher hash, dataset
  fingerprint, image decoding, every forward, fp16 conversion, memmap writes, flush, manifest);
- bare: `DiffusionTeacher(x, t)` over the same inputs, pre-built in memory, in batches of 64.
Throughput is teacher inputs (images x views x t) per second.
Last line: ``ratio: <builder throughput / bare encoder throughput>`` (goal: >= 0.9).

    python benchmarks/cache_features.py [--images 64] [--timesteps 0,100,500,999] [--repeats 4]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel

from repfusion_zoo.cache import build_feature_cache
from repfusion_zoo.cache.encode import teacher_views
from repfusion_zoo.data import build_dataset
from repfusion_zoo.teachers import DiffusionTeacher

CONFIG = Path(__file__).resolve().parents[1] / "tests" / "configs" / "ddpm-cifar10-32.json"
BATCH = 64


def bare_inputs(dataset, count: int, timesteps: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (image, view, t) input, in the cache's order: x ``[N, 3, 32, 32]`` in [-1, 1], t ``[N]``."""
    images = torch.stack([dataset[i]["image"] for i in range(count)])
    views = teacher_views(images, 2)  # [n, 2, C, H, W]
    x = views[:, :, None].expand(-1, -1, len(timesteps), -1, -1, -1).reshape(-1, *images.shape[1:])
    t = torch.tensor(timesteps).repeat(count * 2)
    return x.contiguous(), t


def run_bare(teacher: DiffusionTeacher, x: torch.Tensor, t: torch.Tensor) -> float:
    start = time.perf_counter()
    for i in range(0, len(x), BATCH):
        teacher(x[i:i + BATCH], t[i:i + BATCH])
    return time.perf_counter() - start


def run_builder(teacher: DiffusionTeacher, dataset, count: int, timesteps: list[int], folder: Path) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    build_feature_cache(teacher, dataset, folder, timesteps=timesteps, dataset_spec="digits", split="train",
                        indices=list(range(count)), dtype="float16", batch_size=BATCH)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--timesteps", default="0,100,500,999")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()

    torch.manual_seed(0)
    teacher = DiffusionTeacher(UNet2DModel.from_config(json.loads(CONFIG.read_text())).eval())
    timesteps = [int(v) for v in args.timesteps.split(",")]
    dataset = build_dataset("digits", split="train", image_size=32, in_chans=3)
    x, t = bare_inputs(dataset, args.images, timesteps)
    inputs = len(x)
    work = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    try:
        run_bare(teacher, x[:BATCH], t[:BATCH])  # warm-up
        builder_times, bare_times = [], []
        for repeat in range(args.repeats):  # interleaved so load changes hit both alike
            builder_times.append(run_builder(teacher, dataset, args.images, timesteps, work / f"cache{repeat}"))
            bare_times.append(run_bare(teacher, x, t))
        size = sum(f.stat().st_size for f in (work / "cache0").iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    builder, bare = statistics.median(builder_times), statistics.median(bare_times)
    print(f"device: cpu, torch threads {torch.get_num_threads()}, batch {BATCH}, 32 px, ddpm-cifar10-32 architecture "
          f"(layer mid, feature {list(teacher.feature_shape)}), {args.repeats} interleaved repeats")
    print(f"work: {args.images} digits images x 2 views x {len(timesteps)} t ({args.timesteps}) = {inputs} teacher inputs; "
          f"fp16 cache {size / 2**20:.2f} MiB")
    print(f"cache builder (whole build_feature_cache): median {builder:7.2f} s = {inputs / builder:7.1f} inputs/s "
          f"(all: {', '.join(f'{s:.2f}' for s in builder_times)})")
    print(f"bare encoder-only teacher pass:           median {bare:7.2f} s = {inputs / bare:7.1f} inputs/s "
          f"(all: {', '.join(f'{s:.2f}' for s in bare_times)})")
    print(f"ratio: {(inputs / builder) / (inputs / bare):.3f}")


if __name__ == "__main__":
    main()
