"""`DataSettings`: the images of a run (dataset spec, side, channels), declared once; the distill,
cache_features and experiment recipes inherit these keys, and `build_dataset` reads them."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import opt

__all__ = ["DataSettings"]


@dataclass
class DataSettings:
    """Which images, at which size and channels (the teacher's input size and channels)."""

    dataset: str = opt("digits", "repfusion_zoo.data.build_dataset spec: digits | imagefolder:<path> | <path> | "
                                 "hf:<id or path>[:<config>]")
    image_size: int = opt(32, "image side in pixels (must equal the teacher's sample_size)")
    in_chans: int = opt(3, "image channels (must equal the teacher's in_channels)")
