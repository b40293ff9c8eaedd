#!/usr/bin/env python
"""One online RepFusion distillation step vs one plain supervised step of the same student.

Student: CIFAR ResNet-18 (`resnet18_cifar`), 32 px, batch 64. Teacher: the google/ddpm-cifar10-32
ARCHITECTURE (its published config.json, tests/configs/ddpm-cifar10-32.json), random-initialised
(no download; the cost does not depend on the weights), encoder-only to the authors' layer.
The distillation step is `repfusion_zoo.distill_model.DistillModel` (student forward_features + policy +
teacher encoder + decoder g + hint loss) with backward and an SGD step over student + policy +
decoder + connector; the supervised step is student forward + cross-entropy + backward + SGD step.
Both are timed interleaved (distill, supervised, teacher-only, ...) after warm-up, median reported.
The teacher's share = median teacher-only forward / median distill step.

    python benchmarks/distill_step.py                                   # this CPU (fp32)
    python benchmarks/distill_step.py --device cuda --mixed_precision bf16 --batch_size 128 --steps 30

Last line: `ratio: <distill step time / supervised step time>`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
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
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--layer", default="mid_resnet2_conv2")
    parser.add_argument("--strategy", default="reinforce", choices=["reinforce", "fixed", "random"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    import repfusion_zoo  # noqa: F401
    from repfusion_zoo import create_model
    from repfusion_zoo.decoders import build_decoder
    from repfusion_zoo.distill import RepFusion
    from repfusion_zoo.distill_model import DistillModel
    from repfusion_zoo.losses import build_distill_loss
    from repfusion_zoo.timesteps import build_strategy

    teacher = build_teacher(args.layer)
    student = create_model("resnet18_cifar", num_classes=0)
    supervised = create_model("resnet18_cifar", num_classes=10)
    supervised.load_state_dict(student.state_dict(), strict=False)
    t_channels = teacher.feature_shape[0]
    strategy = build_strategy(args.strategy, in_chans=3, num_train_timesteps=teacher.num_train_timesteps)
    rf = RepFusion(teacher, strategy, build_decoder("linear", t_channels, 10),
                   build_distill_loss("hint", student.num_features, t_channels))
    model = DistillModel(student, rf, in_chans=3).to(device).train()
    supervised = supervised.to(device).train()
    opt_d = torch.optim.SGD([*student.parameters(), *rf.trainable_parameters()], lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt_s = torch.optim.SGD(supervised.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    mean, std = model.normalize.mean.to(device), model.normalize.std.to(device)

    images = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def distill_step() -> None:
        with autocast():
            out = model(images, labels, 0.5)
        out.losses["total"].backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)

    def supervised_step() -> None:
        with autocast():
            loss = F.cross_entropy(supervised((images - mean) / std).float(), labels)
        loss.backward()
        opt_s.step()
        opt_s.zero_grad(set_to_none=True)

    def teacher_only() -> None:
        with torch.no_grad(), autocast():
            t = torch.randint(0, teacher.num_train_timesteps, (args.batch_size,), device=device)
            teacher(images * 2 - 1, t)

    timed = {"distill": distill_step, "supervised": supervised_step, "teacher": teacher_only}
    times: dict[str, list[float]] = {k: [] for k in timed}
    for i in range(args.warmup + args.steps):
        for name, fn in timed.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; precision: {args.mixed_precision}; batch {args.batch_size} x 3 x {args.image_size} x {args.image_size}; "
          f"teacher ddpm-cifar10-32 architecture ({sum(p.numel() for p in teacher.parameters()) / 1e6:.1f} M params, layer {args.layer}, "
          f"feature {tuple(teacher.feature_shape)}); student resnet18_cifar; strategy {args.strategy}; {args.steps} interleaved repeats, median")
    for name in ("supervised", "distill", "teacher"):
        print(f"{name:>10} step: {med[name] * 1000:9.1f} ms  ({args.batch_size / med[name]:8.1f} images/s)  runs: "
              + ", ".join(f"{v * 1000:.0f}" for v in times[name]))
    print(f"teacher share of the distill step: {100 * med['teacher'] / med['distill']:.1f} %")
    print(f"ratio: {med['distill'] / med['supervised']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
