"""repfusion_zoo.data: digits, image folders (CIFAR-10 subset, corrupt files), Hugging Face datasets."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from _data_fixtures import CIFAR10_CLASSES, CIFAR10_SUBSET_PER_CLASS
from repfusion_zoo.data import UnreadableImageWarning, build_dataset, num_classes
from repfusion_zoo.errors import DatasetError


# ---------------------------------------------------------------- digits
def test_digits_split_sizes_and_disjoint():
    train = build_dataset("digits", split="train", image_size=8, in_chans=1)
    test = build_dataset("digits", split="test", image_size=8, in_chans=1)
    assert (len(train), len(test)) == (1437, 360)
    assert num_classes(train) == 10 and train.classes == [str(i) for i in range(10)]
    # stratified: every class is in the test split with about its share
    counts = np.bincount(test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    # disjoint and together the whole set
    from repfusion_zoo.data.digits import digits_split_indices

    tr, te = digits_split_indices("train", 0), digits_split_indices("test", 0)
    assert not set(tr) & set(te) and len(set(tr) | set(te)) == 1797


def test_digits_seeding_and_val_alias():
    from repfusion_zoo.data.digits import digits_split_indices

    assert np.array_equal(digits_split_indices("test", 0), digits_split_indices("test", 0))
    assert not np.array_equal(digits_split_indices("test", 0), digits_split_indices("test", 1))
    assert np.array_equal(digits_split_indices("val", 3), digits_split_indices("test", 3))


def test_digits_items_range_size_channels_and_collate():
    ds = build_dataset("digits", split="train", image_size=16, in_chans=3)
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert torch.equal(item["image"][0], item["image"][2])
    batch = next(iter(DataLoader(ds, batch_size=8)))
    assert batch["image"].shape == (8, 3, 16, 16) and batch["label"].dtype == torch.int64
    assert num_classes(Subset(ds, [0, 1])) == 10


def _shifted(x: torch.Tensor, dy: int, dx: int, pad: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    return padded[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def test_digits_augment_shifts_never_flips():
    plain = build_dataset("digits", split="train", image_size=16, in_chans=1)
    aug = build_dataset("digits", split="train", image_size=16, in_chans=1, augment=True)
    torch.manual_seed(0)
    x = plain[5]["image"]
    outs = [aug[5]["image"] for _ in range(20)]
    assert any(not torch.equal(o, x) for o in outs)
    shifts = [_shifted(x, dy, dx, 2) for dy in range(-2, 3) for dx in range(-2, 3)]
    assert all(any(torch.equal(o, s) for s in shifts) for o in outs)  # each output is x shifted by <= 2 px


def test_bad_split_and_spec():
    with pytest.raises(DatasetError, match="split"):
        build_dataset("digits", split="dev", image_size=8)
    with pytest.raises(DatasetError, match="unknown dataset spec"):
        build_dataset("mnist", split="train", image_size=8)


# ---------------------------------------------------------------- image folders
def test_cifar10_subset_classes_counts(cifar10_folder: Path):
    train = build_dataset(str(cifar10_folder), split="train", image_size=32)
    test = build_dataset(f"imagefolder:{cifar10_folder}", split="val", image_size=32)
    assert train.classes == CIFAR10_CLASSES and test.classes == CIFAR10_CLASSES
    assert len(train) == len(test) == 10 * CIFAR10_SUBSET_PER_CLASS
    assert np.bincount(train.labels).tolist() == [CIFAR10_SUBSET_PER_CLASS] * 10
    item = train[0]
    assert item["image"].shape == (3, 32, 32) and 0.0 <= float(item["image"].min()) <= float(item["image"].max()) <= 1.0
    assert item["label"] == 0
    small = build_dataset(str(cifar10_folder), split="test", image_size=16, in_chans=1)
    assert small[0]["image"].shape == (1, 16, 16)


def test_image_folder_flip_augment(tiny_image_folder: Path):
    plain = build_dataset(str(tiny_image_folder), split="train", image_size=12)
    aug = build_dataset(str(tiny_image_folder), split="train", image_size=12, augment=True)
    assert plain.classes == ["a", "b"] and len(plain) == 5
    x = plain[0]["image"]
    torch.manual_seed(0)
    outs = [aug[0]["image"] for _ in range(16)]
    assert all(torch.equal(o, x) or torch.equal(o, x.flip(-1)) for o in outs)
    assert any(torch.equal(o, x.flip(-1)) for o in outs) and any(torch.equal(o, x) for o in outs)


def test_image_folder_labels_follow_train_classes(tiny_image_folder: Path):
    import shutil

    shutil.rmtree(tiny_image_folder / "test" / "a")  # a test split missing a class keeps train's label ids
    test = build_dataset(str(tiny_image_folder), split="test", image_size=12)
    assert test.classes == ["a", "b"] and test.labels == [1, 1]
    (tiny_image_folder / "test" / "zebra").mkdir()
    with pytest.raises(DatasetError, match="zebra"):
        build_dataset(str(tiny_image_folder), split="test", image_size=12)


def test_corrupt_images_counted_named_skipped(corrupt_image_folder: Path):
    with pytest.warns(UnreadableImageWarning) as record:
        ds = build_dataset(str(corrupt_image_folder), split="train", image_size=12)
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 2 of 7" in message and "truncated.jpg" in message and "notes.jpg" in message
    assert len(ds) == 5 and sorted(ds.skipped) == [str(Path("train", "a", n)) for n in ("notes.jpg", "truncated.jpg")]
    for i in range(len(ds)):  # every kept item loads
        assert ds[i]["image"].shape == (3, 12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset(str(corrupt_image_folder), split="test", image_size=12)  # clean split: no warning


def test_all_corrupt_is_error(all_corrupt_folder: Path):
    with pytest.raises(DatasetError, match="none of its 2 images"):
        build_dataset(str(all_corrupt_folder), split="train", image_size=12)


def test_missing_paths_name_path_and_layout(tmp_path: Path, tiny_image_folder: Path):
    missing = tmp_path / "nowhere"
    for spec in (str(missing), f"imagefolder:{missing}"):
        with pytest.raises(DatasetError, match="nowhere") as info:
            build_dataset(spec, split="train", image_size=8)
        assert "<root>/<split>/<class>" in str(info.value)
    (tiny_image_folder / "test").rename(tiny_image_folder / "holdout")
    with pytest.raises(DatasetError, match="no 'test' split folder"):
        build_dataset(str(tiny_image_folder), split="test", image_size=8)
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no image files"):
        build_dataset(str(tmp_path / "empty"), split="train", image_size=8)


# ---------------------------------------------------------------- Hugging Face datasets
@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch) -> Path:
    """Keep `load_dataset`'s Arrow cache out of the user's ~/.cache."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    return tmp_path / "hf_cache"


