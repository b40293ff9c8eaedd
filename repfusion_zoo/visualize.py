"""Pictures of dense predictions: colour-coded face-parsing overlays and landmark overlays (PNGs).

The paper's Figures 6 (parsing) and 7 (landmarks). Images are `[3, H, W]` in [0, 1]; masks
`[H, W]` labels 0..18 (255 = ignore, drawn black); points `[K, 2]` in image pixels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .errors import MissingExtraError

def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (for the PNG figures of runs and reports)."""
    try:
        import matplotlib  # optional: the recipes extra (pip install repfusion-zoo[recipes]); figures only
    except ImportError as error:
        raise MissingExtraError.of("matplotlib", "the PNG figures") from error

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: as above

    return plt


#: one colour per CelebAMask-HQ label (background, skin, nose, eye_g, l_eye, r_eye, l_brow, r_brow,
#: l_ear, r_ear, mouth, u_lip, l_lip, hair, hat, ear_r, neck_l, neck, cloth)
PARSING_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
    (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0),
    (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0),
)


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """`[3, H, W]` in [0, 1] -> uint8 `[H, W, 3]`."""
    return (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def colorize(mask: torch.Tensor, palette: Sequence[tuple[int, int, int]] = PARSING_PALETTE) -> np.ndarray:
    """Label map `[H, W]` -> uint8 colours `[H, W, 3]` (labels outside the palette are black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[mask.detach().cpu().numpy().astype(np.uint8)]


def parsing_overlay(image: torch.Tensor, mask: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """The image with its label map blended on top (`alpha` = weight of the colours)."""
    blended = (1 - alpha) * to_uint8_image(image).astype(np.float32) + alpha * colorize(mask).astype(np.float32)
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))


def parsing_row(image: torch.Tensor, prediction: torch.Tensor, target: torch.Tensor | None = None) -> Image.Image:
    """image `[3, H, W]` | target overlay (if given) | prediction overlay (masks `[H, W]`), side by side."""
    panels = [Image.fromarray(to_uint8_image(image))]
    if target is not None:
        panels.append(parsing_overlay(image, target))
    panels.append(parsing_overlay(image, prediction))
    return side_by_side(panels)


def landmark_overlay(
    image: torch.Tensor, points: torch.Tensor, target: torch.Tensor | None = None, radius: float = 1.5
) -> Image.Image:
    """The image with predicted points (red) and, if given, target points (green)."""
    picture = Image.fromarray(to_uint8_image(image))
    draw = ImageDraw.Draw(picture)
    for pts, colour in ((target, (0, 255, 0)), (points, (255, 0, 0))):
        if pts is None:
            continue
        for x, y in pts.detach().float().cpu().tolist():
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return picture


def side_by_side(pictures: Sequence[Image.Image]) -> Image.Image:
    """Pictures of the same height in one row."""
    width = sum(p.width for p in pictures)
    row = Image.new("RGB", (width, max(p.height for p in pictures)))
    x = 0
    for picture in pictures:
        row.paste(picture, (x, 0))
        x += picture.width
    return row


def save_pictures(pictures: Iterable[Image.Image], out_dir: str | Path, prefix: str) -> list[Path]:
    """Each picture as `<out_dir>/<prefix>_<i:02d>.png`; the folder is made if needed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, picture in enumerate(pictures):
        path = out / f"{prefix}_{i:02d}.png"
        picture.save(path)
        paths.append(path)
    return paths


def _save_rows(draw: Any, images: torch.Tensor, predictions: torch.Tensor, targets: torch.Tensor | None,
               out_dir: str | Path, prefix: str, max_images: int) -> list[Path]:
    """``draw(image, prediction, target | None)`` for the first `max_images` images, one PNG each."""
    count = min(max_images, len(images))
    pictures = (draw(images[i], predictions[i], None if targets is None else targets[i]) for i in range(count))
    return save_pictures(pictures, out_dir, prefix)


def save_parsing_pictures(images: torch.Tensor, predictions: torch.Tensor, targets: torch.Tensor | None,
                          out_dir: str | Path, prefix: str = "parsing", max_images: int = 4) -> list[Path]:
    """One PNG per image: image | target overlay | prediction overlay. images `[B, 3, H, W]`, masks `[B, H, W]`."""
    return _save_rows(parsing_row, images, predictions, targets, out_dir, prefix, max_images)


def save_landmark_pictures(images: torch.Tensor, points: torch.Tensor, targets: torch.Tensor | None,
                           out_dir: str | Path, prefix: str = "landmarks", max_images: int = 4) -> list[Path]:
    """One PNG per image with predicted (red) and target (green) points. points `[B, K, 2]`."""
    return _save_rows(landmark_overlay, images, points, targets, out_dir, prefix, max_images)
