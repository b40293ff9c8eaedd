"""Image folders: `<root>/<split>/<class>/*.jpg|png` (the shared CIFAR-10 archive, extracted, is one).

Classes are the sorted sub-folder names of the train split folder (so every split shares label
ids). Every file is decoded once when the dataset is built: unreadable ones are counted, named in
one warning and left out; a split with no readable image is a `DatasetError`. A split whose pixels
at `image_size` fit in `IN_MEMORY_BYTES` keeps them from that decode (CIFAR-10's train split: 154 MB),
so no file is read again; a larger one is decoded again at every access.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from PIL import Image

from ..errors import DatasetError
from .base import ImageClassificationDataset, canonical_split
from .readers import IMAGE_SUFFIXES, read_image, relative_name, require_readable, scan_images
from .transforms import image_augmentation, pil_mode, pil_to_image_tensor, pil_to_pixels, pixels_to_image

LAYOUT = "<root>/<split>/<class>/<image>.jpg|png (split folders 'train' and 'test' or 'val')"

#: a split's decoded pixels (uint8 at image_size) are held in memory up to this size
IN_MEMORY_BYTES = 2 * 1024**3

#: folder names tried, in order, for each canonical split
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val", "validation")}


def split_folder(root: Path, split: str) -> Path:
    """The folder of `split` under `root`; `DatasetError` naming the path and the layout if absent."""
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a directory; expected {LAYOUT}")
    for name in SPLIT_FOLDERS[canonical_split(split)]:
        if (root / name).is_dir():
            return root / name
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise DatasetError(
        f"image folder {root} has no {split!r} split folder (found: {present or 'no sub-folders'}); expected {LAYOUT}"
    )


def class_folders(folder: Path) -> list[str]:
    """The sorted class sub-folder names of one split folder."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{folder} has no class sub-folders; expected {LAYOUT}")
    return classes


def list_images(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """(image files, their class indices) of one split folder, labelled by `classes`.

    `classes` come from the train split when there is one, so a test split missing a class keeps
    the train split's label ids; a test class unknown to the train split is a `DatasetError`.
    """
    unknown = sorted(set(class_folders(folder)) - set(classes))
    if unknown:
        raise DatasetError(f"{folder} has class folders {unknown} that the train split lacks (train classes: {classes})")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        if not (folder / name).is_dir():
            continue
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
                files.append(path)
                labels.append(label)
    if not files:
        raise DatasetError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}); expected {LAYOUT}")
    return files, labels


class ImageFolderDataset(ImageClassificationDataset):
    """`<root>/<split>/<class>/*` as `{"image": [in_chans, image_size, image_size] in [0, 1], "label"}`.

    `augment=True` flips left-right at random (the paper's only augmentation).
    `files` are the readable images, `skipped` the names of the unreadable ones.
    """

    def __init__(self, root: str | Path, split: str = "train", *, image_size: int = 32, in_chans: int = 3, augment: bool = False,
                 crop_padding: int = 0):
        self.root = Path(root).expanduser()
        self.split = canonical_split(split)
        folder = split_folder(self.root, split)
        train = self.root / "train"
        classes = class_folders(train if train.is_dir() else folder)
        files, labels = list_images(folder, classes)
        self.image_size = image_size
        self.mode = pil_mode(in_chans)
        in_memory = len(files) * in_chans * image_size**2 <= IN_MEMORY_BYTES
        keep = functools.partial(_pixels, mode=self.mode, image_size=image_size) if in_memory else None
        scan = scan_images(files, [relative_name(f, self.root) for f in files], keep=keep)
        require_readable(scan, f"image folder {folder}", len(files))
        self.files = [files[i] for i in scan.good]
        self.skipped = scan.bad_names
        self.pixels = torch.stack(scan.kept) if in_memory else None  # uint8 [N, C, S, S]
        super().__init__(classes, [labels[i] for i in scan.good], image_augmentation(augment, crop_padding))

    def load_image(self, index: int) -> torch.Tensor:
        if self.pixels is not None:
            return pixels_to_image(self.pixels[index])
        return pil_to_image_tensor(read_image(self.files[index], self.mode), self.image_size)


def _pixels(image: Image.Image, *, mode: str, image_size: int) -> torch.Tensor:
    """What the scan keeps of a decoded image: uint8 `[C, image_size, image_size]`, as `load_image` makes it."""
    return pil_to_pixels(image if image.mode == mode else image.convert(mode), image_size)
