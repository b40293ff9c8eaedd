"""recipes/finetune.py --task segmentation|landmarks under `accelerate launch --num_processes 2 --cpu`
on synthetic CelebAMask-HQ / WFLW files: trains, evaluates, writes pictures and a loadable
Hub-ready folder whose card holds the metrics. The landmarks run starts from the face-parsing
folder, as the paper initialises WFLW from the CelebA-HQ segmentation backbone."""
from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from test_landmarks import write_wflw
from test_segmentation import write_celebamask

REPO = Path(__file__).resolve().parents[1]
FINETUNE = REPO / "recipes" / "finetune.py"
CONFIGS = REPO / "recipes" / "configs"


def _recipe_missing() -> str | None:
    if not FINETUNE.is_file():
        return f"{FINETUNE} is missing (the finetune recipe has not landed)"
    text = FINETUNE.read_text()
    if "--task" not in text and "task:" not in text:
        return f"{FINETUNE} takes no --task yet"
    return None


_MISSING = _recipe_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))


def _recipe_env() -> dict[str, str]:
    """The environment of a recipe subprocess: one thread, offline Hub, this checkout importable."""
    return {**os.environ, "REPFUSION_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO)}


def _launch(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", str(FINETUNE), *args]
    result = subprocess.run(command, cwd=tmp, env=_recipe_env(), capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def _card_metrics(folder: Path) -> dict:
    front = (folder / "README.md").read_text().split("---")[1]
    return yaml.safe_load(front)


@pytest.fixture(scope="module")
def parsing_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("dense")
    data = write_celebamask(tmp / "CelebAMask-HQ", num_images=10)
    out = tmp / "parsing"
    _launch([
        "--config", str(CONFIGS / "segmentation_celebamask_resnet18.yaml"),
        "--model", "resnet18", "--pretrained", "false", "--data_root", str(data), "--output_dir", str(out),
        "--train_batch_size", "4", "--max_train_steps", "3", "--base_size", "64", "--crop_size", "64", "--eval_size", "64",
        "--eval_batch_size", "2", "--val_fraction", "0.2", "--test_fraction", "0.2", "--log_every", "1",
    ], tmp)
    return out


def _recipe(name: str):
    """The body of recipes/<name>.py (a module of repfusion_zoo.pipelines)."""
    return importlib.import_module(f"repfusion_zoo.pipelines.{name}")


def test_finetune_help_lists_the_dense_tasks_and_their_keys(capsys: pytest.CaptureFixture) -> None:
    finetune = _recipe("finetune")
    assert finetune.main(["--task", "segmentation", "--help"]) == 0
    text = capsys.readouterr().out
    assert "segmentation" in text and "landmarks" in text
    assert "--crop_size" in text and "--data_root" in text
    assert finetune.main(["--task", "landmarks", "--help"]) == 0
    assert "--heatmap_size" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["segmentation_celebamask_resnet18", "segmentation_celebamask_resnet50",
                                  "landmarks_wflw_resnet50", "landmarks_wflw_hrnet_w18"])
def test_dense_configs_hold_the_paper_schedule(name: str) -> None:
    cfg = _recipe("finetune").load_finetune_config(["--config", str(CONFIGS / f"{name}.yaml")])
    if cfg.task == "segmentation":
        assert (cfg.crop_size, cfg.eval_size, cfg.max_train_steps, cfg.train_batch_size) == (448, 512, 160000, 16)
        assert (cfg.optimizer, cfg.learning_rate, cfg.momentum, cfg.lr_scheduler, cfg.num_classes) == ("sgd", 0.01, 0.9, "poly", 19)
    else:
        assert (cfg.optimizer, cfg.learning_rate, cfg.num_train_epochs, cfg.train_batch_size) == ("adam", 0.002, 60, 128)
        assert (cfg.input_size, cfg.heatmap_size, cfg.sigma, cfg.num_points) == (256, 64, 2.0, 98)


def test_task_model_starts_from_the_folder_weights(parsing_run: Path) -> None:
    from safetensors.torch import load_file

    from repfusion_zoo.tasks import get_task

    saved = load_file(str(parsing_run / "model" / "model.safetensors"))
    for name, cfg in (("landmarks", {"input_size": 64, "heatmap_size": 16}), ("segmentation", {})):
        task = get_task(name)()
        model = task.build_model(str(parsing_run / "model"), True, {**task.default_config(), **cfg})
        trunk = model.backbone.state_dict()
        assert trunk and all(torch.equal(trunk[k], saved[k]) for k in trunk)


def test_segmentation_run_writes_a_loadable_folder_with_metrics(parsing_run: Path) -> None:
    import repfusion_zoo

    metrics = json.loads((parsing_run / "metrics.json").read_text())
    assert {"mIoU", "aAcc", "mAcc"} <= set(metrics)
    config = json.loads((parsing_run / "model" / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 0
    assert config["repfusion"]["metrics"]["image-segmentation"]["CelebAMask-HQ"]["mIoU"] == pytest.approx(metrics["mIoU"])
    card = _card_metrics(parsing_run / "model")
    values = [m["value"] for r in card["model-index"][0]["results"] for m in r["metrics"]]
    assert pytest.approx(metrics["mIoU"]) in values
    results = card["model-index"][0]["results"]
    assert {(r["task"]["type"], r["dataset"]["name"]) for r in results} == {("image-segmentation", "CelebAMask-HQ")}
    model = repfusion_zoo.create_model(str(parsing_run / "model"), pretrained=True)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 512)
    pictures = sorted((parsing_run / "pictures").glob("parsing_*.png"))
    assert pictures
    log = [json.loads(line) for line in (parsing_run / "log.jsonl").read_text().splitlines() if line.strip()]
    assert log  # per-step losses were logged


def test_landmarks_run_from_the_parsing_backbone(parsing_run: Path, tmp_path: Path) -> None:
    import repfusion_zoo

    data = write_wflw(tmp_path / "WFLW", num_train=4, num_test=4)
    out = tmp_path / "landmarks"
    _launch([
        "--config", str(CONFIGS / "landmarks_wflw_resnet50.yaml"),
        "--model", str(parsing_run / "model"), "--data_root", str(data), "--output_dir", str(out),
        "--train_batch_size", "4", "--max_train_steps", "2", "--input_size", "64", "--heatmap_size", "16",
        "--eval_batch_size", "2",
    ], tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert "NME" in metrics and metrics["NME"] > 0
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["repfusion"]["metrics"]["keypoint-detection"]["WFLW"]["NME"] == pytest.approx(metrics["NME"])
    model = repfusion_zoo.create_model(str(out / "model"), pretrained=True)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 512)
    assert len(list((out / "pictures").glob("landmarks_*.png"))) == 2


def _distill_celebahq_config(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run recipes/distill.py on celebahq_resnet18.yaml at 32 px: tiny random teacher, 6 synthetic images."""
    from diffusers import UNet2DModel

    teacher = tmp_path / "teacher"
    UNet2DModel(sample_size=32, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")
                ).save_pretrained(teacher)
    data = write_celebamask(tmp_path / "CelebAMask-HQ", num_images=6)
    out = tmp_path / "distill"
    result = subprocess.run([
        sys.executable, str(REPO / "recipes" / "distill.py"), "--config", str(CONFIGS / "celebahq_resnet18.yaml"),
        "--teacher", str(teacher), "--teacher_layer", "mid", "--data_root", str(data), "--output_dir", str(out),
        "--image_size", "32", "--base_size", "32", "--crop_size", "32", "--eval_size", "32", "--train_batch_size", "2",
        "--mixed_precision", "no", "--val_fraction", "0.2", "--test_fraction", "0.2", *flags,
    ], cwd=tmp_path, env=_recipe_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result, out


def test_celebahq_distill_config_trains_decoder_g_on_parsing_masks(tmp_path: Path) -> None:
    """Part 3 fits together: recipes/configs/celebahq_resnet18.yaml (segmentation labels, FCN decoder g,
    spatial hint) runs on CelebAMask-HQ files through this task's loader (tiny random teacher, 32 px)."""
    result, out = _distill_celebahq_config(tmp_path, "--max_train_steps", "2", "--log_every", "1")
    assert "decoder=fcn" in result.stdout and "loss=hint" in result.stdout
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    assert all(math.isfinite(entry["loss/decoder"]) for entry in logged if "loss/decoder" in entry)
    assert any("loss/decoder" in entry for entry in logged), logged[:1]
    assert (out / "backbone" / "model.safetensors").is_file()


def test_celebahq_distill_then_finetune_chain(tmp_path: Path) -> None:
    """`distill.py --config celebahq_resnet18.yaml --finetune true`: the downstream runs get the
    segmentation keys (data_root, sizes; no image_size / in_chans) and their cards name the task."""
    result, out = _distill_celebahq_config(
        tmp_path, "--max_train_steps", "1", "--finetune", "true", "--finetune_max_train_steps", "1",
        "--finetune_train_batch_size", "2", "--eval_batch_size", "2",
    )
    assert "downstream segmentation mIoU: distilled" in result.stdout and "vs  scratch" in result.stdout
    assert json.loads((out / "config.json").read_text())["scale_range"] == [1.0, 1.0]  # distillation: flips only
    for run in ("finetune_distilled", "finetune_scratch"):
        results = _card_metrics(out / run / "model")["model-index"][0]["results"]
        assert {(r["task"]["type"], r["dataset"]["name"]) for r in results} == {("image-segmentation", "CelebAMask-HQ")}
