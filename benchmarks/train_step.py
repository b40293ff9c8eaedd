#!/usr/bin/env python
"""The cifar10_cpu student's training step, eager as the recipes ran it before, beside the fastest setting.

Student: ``resnet18_cifar`` at a quarter width (16-32-64-128, the cifar10_cpu grid's), batch 128,
32 px, fp32, cross-entropy, SGD (lr 0.05, momentum 0.9, weight decay 5e-4: the grid's fine-tune).
One step = the next batch from the recipes' data path (`repfusion_zoo.training.data.seeded_train_loader`
over in-memory images with the CIFAR crop (4 px) and flips) + forward + backward + SGD step, all
timed. Settings, each from the same weights and the same batches:

- ``eager``: what the recipes did before: NCHW, and the loader's per-item reseeding through
  ``torch.manual_seed``, which also queues a lazy seed for every uninitialised accelerator of a
  CUDA build of torch (a stack trace formatted per item);
- ``data``: the data path as it is now (``torch.default_generator.manual_seed``), NCHW;
- ``channels_last``: the data path as now + the model in channels_last (the recipes' default now,
  `TrainConfig.channels_last`): the setting this benchmark names best unless a faster one is found;
- ``bf16``: channels_last + bf16 autocast (``torch.autocast("cpu", torch.bfloat16)``: what the
  recipes do by default on a CPU with native bf16, training/precision.py, and what
  ``accelerate launch --mixed_precision bf16`` does on any CPU; weights, gradients and SGD stay
  fp32). Only where the CPU computes bf16 natively (AVX512-BF16 or AMX: this machine's Xeon has
  both); elsewhere bf16 is emulated and far slower, so the setting is skipped;
- ``compile`` (``--compile``): channels_last + ``torch.compile`` (inductor, CPU), its compile
  time counted and the step after which it pays for itself reported.

Printed: each setting's median step (interleaved after warm-up), the loss curves of ``eager``
and the best setting over ``--curve_steps`` steps from the same start (max and mean |difference|,
against the eager curve's own step-to-step noise), and last ``ratio: <best step / eager step>``.

Measured 2026-12-06 on this 2-core CPU (a Xeon with AVX512-BF16 and AMX), quiet: eager 213.2 ms a
step, data 183.5, channels_last 147.1, bf16 89.0, so ``ratio: 0.417``; the loss curve over 50 steps,
bf16 vs eager: max |difference| 0.016, mean 0.0035, against eager's own step-to-step change of 0.028.
With ``--compile`` the same day: eager 215.6, channels_last 154.4, compile 138.6 (20.7 s to compile;
it pays for itself against channels_last after 1,313 steps, so it stays opt-in).

    python benchmarks/train_step.py              # ~30 s on the 2-core CPU
    python benchmarks/train_step.py --compile    # + torch.compile (~1-2 min more to compile)
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repfusion_zoo import create_model  # noqa: E402
from repfusion_zoo.data.base import ImageClassificationDataset  # noqa: E402
from repfusion_zoo.data.transforms import image_augmentation  # noqa: E402
from repfusion_zoo.training import configure_cpu_threads  # noqa: E402
from repfusion_zoo.training.precision import native_cpu_bf16  # noqa: E402
from repfusion_zoo.training.data import EpochSampler, EpochSeededDataset, _mix, collate, seeded_train_loader  # noqa: E402


class InMemoryImages(ImageClassificationDataset):
    """``n`` random 32 px images in [0, 1] held in memory, as the image-folder reader holds CIFAR-10."""

    def __init__(self, n: int, size: int, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 10, (n,), generator=gen).tolist()
        super().__init__([str(c) for c in range(10)], labels, image_augmentation(True, crop_padding=4))
        self.images = torch.rand(n, 3, size, size, generator=gen)

    def load_image(self, index: int) -> torch.Tensor:
        return self.images[index]


class BeforeSeededDataset(EpochSeededDataset):
    """The loader's per-item seeding as it was: ``torch.manual_seed`` (the baseline only)."""

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, self.epoch, index))
            return self.dataset[index]


