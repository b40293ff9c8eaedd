"""WFLW face landmarks (98 points) read from the published annotation files, top-down cropped.

Published layout under `root`::

    WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt
    WFLW_images/<event folder>/<name>.jpg

(the annotation file may also sit directly in `root`). Each line holds 207 whitespace-separated
fields: x0 y0 ... x97 y97 (196), the detection box x_min y_min x_max y_max (4), six attribute
flags pose expression illumination make-up occlusion blur (6), and the image path relative to
`WFLW_images/` (1).

Top-down crop: the box is enlarged by `box_scale` (1.25) to a square around its centre and
affine-warped to `input_size` (256) pixels; the points go through the same affine map. Training
adds a random flip (with WFLW's left/right point swap), scale (x [1 - s, 1 + s]) and rotation
(+-r degrees, with probability 0.6), as in mmpose's WFLW configs. Pixel centres sit at integer
coordinates throughout.

Items: {"image": [3, S, S] in [0, 1], "points": [98, 2] input pixels, "heatmaps": [98, h, h]
(Gaussian, sigma 2), "attributes": LongTensor[6], "transform": [2, 3] (original -> input pixels)}.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import DatasetError
from .heatmaps import encode, points_to_heatmap_coords
from .readers import read_image

NUM_POINTS = 98
NUM_FIELDS = 2 * NUM_POINTS + 4 + 6 + 1  # 207
ATTRIBUTE_NAMES: tuple[str, ...] = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
ANNOTATION_DIR = Path("WFLW_annotations") / "list_98pt_rect_attr_train_test"
IMAGE_DIR = "WFLW_images"
SPLITS = ("train", "test")
LAYOUT_HELP = f"expected {IMAGE_DIR}/<event>/<name>.jpg and {ANNOTATION_DIR}/list_98pt_rect_attr_<split>.txt"

#: point pairs a horizontal mirror swaps (left <-> right)
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    *((i, 32 - i) for i in range(16)),  # face contour
    (33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47),  # brows
    (55, 59), (56, 58),  # nose
    (60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73),  # eyes
    (76, 82), (77, 81), (78, 80), (83, 87), (84, 86), (88, 92), (89, 91), (93, 95), (96, 97),  # mouth, pupils
)


def _flip_index(pairs: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    index = list(range(NUM_POINTS))
    for a, b in pairs:
        index[a], index[b] = b, a
    return tuple(index)


#: index permutation that re-labels points after a horizontal mirror
FLIP_INDEX: tuple[int, ...] = _flip_index(FLIP_PAIRS)


@dataclass(frozen=True)
class WFLWRecord:
    """One annotated face: points `[98, 2]`, box (x_min, y_min, x_max, y_max), 6 flags, image path."""

    points: np.ndarray
    box: tuple[float, float, float, float]
    attributes: tuple[int, ...]
    image: str


def annotation_path(root: Path, split: str) -> Path:
    """The published annotation file of `split` (under WFLW_annotations/... or directly in root)."""
    name = f"list_98pt_rect_attr_{split}.txt"
    for candidate in (root / ANNOTATION_DIR / name, root / "WFLW_annotations" / name, root / name):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"missing WFLW annotation file {root / ANNOTATION_DIR / name}; {LAYOUT_HELP}")


def parse_annotations(path: Path) -> list[WFLWRecord]:
    """Every face of an annotation file; a malformed line is a DatasetError naming file and line."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != NUM_FIELDS:
            raise DatasetError(
                f"{path}:{number}: expected {NUM_FIELDS} fields (196 coordinates, 4 box values, "
                f"6 attribute flags, image path), found {len(fields)}"
            )
        try:
            numbers = [float(v) for v in fields[:200]]
            flags = tuple(int(float(v)) for v in fields[200:206])
        except ValueError as error:
            raise DatasetError(f"{path}:{number}: a coordinate or attribute is not a number ({error})") from error
        records.append(WFLWRecord(
            points=np.asarray(numbers[:196], dtype=np.float32).reshape(NUM_POINTS, 2),
            box=tuple(numbers[196:200]),  # type: ignore[arg-type]
            attributes=flags,
            image=fields[206],
        ))
    if not records:
        raise DatasetError(f"WFLW annotation file {path} holds no face")
    return records


