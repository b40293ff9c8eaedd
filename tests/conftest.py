"""Shared fixtures. Each fixture module is owned by the part that needs it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# keep every test off the network and out of the user's caches
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the suite trains in fp32 (its figures and tolerances), as if the user had said so; on a CPU with
# native bf16 the recipes' own default is bf16 autocast (tests/test_precision.py removes this)
os.environ.setdefault("ACCELERATE_MIXED_PRECISION", "no")

from _hub_fixtures import *  # noqa: E402,F401,F403  (hub_server, filled cache)
from _data_fixtures import *  # noqa: E402,F401,F403  (digits, cifar10 folder, synthetic datasets)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
CIFAR10_ARCHIVE = SHARED / "datasets" / "cifar10-jpeg.tar.gz"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def one_thread():
    """One torch thread for the test: on 2 shared cores more threads only oversubscribe them."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
