"""CelebAMask-HQ face parsing: 19 labels (background + 18 parts) from the published layout.

Published layout under `root`::

    CelebA-HQ-img/<id>.jpg                                   (1024 px images)
    CelebAMask-HQ-mask-anno/<id // 2000>/<id:05d>_<part>.png (512 px binary part masks)

or, already combined, `mask/<id>.png` (or `CelebAMask-HQ-mask/<id>.png`, what the official
`g_mask.py` writes) holding labels 0..18 (255 = ignore).

Combination follows the official `g_mask.py`: parts are painted in `PART_NAMES` order with
label `index + 1` wherever the part mask is non-zero, so a later part overwrites an earlier one
(e.g. hair over skin, cloth over neck). Built masks are cached as PNGs under `cache_dir`
(atomic writes). The train/val/test split is a seeded permutation of the image ids, written
to `split.json` (under `cache_dir`, or `split_file`) and read back on later runs.

Items: {"image": FloatTensor[3, H, W] in [0, 1], "mask": LongTensor[H, W]}.
Training transform: random scale of the `base_size` image, random crop `crop_size` (image
padded with 0, mask with 255), horizontal flip that swaps left/right labels. Evaluation:
resize to `eval_size` (image bilinear, mask nearest).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..atomic import replace_file
from ..errors import DatasetError
from .readers import read_image

PART_NAMES: tuple[str, ...] = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
LABEL_NAMES: tuple[str, ...] = ("background", *PART_NAMES)
NUM_LABELS = len(LABEL_NAMES)  # 19
IGNORE_INDEX = 255
#: label pairs a horizontal flip swaps (l_eye/r_eye, l_brow/r_brow, l_ear/r_ear)
FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (LABEL_NAMES.index(f"l_{p}"), LABEL_NAMES.index(f"r_{p}")) for p in ("eye", "brow", "ear")
)
IMAGE_DIR = "CelebA-HQ-img"
ANNO_DIR = "CelebAMask-HQ-mask-anno"
COMBINED_DIRS = ("mask", "CelebAMask-HQ-mask")
SPLITS = ("train", "val", "test")
LAYOUT_HELP = (
    f"expected {IMAGE_DIR}/<id>.jpg with {ANNO_DIR}/<id//2000>/<id:05d>_<part>.png "
    "or combined masks mask/<id>.png"
)


# ---------------------------------------------------------------- masks

def part_mask_path(root: Path, image_id: int, part: str) -> Path:
    """`<root>/CelebAMask-HQ-mask-anno/<id // 2000>/<id:05d>_<part>.png`."""
    return root / ANNO_DIR / str(image_id // 2000) / f"{image_id:05d}_{part}.png"


def _binary(path: Path) -> np.ndarray:
    """A part mask as bool `[H, W]`; like g_mask.py, the first channel in OpenCV's BGR order (blue)."""
    return np.asarray(read_image(path, mode="RGB"))[..., 2] != 0


