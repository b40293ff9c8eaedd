"""The weights shipped inside the package: offline through every entry point, in the wheel and the
sdist, loadable from an installed (non-editable) wheel, and true to their cards on CIFAR-10's test split."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config
from torchvision.transforms import functional as TF

import repfusion_zoo
from repfusion_zoo.models import CIFAR10_MEAN, CIFAR10_STD
from repfusion_zoo.weights import SHIPPED, WEIGHT_FILE, shipped_file
from repfusion_zoo.experiments.timm_eval import classifier_top1, halves_knn_top1

NAMES = sorted(SHIPPED)
MAX_BYTES = 4 * 1024 * 1024


def _card(name: str) -> dict:
    return json.loads((Path(shipped_file(name)).parent / "config.json").read_text())["repfusion"]


def _metrics(name: str) -> dict[str, float]:
    return _card(name)["metrics"]["image-classification"]["uoft-cs/cifar10"]


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_weight_is_small_and_carries_what_made_it(name: str) -> None:
    folder = Path(shipped_file(name)).parent
    assert (folder / WEIGHT_FILE).stat().st_size < MAX_BYTES
    card, readme = _card(name), (folder / "README.md").read_text()
    for field in ("recipe", "seed", "teacher", "teacher_sha256", "labels_per_class"):
        assert card.get(field) is not None, field
    assert card["shipped_name"] == name and card["license"] == "apache-2.0"
    assert {"val_top1", "knn_top1"} <= set(_metrics(name))
    assert card["teacher_sha256"] in readme and f"timm.create_model('{name}', pretrained=True)" in readme


def test_list_models_pretrained_names_the_shipped_weights() -> None:
    assert repfusion_zoo.list_models(pretrained=True) == NAMES
    assert set(NAMES) <= set(timm.list_models(pretrained=True))


_OFFLINE_LOADS = """
import sys, torch, timm, repfusion_zoo
from safetensors.torch import load_file
from repfusion_zoo.weights import shipped_file
repo, names = sys.argv[1], sys.argv[2:]
assert set(names) <= set(timm.list_models(pretrained=True))
for name in names:
    want = load_file(shipped_file(name))
    for how, model in [("repfusion_zoo", repfusion_zoo.create_model(name, pretrained=True)),
                       ("timm", timm.create_model(name, pretrained=True)),
                       ("torch.hub", torch.hub.load(repo, name, source="local", pretrained=True))]:
        have = model.state_dict()
        assert all(torch.equal(have[k], v) for k, v in want.items()), (how, name)
        assert set(have) - set(want) <= {k for k in have if k.endswith("num_batches_tracked")}, (how, name)
print("loaded", repfusion_zoo.__file__)
"""


def _offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home"), **extra}


def test_shipped_weights_load_offline_through_every_entry_point(repo_root: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _OFFLINE_LOADS, str(repo_root), *NAMES], env=_offline_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "empty-hf-home").exists() or not any((tmp_path / "empty-hf-home").rglob("*.safetensors"))


@pytest.mark.parametrize("name", NAMES)
def test_timms_eval_transform_is_the_recipes_normalisation(name: str) -> None:
    model = timm.create_model(name)
    config = resolve_model_data_config(model)
    assert config["input_size"] == (3, 32, 32) and config["crop_pct"] == 1.0
    assert config["mean"] == CIFAR10_MEAN and config["std"] == CIFAR10_STD
    image = Image.fromarray(torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy())
    expected = TF.normalize(TF.to_tensor(image), CIFAR10_MEAN, CIFAR10_STD)
    assert torch.allclose(create_transform(**config)(image), expected, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weight_reproduces_its_card_on_the_cifar10_test_split(name: str, cifar10_test_split: Path) -> None:
    model = repfusion_zoo.create_model(name, pretrained=True)
    metrics = _metrics(name)
    if SHIPPED[name]["num_classes"]:
        measured = classifier_top1(model, cifar10_test_split)
        assert abs(measured - metrics["top1"]) <= 0.3  # the experiment's own test evaluation
        assert abs(measured - metrics["test_top1_timm_eval"]) <= 0.3
    else:
        assert abs(halves_knn_top1(model, cifar10_test_split) - metrics["test_halves_knn_top1_timm_eval"]) <= 0.3


def _source_copy(repo_root: Path, out: Path) -> Path:
    skip = shutil.ignore_patterns(".git", ".venv", "outputs", "teachers", "build", "dist", "*.egg-info", "__pycache__",
                                  ".pytest_cache", "runs", "data")
    return Path(shutil.copytree(repo_root, out, ignore=skip))


def test_wheel_and_sdist_carry_the_weights_and_an_installed_wheel_loads_them(repo_root: Path, tmp_path: Path) -> None:
    src, dist = _source_copy(repo_root, tmp_path / "src"), tmp_path / "dist"
    for hook in ("build_sdist", "build_wheel"):  # PEP 517 hooks, one process each (as pip and `build` call them)
        call = f"from setuptools import build_meta; import sys; build_meta.{hook}(sys.argv[1])"
        built = subprocess.run([sys.executable, "-c", call, str(dist)], cwd=src, capture_output=True, text=True,
                               timeout=300)
        assert built.returncode == 0, built.stderr[-3000:]
    wheel, sdist = next(dist.glob("*.whl")), next(dist.glob("*.tar.gz"))
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    in_sdist = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for name in NAMES:
        for file in (WEIGHT_FILE, "config.json", "README.md"):
            assert f"repfusion_zoo/weights/{name}/{file}" in in_wheel
            assert f"repfusion_zoo/weights/{name}/{file}" in in_sdist
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                                "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    run = subprocess.run([sys.executable, "-c", _OFFLINE_LOADS, str(repo_root), *NAMES], cwd=tmp_path,
                         env=_offline_env(tmp_path, PYTHONPATH=str(site)), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1].startswith(str(site))  # the installed wheel's package, not the checkout
