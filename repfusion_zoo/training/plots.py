"""Pictures of a run: the histogram of the sampled time steps per epoch (the paper's Section 5.3)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..visualize import pyplot


def plot_timestep_histograms(epochs: Sequence[dict[str, Any]], path: str | Path, *, key: str = "t",
                             num_bins: int = 50, max_rows: int = 8) -> Path | None:
    """One row per (sub-sampled) epoch: counts of sampled t, re-binned to `num_bins`. Returns the PNG.

    `epochs` are the recipe's per-epoch records, each with `hist[key]` = counts over t = 0..T-1.
    Returns None when no epoch sampled any t.
    """
    rows = [e for e in epochs if e.get("hist", {}).get(key) and sum(e["hist"][key]) > 0]
    if not rows:
        return None
    if len(rows) > max_rows:
        picks = np.linspace(0, len(rows) - 1, max_rows).round().astype(int)
        rows = [rows[i] for i in sorted(set(picks.tolist()))]
    plt = pyplot()

    fig, axes = plt.subplots(len(rows), 1, figsize=(6, 1.3 * len(rows) + 0.6), sharex=True, squeeze=False)
    for ax, record in zip(axes[:, 0], rows):
        counts = np.asarray(record["hist"][key], dtype=np.float64)
        edges = np.unique(np.linspace(0, len(counts), min(num_bins, len(counts)) + 1).round().astype(int))
        binned = np.add.reduceat(counts, edges[:-1])
        ax.bar(edges[:-1], binned / binned.sum(), width=np.diff(edges), align="edge", color="tab:blue")
        ax.set_ylabel(f"ep {record['epoch']}", rotation=0, labelpad=22, fontsize=8)
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("sampled time step t")
    fig.suptitle("time steps chosen per epoch")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
