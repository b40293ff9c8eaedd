"""Datasets for the recipes: one call, `build_dataset(spec, split=..., image_size=...)`.

Specs:
- ``digits``: scikit-learn's bundled digits, the offline default (`digits.py`).
- ``imagefolder:<path>`` or a plain existing directory: ``<path>/<split>/<class>/*.jpg|png``
  (`image_folder.py`; the shared CIFAR-10 archive, extracted, is one).
- ``hf:<dataset id or local path>[:<config>]``: Hugging Face `datasets` (`hf_datasets.py`).

Items are ``{"image": FloatTensor[in_chans, image_size, image_size] in [0, 1], "label": int,
"index": int, "flip": bool}`` (label -1 when a dataset has none; index and flip let a
teacher-feature cache serve the item) and collate with `default_collate`. Every dataset has
`classes`, `num_classes` and `labels`. Splits: "train" and "test"; "val" / "validation" are
aliases of "test". `augment=True` is a random horizontal flip for images (the paper's "flips
only"; `crop_padding=4` adds the standard CIFAR random crop with 4-pixel zero padding) and a
random shift of up to image_size/8 pixels for digits (mirrored digits are wrong).
Unreadable images are counted, named in one `UnreadableImageWarning` and skipped; a dataset
with no readable image, a missing path or an unknown spec is a `DatasetError`.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from .base import ImageClassificationDataset, canonical_split, num_classes
from .digits import DigitsDataset
from .hf_datasets import HFImageDataset
from .image_folder import LAYOUT, ImageFolderDataset
from .readers import UnreadableImageWarning, read_image, scan_images

__all__ = [
    "build_dataset",
    "num_classes",
    "canonical_split",
    "DigitsDataset",
    "ImageFolderDataset",
    "HFImageDataset",
    "ImageClassificationDataset",
    "UnreadableImageWarning",
    "read_image",
    "scan_images",
]

SPEC_HELP = "use 'digits', 'imagefolder:<path>' (or a directory path), or 'hf:<dataset id or local path>[:<config>]'"


def build_dataset(
    spec: str,
    *,
    split: str,
    image_size: int,
    in_chans: int = 3,
    augment: bool = False,
    seed: int = 0,
    crop_padding: int = 0,
) -> ImageClassificationDataset:
    """The dataset named by `spec` (see the module docstring); `seed` fixes digits' and one-split HF splits."""
    if not isinstance(spec, str) or not spec:
        raise DatasetError(f"dataset spec must be a non-empty string, got {spec!r}; {SPEC_HELP}")
    canonical_split(split)  # validate early, same message everywhere
    if spec == "digits":
        return DigitsDataset(split, image_size=image_size, in_chans=in_chans, augment=augment, seed=seed, crop_padding=crop_padding)
    if spec.startswith("hf:"):
        return HFImageDataset(spec, split, image_size=image_size, in_chans=in_chans, augment=augment, seed=seed, crop_padding=crop_padding)
    if spec.startswith("imagefolder:"):
        return ImageFolderDataset(spec[len("imagefolder:"):], split, image_size=image_size, in_chans=in_chans, augment=augment,
                                  crop_padding=crop_padding)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ImageFolderDataset(path, split, image_size=image_size, in_chans=in_chans, augment=augment,
                                  crop_padding=crop_padding)
    if "/" in spec or spec.startswith((".", "~")):
        raise DatasetError(f"dataset path {spec} does not exist; expected an image folder {LAYOUT}")
    raise DatasetError(f"unknown dataset spec {spec!r}; {SPEC_HELP}")
