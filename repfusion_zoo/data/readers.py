"""Safe image reading and the up-front scan that counts, names and skips unreadable images.

Every image source of `repfusion_zoo.data` (image folders, Hugging Face `datasets`) goes
through `read_image` and `scan_images`, so a corrupt file is handled the same way everywhere:
found before training starts, named once in one warning, and left out of the dataset.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence, Union

import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError

#: what an image source may be: a file path, or the raw encoded bytes of one image
ImageSource = Union[str, os.PathLike, bytes]

#: file suffixes an image folder reads (lower case)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

#: how many bad names the warning spells out before it says "and N more"
WARN_NAMES = 5

# errors PIL raises on a file that is not a readable image
_READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImageWarning(UserWarning):
    """Some images of a dataset could not be decoded and were skipped."""


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        return Image.open(io.BytesIO(source))
    return Image.open(source)


def read_image(source: ImageSource, mode: str = "RGB") -> Image.Image:
    """Decode one image fully and convert it to `mode` ("RGB" or "L").

    Raises `DatasetError` naming the file when it cannot be decoded.
    """
    try:
        with _open(source) as image:
            image.load()
            return image.convert(mode)
    except _READ_ERRORS as error:
        raise DatasetError(f"cannot read image {describe(source)}: {error}") from error


def describe(source: ImageSource) -> str:
    """A short printable name for an image source."""
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return str(source)


@dataclass
class ScanResult:
    """Which of the scanned items decode (`good`, indices into the input) and which do not."""

    good: list[int] = field(default_factory=list)
    bad_names: list[str] = field(default_factory=list)
    kept: list[torch.Tensor] = field(default_factory=list)  # `keep(image)` of each good item, in `good`'s order

    @property
    def num_bad(self) -> int:
        return len(self.bad_names)


def scan_images(sources: Iterable[ImageSource], names: Sequence[str] | None = None, *,
                keep: Callable[[Image.Image], torch.Tensor] | None = None) -> ScanResult:
    """Decode every source once; return the readable indices and the names of the others, and with
    `keep`, what `keep` makes of each readable image (e.g. its pixels, so nothing is decoded again).

    About 70 us per 32x32 JPEG on one CPU core (CIFAR-10's 50,000 train images: ~4 s).
    """
    result = ScanResult()
    for index, source in enumerate(sources):
        try:
            with _open(source) as image:
                image.load()
                kept = keep(image) if keep is not None else None
        except _READ_ERRORS:
            result.bad_names.append(names[index] if names is not None else describe(source))
            continue
        result.good.append(index)
        if kept is not None:
            result.kept.append(kept)
    return result


def warn_unreadable(scan: ScanResult, where: str, total: int) -> None:
    """One warning for all the unreadable images of a dataset: the count and the first names."""
    if not scan.num_bad:
        return
    shown = ", ".join(scan.bad_names[:WARN_NAMES])
    more = f" and {scan.num_bad - WARN_NAMES} more" if scan.num_bad > WARN_NAMES else ""
    warnings.warn(
        f"{where}: skipped {scan.num_bad} of {total} images that cannot be decoded "
        f"(corrupt, truncated or not an image): {shown}{more}",
        UnreadableImageWarning,
        stacklevel=3,
    )


def require_readable(scan: ScanResult, where: str, total: int) -> None:
    """Raise `DatasetError` when no image of a dataset is readable; otherwise warn about the bad ones."""
    if total and not scan.good:
        shown = ", ".join(scan.bad_names[:WARN_NAMES])
        raise DatasetError(
            f"{where}: none of its {total} images can be decoded (e.g. {shown}); "
            "check that the files are complete images (JPEG/PNG) and re-extract or re-download them"
        )
    warn_unreadable(scan, where, total)


def relative_name(path: Path, root: Path) -> str:
    """`path` relative to `root` when possible (shorter warning lines)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
