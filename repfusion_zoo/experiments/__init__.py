"""Experiments: a grid of arms x seeds x label budgets run by one command (`recipes/experiment.py`).

command.py (the body of recipes/experiment.py), config.py (the keys), subsets.py (the fixed index
files), runner.py (every arm's settings checked, the cache, then every arm-seed, resumable),
probe.py and validate.py (the probe and validate arms' t), knn.py + evaluation.py (frozen kNN,
validation top-1), curves.py (convergence, where the time went), report.py (the results JSON,
Markdown and Figure 8 PNG), record.py (that JSON as the grid's record: a rerun elsewhere restores from it). It stands above the recipe bodies (`repfusion_zoo.pipelines`): it runs
them, and checks their settings before anything runs.
"""
from .config import ExperimentConfig
from .runner import ExperimentError, run_experiment

__all__ = ["ExperimentConfig", "ExperimentError", "run_experiment"]
