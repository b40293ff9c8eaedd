"""Identities for a cache's manifest: the dataset's items, an index array (the teacher's, the hash of
its weight files, is `repfusion_zoo.teachers.identity`).

- `dataset_fingerprint(dataset)`: what the cached rows were computed from. An image folder:
  sha256 over (path relative to the root, byte size) of every readable image in index order
  (which is sorted: class folders, then paths). Digits: sha256 of the (resized) pixel array and
  labels of the split. Hugging Face: the `datasets` fingerprint of the split plus the rows kept.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError

__all__ = ["dataset_fingerprint", "array_sha256"]


def array_sha256(array: np.ndarray) -> str:
    """sha256 of a numpy array's dtype, shape and bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _folder_fingerprint(dataset: Any) -> str:
    digest = hashlib.sha256(b"imagefolder|")
    for path in dataset.files:
        digest.update(f"{path.relative_to(dataset.root).as_posix()}|{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def _pixels_fingerprint(dataset: Any) -> str:
    digest = hashlib.sha256(b"pixels|")
    digest.update(array_sha256(dataset.images.detach().cpu().numpy()).encode())
    digest.update(json.dumps([int(v) for v in dataset.labels]).encode())
    return digest.hexdigest()


def _hf_fingerprint(dataset: Any) -> str:
    payload = json.dumps({"fingerprint": dataset.data._fingerprint, "rows": [int(r) for r in dataset.rows]})
    return hashlib.sha256(b"hf|" + payload.encode()).hexdigest()


def dataset_fingerprint(dataset: Any) -> str:
    """A sha256 naming the items of a dataset built by `repfusion_zoo.data.build_dataset`."""
    if hasattr(dataset, "files") and hasattr(dataset, "root"):
        return _folder_fingerprint(dataset)
    if torch.is_tensor(getattr(dataset, "images", None)):
        return _pixels_fingerprint(dataset)
    if hasattr(getattr(dataset, "data", None), "_fingerprint") and hasattr(dataset, "rows"):
        return _hf_fingerprint(dataset)
    raise DatasetError(
        f"cannot fingerprint a dataset of type {type(dataset).__name__} for the teacher cache; build it with "
        "repfusion_zoo.data.build_dataset (digits, an image folder or hf:...), without Subset wrappers "
        "(pass the subset as `indices`)"
    )
