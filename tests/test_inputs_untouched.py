"""Every recipe leaves what it was given as it was: inputs made read-only, then compared byte for byte
(every file's bytes and mode, and no file added or removed) after the run. Root ignores the
read-only bits, so the comparison is what holds a recipe to it."""
from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import torch

from _data_fixtures import write_image_folder
from _recipes_common import PYTHON, RECIPES, TINY_TEACHER, env, tiny_flags
from _recipes_common import tiny_teacher  # noqa: F401  (a fixture)
from _hub_fixtures import hub_server, hub_server_instance  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under `root`: (sha256 of a file's bytes, or "dir"; its mode)."""
    out = {}
    for path in sorted([root, *root.rglob("*")]):
        digest = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(root))] = (digest, stat.S_IMODE(path.stat().st_mode))
    return out


def read_only(root: Path) -> Path:
    for path in [root, *root.rglob("*")]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    return root


@pytest.fixture(scope="module")
def given(tmp_path_factory: pytest.TempPathFactory, tiny_teacher: Path) -> dict[str, Path]:  # noqa: F811
    """Read-only inputs: an image folder, a teacher, its feature cache, a backbone folder, a subset file."""
    from repfusion_zoo import create_model, save_pretrained
    from repfusion_zoo.pipelines import cache_features

    root = tmp_path_factory.mktemp("given")
    data = write_image_folder(root / "data", {"a": 8, "b": 8}, size=8)
    teacher = shutil.copytree(tiny_teacher, root / "teacher")
    cache_features.main(["--teacher", str(teacher), "--dataset", str(data), "--image_size", "8",
                         "--timesteps", "0,10", "--output_dir", str(root / "cache")])
    torch.manual_seed(0)
    save_pretrained(create_model("resnet18_cifar", num_classes=0, channels=[8, 16, 32, 64]), root / "backbone")
    (root / "subsets").mkdir()
    (root / "subsets" / "labelled.json").write_text(json.dumps(list(range(0, 16, 2))))
    for name in ("data", "teacher", "cache", "backbone", "subsets"):
        read_only(root / name)
    yield {name: root / name for name in ("data", "teacher", "cache", "backbone", "subsets")}
    for path in [root, *root.rglob("*")]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o200)  # pytest removes its temp folders later


@pytest.fixture
def unchanged(given: dict[str, Path]):
    """Asserts after the test that no input changed."""
    before = {name: snapshot(path) for name, path in given.items()}
    yield given
    for name, path in given.items():
        assert snapshot(path) == before[name], f"the run changed its input {name!r}"


def test_train_teacher(unchanged, tmp_path):
    from repfusion_zoo.pipelines import train_teacher

    argv = ["--config", str(RECIPES / "configs" / "teacher_digits.yaml"), "--dataset", str(unchanged["data"]),
            "--image_size", "8", "--max_train_steps", "2", "--train_batch_size", "8", "--output_dir", str(tmp_path / "teacher")]
    for key, value in TINY_TEACHER.items():
        argv += [f"--{key}", json.dumps(value)]
    train_teacher.main(argv)
    assert (tmp_path / "teacher" / "model_index.json").is_file()


def test_cache_features(unchanged, tmp_path):
    from repfusion_zoo.pipelines import cache_features

    cache_features.main(["--teacher", str(unchanged["teacher"]), "--dataset", str(unchanged["data"]), "--image_size", "8",
                         "--timesteps", "0", "--output_dir", str(tmp_path / "cache")])
    assert (tmp_path / "cache" / "manifest.json").is_file()


def test_distill_from_the_cache_with_a_label_subset(unchanged, tmp_path):
    from repfusion_zoo.pipelines import distill

    labelled = unchanged["subsets"] / "labelled.json"
    distill.main(tiny_flags(tmp_path / "run", dataset=str(unchanged["data"]), teacher=str(unchanged["teacher"]),
                            teacher_cache=str(unchanged["cache"]), timesteps="0,10", label_subset=str(labelled),
                            max_train_steps=2, train_batch_size=8, augment=False, timestep_report=True))
    assert (tmp_path / "run" / "backbone" / "model.safetensors").is_file()


def test_finetune_from_a_backbone_folder(unchanged, tmp_path):
    from repfusion_zoo.pipelines import finetune

    finetune.main(["--model", str(unchanged["backbone"]), "--dataset", str(unchanged["data"]), "--image_size", "8",
                   "--train_subset", str(unchanged["subsets"] / "labelled.json"), "--train_batch_size", "4",
                   "--num_train_epochs", "1", "--output_dir", str(tmp_path / "ft")])
    card = (tmp_path / "ft" / "model" / "README.md").read_text()
    assert "top1" in card  # the metrics go into the run's own folder


def test_push_to_hub(unchanged, hub_server):  # noqa: F811
    from repfusion_zoo.pipelines import push

    push.main(["--folder", str(unchanged["backbone"]), "--hub_model_id", "repfusion-test/untouched"])


@pytest.mark.slow
def test_experiment(unchanged, tmp_path):
    values = {"name": "ro", "output_dir": str(tmp_path / "exp"), "results_dir": "", "dataset": str(unchanged["data"]),
              "image_size": 8, "teacher": str(unchanged["teacher"]), "student_kwargs": {"channels": [8, 16, 32, 64]},
              "timesteps": "0,10", "distill_images_per_class": 6, "labels_per_class": [2], "val_images_per_class": 2,
              "seeds": [0], "arms": {"scratch": {"distill": False}, "fixed_t10": {"strategy": "fixed", "t": 10}},
              "distill": {"num_train_epochs": 1, "train_batch_size": 4, "milestones": []},
              "finetune": {"num_train_epochs": 1, "train_batch_size": 4, "milestones": []},
              "cache": {"dtype": "float32", "batch_size": 8}, "launcher": "python"}
    flags = [item for key, value in values.items() for item in (f"--{key}", value if isinstance(value, str) else json.dumps(value))]
    result = subprocess.run([PYTHON, str(RECIPES / "experiment.py"), *flags], env=env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "exp" / "ro.json").is_file()
