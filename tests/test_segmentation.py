"""Face parsing: metrics on hand-computed maps, the CelebAMask-HQ loader on synthetic files in the
published layout, bad inputs, BiSeNetV1 shapes, one short training run, the pictures."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repfusion_zoo.data.celebamask import (
    FLIP_PAIRS,
    LABEL_NAMES,
    PART_NAMES,
    CelebAMaskHQ,
    combine_parts,
    flip_pair,
    make_split,
)
from repfusion_zoo.errors import DatasetError
from repfusion_zoo.metrics.segmentation import SegmentationMetric, confusion_matrix, scores_from_confusion


pytestmark = pytest.mark.usefixtures("one_thread")  # 2 shared cores: more threads only oversubscribe


# ------------------------------------------------------------------ synthetic CelebAMask-HQ

#: rectangles (top, left, bottom, right) in a 32 px mask, painted in PART_NAMES order
_PART_BOXES = {
    "skin": (6, 6, 26, 26), "hair": (0, 0, 8, 32), "l_eye": (12, 9, 15, 13), "r_eye": (12, 19, 15, 23),
    "nose": (15, 14, 19, 18), "u_lip": (20, 12, 22, 20), "l_lip": (22, 12, 24, 20), "neck": (26, 10, 32, 22),
    "cloth": (29, 0, 32, 32),
}


def write_celebamask(root: Path, num_images: int = 10, image_size: int = 64, mask_size: int = 32,
                     combined: bool = False, seed: int = 0) -> Path:
    """CelebA-HQ-img/<id>.jpg (image_size) + CelebAMask-HQ-mask-anno/<id//2000>/<id:05d>_<part>.png
    (mask_size, 0/255), or combined masks mask/<id>.png. Image colours follow the labels (learnable)."""
    rng = np.random.default_rng(seed)
    (root / "CelebA-HQ-img").mkdir(parents=True, exist_ok=True)
    palette = rng.integers(0, 256, (len(LABEL_NAMES), 3))
    for image_id in range(num_images):
        shift = int(rng.integers(-2, 3))
        label = np.zeros((mask_size, mask_size), dtype=np.uint8)
        for index, part in enumerate(PART_NAMES, start=1):
            if part not in _PART_BOXES:
                continue
            top, left, bottom, right = _PART_BOXES[part]
            part_mask = np.zeros((mask_size, mask_size), dtype=np.uint8)
            part_mask[max(0, top + shift):bottom + shift, left:right] = 255
            label[part_mask != 0] = index
            if not combined:
                folder = root / "CelebAMask-HQ-mask-anno" / str(image_id // 2000)
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(part_mask).save(folder / f"{image_id:05d}_{part}.png")
        if combined:
            (root / "mask").mkdir(exist_ok=True)
            Image.fromarray(label).save(root / "mask" / f"{image_id}.png")
        colours = palette[label].astype(np.float32) + rng.normal(0, 10, (mask_size, mask_size, 3))
        image = Image.fromarray(colours.clip(0, 255).astype(np.uint8)).resize((image_size, image_size), Image.NEAREST)
        image.save(root / "CelebA-HQ-img" / f"{image_id}.jpg", quality=95)
    return root


def train_steps(task, model: torch.nn.Module, batch: dict, optimizer: torch.optim.Optimizer,
                steps: int = 8) -> list[dict[str, float]]:
    """`steps` optimiser steps of `task.training_loss` on one batch; the named losses of each step."""
    model.train()
    history = []
    for _ in range(steps):
        losses = task.training_loss(model, batch)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append({name: float(value.detach()) for name, value in losses.items()})
    return history


@pytest.fixture()
def celebamask_root(tmp_path: Path) -> Path:
    return write_celebamask(tmp_path / "CelebAMask-HQ")


# ------------------------------------------------------------------ metrics

def test_metrics_hand_computed_with_a_class_absent_from_both() -> None:
    # 3 classes; class 2 never appears in target nor prediction
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]])
    metric = SegmentationMetric(num_classes=3)
    metric.update(prediction[None], {"mask": target[None]})
    scores = metric.compute(metric.state())
    # class 0: tp 3, fn 1, fp 1 -> IoU 3/5, acc 3/4; class 1: tp 3, fn 1, fp 1 -> IoU 3/5, acc 3/4
    assert scores["mIoU"] == pytest.approx(60.0)
    assert scores["aAcc"] == pytest.approx(75.0)
    assert scores["mAcc"] == pytest.approx(75.0)


def test_metrics_predicted_but_absent_class_counts_zero_and_ignore_is_skipped() -> None:
    target = torch.tensor([[0, 0, 255, 255]])
    prediction = torch.tensor([[0, 2, 2, 1]])
    confusion = confusion_matrix(prediction, target, num_classes=3)
    assert confusion.sum() == 2  # the two ignored pixels are not counted
    scores = scores_from_confusion(confusion, class_names=["a", "b", "c"])
    assert scores["IoU.a"] == pytest.approx(50.0)  # tp 1 / (1 + 1 fn)
    assert math.isnan(scores["IoU.b"])  # absent from target and from kept predictions
    assert scores["IoU.c"] == pytest.approx(0.0)  # predicted, never true
    assert scores["mIoU"] == pytest.approx(25.0)
    assert scores["mAcc"] == pytest.approx(50.0)  # only class a has target pixels


def test_metric_state_is_additive_across_batches_and_processes() -> None:
    torch.manual_seed(0)
    targets = torch.randint(0, 19, (4, 8, 8))
    predictions = torch.randint(0, 19, (4, 8, 8))
    whole = SegmentationMetric()
    whole.update(predictions, {"mask": targets})
    part_a, part_b = SegmentationMetric(), SegmentationMetric()
    part_a.update(predictions[:1], {"mask": targets[:1]})
    part_a.update(predictions[1:2], {"mask": targets[1:2]})
    part_b.update(predictions[2:], {"mask": targets[2:]})
    merged = part_a.state() + part_b.state()
    assert merged.dtype == torch.float64
    assert whole.compute(merged) == pytest.approx(whole.compute(whole.state()))


# ------------------------------------------------------------------ loader

def test_combination_follows_g_mask_order(tmp_path: Path) -> None:
    # image 2001 lives in folder 1 (id // 2000); later parts in g_mask.py's list overwrite earlier ones
    folder = tmp_path / "CelebAMask-HQ-mask-anno" / "1"
    folder.mkdir(parents=True)
    full, top, row = (np.zeros((8, 8), np.uint8) for _ in range(3))
    full[:] = 255
    top[:4] = 255
    row[2] = 255
    Image.fromarray(top).save(folder / "02001_hair.png")  # label 13, painted after skin
    Image.fromarray(full).save(folder / "02001_skin.png")  # label 1
    Image.fromarray(row).save(folder / "02001_l_eye.png")  # label 4, painted BEFORE hair
    mask = combine_parts(tmp_path, 2001)
    assert mask.shape == (8, 8)
    assert (mask[:4] == LABEL_NAMES.index("hair")).all()  # hair covers the eye row too
    assert (mask[4:] == LABEL_NAMES.index("skin")).all()
    assert LABEL_NAMES[4] == "l_eye" and LABEL_NAMES[13] == "hair" and len(LABEL_NAMES) == 19
    assert combine_parts(tmp_path, 7, size=(3, 5)).tolist() == [[0] * 5] * 3  # no part: background


def test_loader_builds_masks_split_and_transforms(celebamask_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    kw = dict(cache_dir=cache, seed=3, val_fraction=0.2, test_fraction=0.2, base_size=64, crop_size=48, eval_size=40)
    train = CelebAMaskHQ(celebamask_root, "train", **kw)
    test = CelebAMaskHQ(celebamask_root, "test", **kw)
    val = CelebAMaskHQ(celebamask_root, "val", **kw)
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert not set(train.ids) & set(test.ids) and not set(val.ids) & set(test.ids)
    saved = json.loads((cache / "split.json").read_text())
    assert saved["test"] == test.ids and saved["settings"]["seed"] == 3
    assert make_split(range(10), 3, 0.2, 0.2) == {k: saved[k] for k in ("train", "val", "test")}
    assert make_split(range(10), 4, 0.2, 0.2) != make_split(range(10), 3, 0.2, 0.2)

    item = train[0]
    assert item["image"].shape == (3, 48, 48) and item["mask"].shape == (48, 48)
    assert item["image"].dtype == torch.float32 and 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["mask"].dtype == torch.long
    assert set(item["mask"].unique().tolist()) <= set(range(19)) | {255}
    assert (cache / "masks" / f"{train.ids[0]}.png").is_file()  # cached build
    evaluation = test[0]
    assert evaluation["image"].shape == (3, 40, 40) and evaluation["mask"].shape == (40, 40)
    # a cached mask is what the parts give
    cached = np.asarray(Image.open(cache / "masks" / f"{train.ids[0]}.png"))
    assert np.array_equal(cached, combine_parts(celebamask_root, train.ids[0]))


def test_loader_accepts_combined_masks(tmp_path: Path) -> None:
    root = write_celebamask(tmp_path / "combined", num_images=5, combined=True)
    for path in (root / "mask").glob("*.png"):  # palette PNGs hold label indices, not colours
        mask = Image.open(path)
        palette = mask.convert("P")
        palette.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
        palette.save(path)
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(mask))
    data = CelebAMaskHQ(root, "train", cache_dir=tmp_path / "c", val_fraction=0.2, test_fraction=0.2,
                        train=False, eval_size=32)
    item = data[0]
    assert item["mask"].shape == (32, 32)
    assert (item["mask"] == LABEL_NAMES.index("l_eye")).any()


def test_flip_swaps_left_and_right_labels() -> None:
    mask = torch.zeros(4, 4, dtype=torch.long)
    left_eye, right_eye = FLIP_PAIRS[0]
    mask[1, 0] = left_eye
    mask[1, 3] = right_eye
    image = torch.rand(3, 4, 4)
    flipped_image, flipped = flip_pair(image, mask)
    assert flipped[1, 3] == right_eye and flipped[1, 0] == left_eye  # mirrored AND relabelled
    assert torch.equal(flipped_image, image.flip(-1))


def test_random_scale_crop_pads_with_ignore() -> None:
    from repfusion_zoo.data.celebamask import random_scale_crop_flip

    torch.manual_seed(0)
    image, mask = torch.rand(3, 40, 40), torch.ones(40, 40, dtype=torch.long)
    out_image, out_mask = random_scale_crop_flip(image, mask, base_size=32, crop_size=24, scale_range=(0.5, 0.5))
    assert out_image.shape == (3, 24, 24) and out_mask.shape == (24, 24)
    # the 16 px scaled image sits in a corner (either side: the flip is random), the rest is padding
    assert int((out_mask == 1).sum()) == 16 * 16 and int((out_mask == 255).sum()) == 24 * 24 - 16 * 16
    assert (out_image[:, out_mask == 255] == 0).all()  # padding is black image / ignored mask
    big_image, big_mask = random_scale_crop_flip(image, mask, base_size=32, crop_size=24, scale_range=(2.0, 2.0))
    assert big_mask.shape == (24, 24) and (big_mask == 1).all()


def test_label_outside_range_is_an_error_naming_the_file(tmp_path: Path) -> None:
    root = write_celebamask(tmp_path / "bad", num_images=3, combined=True)
    bad = root / "mask" / "1.png"
    array = np.asarray(Image.open(bad)).copy()
    array[0, 0] = 19
    Image.fromarray(array).save(bad)
    data = CelebAMaskHQ(root, "train", cache_dir=tmp_path / "c", val_fraction=0.0, test_fraction=0.0, train=False)
    with pytest.raises(DatasetError, match=r"1\.png.*19"):
        data[data.ids.index(1)]


def test_missing_image_is_an_error_naming_the_file(celebamask_root: Path, tmp_path: Path) -> None:
    data = CelebAMaskHQ(celebamask_root, "train", cache_dir=tmp_path / "c", train=False)
    image_id = data.ids[0]
    (celebamask_root / "CelebA-HQ-img" / f"{image_id}.jpg").unlink()
    with pytest.raises(DatasetError, match=rf"missing image .*CelebA-HQ-img/{image_id}\.jpg"):
        data[0]


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="CelebA-HQ-img"):
        CelebAMaskHQ(tmp_path / "nowhere", "train")


# ------------------------------------------------------------------ model, task, pictures

def test_bisenet_shapes_train_and_eval() -> None:
    from repfusion_zoo.heads import build_bisenet

    model = build_bisenet("resnet18", num_classes=19)
    x = torch.rand(2, 3, 64, 64)
    outputs = model.train()(x)
    assert len(outputs) == 3 and all(o.shape == (2, 19, 64, 64) for o in outputs)
    assert model.eval()(x).shape == (2, 19, 64, 64)


def test_short_training_run_lowers_the_loss_and_writes_pictures(celebamask_root: Path, tmp_path: Path) -> None:
    from repfusion_zoo.tasks import get_task

    torch.manual_seed(0)
    task_cls = get_task("segmentation")
    cfg = {**task_cls.default_config(), "data_root": str(celebamask_root), "cache_dir": str(tmp_path / "c"),
           "base_size": 64, "crop_size": 64, "eval_size": 64, "scale_range": "1.0,1.0"}  # flag text
    task = task_cls()
    train, evaluation = task.build_datasets(cfg)
    model = task.build_model("resnet18", False, cfg)
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    history = train_steps(task, model, batch, torch.optim.AdamW(model.parameters(), lr=1e-3))
    assert all(set(losses) >= {"total", "ce", "aux1", "aux2"} for losses in history)
    assert history[-1]["total"] < 0.7 * history[0]["total"]

    model.eval()
    eval_batch = torch.utils.data.default_collate([evaluation[i] for i in range(len(evaluation))])
    metric = task.new_metric()
    with torch.no_grad():
        metric.update(task.predict(model, eval_batch), eval_batch)
    scores = metric.compute(metric.state())
    assert {"mIoU", "aAcc", "mAcc"} <= set(scores)
    pictures = task.visualize(model, eval_batch, tmp_path / "pictures")
    assert pictures and all(p.suffix == ".png" and p.is_file() for p in pictures)
    assert Image.open(pictures[0]).size == (64 * 3, 64)
