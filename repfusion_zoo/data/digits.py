"""The offline default: scikit-learn's bundled digits (1,797 grey 8x8 images, 10 classes), no download.

Split: seeded, stratified 80/20 (train 1,437 / test 360), the same for a given `seed` on every
machine and process. Images: values 0..16 -> [0, 1], bilinear-resized to `image_size`,
replicated to `in_chans`. Augmentation: random shifts of up to 1/8 of the image (1 px at 8 px,
2 px at 16 px; `crop_padding` pixels when given), never flips: a mirrored digit is not the same digit.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..errors import MissingExtraError
from .base import ImageClassificationDataset, canonical_split, seeded_split
from .transforms import Augmentation, match_channels, resize_tensor


@lru_cache(maxsize=1)
def _load_digits():
    """scikit-learn's `load_digits()` bunch (read once per process)."""
    try:
        from sklearn.datasets import load_digits  # optional: the recipes extra (the offline default's data)
    except ImportError as error:
        raise MissingExtraError.of("scikit-learn", "the digits dataset (the offline default's data)") from error
    return load_digits()


def digits_split_indices(split: str, seed: int = 0) -> np.ndarray:
    """Indices into `load_digits()` of the seeded stratified `split` ("train" or "test"), sorted."""
    targets = _load_digits().target
    return np.asarray(seeded_split(len(targets), split, seed, stratify=targets))


class DigitsDataset(ImageClassificationDataset):
    """scikit-learn digits as `{"image": [in_chans, image_size, image_size] in [0, 1], "label": 0..9}`."""

    def __init__(self, split: str = "train", *, image_size: int = 8, in_chans: int = 1, augment: bool = False, seed: int = 0,
                 crop_padding: int = 0):
        digits = _load_digits()
        index = digits_split_indices(split, seed)
        images = torch.from_numpy(digits.images[index].astype(np.float32) / 16.0)  # [N, 8, 8]
        self.images = resize_tensor(images.unsqueeze(1), image_size)  # [N, 1, S, S]
        self.in_chans = in_chans
        self.split = canonical_split(split)
        shift = Augmentation(shift=crop_padding or max(1, image_size // 8)) if augment else None
        super().__init__([str(d) for d in digits.target_names], digits.target[index].tolist(), shift)

    def load_image(self, index: int) -> torch.Tensor:
        return match_channels(self.images[index], self.in_chans)
