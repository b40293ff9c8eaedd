"""What the loop logs: the means since the last log (progress bar, ``on_log``) and the epoch records
(``log.jsonl``, trackers, one line per epoch), both reduced over processes.

Epoch sums live in the `TrainingState`'s history (``history["current"]``), so a checkpoint taken
mid-epoch resumes them: per micro-batch, the mean over processes of every logged 0-d value is
added in float64 in step order; a record holds the sums divided by the count. Between flushes
(`EpochTally.flush`: before a checkpoint and at the epoch's end) the sums and the histogram
counts stay on the device, so a step makes no host sync for its logging.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ..atomic import replace_text
from ..errors import DIVERGED_FIX, TrainingDivergedError
from .state import TrainingState
from .step import StepOutput

__all__ = ["LogWindow", "EpochTally", "DeviceTally", "flat_scalars", "check_finite", "DIVERGED_FILE"]

#: what a run that diverged leaves in its output folder: ``{"step": ..., "error": ...}``
DIVERGED_FILE = "diverged.json"


class LogWindow:
    """The named losses of every micro-batch since the last log, on the device until `means`."""

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = {}

    def add(self, out: StepOutput) -> None:
        for name, value in out.losses.items():
            self.values.setdefault(name, []).append(value.detach())

    def means(self, accelerator: Accelerator) -> dict[str, float]:
        """Each name's mean over the window's micro-batches, averaged over processes; the window empties."""
        if not self.values:
            return {}
        local = torch.stack([torch.stack(values).mean() for values in self.values.values()])
        reduced = accelerator.reduce(local.to(accelerator.device), reduction="mean").tolist()
        names = list(self.values)
        self.values = {}
        return dict(zip(names, reduced))


def check_finite(means: Mapping[str, float], step: int) -> None:
    """Raise `TrainingDivergedError` when a logged mean (``LogWindow.means``, already on the host) is
    NaN or infinite: the run stops at its first log after diverging, its last checkpoint intact."""
    bad = {name: value for name, value in means.items() if not np.isfinite(value)}
    if bad:
        raise TrainingDivergedError(f"training diverged by step {step}: {bad} are not finite; {DIVERGED_FIX}.")


def _empty() -> dict[str, Any]:
    return {"sums": {}, "count": 0, "hist": {}}


class DeviceTally:
    """Per-step losses and histogram counts summed on the device, read back only by `flush`.

    The sums are float64, started from the history's values and added in step order: after a
    flush they equal, bit for bit, adding each step's (float32) values to Python floats one by
    one. The counts are int64 (``scatter_add_``: no ``bincount``, which syncs on a GPU to size its
    output).
    """

    def __init__(self) -> None:
        self.keys: tuple[str, ...] = ()
        self.sums: torch.Tensor | None = None
        self.counts: dict[str, torch.Tensor] = {}

    def add_scalars(self, current: dict[str, Any], keys: tuple[str, ...], values: torch.Tensor) -> None:
        """Add one step's ``values [len(keys)]``; a new key set first flushes the old one into ``current``."""
        if keys != self.keys or self.sums is None:
            self.flush(current, counts=False)
            start = [current["sums"].get(k, 0.0) for k in keys]
            self.keys, self.sums = keys, torch.tensor(start, dtype=torch.float64).to(values.device)
        self.sums += values.detach().to(torch.float64)

    def add_counts(self, key: str, values: torch.Tensor, bins: int) -> None:
        """Count integer ``values`` into ``bins`` bins (values clamped to 0..bins-1)."""
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = torch.zeros(bins, dtype=torch.long, device=values.device)
        index = values.reshape(-1).clamp(0, bins - 1)
        counts.scatter_add_(0, index, torch.ones_like(index))

    def flush(self, current: dict[str, Any], counts: bool = True) -> None:
        """Write the sums (and the counts, added to ``current["hist"]``) into ``current``; one sync."""
        if self.sums is not None:
            current["sums"].update(zip(self.keys, self.sums.tolist()))
            self.keys, self.sums = (), None
        if counts:
            for key, tensor in self.counts.items():
                old, new = current["hist"].get(key), tensor.tolist()
                current["hist"][key] = new if old is None else [a + b for a, b in zip(old, new)]
            self.counts = {}


