"""Hugging Face `datasets`: `hf:<dataset id or local path>[:<config>]`.

- A local folder written by `Dataset(Dict).save_to_disk` is read with `load_from_disk`; a single
  local file (`.parquet`, `.arrow`) with the builder its suffix names; any other local folder
  (parquet shards, an image folder, ...) with `load_dataset(path)`; a Hub id with
  `load_dataset(id, config)`.
- Columns: the image is "img" or "image" (else the first `Image` column); the label is "label",
  "labels" or "fine_label" (else the first `ClassLabel` column; none: unlabelled, label -1).
- Splits: "train" -> "train"; "test" (or "val") -> the first of "test", "validation", "valid",
  "val". A dataset with one split only (or "train" but no test split) is cut into a seeded 80/20
  train/test split, stratified by a `ClassLabel` column (the same cut for both splits).
- Images are decoded once up front (the same corrupt-image handling as image folders).
- No network: a Hub id fails within seconds with a `DatasetError` naming the ways out, instead of
  retrying for minutes; with `HF_HUB_OFFLINE=1` / `HF_DATASETS_OFFLINE=1` a filled cache is used.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

import torch

from ..errors import DatasetError, MissingExtraError
from .base import ImageClassificationDataset, canonical_split, seeded_split
from .readers import ImageSource, read_image, require_readable, scan_images
from .transforms import image_augmentation, pil_mode, pil_to_image_tensor

IMAGE_COLUMNS = ("img", "image")
LABEL_COLUMNS = ("label", "labels", "fine_label")
TEST_SPLIT_NAMES = ("test", "validation", "valid", "val")
_TRUE = {"1", "ON", "YES", "TRUE"}


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """"hf:cifar10" -> ("cifar10", None); "hf:org/name:config" -> ("org/name", "config")."""
    body = spec[3:] if spec.startswith("hf:") else spec
    if Path(body).expanduser().exists():
        return body, None
    name, _, config = body.partition(":")
    if not name:
        raise DatasetError(f"empty dataset id in {spec!r}; use hf:<dataset id>[:<config>] or hf:<local path>")
    return name, config or None


def _offline() -> bool:
    return any(os.environ.get(k, "").upper() in _TRUE for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A TCP connect to the Hub endpoint (HF_ENDPOINT or huggingface.co), bounded by `timeout`."""
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def _datasets() -> Any:
    """Hugging Face `datasets`, imported on first use (only `hf:` specs need it)."""
    try:
        import datasets  # optional: the recipes extra (pip install repfusion-zoo[recipes])
    except ImportError as error:
        raise MissingExtraError.of("datasets", "an hf: dataset") from error

    return datasets


def load_hf(name: str, config: str | None) -> Any:
    """A `DatasetDict` or `Dataset` for a local path or a Hub id; `DatasetError` on any failure."""
    datasets = _datasets()
    path = Path(name).expanduser()
    try:
        if path.exists():
            if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
                return datasets.load_from_disk(str(path))
            if path.is_file():  # one data file: the builder is named by its suffix (parquet, arrow, ...)
                return datasets.load_dataset(path.suffix.lstrip(".").lower(), data_files=str(path), split="train")
            return datasets.load_dataset(str(path), config)
        if not _offline() and not _hub_reachable():
            raise DatasetError(
                f"cannot reach the Hugging Face Hub to load dataset {name!r}"
                f"{f' (config {config!r})' if config else ''}. Ways out: set HF_HUB_OFFLINE=1 to use a "
                "filled datasets cache, or save the dataset locally and pass hf:<local folder> "
                "(save_to_disk / parquet) or an image folder path"
            )
        return datasets.load_dataset(name, config)
    except DatasetError:
        raise
    except Exception as error:  # datasets raises many types (FileNotFoundError, ConnectionError, ValueError...)
        hint = (
            "; offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), so the dataset must already be in the "
            "datasets cache: load it once with network, or pass hf:<local folder or parquet file>"
            if _offline() and not path.exists() else ""
        )
        raise DatasetError(f"cannot load Hugging Face dataset {name!r}{f' config {config!r}' if config else ''}: {error}{hint}") from error