def combine_parts(root: Path, image_id: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """The 19-label mask uint8 `[H, W]` painted from the id's part masks (later parts win).

    `size` (H, W) is used when the id has no part file at all (all background).
    """
    mask: np.ndarray | None = None
    for label, part in enumerate(PART_NAMES, start=1):
        path = part_mask_path(root, image_id, part)
        if not path.is_file():
            continue
        region = _binary(path)
        if mask is None:
            mask = np.zeros(region.shape, dtype=np.uint8)
        elif region.shape != mask.shape:
            raise DatasetError(f"part mask {path} is {region.shape[::-1]} but other parts are {mask.shape[::-1]}")
        mask[region] = label
    if mask is None:
        if size is None:
            raise DatasetError(f"no part mask for image {image_id} under {root / ANNO_DIR}; {LAYOUT_HELP}")
        mask = np.zeros(size, dtype=np.uint8)
    return mask


def write_png_atomic(array: np.ndarray, path: Path) -> None:
    """Write a uint8 `[H, W]` PNG through a temp file and a rename (no half-written cache)."""
    replace_file(path, lambda temp: Image.fromarray(array).save(temp, format="PNG"))


def read_label_mask(path: Path, num_labels: int = NUM_LABELS) -> np.ndarray:
    """A combined label mask `[H, W]`; labels outside 0..num_labels-1 (other than 255) are a DatasetError.

    The stored values are the labels: greyscale and palette ("P") PNGs are read without colour
    conversion; of an RGB mask the first channel is taken.
    """
    if not path.is_file():
        raise DatasetError(f"missing mask {path}; {LAYOUT_HELP}")
    try:
        with Image.open(path) as image:
            image.load()
            array = np.asarray(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise DatasetError(f"cannot read mask {path}: {error}") from error
    if array.ndim == 3:
        array = array[..., 0]
    bad = np.unique(array[(array >= num_labels) & (array != IGNORE_INDEX)])
    if bad.size:
        raise DatasetError(
            f"mask {path} holds label(s) {bad.tolist()} outside 0..{num_labels - 1} (255 = ignore); "
            "CelebAMask-HQ masks have 19 labels: re-create the mask or remove the file"
        )
    return array


# ---------------------------------------------------------------- split

def list_image_ids(root: Path) -> list[int]:
    """Ids of `CelebA-HQ-img/<id>.jpg` (or of combined masks when the image folder is absent)."""
    image_dir = root / IMAGE_DIR
    if image_dir.is_dir():
        ids = [int(p.stem) for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".png") and p.stem.isdigit()]
    else:
        mask_dir = combined_mask_dir(root)
        if mask_dir is None:
            raise DatasetError(f"CelebAMask-HQ not found under {root}; {LAYOUT_HELP}")
        ids = [int(p.stem) for p in mask_dir.glob("*.png") if p.stem.isdigit()]
    if not ids:
        raise DatasetError(f"no CelebAMask-HQ image under {root}; {LAYOUT_HELP}")
    return sorted(ids)


def combined_mask_dir(root: Path) -> Path | None:
    """The folder of already-combined masks, if the dataset has one."""
    for name in COMBINED_DIRS:
        if (root / name).is_dir():
            return root / name
    return None


def make_split(ids: Sequence[int], seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """A seeded random train/val/test partition of `ids` (each part sorted)."""
    ordered = sorted(ids)
    permutation = torch.randperm(len(ordered), generator=torch.Generator().manual_seed(seed)).tolist()
    order = [ordered[i] for i in permutation]
    n_val = int(round(len(order) * val_fraction))
    n_test = int(round(len(order) * test_fraction))
    if len(order) - n_val - n_test < 1:
        raise DatasetError(f"{len(order)} images are too few for val {val_fraction} + test {test_fraction}")
    return {
        "val": sorted(order[:n_val]),
        "test": sorted(order[n_val:n_val + n_test]),
        "train": sorted(order[n_val + n_test:]),
    }


def load_or_write_split(
    path: Path, ids: Sequence[int], seed: int, val_fraction: float, test_fraction: float
) -> dict[str, list[int]]:
    """Read the split file if it exists (and matches the settings), else write a new one atomically."""
    settings = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction, "num_images": len(ids)}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("settings") != settings:
            raise DatasetError(
                f"split file {path} was made with {saved.get('settings')}, not {settings}; "
                "delete it or pass the same seed / fractions"
            )
        return {name: saved[name] for name in SPLITS}
    split = make_split(ids, seed, val_fraction, test_fraction)
    replace_file(path, lambda temp: temp.write_text(json.dumps({"settings": settings, **split})))
    return split


# ---------------------------------------------------------------- transforms

def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """image `[3, H, W]` (bilinear) and mask `[H, W]` (nearest) to `size` (H, W)."""
    if tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        image = image.clamp(0, 1)
    if tuple(mask.shape) != tuple(size):
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, mask


def flip_pair(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror image `[3, H, W]` and mask `[H, W]`, swapping left/right labels."""
    image, mask = image.flip(-1), mask.flip(-1)
    swapped = mask.clone()
    for left, right in FLIP_PAIRS:
        swapped[mask == left] = right
        swapped[mask == right] = left
    return image, swapped


def _uniform(low: float, high: float) -> float:
    """A draw from U(low, high) with torch's global RNG (seeded per item by the recipe)."""
    return low + (high - low) * float(torch.rand(()))


def random_scale_crop_flip(
    image: torch.Tensor, mask: torch.Tensor, base_size: int, crop_size: int, scale_range: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale (of `base_size`), random `crop_size` crop (padding 0 / 255), random flip (torch RNG)."""
    scale = _uniform(*scale_range)
    side = max(1, int(round(base_size * scale)))
    image, mask = resize_pair(image, mask, (side, side))
    pad = max(0, crop_size - side)
    if pad:
        image = F.pad(image, (0, pad, 0, pad), value=0.0)
        mask = F.pad(mask, (0, pad, 0, pad), value=IGNORE_INDEX)
    height, width = mask.shape
    top = int(torch.randint(0, height - crop_size + 1, ()))
    left = int(torch.randint(0, width - crop_size + 1, ()))
    image = image[:, top:top + crop_size, left:left + crop_size]
    mask = mask[top:top + crop_size, left:left + crop_size]
    if float(torch.rand(())) < 0.5:
        image, mask = flip_pair(image, mask)
    return image.contiguous(), mask.contiguous()


# ---------------------------------------------------------------- dataset

class CelebAMaskHQ(Dataset):
    """CelebAMask-HQ face parsing, one split (see the module docstring)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        train: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        split_file: str | os.PathLike | None = None,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        base_size: int = 512,
        crop_size: int = 448,
        eval_size: int = 512,
        scale_range: tuple[float, float] = (0.5, 2.0),
    ) -> None:
        self.root = Path(root).expanduser()
        if split not in SPLITS:
            raise DatasetError(f"unknown CelebAMask-HQ split {split!r}; use one of {SPLITS}")
        if not self.root.is_dir():
            raise DatasetError(f"CelebAMask-HQ root {self.root} does not exist; {LAYOUT_HELP}")
        self.split = split
        self.train = split == "train" if train is None else train
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self.mask_dir = combined_mask_dir(self.root)
        if self.mask_dir is None and not (self.root / ANNO_DIR).is_dir():
            raise DatasetError(f"no masks under {self.root}; {LAYOUT_HELP}")
        split_path = Path(split_file) if split_file else (self.cache_dir or self.root) / "split.json"
        splits = load_or_write_split(split_path, list_image_ids(self.root), seed, val_fraction, test_fraction)
        self.split_file = split_path
        self.ids: list[int] = splits[split]
        self.base_size, self.crop_size, self.eval_size = base_size, crop_size, eval_size
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.class_names = LABEL_NAMES

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, image_id: int) -> Path:
        for suffix in (".jpg", ".png"):
            path = self.root / IMAGE_DIR / f"{image_id}{suffix}"
            if path.is_file():
                return path
        raise DatasetError(f"missing image {self.root / IMAGE_DIR / f'{image_id}.jpg'} (listed in {self.split_file})")

    def load_mask(self, image_id: int, image_size: tuple[int, int]) -> np.ndarray:
        """The 19-label mask `[H, W]`: combined file, cached build, or built now (and cached)."""
        if self.mask_dir is not None:
            return read_label_mask(self.mask_dir / f"{image_id}.png")
        cached = self.cache_dir / "masks" / f"{image_id}.png" if self.cache_dir is not None else None
        if cached is not None and cached.is_file():
            return read_label_mask(cached)
        mask = combine_parts(self.root, image_id, size=image_size)
        if cached is not None:
            write_png_atomic(mask, cached)
        return mask

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image `[3, H, W]` in [0, 1] resized to its mask's size, and mask `[H, W]` (untransformed)."""
        image_id = self.ids[index]
        path = self.image_path(image_id)
        pil = read_image(path, mode="RGB")
        mask = torch.from_numpy(self.load_mask(image_id, (pil.height, pil.width)).astype(np.int64))
        image = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
        image, _ = resize_pair(image, mask, tuple(mask.shape))
        return image, mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, mask = self.load(index)
        if self.train:
            image, mask = random_scale_crop_flip(image, mask, self.base_size, self.crop_size, self.scale_range)
        else:
            image, mask = resize_pair(image, mask, (self.eval_size, self.eval_size))
        return {"image": image, "mask": mask}