def _hf_dataset(n: int, seed: int = 0):
    import datasets

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)) for _ in range(n)]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    return datasets.Dataset.from_dict({"img": images, "label": [i % 2 for i in range(n)]}, features=features)


def test_hf_save_to_disk_dict(tmp_path: Path):
    import datasets

    datasets.DatasetDict({"train": _hf_dataset(6), "test": _hf_dataset(4, 1)}).save_to_disk(tmp_path / "dd")
    train = build_dataset(f"hf:{tmp_path / 'dd'}", split="train", image_size=8)
    test = build_dataset(f"hf:{tmp_path / 'dd'}", split="val", image_size=8, in_chans=1)
    assert (len(train), len(test)) == (6, 4) and train.classes == ["cat", "dog"]
    batch = next(iter(DataLoader(train, batch_size=6)))
    assert batch["image"].shape == (6, 3, 8, 8) and batch["label"].tolist() == [0, 1, 0, 1, 0, 1]
    assert test[0]["image"].shape == (1, 8, 8)


@pytest.mark.parametrize("as_dict", [False, True])
def test_hf_single_split_is_seeded_80_20(tmp_path: Path, as_dict: bool):
    import datasets

    data = _hf_dataset(20)
    (datasets.DatasetDict({"train": data}) if as_dict else data).save_to_disk(tmp_path / "one")
    train = build_dataset(f"hf:{tmp_path / 'one'}", split="train", image_size=8, seed=0)
    test = build_dataset(f"hf:{tmp_path / 'one'}", split="test", image_size=8, seed=0)
    assert (len(train), len(test)) == (16, 4)
    again = build_dataset(f"hf:{tmp_path / 'one'}", split="test", image_size=8, seed=0)
    assert torch.equal(test[0]["image"], again[0]["image"])
    train_images = {train[i]["image"].numpy().tobytes() for i in range(len(train))}
    assert not any(test[i]["image"].numpy().tobytes() in train_images for i in range(len(test)))  # disjoint


def test_hf_parquet_file(tmp_path: Path, hf_cache: Path):
    _hf_dataset(10).to_parquet(tmp_path / "data.parquet")
    train = build_dataset(f"hf:{tmp_path / 'data.parquet'}", split="train", image_size=8)
    test = build_dataset(f"hf:{tmp_path / 'data.parquet'}", split="test", image_size=8)
    assert (len(train), len(test)) == (8, 2) and train.classes == ["cat", "dog"]
    assert train[0]["image"].shape == (3, 8, 8)


def test_hf_local_imagefolder_with_corrupt(corrupt_image_folder: Path, hf_cache: Path):
    with pytest.warns(UnreadableImageWarning, match="skipped 2 of 7"):
        ds = build_dataset(f"hf:{corrupt_image_folder}", split="train", image_size=12)
    assert len(ds) == 5 and ds.classes == ["a", "b"]
    assert sorted(ds.labels) == [0, 0, 0, 1, 1]


def test_hf_hub_id_without_network_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(DatasetError, match="uoft-cs/cifar10") as info:
        build_dataset("hf:uoft-cs/cifar10", split="train", image_size=32)
    assert "HF_HUB_OFFLINE" in str(info.value)
    assert time.monotonic() - start < 30
