"""What the loop logs: the means since the last log (progress bar, ``on_log``) and the epoch records
(``log.jsonl``, trackers, one line per epoch), both reduced over processes.

Epoch sums live in the `TrainingState`'s history (``history["current"]``), so a checkpoint taken
mid-epoch resumes them: per micro-batch, the mean over processes of every logged 0-d value is
added to a Python float (float64) in step order; a record holds the sums divided by the count.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from .state import TrainingState
from .step import StepOutput

__all__ = ["LogWindow", "EpochTally", "flat_scalars"]


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


def _empty() -> dict[str, Any]:
    return {"sums": {}, "count": 0, "hist": {}}


class EpochTally:
    """The epoch's sums (``state.history["current"]``) and its record at the epoch's end."""

    def __init__(self, accelerator: Accelerator, state: TrainingState, log_file: Path) -> None:
        self.accelerator, self.state, self.log_file = accelerator, state, log_file

    def add(self, out: StepOutput) -> None:
        """One micro-batch: its 0-d values (mean over processes) and its histogram counts."""
        acc = self.accelerator
        current = self.state.history.setdefault("current", _empty())
        named = {**{f"loss/{k}": v for k, v in out.losses.items()}, **out.scalars}
        if named:
            values = acc.reduce(torch.stack([v.detach().float() for v in named.values()]).to(acc.device), reduction="mean")
            for key, value in zip(named, values.tolist()):
                current["sums"][key] = current["sums"].get(key, 0.0) + value
            current["count"] += 1
        for key, (samples, bins) in out.histograms.items():
            gathered = acc.gather(samples.detach().long().to(acc.device))
            counts = torch.bincount(gathered.clamp(0, bins - 1).cpu(), minlength=bins).tolist()
            old = current["hist"].get(key)
            current["hist"][key] = counts if old is None else [a + b for a, b in zip(old, counts)]

    def close_epoch(self, lr: float, complete: bool, extra: Mapping[str, Any]) -> dict[str, Any]:
        """The epoch's record (means, ``extra`` such as evaluation scores), appended to the history
        and, on the main process, to ``log.jsonl`` with a line beside the progress bar."""
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
        if self.accelerator.is_main_process:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_file, "a") as handle:
                handle.write(json.dumps({**record, "hist": current["hist"]}) + "\n")
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
