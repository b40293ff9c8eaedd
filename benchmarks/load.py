"""Load time: ``repfusion_zoo.create_model(name, pretrained=True)`` from a local safetensors file
against timm's own load of a same-sized file of the plain architecture, side by side in one process.

    python benchmarks/load.py [--name resnet18_repfusion_celebahq] [--repeats 15]

Both go through timm's pretrained path (``pretrained_cfg_overlay=dict(file=...)``); the zoo adds
its registry entry, the safetensors check and the no-network guard. Runs alternate (zoo, timm,
zoo, ...) after one warm-up each, so caches and CPU frequency treat both alike; medians are
reported. Last line: ``ratio: <zoo load time / timm load time>``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import safetensors.torch
import timm
import torch

import repfusion_zoo
from repfusion_zoo.zoo import zoo_info


def _timed(fn: Callable[[], torch.nn.Module]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _write_weights(model: torch.nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="resnet18_repfusion_celebahq",
                        help="zoo name (its architecture must be timm's)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)

    architecture = zoo_info(args.name)["repfusion"]["architecture"]
    zoo_model = repfusion_zoo.create_model(args.name)
    timm_model = timm.create_model(architecture, num_classes=zoo_model.num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        zoo_file = _write_weights(zoo_model, Path(tmp) / "zoo.safetensors")
        timm_file = _write_weights(timm_model, Path(tmp) / "timm.safetensors")
        del zoo_model, timm_model

        def load_zoo() -> torch.nn.Module:
            return repfusion_zoo.create_model(args.name, pretrained=True,
                                              pretrained_cfg_overlay=dict(file=str(zoo_file)))

        def load_timm() -> torch.nn.Module:
            return timm.create_model(architecture, pretrained=True, num_classes=0,
                                     pretrained_cfg_overlay=dict(file=str(timm_file), num_classes=0))

        loaded, expected = load_zoo().state_dict(), safetensors.torch.load_file(zoo_file)
        assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
        _timed(load_timm)
        zoo_times, timm_times = [], []
        for _ in range(args.repeats):
            zoo_times.append(_timed(load_zoo))
            timm_times.append(_timed(load_timm))

        sizes = f"zoo {zoo_file.stat().st_size / 1e6:.1f} MB, timm {timm_file.stat().st_size / 1e6:.1f} MB"
        print(f"model: {args.name} (architecture {architecture}); file sizes: {sizes}; "
              f"repeats {args.repeats}; torch threads 1")
    zoo_median, timm_median = statistics.median(zoo_times), statistics.median(timm_times)
    print(f"repfusion_zoo.create_model(pretrained=True, file=...): median {zoo_median * 1e3:.1f} ms "
          f"(min {min(zoo_times) * 1e3:.1f}, max {max(zoo_times) * 1e3:.1f})")
    print(f"timm.create_model({architecture!r}, pretrained=True, file=...): median {timm_median * 1e3:.1f} ms "
          f"(min {min(timm_times) * 1e3:.1f}, max {max(timm_times) * 1e3:.1f})")
    print(f"ratio: {zoo_median / timm_median:.3f}")


if __name__ == "__main__":
    main()
