#!/usr/bin/env python
"""One training step on cores that other jobs also use: loaded / quiet, before and after the recipes' wait setting.

The step: the cifar10_cpu student (quarter-width ``resnet18_cifar``, channels_last, batch 128,
32 px, fp32, SGD), with the recipes' thread count (`configure_cpu_threads`: every usable core),
in a fresh process each time (OpenMP reads its settings once, when torch loads):

- ``before``: the environment as it is (libgomp's default wait: 300,000 spins);
- ``after``: plus what every recipe now adds before torch loads (`recipes/_process_env.py`:
  ``GOMP_SPINCOUNT=1000`` unless the user chose a wait);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (the README's earlier advice), for comparison.

Each is timed quiet, then beside ``--jobs`` other CPU-bound torch jobs (each as many threads as
there are cores, as another training run would use). Printed: the median step of each, its
loaded / quiet ratio, and last ``ratio: <loaded / quiet after>`` (fair sharing of the cores
among 1 + jobs processes would be about 1 + jobs).

    python benchmarks/shared_cores.py    # ~2-3 min on the 2-core CPU
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))

from _process_env import WAIT_VARIABLES, recipe_environment  # noqa: E402

STEP = """
import json, statistics, sys, time
import torch, torch.nn.functional as F
from repfusion_zoo import create_model
from repfusion_zoo.training import configure_cpu_threads
configure_cpu_threads()
torch.manual_seed(0)
model = create_model("resnet18_cifar", num_classes=10, channels=[16, 32, 64, 128]).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 10, (128,))
times = []
for _ in range(2 + int(sys.argv[1])):
    started = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    times.append(time.perf_counter() - started)
print(json.dumps({"step": statistics.median(times[2:]), "threads": torch.get_num_threads()}))
"""

LOAD = """
import torch
torch.set_num_threads(int(__import__("sys").argv[1]))
a = torch.randn(256, 256)
while True:
    a = torch.tanh(a @ a.T / 16)
"""


def step_seconds(env: dict[str, str], steps: int) -> tuple[float, int]:
    """Median step time (s) and thread count of one fresh process with `env`."""
    out = subprocess.run([sys.executable, "-c", STEP, str(steps)], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["step"], result["threads"]


def medians(settings: dict[str, dict[str, str]], args: argparse.Namespace) -> dict[str, float]:
    """Each setting's median step over `args.rounds` processes, the settings interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, env in settings.items():
            times[name].append(step_seconds(env, args.steps)[0])
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="competing CPU-bound torch jobs")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting and load (interleaved; median)")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES and k != "OMP_NUM_THREADS"}
    settings = {"before": base, "after": {**base, **recipe_environment(base)},
                "passive": {**base, "OMP_WAIT_POLICY": "PASSIVE"}}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = step_seconds(base, 1)[1]
    print(f"{threads} threads a step; quiet first, then beside {args.jobs} jobs of {cores} threads each; "
          f"median of {args.rounds} processes per setting")
    quiet = medians(settings, args)
    loads = [subprocess.Popen([sys.executable, "-c", LOAD, str(cores)], env=base) for _ in range(args.jobs)]
    try:
        time.sleep(3)  # the jobs are running before any step is timed
        loaded = medians(settings, args)
    finally:
        for job in loads:
            job.kill()
    for name, env in settings.items():
        added = {k: v for k, v in env.items() if k in WAIT_VARIABLES} or "libgomp's default"
        print(f"{name:>8} ({added}): quiet {quiet[name] * 1000:6.0f} ms, loaded {loaded[name] * 1000:6.0f} ms, "
              f"loaded / quiet {loaded[name] / quiet[name]:5.2f}")
    print(f"quiet cost of the recipes' setting: after / before = {quiet['after'] / quiet['before']:.3f}")
    print(f"before: loaded / quiet = {loaded['before'] / quiet['before']:.2f}")
    print(f"ratio: {loaded['after'] / quiet['after']:.2f}")


if __name__ == "__main__":
    main()
