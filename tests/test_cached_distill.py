"""Distilling from a teacher-feature cache is distilling from the teacher: for the same seed, time-step
set and batches (flips included), an fp32 cache gives the online run's losses step by step; and a
cache that does not match the run is refused, naming the field."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

from _data_fixtures import write_image_folder
from _recipes_common import tiny_flags, tiny_teacher  # noqa: F401  (fixture)
from repfusion_zoo import create_model
from repfusion_zoo.cache import build_feature_cache
from repfusion_zoo.data import build_dataset
from repfusion_zoo.method.distill import build_repfusion
from repfusion_zoo.method.distill_model import DistillModel
from repfusion_zoo.errors import CacheMismatchError
from repfusion_zoo.teachers import DiffusionTeacher
from repfusion_zoo.teachers.cached import CachedTeacher, check_cache_for_run
from repfusion_zoo.timesteps import StrategySettings
from repfusion_zoo.training.data import seeded_train_loader


pytestmark = pytest.mark.usefixtures("one_thread")
TIMESTEPS = [0, 10, 500]


def _losses(teacher: torch.nn.Module, dataset, steps: int = 3) -> list[dict[str, float]]:
    """`steps` RepFusion steps (reinforce over TIMESTEPS, hint loss, SGD) from seed 0; the scalars of each."""
    torch.manual_seed(0)
    student = create_model("resnet18_cifar", num_classes=0, channels=[8, 16, 32, 64])
    rf = build_repfusion(teacher, student_channels=64, num_classes=dataset.num_classes,
                         strategy=StrategySettings(timesteps=",".join(map(str, TIMESTEPS))))
    model = DistillModel(student, rf, in_chans=3)
    optimizer = torch.optim.SGD([*student.parameters(), *rf.trainable_parameters()], lr=0.1, momentum=0.9)
    loader, _, _ = seeded_train_loader(dataset, 8, seed=0)
    out: list[dict[str, float]] = []
    for _, batch in zip(range(steps), loader):
        result = model(batch["image"], batch["label"], 0.5, batch["index"], batch["flip"])
        result.losses["total"].backward()
        optimizer.step()
        optimizer.zero_grad()
        out.append({**{k: float(v.detach()) for k, v in result.losses.items()},
                    "policy_entropy": float(result.policy_entropy)})
    return out


@pytest.fixture
def flipped_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images", {"a": 12, "b": 12}, size=8)


def test_cached_and_online_distillation_give_the_same_losses(tmp_path, tiny_teacher, flipped_folder):  # noqa: F811
    teacher = DiffusionTeacher(tiny_teacher, layer="mid")
    plain = build_dataset(str(flipped_folder), split="train", image_size=8)
    cache = build_feature_cache(teacher, plain, tmp_path / "cache", timesteps=TIMESTEPS, dataset_spec=str(flipped_folder),
                                split="train", dtype="float32")
    augmented = build_dataset(str(flipped_folder), split="train", image_size=8, augment=True)  # flips
    online = _losses(teacher, augmented)
    cached = _losses(CachedTeacher(cache), augmented)
    assert len(online) == len(cached) == 3 and set(online[0]) == {"decoder", "policy", "entropy", "distill", "total",
                                                                   "policy_entropy"}
    for step_online, step_cached in zip(online, cached):
        for name, value in step_online.items():
            assert step_cached[name] == pytest.approx(value, abs=1e-5), (name, step_online, step_cached)


def test_a_cache_that_does_not_match_the_run_is_refused(tmp_path, tiny_teacher, flipped_folder):  # noqa: F811
    teacher = DiffusionTeacher(tiny_teacher, layer="mid")
    plain = build_dataset(str(flipped_folder), split="train", image_size=8)
    cache = CachedTeacher(build_feature_cache(teacher, plain, tmp_path / "cache", timesteps=TIMESTEPS,
                                              dataset_spec=str(flipped_folder), split="train", dtype="float32"))
    assert cache.num_train_timesteps == teacher.num_train_timesteps  # from the manifest
    flips = build_dataset(str(flipped_folder), split="train", image_size=8, augment=True)
    run = dict(source=str(tiny_teacher), layer="mid", noise=False, class_map=None, indices=None)

    def check(**changes) -> None:
        check_cache_for_run(cache, **{**run, "dataset": flips, "timesteps": "all", **changes})

    check()  # matches
    with pytest.raises(CacheMismatchError, match=r"layer.*'mid'.*'down.1'"):
        check(layer="down.1")
    with pytest.raises(CacheMismatchError, match="999"):
        check(timesteps="0,999")
    with pytest.raises(CacheMismatchError, match="crop2"):
        check(dataset=build_dataset(str(flipped_folder), split="train", image_size=8, augment=True, crop_padding=2))
    other = write_image_folder(tmp_path / "other", {"a": 12, "b": 12}, size=8, seed=1)
    (other / "train" / "a" / "0000.png").write_bytes((other / "train" / "a" / "0000.png").read_bytes() + b"\0")
    with pytest.raises(CacheMismatchError, match="dataset_fingerprint"):
        check(dataset=build_dataset(str(other), split="train", image_size=8, augment=True))
    retrained = tmp_path / "retrained"
    shutil.copytree(tiny_teacher, retrained)
    weights = next(retrained.rglob("diffusion_pytorch_model.safetensors"))
    state = load_file(weights)
    state = {k: v + 1e-3 if k.endswith("conv_in.bias") else v for k, v in state.items()}
    save_file(state, weights)
    with pytest.raises(CacheMismatchError, match="teacher_sha256.*rebuild the cache with this teacher"):
        check(source=str(retrained))


def test_a_run_from_the_cache_never_builds_the_teacher(tmp_path, tiny_teacher, flipped_folder, monkeypatch):  # noqa: F811
    """recipes/distill.py with --teacher_cache reads T, the shapes and the teacher's identity from the
    cache and the teacher folder's files: no teacher is built (building one fails the test)."""
    plain = build_dataset(str(flipped_folder), split="train", image_size=8)
    cache = build_feature_cache(DiffusionTeacher(tiny_teacher), plain, tmp_path / "cache", timesteps=TIMESTEPS,
                                dataset_spec=str(flipped_folder), split="train")
    from repfusion_zoo.pipelines import distill as pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a run from the feature cache built the teacher")

    monkeypatch.setattr(pipeline, "run_teacher", refuse)
    monkeypatch.setattr(UNet2DModel, "from_pretrained", refuse)
    cfg = pipeline.load_distill_config(tiny_flags(
        tmp_path / "run", dataset=str(flipped_folder), teacher=str(tiny_teacher), teacher_cache=str(cache),
        timesteps=",".join(map(str, TIMESTEPS)), max_train_steps=2, train_batch_size=8))
    pipeline.distill(cfg)
    assert (tmp_path / "run" / "backbone" / "model.safetensors").is_file()