def batches(dataset: InMemoryImages, batch: int, before: bool) -> Iterator[dict[str, Any]]:
    """Endless epoch-seeded batches: the recipes' loader, or the same with the old per-item seeding."""
    if before:
        sampler, seeded = EpochSampler(len(dataset), seed=0), BeforeSeededDataset(dataset, seed=0)
        loader = DataLoader(seeded, batch_size=batch, sampler=sampler, drop_last=True, collate_fn=collate)
    else:
        loader, sampler, seeded = seeded_train_loader(dataset, batch, seed=0)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        seeded.set_epoch(epoch)
        yield from loader
        epoch += 1


def make_step(student: torch.nn.Module, channels_last: bool, compile: bool, bf16: bool = False) -> Callable[[dict[str, Any]], float]:
    """One SGD step of a copy of `student` in the given format (forward under bf16 autocast if `bf16`); returns the loss."""
    model = copy.deepcopy(student)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)

    def step(batch: dict[str, Any]) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward((batch["image"] - mean) / std), batch["label"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--items", type=int, default=5000, help="images in memory (the grid's 500 labels a class)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per setting, interleaved")
    parser.add_argument("--curve_steps", type=int, default=50, help="steps of the loss-curve comparison")
    parser.add_argument("--compile", action="store_true", help="also time channels_last + torch.compile")
    args = parser.parse_args()
    threads = configure_cpu_threads()
    print(f"torch {torch.__version__}, {threads} threads, batch {args.batch_size}, {args.image_size} px, fp32")

    torch.manual_seed(0)
    student = create_model("resnet18_cifar", num_classes=10, channels=[16, 32, 64, 128])
    data = InMemoryImages(args.items, args.image_size)
    settings = {"eager": (True, False, False, False), "data": (False, False, False, False),
                "channels_last": (False, True, False, False)}
    if native_cpu_bf16():
        settings["bf16"] = (False, True, False, True)
    else:
        print("bf16: skipped (this CPU has no native bf16: AVX512-BF16 or AMX)")
    if args.compile:
        settings["compile"] = (False, True, True, False)
    steps, feeds, warm = {}, {}, {}
    for name, (before, *options) in settings.items():
        steps[name], feeds[name] = make_step(student, *options), batches(data, args.batch_size, before)
        started = time.perf_counter()
        for _ in range(2):
            float(steps[name](next(feeds[name])))
        warm[name] = time.perf_counter() - started
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.steps):
        for name in settings:
            started = time.perf_counter()
            steps[name](next(feeds[name]))
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(t) for name, t in times.items()}
    for name in settings:
        print(f"{name:>14}: {median[name] * 1000:7.1f} ms a step  ({args.batch_size / median[name]:5.0f} images/s; "
              f"first 2 steps {warm[name]:.1f} s)  x{median[name] / median['eager']:.3f} of eager")
    best = min((n for n in settings if n != "eager"), key=median.get)
    if args.compile:
        extra = warm["compile"] - 2 * median["compile"]
        for base in ("eager", "channels_last"):
            saved = median[base] - median["compile"]
            when = f"after {extra / saved:.0f} steps" if saved > 0 else "never (no faster a step)"
            print(f"compile: {extra:.1f} s to compile; against {base} it pays for itself {when}")

    curves = {}
    for name in ("eager", best):
        before, *options = settings[name]
        step, feed = make_step(student, *options), batches(data, args.batch_size, before)
        curves[name] = torch.tensor([float(step(next(feed))) for _ in range(args.curve_steps)])
    diff = (curves[best] - curves["eager"]).abs()
    noise = (curves["eager"][1:] - curves["eager"][:-1]).abs().mean()
    print(f"loss curve over {args.curve_steps} steps, {best} vs eager: max |diff| {diff.max():.2e}, mean {diff.mean():.2e} "
          f"(eager's own step-to-step change: mean {noise:.3f}); last loss {curves[best][-1]:.4f} vs {curves['eager'][-1]:.4f}")
    print(f"best: {best}")
    print(f"ratio: {median[best] / median['eager']:.3f}")


if __name__ == "__main__":
    main()