def select_split(data: Any, split: str, seed: int) -> Any:
    """The `datasets.Dataset` of `split` (see the module docstring for the mapping)."""
    datasets = _datasets()
    split = canonical_split(split)
    if isinstance(data, datasets.DatasetDict):
        test_name = next((name for name in TEST_SPLIT_NAMES if name in data), None)
        if "train" in data and test_name:
            return data["train" if split == "train" else test_name]
        if "train" in data or len(data) == 1:  # one usable split: both splits are cut from it
            data = data["train"] if "train" in data else next(iter(data.values()))
        else:
            raise DatasetError(f"dataset has splits {sorted(data)}; expected 'train' and one of {list(TEST_SPLIT_NAMES)}")
    return data.select(split_indices(data, split, seed), keep_in_memory=True)  # no cache file in the user's folder


def split_indices(data: Any, split: str, seed: int) -> list[int]:
    """Sorted row indices of `split` in a seeded 80/20 cut of `data` (stratified by a ClassLabel column)."""
    datasets = _datasets()
    label = find_label_column(data)
    stratify = list(data[label]) if label and isinstance(data.features[label], datasets.ClassLabel) else None
    return seeded_split(len(data), split, seed, stratify=stratify)


def _find_column(data: Any, names: Sequence[str], feature_type: type) -> str | None:
    """The first of `names` among `data`'s columns, else the first column of `feature_type`, else None."""
    for name in names:
        if name in data.features:
            return name
    return next((name for name, feature in data.features.items() if isinstance(feature, feature_type)), None)


def find_image_column(data: Any) -> str:
    """The image column: one of `IMAGE_COLUMNS`, else the first `datasets.Image` column."""
    datasets = _datasets()
    name = _find_column(data, IMAGE_COLUMNS, datasets.Image)
    if name is None:
        raise DatasetError(f"no image column in dataset (columns: {list(data.features)}); expected one of {IMAGE_COLUMNS}")
    return name


def find_label_column(data: Any) -> str | None:
    """The label column: one of `LABEL_COLUMNS`, else the first `datasets.ClassLabel` column, else None (unlabelled)."""
    datasets = _datasets()
    return _find_column(data, LABEL_COLUMNS, datasets.ClassLabel)


def _source(entry: Any) -> ImageSource:
    """An undecoded `Image` cell ({"bytes", "path"}) as bytes or a path."""
    if isinstance(entry, dict):
        if entry.get("bytes"):
            return entry["bytes"]
        if entry.get("path"):
            return entry["path"]
    raise DatasetError(
        f"image cell holds neither bytes nor a path: {type(entry).__name__}; the image column must be a "
        "datasets.Image feature with encoded bytes or file paths"
    )


class HFImageDataset(ImageClassificationDataset):
    """A Hugging Face image-classification dataset as `{"image": [C, S, S] in [0, 1], "label": int}`."""

    def __init__(self, spec: str, split: str = "train", *, image_size: int = 32, in_chans: int = 3, augment: bool = False, seed: int = 0,
                 crop_padding: int = 0):
        datasets = _datasets()
        name, config = parse_hf_spec(spec)
        data = select_split(load_hf(name, config), split, seed)
        self.image_column = find_image_column(data)
        label_column = find_label_column(data)
        if not isinstance(data.features[self.image_column], datasets.Image):
            raise DatasetError(
                f"column {self.image_column!r} of {name!r} is not an Image feature "
                f"({type(data.features[self.image_column]).__name__}); cast it with "
                f"dataset.cast_column({self.image_column!r}, datasets.Image()) and save it again"
            )
        self.data = data.cast_column(self.image_column, datasets.Image(decode=False))
        where = f"dataset hf:{name} split {split!r}"
        sources = (_source(row[self.image_column]) for row in self.data.select_columns([self.image_column]))
        scan = scan_images(sources, [f"row {i}" for i in range(len(self.data))])
        require_readable(scan, where, len(self.data))
        self.rows = scan.good
        self.skipped = scan.bad_names
        classes, labels = self._labels(label_column)
        self.image_size = image_size
        self.mode = pil_mode(in_chans)
        super().__init__(classes, [labels[i] for i in scan.good], image_augmentation(augment, crop_padding))

    def _labels(self, column: str | None) -> tuple[list[str], list[int]]:
        datasets = _datasets()
        if column is None:
            return [], [-1] * len(self.data)
        labels = [int(v) for v in self.data[column]]
        feature = self.data.features[column]
        if isinstance(feature, datasets.ClassLabel):
            return list(feature.names), labels
        return [str(i) for i in range(max(labels) + 1)], labels

    def load_image(self, index: int) -> torch.Tensor:
        entry = self.data[self.rows[index]][self.image_column]
        return pil_to_image_tensor(read_image(_source(entry), self.mode), self.image_size)
