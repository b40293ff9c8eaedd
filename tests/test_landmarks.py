"""Face landmarks: heatmap encode/decode, NME on known errors, the WFLW loader on a synthetic
annotation file in the published layout, bad inputs, the heads, one short training run, pictures."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repfusion_zoo.data.heatmaps import decode, encode, heatmap_coords_to_points, points_to_heatmap_coords
from repfusion_zoo.data.wflw import ATTRIBUTE_NAMES, FLIP_INDEX, NUM_FIELDS, WFLW, parse_annotations
from repfusion_zoo.errors import DatasetError
from repfusion_zoo.metrics.landmarks import NMEMetric, nme_per_sample
from test_segmentation import train_steps


pytestmark = pytest.mark.usefixtures("one_thread")  # 2 shared cores: more threads only oversubscribe


# ------------------------------------------------------------------ synthetic WFLW

ANNOTATIONS = Path("WFLW_annotations") / "list_98pt_rect_attr_train_test"


def template_points(center: tuple[float, float], radius: float) -> np.ndarray:
    """98 distinct points on three rings around `center` `[98, 2]` (points 60 and 72 far apart)."""
    index = np.arange(98)
    ring = radius * (0.4 + 0.3 * (index % 3))
    angle = 2 * np.pi * index / 98
    return np.stack([center[0] + ring * np.cos(angle), center[1] + ring * np.sin(angle)], axis=1)


def write_wflw(root: Path, num_train: int = 6, num_test: int = 4, size: int = 96, seed: int = 0) -> Path:
    """WFLW_images/<event>/<name>.jpg with a bright dot at each of 98 points, and the two annotation files."""
    rng = np.random.default_rng(seed)
    (root / ANNOTATIONS).mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        lines = []
        for i in range(count):
            center = (size / 2 + rng.uniform(-6, 6), size / 2 + rng.uniform(-6, 6))
            points = template_points(center, radius=size * 0.3)
            pixels = rng.integers(0, 40, (size, size + 10, 3)).astype(np.uint8)
            for x, y in points:
                pixels[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
            name = f"0--Parade/{split}_{i}.jpg"
            (root / "WFLW_images" / "0--Parade").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / "WFLW_images" / name, quality=98)
            box = [points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()]
            flags = [int(v) for v in rng.integers(0, 2, 6)]
            fields = [f"{v:.3f}" for v in points.reshape(-1)] + [f"{v:.0f}" for v in box] + [str(f) for f in flags] + [name]
            lines.append(" ".join(fields))
        (root / ANNOTATIONS / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def wflw_root(tmp_path: Path) -> Path:
    return write_wflw(tmp_path / "WFLW")


def brightness_at(image: torch.Tensor, points: torch.Tensor) -> float:
    """Mean of the image at the (rounded) points that fall inside it."""
    size = image.shape[-1]
    xy = points.round().long()
    keep = ((xy >= 0) & (xy < size)).all(dim=1)
    return float(image.mean(dim=0)[xy[keep, 1], xy[keep, 0]].mean())


# ------------------------------------------------------------------ heatmaps

def test_heatmap_encode_decode_round_trip_is_sub_pixel() -> None:
    torch.manual_seed(0)
    points = torch.rand(98, 2) * 200 + 28  # input pixels of a 256 px crop
    coords = points_to_heatmap_coords(points, 256, 64)
    heatmaps = encode(coords, 64, sigma=2.0)
    assert heatmaps.shape == (98, 64, 64)
    assert heatmaps.amax(dim=(1, 2)).min() > 0.85  # peak near 1 at each point
    decoded, scores = decode(heatmaps[None], "dark")
    back = heatmap_coords_to_points(decoded[0], 256, 64)
    assert (back - points).norm(dim=-1).max() < 0.05 * 4  # < 0.05 heatmap px
    quarter, _ = decode(heatmaps[None], "quarter")
    argmax, _ = decode(heatmaps[None], "argmax")
    assert (quarter[0] - coords).abs().max() <= 0.26
    assert (argmax[0] - coords).abs().max() <= 0.51
    assert (decoded[0] - coords).abs().mean() < (quarter[0] - coords).abs().mean()


# ------------------------------------------------------------------ NME

def test_nme_on_points_with_known_error() -> None:
    target = torch.zeros(2, 98, 2)
    target[:, :, 0] = torch.arange(98, dtype=torch.float32)
    target[:, 60] = torch.tensor([10.0, 0.0])
    target[:, 72] = torch.tensor([30.0, 0.0])  # outer eye corners 20 px apart
    prediction = target.clone()
    prediction[0] += torch.tensor([3.0, 4.0])  # every point 5 px off -> NME 5 / 20 = 25 %
    prediction[1] += torch.tensor([0.0, 2.0])  # 2 px off -> 10 %
    assert nme_per_sample(prediction, target).tolist() == pytest.approx([0.25, 0.10])
    # attribute order: pose expression illumination makeup occlusion blur
    attributes = torch.tensor([[1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 1]])
    metric = NMEMetric()
    metric.update(prediction, {"points": target, "attributes": attributes})
    scores = metric.compute(metric.state())
    assert scores["NME"] == pytest.approx(17.5)
    assert scores["NME_pose"] == pytest.approx(25.0)
    assert scores["NME_occlusion"] == pytest.approx(10.0)
    assert scores["NME_blur"] == pytest.approx(17.5)
    assert "NME_makeup" not in scores  # empty subset left out
    assert list(scores)[:4] == ["NME", "NME_pose", "NME_occlusion", "NME_blur"]  # Table 3 order


def test_nme_state_is_additive() -> None:
    torch.manual_seed(1)
    target = torch.rand(6, 98, 2) * 100
    prediction = target + torch.randn(6, 98, 2)
    attributes = torch.randint(0, 2, (6, 6))
    whole, a, b = NMEMetric(), NMEMetric(), NMEMetric()
    whole.update(prediction, {"points": target, "attributes": attributes})
    a.update(prediction[:2], {"points": target[:2], "attributes": attributes[:2]})
    b.update(prediction[2:], {"points": target[2:], "attributes": attributes[2:]})
    assert whole.compute(a.state() + b.state()) == pytest.approx(whole.compute(whole.state()))


# ------------------------------------------------------------------ loader

def test_annotation_file_is_parsed_in_published_order(wflw_root: Path) -> None:
    path = wflw_root / ANNOTATIONS / "list_98pt_rect_attr_train.txt"
    records = parse_annotations(path)
    first = path.read_text().splitlines()[0].split()
    assert len(first) == NUM_FIELDS == 207 and len(records) == 6
    assert records[0].points[1].tolist() == pytest.approx([float(first[2]), float(first[3])])
    assert records[0].box == tuple(float(v) for v in first[196:200])
    assert records[0].attributes == tuple(int(v) for v in first[200:206])
    assert records[0].image == first[206]
    assert ATTRIBUTE_NAMES == ("pose", "expression", "illumination", "makeup", "occlusion", "blur")


def test_eval_item_crops_the_face_and_moves_the_points(wflw_root: Path) -> None:
    data = WFLW(wflw_root, "test", input_size=128, heatmap_size=32)
    item = data[0]
    assert item["image"].shape == (3, 128, 128) and item["points"].shape == (98, 2)
    assert item["heatmaps"].shape == (98, 32, 32) and item["attributes"].shape == (6,)
    assert item["transform"].shape == (2, 3)
    assert brightness_at(item["image"], item["points"]) > 0.5  # the dots are where the points say
    matrix = np.vstack([item["transform"].numpy(), [0, 0, 1]])
    original = np.linalg.solve(matrix, np.hstack([item["points"].numpy(), np.ones((98, 1))]).T).T[:, :2]
    assert original == pytest.approx(data.records[0].points, abs=1e-3)  # the transform maps back
    decoded, _ = decode(item["heatmaps"][None])
    # DARK's smoothing (kernel 11) biases points within ~4 heatmap px of the border: check the others
    inside = ((item["points"] > 20) & (item["points"] < 108)).all(dim=1)
    assert inside.sum() > 30
    error = (heatmap_coords_to_points(decoded[0], 128, 32) - item["points"])[inside]
    assert error.abs().max() < 0.2


def test_training_augmentation_keeps_image_and_points_together(wflw_root: Path) -> None:
    data = WFLW(wflw_root, "train", input_size=64, heatmap_size=16, rotation=30.0, scale_jitter=0.25)
    for seed in range(6):
        torch.manual_seed(seed)
        item = data[seed % len(data)]
        assert brightness_at(item["image"], item["points"]) > 0.45
    assert all(FLIP_INDEX[FLIP_INDEX[i]] == i for i in range(98))
    assert FLIP_INDEX[60] == 72 and FLIP_INDEX[96] == 97 and FLIP_INDEX[0] == 32 and FLIP_INDEX[16] == 16


def test_wrong_field_count_is_an_error_naming_file_and_line(wflw_root: Path) -> None:
    path = wflw_root / ANNOTATIONS / "list_98pt_rect_attr_train.txt"
    lines = path.read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[1:])  # 206 fields
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"list_98pt_rect_attr_train\.txt:3: expected 207 fields.*found 206"):
        WFLW(wflw_root, "train")


def test_missing_image_is_an_error_naming_the_file(wflw_root: Path) -> None:
    data = WFLW(wflw_root, "test", input_size=64, heatmap_size=16)
    (wflw_root / "WFLW_images" / data.records[1].image).unlink()
    with pytest.raises(DatasetError, match=r"missing image .*WFLW_images/0--Parade/test_1\.jpg"):
        data[1]


def test_missing_annotation_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="list_98pt_rect_attr_train.txt"):
        WFLW(tmp_path / "empty", "train")


# ------------------------------------------------------------------ heads, task, pictures

def test_flip_test_maps_the_mirrored_points_back() -> None:
    """A model that finds the true points on the image and on its mirror: flip-test returns them."""
    from repfusion_zoo.tasks.landmarks import LandmarksTask

    torch.manual_seed(0)
    size, image = 128, torch.rand(1, 3, 128, 128)
    points = torch.rand(98, 2) * 80 + 24  # away from DARK's border bias
    mirrored = points[list(FLIP_INDEX)].clone()
    mirrored[:, 0] = size - 1 - mirrored[:, 0]

    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen = points if torch.equal(x, image) else mirrored
            return encode(points_to_heatmap_coords(seen, size, 32), 32)[None]

    task = LandmarksTask({"input_size": 128, "heatmap_size": 32, "flip_test": True})
    predicted = task.predict(Oracle(), {"image": image})[0]
    assert (predicted - points).abs().max() < 0.1
    assert LandmarksTask({"input_size": 128, "heatmap_size": 32, "flip_test": False}).predict(Oracle(), {"image": image}).shape == (1, 98, 2)


def test_hrnetv2_head_fuses_the_four_branches() -> None:
    from repfusion_zoo.heads import build_heatmap_model

    model = build_heatmap_model("hrnet_w18", num_points=98).eval()
    assert model.head.fuse[0].in_channels == 18 + 36 + 72 + 144  # the fused high-resolution output
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 98, 16, 16)


def test_short_training_run_lowers_the_loss_and_writes_pictures(wflw_root: Path, tmp_path: Path) -> None:
    from repfusion_zoo.tasks import get_task

    torch.manual_seed(0)
    task_cls = get_task("landmarks")
    cfg = {**task_cls.default_config(), "data_root": str(wflw_root), "input_size": 64, "heatmap_size": 16}
    task = task_cls()
    train, evaluation = task.build_datasets(cfg)
    model = task.build_model("resnet18", False, cfg)
    assert model.head.final.out_channels == 98 and len(model.head.deconv) == 9  # 3 x (deconv, BN, ReLU)
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    history = train_steps(task, model, batch, torch.optim.Adam(model.parameters(), lr=2e-3))
    assert history[-1]["total"] < 0.5 * history[0]["total"]

    model.eval()
    eval_batch = torch.utils.data.default_collate([evaluation[i] for i in range(len(evaluation))])
    metric = task.new_metric()
    with torch.no_grad():
        points = task.predict(model, eval_batch)
    assert points.shape == (len(evaluation), 98, 2)
    metric.update(points, eval_batch)
    scores = metric.compute(metric.state())
    assert "NME" in scores and math.isfinite(scores["NME"])
    pictures = task.visualize(model, eval_batch, tmp_path / "pictures")
    assert len(pictures) == 4 and all(p.is_file() for p in pictures)
    assert Image.open(pictures[0]).size == (64, 64)
