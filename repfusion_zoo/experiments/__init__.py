"""Experiments: a grid of arms x seeds x label budgets run by one command (`recipes/experiment.py`).

config.py (the keys), subsets.py (the fixed index files), runner.py (cache, then every arm-seed,
resumable), probe.py (the probe arm's t), knn.py + evaluation.py (frozen kNN, validation top-1),
report.py (the results JSON, Markdown and Figure 8 PNG).
"""
from .config import ExperimentConfig
from .runner import ExperimentError, run_experiment

__all__ = ["ExperimentConfig", "ExperimentError", "run_experiment"]
