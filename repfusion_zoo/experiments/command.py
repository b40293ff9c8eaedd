"""An experiment grid: the body of ``recipes/experiment.py`` (its docstring is the command line's help).
The work is `run_experiment`; the recipes run as subprocesses from ``recipes_dir`` (the folder the
script sits in). It lives here, not among the recipe bodies of `repfusion_zoo.pipelines`, because
the experiment runs the other recipes: it stands above them."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Sequence

from .config import ExperimentConfig
from .runner import run_experiment
from ..training import configure_cpu_threads
from ..config import format_help, load_config, wants_help

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, doc: str = __doc__, recipes_dir: Path) -> int:
    """``recipes/experiment.py``: ``--help`` (with the recipe's `doc`), or the grid; prints every file written."""
    args = list(sys.argv[1:] if argv is None else argv)
    if wants_help(args):
        print(format_help(ExperimentConfig, "python recipes/experiment.py", doc))
        return 0
    cfg = load_config(ExperimentConfig, args)
    configure_cpu_threads()  # the cache build and the kNN passes run in this process
    command = shlex.join(["python", "recipes/experiment.py", *args])
    for path in run_experiment(cfg, recipes_dir=recipes_dir, command=command):
        print(f"[experiment] wrote {path}")
    return 0
