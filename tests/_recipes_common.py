"""Helpers for the recipe tests (test_recipes / test_resume / test_distributed): a tiny teacher,
tiny-run flags and subprocess launchers. Everything runs on digits at 8 px with narrow models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
PYTHON = sys.executable

#: a narrow CIFAR ResNet-18 (8-16-32-64 channels) at 8 px: a step takes milliseconds
TINY_STUDENT = ["--student", "resnet18_cifar", "--student_kwargs", "{channels: [8, 16, 32, 64]}"]
#: train_teacher keys for a DDPM teacher that trains in seconds
TINY_TEACHER = {"block_out_channels": [16, 32, 32], "num_samples": 0, "log_every": 1}


def tiny_flags(output_dir: Path, **extra: object) -> list[str]:
    """distill.py flags for a tiny run at 8 px (add `--teacher` or teacher keys); the paper's policy unless
    `strategy` is given (it exercises every part: policy, decoder g, reward), not the configs' fixed t = 300."""
    extra = {"strategy": "reinforce", **extra}
    flags = ["--output_dir", str(output_dir), "--image_size", "8", "--in_chans", "3", *TINY_STUDENT,
             "--train_batch_size", "32", "--eval_batch_size", "128", "--num_train_epochs", "1", "--log_every", "1",
             "--finetune", "false", "--milestones", "[]"]
    for key, value in extra.items():
        flags += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return flags


def train_tiny_teacher(folder: Path) -> Path:
    """A DDPM teacher for 3 x 8 x 8 digits, 2 optimiser steps (reused when already there)."""
    from repfusion_zoo.pipelines import train_teacher

    argv = ["--config", str(RECIPES / "configs" / "teacher_digits.yaml"), "--output_dir", str(folder),
            "--image_size", "8", "--max_train_steps", "2", "--reuse", "true"]
    for key, value in TINY_TEACHER.items():
        argv += [f"--{key}", json.dumps(value)]
    return Path(train_teacher.train_teacher(train_teacher.parse_config(argv)))


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny digits teacher of `train_tiny_teacher`, trained once per test session and then reused."""
    return train_tiny_teacher(tmp_path_factory.getbasetemp() / "c2_tiny_teacher")


def env(**extra: str) -> dict[str, str]:
    """Subprocess environment: one torch thread per process, no network, repo importable."""
    out = dict(os.environ)
    out.update(REPFUSION_NUM_THREADS="1", OMP_NUM_THREADS="1", HF_HUB_OFFLINE=out.get("HF_HUB_OFFLINE", "1"),
               PYTHONUNBUFFERED="1", TQDM_MININTERVAL="5")
    out.update(extra)
    return out


def accelerate_cmd(script: str, args: Sequence[str], num_processes: int = 1) -> list[str]:
    """`accelerate launch` of a recipe. Several CPU processes: accelerate 1.x's `--cpu` launcher
    starts N processes only through mpirun, so they go through its torchrun launcher
    (`--multi_gpu`), and the recipe selects gloo on a machine without CUDA."""
    launcher = [PYTHON, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes > 1:
        launcher += ["--multi_gpu", "--main_process_port", str(_free_port())]
    else:
        launcher += ["--cpu"]
    return [*launcher, str(RECIPES / script), *args]


def run(cmd: Sequence[str], cwd: Path | None = None, timeout: float = 240, **env_extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(list(cmd), cwd=cwd, env=env(**env_extra), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
