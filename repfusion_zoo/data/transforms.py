"""Image -> tensor conversion and the training augmentations.

Every dataset yields `image` as a float tensor `[C, H, W]` in [0, 1] (see docs/architecture.md).
Augmentations draw from torch's global RNG, so `accelerate`'s `set_seed` and `save_state` /
`load_state` make them reproducible and resumable.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..errors import DatasetError


def pil_mode(in_chans: int) -> str:
    """The PIL mode that gives `in_chans` channels (1 -> "L", 3 -> "RGB")."""
    if in_chans == 1:
        return "L"
    if in_chans == 3:
        return "RGB"
    raise DatasetError(f"in_chans={in_chans} is not supported for image files; use 1 (grey) or 3 (RGB)")


def pil_to_pixels(image: Image.Image, image_size: int) -> torch.Tensor:
    """Resize the shorter side to `image_size` (bilinear, antialiased), centre-crop square.

    Returns `[C, image_size, image_size]` uint8.
    """
    if image.size != (image_size, image_size):
        image = TF.resize(image, image_size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        image = TF.center_crop(image, [image_size, image_size])
    return TF.pil_to_tensor(image)


def pixels_to_image(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 `[C, H, W]` -> float `[C, H, W]` in [0, 1]."""
    return pixels.float().div_(255.0)


def pil_to_image_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """`pil_to_pixels` as float `[C, image_size, image_size]` in [0, 1]."""
    return pixels_to_image(pil_to_pixels(image, image_size))


def resize_tensor(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Bilinear resize of `[N, C, H, W]` to `[N, C, image_size, image_size]` (antialiased when shrinking)."""
    if images.shape[-2:] == (image_size, image_size):
        return images
    shrinking = image_size < max(images.shape[-2:])
    out = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=shrinking)
    return out.clamp_(0.0, 1.0)


def match_channels(image: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Replicate a 1-channel `[1, H, W]` image to `[in_chans, H, W]`; pass through a matching one."""
    if image.shape[0] == in_chans:
        return image
    if image.shape[0] == 1:
        return image.repeat(in_chans, 1, 1)
    raise DatasetError(
        f"cannot turn a {image.shape[0]}-channel image into {in_chans} channels; set in_chans={image.shape[0]} "
        "(only 1-channel images are replicated to more channels)"
    )


def random_hflip(image: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Flip `[C, H, W]` left-right with probability 1/2 (the paper's only augmentation); also says whether it did."""
    if torch.rand(()) < 0.5:
        return image.flip(-1), True
    return image, False


def random_shift(image: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate `[C, H, W]` by up to `max_shift` pixels each way, filling with zeros (black).

    This is torchvision's `RandomCrop(size, padding=max_shift)` (zero padding), the standard CIFAR
    crop with `max_shift=4`, and the digits' augmentation (a mirrored digit is a different digit,
    a shifted one is not).
    """
    if max_shift <= 0:
        return image
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,)))
    padded = F.pad(image, (max_shift, max_shift, max_shift, max_shift))
    h, w = image.shape[-2:]
    top, left = max_shift + dy, max_shift + dx
    return padded[:, top : top + h, left : left + w]


@dataclass(frozen=True)
class Augmentation:
    """Per-item training augmentation of `[C, H, W]` images: a random shift (= random crop with
    zero padding) of up to `shift` pixels, then a random horizontal flip when `hflip`.

    `__call__(image) -> (image, flipped)`: the flag travels with the item (`"flip"`), so a
    teacher-feature cache can serve the flipped view. Draws from torch's global RNG.
    """

    hflip: bool = False
    shift: int = 0

    @property
    def flips_only(self) -> bool:
        """True when every augmented image is the image or its mirror (what a feature cache holds)."""
        return self.shift == 0

    @property
    def name(self) -> str:
        """`"none"`, `"hflip"`, `"crop4"` or `"crop4+hflip"` (crop = shift with zero padding)."""
        parts = [f"crop{self.shift}"] * bool(self.shift) + ["hflip"] * self.hflip
        return "+".join(parts) or "none"

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, bool]:
        if self.shift:
            image = random_shift(image, self.shift)
        if self.hflip:
            return random_hflip(image)
        return image, False


def image_augmentation(augment: bool, crop_padding: int = 0) -> Augmentation | None:
    """The training augmentation of natural images: flips (the paper's distillation), plus a random
    crop with `crop_padding` zero padding (standard CIFAR fine-tuning); None when `augment` is off."""
    return Augmentation(hflip=True, shift=int(crop_padding)) if augment else None