class EpochTally:
    """The epoch's sums (``state.history["current"]``, added on the device between flushes) and its
    record at the epoch's end."""

    def __init__(self, accelerator: Accelerator, state: TrainingState, log_file: Path) -> None:
        self.accelerator, self.state, self.log_file = accelerator, state, log_file
        self.device = DeviceTally()

    def add(self, out: StepOutput) -> None:
        """One micro-batch: its 0-d values (mean over processes) and its histogram counts; no host sync."""
        acc = self.accelerator
        current = self.state.history.setdefault("current", _empty())
        named = {**{f"loss/{k}": v for k, v in out.losses.items()}, **out.scalars}
        if named:
            values = acc.reduce(torch.stack([v.detach().float() for v in named.values()]).to(acc.device), reduction="mean")
            self.device.add_scalars(current, tuple(named), values)
            current["count"] += 1
        for key, (samples, bins) in out.histograms.items():
            self.device.add_counts(key, acc.gather(samples.detach().long().to(acc.device)), bins)

    def flush(self) -> None:
        """The device sums and counts into ``state.history["current"]`` (before it is saved or read)."""
        if "current" in self.state.history:
            self.device.flush(self.state.history["current"])

    def close_epoch(self, lr: float, complete: bool, extra: Mapping[str, Any]) -> dict[str, Any]:
        """The epoch's record (means, ``extra`` such as evaluation scores), appended to the history; on
        the main process ``log.jsonl`` is rewritten from that history (atomically: a resumed run's log
        continues the checkpoint's, never repeating an epoch a killed run logged after it) and a line
        is shown beside the progress bar."""
        self.flush()
        state = self.state
        current = state.history.pop("current", _empty())
        n = max(1, current["count"])
        record: dict[str, Any] = {"epoch": state.epoch, "step": state.step, "lr": lr, "complete_epoch": complete}
        record.update({k: v / n for k, v in current["sums"].items()})
        record.update(extra)
        state.history.setdefault("epochs", []).append({**record, "hist": current["hist"]})
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.accelerator.trackers:
            self.accelerator.log(scalars, step=state.step)
            self._log_histograms(current["hist"], state.step)
        if self.accelerator.is_main_process:  # the run's history, which resume restores: no line twice
            replace_text(self.log_file, "".join(json.dumps(epoch) + "\n" for epoch in state.history["epochs"]))
            shown = ", ".join(f"{k}={v:.4g}" for k, v in scalars.items() if k not in ("epoch", "step"))
            tqdm.write(f"epoch {state.epoch} step {state.step}: {shown}")  # on its own line, beside the bar
        return record

    def _log_histograms(self, hist: Mapping[str, list[int]], step: int) -> None:
        """Send each histogram of the epoch to TensorBoard when that tracker is active."""
        if not hist or not self.accelerator.is_main_process:
            return
        try:
            tracker = self.accelerator.get_tracker("tensorboard", unwrap=True)
        except (ValueError, KeyError, AttributeError):
            return
        if not hasattr(tracker, "add_histogram"):
            return
        for key, counts in hist.items():
            values = np.repeat(np.arange(len(counts)), counts)
            if len(values):
                tracker.add_histogram(f"hist/{key}", values, step)


def flat_scalars(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Tracker-friendly config: scalars as they are, lists and dicts as strings."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in cfg.items()}


#: ``output_dir/timing.json``: seconds of a run's phases (``train``, ``validation``, ``test``, ...);
#: the rest of a recipe process's wall time is start-up (imports, data, model) and saving
TIMING_FILE = "timing.json"


def write_timing(output_dir: Path, seconds: Mapping[str, float]) -> None:
    """`TIMING_FILE` in `output_dir`: each phase's seconds, rounded to 0.1 s."""
    replace_text(Path(output_dir) / TIMING_FILE, json.dumps({k: round(v, 1) for k, v in seconds.items()}, indent=2))
