"""Data fixtures: digits, the shared CIFAR-10 archive, synthetic files (owned by the recipes part)."""
from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_CIFAR10_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"

#: images per class per split taken from the archive (file names 0000.jpg .. 0019.jpg)
CIFAR10_SUBSET_PER_CLASS = 20
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

__all__ = [
    "CIFAR10_SUBSET_PER_CLASS",
    "CIFAR10_CLASSES",
    "cifar10_folder",
    "cifar10_test_split",
    "digits_16",
    "corrupt_image_folder",
    "all_corrupt_folder",
    "tiny_image_folder",
    "write_image_folder",
]


def _extract_subset(archive: Path, out: Path, per_class: int) -> None:
    """Stream the archive once and extract `train|test/<class>/NNNN.jpg` with NNNN < per_class."""
    wanted = re.compile(r"^(train|test)/[^/]+/(\d+)\.jpg$")
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            match = wanted.match(member.name)
            if member.isfile() and match and int(match.group(2)) < per_class:
                tar.extract(member, out, filter="data")


@pytest.fixture(scope="session")
def cifar10_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CIFAR-10 image folder (20 images per class per split) cut from ../shared/datasets."""
    if not _CIFAR10_ARCHIVE.is_file():
        pytest.skip(f"CIFAR-10 archive absent: {_CIFAR10_ARCHIVE}")
    out = tmp_path_factory.mktemp("cifar10")
    _extract_subset(_CIFAR10_ARCHIVE, out, CIFAR10_SUBSET_PER_CLASS)
    return out


@pytest.fixture(scope="session")
def cifar10_test_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole CIFAR-10 test split (10,000 images, `<class>/NNNN.jpg`) from ../shared/datasets."""
    if not _CIFAR10_ARCHIVE.is_file():
        pytest.skip(f"CIFAR-10 archive absent: {_CIFAR10_ARCHIVE}")
    out = tmp_path_factory.mktemp("cifar10_full")
    with tarfile.open(_CIFAR10_ARCHIVE, "r|gz") as tar:
        for member in tar:
            if member.isfile() and member.name.startswith("test/"):
                tar.extract(member, out, filter="data")
    return out / "test"


@pytest.fixture(scope="session")
def digits_16():
    """(train, test) digits at 16 px, 3 channels, no augmentation: the offline default's data."""
    from repfusion_zoo.data import build_dataset

    return tuple(build_dataset("digits", split=split, image_size=16, in_chans=3) for split in ("train", "test"))


def write_image_folder(root: Path, classes: dict[str, int], *, size: int = 12, splits: tuple[str, ...] = ("train", "test"), seed: int = 0) -> Path:
    """Write `<root>/<split>/<class>/NNNN.png` random RGB images (`classes`: name -> count per split)."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    """Synthetic image folder: classes "a" (3 images) and "b" (2 images) in train and test."""
    return write_image_folder(tmp_path / "tiny", {"b": 2, "a": 3})


def _write_corrupt(folder: Path) -> list[str]:
    """A truncated JPEG and a text file named .jpg in `folder`; returns their names."""
    good = Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    full = folder / "full.jpg"
    good.save(full, quality=95)
    data = full.read_bytes()
    full.unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("this is not an image\n")
    return ["truncated.jpg", "notes.jpg"]


@pytest.fixture
def corrupt_image_folder(tmp_path: Path) -> Path:
    """Image folder whose train/a holds 3 good PNGs plus a truncated JPEG and a text file named .jpg."""
    root = write_image_folder(tmp_path / "corrupt", {"a": 3, "b": 2})
    _write_corrupt(root / "train" / "a")
    return root


@pytest.fixture
def all_corrupt_folder(tmp_path: Path) -> Path:
    """Image folder whose only images (train/a) are a truncated JPEG and a text file named .jpg."""
    folder = tmp_path / "all_corrupt" / "train" / "a"
    folder.mkdir(parents=True)
    _write_corrupt(folder)
    return tmp_path / "all_corrupt"


def copy_tree(src: Path, dst: Path) -> Path:
    """Copy a fixture folder before modifying it (session fixtures are shared)."""
    shutil.copytree(src, dst)
    return dst
