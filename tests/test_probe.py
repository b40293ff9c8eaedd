"""Feature probe over time steps: numbers, JSON + PNG, and the console command."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from diffusers import UNet2DModel
from test_teachers import _tiny_unet  # the same tiny seeded UNet as the teacher tests

from repfusion_zoo.cli import main
from repfusion_zoo.method.probe import probe_timesteps, spectrum, write_probe
from repfusion_zoo.teachers import DiffusionTeacher


@pytest.fixture(scope="module")
def tiny_unet() -> UNet2DModel:
    return _tiny_unet()


def test_spectrum_of_known_matrices():
    values, rank = spectrum(torch.cat([torch.eye(4), -torch.eye(4)]))  # 4 equal directions, already centred
    assert rank == pytest.approx(4.0, rel=1e-6)
    assert values[0] == pytest.approx(values[3])
    _, rank_one = spectrum(torch.arange(10.0)[:, None] * torch.tensor([[1.0, 2.0, 3.0]]))
    assert rank_one == pytest.approx(1.0, abs=1e-6)


def test_probe_on_digits_writes_json_and_png(tiny_unet, tmp_path):
    from repfusion_zoo.method.probe import load_probe_images

    teacher = DiffusionTeacher(tiny_unet)
    images, labels = load_probe_images("digits", image_size=16, in_chans=3, split="test", num_samples=80, seed=0)
    assert images.shape == (80, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    result = probe_timesteps(teacher, images, labels, [0, 900], batch_size=32)
    assert [row["t"] for row in result["results"]] == [0, 900]
    for row in result["results"]:
        assert 1.0 <= row["effective_rank"] <= 32
        assert 0.0 <= row["linear_probe_accuracy"] <= 1.0
        assert len(row["singular_values"]) == 32 and row["singular_values"] == sorted(row["singular_values"], reverse=True)
    assert result["results"][0]["linear_probe_accuracy"] > 0.2  # 10 classes: chance is 0.1
    json_path, png_path = write_probe(result, tmp_path / "out")
    assert json.loads(json_path.read_text())["results"][1]["t"] == 900
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_command_runs_end_to_end(tiny_unet, tmp_path, capsys):
    tiny_unet.save_pretrained(tmp_path / "teacher")
    code = main(["probe", "--teacher", str(tmp_path / "teacher"), "--dataset", "digits", "--timesteps", "0,500",
                 "--output_dir", str(tmp_path / "probe"), "--num-samples", "60"])  # a hyphen works as in the recipes
    assert code == 0
    result = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert result["num_samples"] == 60 and all(math.isfinite(r["effective_rank"]) for r in result["results"])
    assert (tmp_path / "probe" / "probe.png").is_file()
    assert "effective rank" in capsys.readouterr().out


def test_probe_help_from_the_console():
    done = subprocess.run([sys.executable, "-m", "repfusion_zoo", "probe", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--timesteps" in done.stdout and "--teacher" in done.stdout


def test_console_version_and_input_errors():
    from repfusion_zoo import __version__

    done = subprocess.run([sys.executable, "-m", "repfusion_zoo", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"repfusion-zoo {__version__}"
    bad = subprocess.run([sys.executable, "-m", "repfusion_zoo", "probe", "--teacher", "/no/such/teacher", "--dataset", "digits",
                          "--timesteps", "0", "--output_dir", "/tmp/never-written"], capture_output=True, text=True, timeout=120)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert lines[0].startswith("repfusion-zoo: error:") and "/no/such/teacher" in lines[0]


def test_probe_fit_on_a_train_split_scores_every_probed_image(tiny_unet):
    """--train_split: the probe is fit on the train images and scored on all of the test images."""
    from repfusion_zoo.method.probe import load_probe_images

    teacher = DiffusionTeacher(tiny_unet)
    test = load_probe_images("digits", image_size=16, in_chans=3, split="test", num_samples=60, seed=0)
    train = load_probe_images("digits", image_size=16, in_chans=3, split="train", num_samples=120, seed=0)
    result = probe_timesteps(teacher, *test, [0], batch_size=64, train=train)
    assert result["num_train"] == 120 and result["test_fraction"] is None and result["num_samples"] == 60
    accuracy = result["results"][0]["linear_probe_accuracy"]
    assert round(accuracy * 60) == pytest.approx(accuracy * 60, abs=1e-6)  # a fraction of the 60 scored images
    assert accuracy > 0.2


def test_probe_train_images_can_be_a_label_budget():
    """`per_class` (the CLI's --train_split and the teacher's probe curve): the same number of each class."""
    from repfusion_zoo.method.probe import load_probe_images

    images, labels = load_probe_images("digits", image_size=8, in_chans=3, split="train", num_samples=105, seed=0,
                                       per_class=True)
    assert images.shape == (100, 3, 8, 8) and torch.bincount(labels).tolist() == [10] * 10
    again = load_probe_images("digits", image_size=8, in_chans=3, split="train", num_samples=105, seed=0, per_class=True)
    assert torch.equal(again[1], labels)
