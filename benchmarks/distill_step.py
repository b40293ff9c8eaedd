#!/usr/bin/env python
"""Supervised step vs online distillation step vs cached distillation step, side by side in one run.

Student: CIFAR ResNet-18 (`resnet18_cifar`), 32 px, batch 64. Teacher: the google/ddpm-cifar10-32
ARCHITECTURE (its published config.json, tests/configs/ddpm-cifar10-32.json), random-initialised
(no download; the cost does not depend on the weights), encoder-only to the authors' layer.

Timed, interleaved after warm-up, medians:
- supervised: student forward + cross-entropy + backward + SGD step;
- online: `repfusion_zoo.method.DistillModel` (student forward_features + policy + teacher encoder
  + decoder g + hint loss) + backward + SGD over student, policy, decoder and connector;
- cached: the same `DistillModel` around a `CachedTeacher`: a real feature cache built at start
  into a temp dir by `build_feature_cache` (the same teacher, `--cache_items` synthetic images x
  2 views x the 8 time steps of `--cache_timesteps`), batches of (image, index, flip) drawn from it;
- teacher: the online teacher's forward alone (no grad).

Every model starts from the same student weights and is built by the distill recipe's own code
(`repfusion_zoo.pipelines.distill`: `repfusion_from_config`, `DistillModel` with its `compile` /
`channels_last` options).

Printed: each step's median, the teacher's share of the online step and its cost relative to the
supervised step, online / supervised against its limit ``1 + teacher / supervised + 0.10`` (a step
that costs student + teacher and nothing else is at ``1 + teacher / supervised``), and last
``ratio: <cached / supervised>`` (goal on the 2-core CPU: <= 1.15).

    python benchmarks/distill_step.py                                   # this CPU (fp32), ~2-3 min
    python benchmarks/distill_step.py --threads 1 --clock cpu           # beside another job: CPU time
    python benchmarks/distill_step.py --device cuda --mixed_precision bf16 --batch_size 128 --steps 30 --compile
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
TEACHER_CONFIG = REPO / "tests" / "configs" / "ddpm-cifar10-32.json"


def build_teacher(layer: str):
    from diffusers import UNet2DModel

    from repfusion_zoo.teachers import DiffusionTeacher

    config = {k: v for k, v in json.loads(TEACHER_CONFIG.read_text()).items() if not k.startswith("_")}
    return DiffusionTeacher(UNet2DModel.from_config(config), layer=layer)


class SyntheticImages(torch.utils.data.Dataset):
    """``n`` random images in [0, 1] with labels: what `build_feature_cache` reads (``images`` and
    ``labels`` give its fingerprint; no augmentation: flips are the cache's views)."""

    augmentation = None

    def __init__(self, n: int, size: int, num_classes: int = 10, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, size, size, generator=gen)
        self.labels = torch.randint(0, num_classes, (n,), generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "index": i}


def build_cache(teacher, dataset, folder: Path, timesteps: str, device: torch.device) -> Path:
    from accelerate import PartialState

    from repfusion_zoo.cache import build_feature_cache

    state = PartialState(cpu=device.type == "cpu")
    return build_feature_cache(teacher.to(state.device), dataset, folder, timesteps=timesteps, dataset_spec="synthetic",
                               split="train", batch_size=256, state=state)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mixed_precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed repeats of each step (interleaved)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repeats first (compile needs >= 2)")
    parser.add_argument("--layer", default="mid_resnet2_conv2")
    parser.add_argument("--strategy", default="reinforce", choices=["reinforce", "fixed", "random"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--compile", action="store_true", help="the recipe's `compile: true` (torch.compile of the student forward)")
    parser.add_argument("--compile_mode", default="default", help="the recipe's `compile_mode`")
    parser.add_argument("--channels_last", action="store_true", help="the recipe's `channels_last: true` (student + policy)")
    parser.add_argument("--cache_items", type=int, default=256, help="synthetic images in the feature cache")
    parser.add_argument("--cache_timesteps", default="0,10,50,100,200,300,500,999", help="the cache's (and the cached run's) time steps")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="wall time, or this process's CPU time (steadier beside other jobs; use with --threads 1)")
    parser.add_argument("--system_allocator", action="store_true",
                        help="leave glibc's malloc as it is (the recipes reuse freed memory: repfusion_zoo/training/allocator.py)")
    args = parser.parse_args()
    from repfusion_zoo.training.allocator import configure_cpu_allocator

    allocator = "system" if args.system_allocator or not configure_cpu_allocator() else "reuse (as the recipes)"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    import repfusion_zoo  # noqa: F401
    from repfusion_zoo import create_model
    from repfusion_zoo.method import DistillModel
    from repfusion_zoo.pipelines import distill as recipe
    from repfusion_zoo.teachers.cached import CachedTeacher

    torch.manual_seed(0)
    teacher = build_teacher(args.layer)
    dataset = SyntheticImages(args.cache_items, args.image_size)
    workdir = tempfile.TemporaryDirectory(prefix="distill_step_cache_")
    started = time.perf_counter()
    cache_dir = build_cache(teacher, dataset, Path(workdir.name) / "cache", args.cache_timesteps, device)
    cache_seconds = time.perf_counter() - started

    cfg = recipe.DistillConfig(strategy=args.strategy, compile=args.compile, compile_mode=args.compile_mode,
                               channels_last=args.channels_last)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format  # what the Trainer applies
    torch.manual_seed(0)
    student = create_model("resnet18_cifar", num_classes=0)
    supervised = create_model("resnet18_cifar", num_classes=10)
    supervised.load_state_dict(student.state_dict(), strict=False)
    channels = student.num_features

    def distill_model(teacher_module, timesteps: str):
        torch.manual_seed(1)
        cfg.timesteps = timesteps
        rf = recipe.repfusion_from_config(cfg, teacher_module, channels, 10)
        model = DistillModel(copy.deepcopy(student), rf, 3, compile=cfg.compile,
                             compile_mode=cfg.compile_mode).to(device, memory_format=memory_format).train()
        opt = torch.optim.SGD([*model.student.parameters(), *rf.trainable_parameters()], lr=0.1, momentum=0.9, weight_decay=1e-4)
        return model, opt

    online, opt_online = distill_model(teacher, "all")
    cached_teacher = CachedTeacher(cache_dir, num_train_timesteps=teacher.num_train_timesteps)
    cached, opt_cached = distill_model(cached_teacher, "all")  # 'all' = the cache's set
    supervised = supervised.to(device).train()
    if args.channels_last:
        supervised = supervised.to(memory_format=torch.channels_last)
    opt_s = torch.optim.SGD(supervised.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    mean, std = online.normalize.mean.to(device), online.normalize.std.to(device)
    teacher = teacher.to(device)

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch_size, 3, args.image_size, args.image_size, generator=gen).to(device)
    labels = torch.randint(0, 10, (args.batch_size,), generator=gen).to(device)
    batches = []  # (images, labels, index, flip) as the training loader gives them, on the device
    for _ in range(4):
        index = torch.randint(0, len(dataset), (args.batch_size,), generator=gen)
        flip = torch.rand(args.batch_size, generator=gen) < 0.5
        x = dataset.images[index]
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.as_tensor(dataset.labels)[index]
        batches.append(tuple(v.to(device) for v in (x, y, index, flip)))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    counter = {"cached": 0}

    def online_step() -> None:
        with autocast():
            out = online(images, labels, 0.5)
        out.losses["total"].backward()
        opt_online.step()
        opt_online.zero_grad(set_to_none=True)

    def cached_step() -> None:
        x, y, index, flip = batches[counter["cached"] % len(batches)]
        counter["cached"] += 1
        with autocast():
            out = cached(x, y, 0.5, index, flip)
        out.losses["total"].backward()
        opt_cached.step()
        opt_cached.zero_grad(set_to_none=True)

    def supervised_step() -> None:
        x = (images - mean) / std
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            loss = F.cross_entropy(supervised(x).float(), labels)
        loss.backward()
        opt_s.step()
        opt_s.zero_grad(set_to_none=True)

    def teacher_only() -> None:
        with torch.no_grad(), autocast():
            t = torch.randint(0, teacher.num_train_timesteps, (args.batch_size,), device=device)
            teacher(images * 2 - 1, t)

    timed = {"online": online_step, "supervised": supervised_step, "cached": cached_step, "teacher": teacher_only}
    times: dict[str, list[float]] = {k: [] for k in timed}
    for i in range(args.warmup + args.steps):
        for name, fn in timed.items():
            sync(device)
            start = clock()
            fn()
            sync(device)
            if i >= args.warmup:
                times[name].append(clock() - start)
    med = {k: statistics.median(v) for k, v in times.items()}

    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    options = ", ".join(o for o, on in (("compile", args.compile), ("channels_last", args.channels_last)) if on) or "none"
    print(f"device: {where}; precision: {args.mixed_precision}; batch {args.batch_size} x 3 x {args.image_size} x {args.image_size}; "
          f"options: {options}; clock: {args.clock}; CPU allocator: {allocator}")
    print(f"teacher: ddpm-cifar10-32 architecture ({sum(p.numel() for p in teacher.parameters()) / 1e6:.1f} M params, "
          f"layer {args.layer}, feature {tuple(teacher.feature_shape)}); student resnet18_cifar; strategy {args.strategy}")
    print(f"cache: {len(dataset)} items x 2 views x {len(cached_teacher.timesteps)} t, {cached_teacher.cache.manifest.dtype}, "
          f"built in {cache_seconds:.1f} s; {args.steps} interleaved repeats after {args.warmup} warm-up, median")
    for name in ("supervised", "online", "cached", "teacher"):
        print(f"{name:>10} step: {med[name] * 1000:9.1f} ms  ({args.batch_size / med[name]:8.1f} images/s)  runs: "
              + ", ".join(f"{v * 1000:.0f}" for v in times[name]))
    teacher_rel = med["teacher"] / med["supervised"]
    online_ratio = med["online"] / med["supervised"]
    overhead = med["online"] - med["supervised"] - med["teacher"]
    print(f"teacher share of the online step: {100 * med['teacher'] / med['online']:.1f} %; teacher / supervised: {teacher_rel:.3f}")
    print(f"online / supervised: {online_ratio:.3f}  (limit 1 + teacher / supervised + 0.10 = {1 + teacher_rel + 0.10:.3f}; "
          f"overhead beyond student + teacher: {overhead * 1000:.1f} ms = {100 * overhead / med['supervised']:.1f} % of a supervised step)")
    print(f"cached / online: {med['cached'] / med['online']:.3f}")
    print(f"ratio: {med['cached'] / med['supervised']:.3f}")
    workdir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