def crop_transform(
    box: tuple[float, float, float, float], output_size: int, box_scale: float = 1.25,
    scale: float = 1.0, rotation: float = 0.0, flip: bool = False,
) -> np.ndarray:
    """The 3x3 affine map (original pixels -> crop pixels) of the enlarged square box.

    `scale` > 1 zooms out, `rotation` in degrees (counter-clockwise), `flip` mirrors the crop.
    """
    x_min, y_min, x_max, y_max = box
    center_x, center_y = (x_min + x_max) / 2, (y_min + y_max) / 2
    side = max(x_max - x_min, y_max - y_min, 1.0) * box_scale * scale
    zoom = output_size / side
    angle = math.radians(rotation)
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    half = (output_size - 1) / 2
    matrix = np.array([
        [cos, sin, half - cos * center_x - sin * center_y],
        [-sin, cos, half + sin * center_x - cos * center_y],
        [0.0, 0.0, 1.0],
    ])
    if flip:
        matrix = np.array([[-1.0, 0.0, output_size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ matrix
    return matrix


def warp_image(image: torch.Tensor, matrix: np.ndarray, output_size: int) -> torch.Tensor:
    """Warp image `[3, H, W]` by the affine `matrix` (original -> output pixels) to `[3, S, S]`."""
    height, width = image.shape[-2:]
    inverse = torch.from_numpy(np.linalg.inv(matrix)).to(torch.float32)
    ys, xs = torch.meshgrid(torch.arange(output_size, dtype=torch.float32),
                            torch.arange(output_size, dtype=torch.float32), indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ inverse.T  # [S, S, 3] source pixels
    norm_x = grid[..., 0] * (2.0 / max(width - 1, 1)) - 1.0
    norm_y = grid[..., 1] * (2.0 / max(height - 1, 1)) - 1.0
    sample = torch.stack([norm_x, norm_y], dim=-1)[None]
    return F.grid_sample(image[None], sample, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points `[K, 2]` through the affine `matrix` (3x3)."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


class WFLW(Dataset):
    """WFLW, one split, top-down crops (see the module docstring)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        train: bool | None = None,
        input_size: int = 256,
        heatmap_size: int = 64,
        sigma: float = 2.0,
        box_scale: float = 1.25,
        scale_jitter: float = 0.25,
        rotation: float = 30.0,
        flip: bool = True,
    ) -> None:
        self.root = Path(root).expanduser()
        if split not in SPLITS:
            raise DatasetError(f"unknown WFLW split {split!r}; use one of {SPLITS}")
        if not self.root.is_dir():
            raise DatasetError(f"WFLW root {self.root} does not exist; {LAYOUT_HELP}")
        self.split = split
        self.train = split == "train" if train is None else train
        self.annotation_file = annotation_path(self.root, split)
        self.records = parse_annotations(self.annotation_file)
        self.input_size, self.heatmap_size, self.sigma = input_size, heatmap_size, sigma
        self.box_scale, self.scale_jitter, self.rotation, self.flip = box_scale, scale_jitter, rotation, flip
        self.attribute_names = ATTRIBUTE_NAMES

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path:
        record = self.records[index]
        path = self.root / IMAGE_DIR / record.image
        if not path.is_file():
            raise DatasetError(f"missing image {path} (line {index + 1} of {self.annotation_file})")
        return path

    def _augmentation(self) -> tuple[float, float, bool]:
        if not self.train:
            return 1.0, 0.0, False
        draws = torch.rand(4).tolist()  # torch's global RNG: the recipe seeds it per item
        scale = 1 - self.scale_jitter + 2 * self.scale_jitter * draws[0]
        rotation = (2 * draws[1] - 1) * self.rotation if draws[2] < 0.6 else 0.0
        return scale, rotation, self.flip and draws[3] < 0.5

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        pil = read_image(self.image_path(index), mode="RGB")
        image = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
        scale, rotation, flip = self._augmentation()
        matrix = crop_transform(record.box, self.input_size, self.box_scale, scale, rotation, flip)
        points = transform_points(record.points, matrix)
        if flip:
            points = points[list(FLIP_INDEX)]
        points_t = torch.from_numpy(points.astype(np.float32))
        heatmaps = encode(points_to_heatmap_coords(points_t, self.input_size, self.heatmap_size),
                          self.heatmap_size, self.sigma)
        return {
            "image": warp_image(image, matrix, self.input_size).clamp(0, 1),
            "points": points_t,
            "heatmaps": heatmaps,
            "attributes": torch.tensor(record.attributes, dtype=torch.long),
            "transform": torch.from_numpy(matrix[:2].astype(np.float32)),
        }
