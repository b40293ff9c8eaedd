"""Atomic, resumable training state.

The layout of diffusers' example scripts: `output_dir/checkpoint-<step>` folders, and
`--resume_from_checkpoint latest` (or `auto`) continues from the newest complete one.
`accelerator.save_state` writes into `checkpoint-<step>.tmp` (the models as safetensors; the
optimiser, LR schedule and RNG states in torch's format, read back with ``weights_only=True``);
only once every process has finished does the main process add `progress.json` (the
`TrainingState`) and `os.replace` the folder to `checkpoint-<step>`. A kill at any moment leaves either the previous complete checkpoint or the
new one, never a half-written folder under a final name.

Bit-exact resume on CPU: the recipes reseed every random source at the start of each step from
`(seed, step, rank)` (`seed_step`), and the data order comes from an epoch-seeded sampler with
the finished batches of the current epoch skipped, so nothing depends on RNG history.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import set_seed

from ..atomic import fsync_folder
from ..errors import ConfigError

CHECKPOINT_PREFIX = "checkpoint-"
PROGRESS_FILE = "progress.json"
#: the values of `resume_from_checkpoint` that mean "the newest complete checkpoint, else fresh"
LATEST = ("latest", "auto")
_STEP_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


@dataclass
class TrainingState:
    """Where training stands: optimiser steps done, epoch, batches done in that epoch, and the
    history of logged epochs (saved as ``progress.json`` in every checkpoint)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    history: dict[str, Any] = field(default_factory=dict)


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed python, numpy and torch (accelerate's `set_seed`) from (seed, step, rank): each step's
    randomness is history-free."""
    set_seed((seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**31 - 1))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (model initialisation) before anything random is built."""
    seed_step(seed, -1, 0)


def checkpoint_root(output_dir: str | Path) -> Path:
    """The folder holding the `checkpoint-<step>` folders: `output_dir` itself (diffusers' layout)."""
    return Path(output_dir)


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step}"


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first (`.tmp` folders are ignored)."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_RE.match(path.name)
        if match and (path / PROGRESS_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resolve_resume(resume: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint `--resume_from_checkpoint` names: `None`/"" -> start fresh; "latest" (or
    "auto") -> the newest complete checkpoint, or fresh when there is none; else that folder, as a
    path or, as in diffusers, a folder name inside `output_dir` (`checkpoint-500`)."""
    if not resume:
        return None
    if resume in LATEST:
        found = complete_checkpoints(output_dir)
        return found[-1][1] if found else None
    for path in (Path(resume), checkpoint_root(output_dir) / resume):
        if (path / PROGRESS_FILE).is_file():
            return path
    raise ConfigError(
        f"--resume_from_checkpoint {resume!r} is not a complete checkpoint folder (no {PROGRESS_FILE}); "
        f"use --resume_from_checkpoint latest or one of {[str(p) for _, p in complete_checkpoints(output_dir)]}"
    )


class CheckpointManager:
    """Saves and restores the accelerator state plus the `TrainingState`, keeping the newest `total_limit`."""

    def __init__(self, accelerator: Accelerator, output_dir: str | Path, total_limit: int = 2) -> None:
        self.accelerator = accelerator
        self.root = checkpoint_root(output_dir)
        self.total_limit = max(1, total_limit)

    def save(self, state: TrainingState) -> Path:
        """Write the run's state at `state.step` atomically; returns the final folder."""
        acc = self.accelerator
        final = self.root / checkpoint_name(state.step)
        tmp = self.root / f"{checkpoint_name(state.step)}.tmp"
        if final.is_dir() and (final / PROGRESS_FILE).is_file():
            return final
        if acc.is_main_process:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            _write_json(tmp / PROGRESS_FILE, asdict(state))
            fsync_folder(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            fsync_folder(self.root)
            self._prune()
        acc.wait_for_everyone()
        return final

    def load(self, folder: str | Path) -> TrainingState:
        """Restore model / optimiser / LR schedule / RNG state from `folder`; returns its `TrainingState`."""
        folder = Path(folder)
        self.accelerator.load_state(str(folder))
        data = json.loads((folder / PROGRESS_FILE).read_text())
        return TrainingState(**data)

    def _prune(self) -> None:
        for _, path in complete_checkpoints(self.root)[: -self.total_limit]:
            shutil.rmtree(path, ignore_errors=True)
        for path in self.root.glob(f"{CHECKPOINT_PREFIX}*.tmp"):
            shutil.rmtree(path, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
