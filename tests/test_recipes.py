"""End-to-end recipes on digits at 8 px: the offline default (shortened), push to a local Hub,
fine-tune, and bad input (each a clear error or a counted skip, nothing half-written)."""
from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from _data_fixtures import write_image_folder
from _recipes_common import PYTHON, RECIPES, TINY_TEACHER, accelerate_cmd, env, load_weights, run, tiny_flags
from _recipes_common import tiny_teacher  # noqa: F401  (a fixture)
from repfusion_zoo.errors import ConfigError, DatasetError



@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("REPFUSION_NUM_THREADS", "1")


def test_offline_default_shortened_runs_whole_chain(tmp_path):
    """`accelerate launch recipes/distill.py` + size flags, from a foreign cwd: teacher -> distill -> 2 fine-tunes."""
    args = ["--image_size", "8", "--student_kwargs", "{channels: [8, 16, 32, 64]}", "--teacher_max_train_steps", "2",
            "--teacher_overrides", json.dumps(TINY_TEACHER), "--num_train_epochs", "1", "--max_train_steps", "3", "--train_batch_size", "32",
            "--finetune_num_train_epochs", "1", "--finetune_max_train_steps", "3", "--finetune_train_batch_size", "32", "--report_to", "tensorboard"]
    result = run(accelerate_cmd("distill.py", args), cwd=tmp_path)
    out = tmp_path / "outputs" / "offline_default"  # relative to the cwd, not the repo
    assert "distilled" in result.stdout and "vs  scratch" in result.stdout, result.stdout[-2000:]
    assert str(out.resolve()) in result.stdout
    for path in ("teacher/model_index.json", "backbone/model.safetensors", "backbone/config.json", "timesteps.png",
                 "finetune_distilled/model/model.safetensors", "finetune_scratch/model/model.safetensors", "summary.json"):
        assert (out / path).is_file(), path
    summary = json.loads((out / "summary.json").read_text())
    for run_name in ("distilled", "scratch"):
        top1 = summary["downstream"][run_name]["metrics"]["top1"]
        assert 0.0 <= top1 <= 100.0
    card = (out / "finetune_distilled" / "model" / "README.md").read_text()
    assert "top1" in card
    # each card says what its weights are, from how the run made them
    assert "fine-tuned from a RepFusion-distilled backbone" in card
    assert "distilled from the features of a diffusion model" in (out / "backbone" / "README.md").read_text()
    assert "trained from random initialisation" in (out / "finetune_scratch" / "model" / "README.md").read_text()
    result = yaml.safe_load(card.split("---")[1])["model-index"][0]["results"][0]
    assert result["task"]["type"] == "image-classification" and result["dataset"]["name"] == "digits"
    config = json.loads((out / "backbone" / "config.json").read_text())
    assert config["architecture"] == "resnet18_cifar" and config["num_classes"] == 0
    assert config["pretrained_cfg"]["input_size"] == [3, 8, 8]  # the size it was distilled at, not the zoo's 32
    distilled = json.loads((out / "finetune_distilled" / "model" / "config.json").read_text())
    assert distilled["pretrained_cfg"]["input_size"] == [3, 8, 8]
    assert "classification" in json.dumps(config["repfusion"].get("metrics", {}))  # written back by the fine-tune
    assert list((out / "logs").rglob("events.out.tfevents*")), "tensorboard tracker wrote nothing"
    assert list((out / "finetune_distilled" / "pictures").glob("*.png"))
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert sum(log[-1]["hist"]["t"]) == log[-1]["hist"]["t"][300] == 3 * 32  # the default: fixed t = 300


def test_distill_push_to_hub_then_create_model(tmp_path, tiny_teacher, hub_server):
    from repfusion_zoo.pipelines import distill
    from repfusion_zoo.pipelines import push as push_recipe

    from repfusion_zoo import create_model
    from repfusion_zoo import load_pretrained

    repo = "repfusion-test/tiny-digits"
    cfg = distill.load_distill_config(tiny_flags(tmp_path / "run", teacher=str(tiny_teacher), max_train_steps=2,
                                                 strategy="fixed", t=10) + ["--push_to_hub", "--hub_model_id", repo])
    result = distill.distill(cfg)
    pinned = result["pushed"]
    assert pinned.startswith(repo + "@") and len(pinned.split("@")[1]) == 40
    saved = load_weights(Path(result["backbone_dir"]))
    for model in (create_model(f"hf-hub:{pinned}", pretrained=True), load_pretrained(f"hf-hub:{pinned}")):
        state = model.state_dict()
        assert set(saved) <= set(state)
        assert all(torch.equal(saved[k], state[k]) for k in saved)
    # the publish recipe prints the pinned revision too
    push_recipe.main(["--folder", result["backbone_dir"], "--hub_model_id", repo + "-2"])
    # the published card's snippet names the repo it is in (resnet18_cifar: with `import repfusion_zoo`)
    from huggingface_hub import hf_hub_download

    card = Path(hf_hub_download(repo, "README.md", revision=pinned.split("@")[1])).read_text()
    assert f"timm.create_model('hf-hub:{repo}', pretrained=True)" in card and "import repfusion_zoo" in card
    assert "pipeline_tag: image-feature-extraction" in card


def test_finetune_help_lists_tasks(capsys):
    from repfusion_zoo.pipelines import finetune

    assert finetune.main(["--help"]) == 0
    text = capsys.readouterr().out
    for task in ("classification", "segmentation", "landmarks"):
        assert task in text


def test_missing_dataset_path_is_clear_and_writes_nothing(tmp_path, tiny_teacher):
    from repfusion_zoo.pipelines import distill

    out = tmp_path / "run"
    cfg = distill.load_distill_config(tiny_flags(out, teacher=str(tiny_teacher), dataset=str(tmp_path / "no" / "such")))
    with pytest.raises(DatasetError, match="does not exist"):
        distill.distill(cfg)
    assert not out.exists()


def test_unknown_key_lists_valid_keys():
    from repfusion_zoo.pipelines import distill, finetune

    with pytest.raises(ConfigError, match="valid keys are:.*student"):
        distill.load_distill_config(["--studnet", "resnet18_cifar"])
    with pytest.raises(ConfigError, match="valid keys are:.*model"):
        finetune.load_finetune_config(["--task", "classification", "--modle", "x"])


def test_teacher_data_mismatch_fails_before_training(tmp_path, tiny_teacher):
    from repfusion_zoo.pipelines import distill

    out = tmp_path / "run"
    cfg = distill.load_distill_config(tiny_flags(out, teacher=str(tiny_teacher)) + ["--image_size", "16"])
    with pytest.raises(ConfigError, match=r"3x8x8 images but the data is 3x16x16"):
        distill.distill(cfg)
    assert not out.exists()


def test_corrupt_image_is_a_counted_skip(tmp_path):
    from repfusion_zoo.pipelines import finetune

    from repfusion_zoo.data import UnreadableImageWarning

    data = write_image_folder(tmp_path / "data", {"a": 4, "b": 4}, size=8)
    (data / "train" / "a" / "broken.png").write_bytes(b"not an image at all")
    cfg = finetune.load_finetune_config(["--model", "resnet18_cifar", "--pretrained", "false", "--model_kwargs",
                                         "{channels: [8, 16, 32, 64]}", "--dataset", str(data), "--image_size", "8",
                                         "--train_batch_size", "4", "--num_train_epochs", "1", "--output_dir", str(tmp_path / "ft")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = finetune.finetune(cfg)
    skipped = [w for w in caught if issubclass(w.category, UnreadableImageWarning)]
    assert skipped and "broken.png" in str(skipped[0].message)
    assert result["metrics"]["count"] == 8.0  # the 8 readable test images, counted once
    assert (Path(result["model_dir"]) / "model.safetensors").is_file()
    # a classification fine-tune records timm's label_names; its card publishes no local path
    model_dir = Path(result["model_dir"])
    assert json.loads((model_dir / "config.json").read_text())["label_names"] == ["a", "b"]
    from repfusion_zoo import create_model

    assert create_model(str(model_dir)).pretrained_cfg["label_names"] == ["a", "b"]
    card = (model_dir / "README.md").read_text()
    assert str(tmp_path) not in card and str(data) not in card
    assert "datasets:" not in card and "pipeline_tag: image-classification" in card


def test_supervised_teacher_kd_row(tmp_path, tiny_teacher):
    """Tables 4/5: a fine-tuned CNN's last map as the teacher (fixed t, no decoder g)."""
    from repfusion_zoo.pipelines import distill

    first = distill.distill(distill.load_distill_config(tiny_flags(tmp_path / "a", teacher=str(tiny_teacher), max_train_steps=1)))
    cfg = distill.load_distill_config(tiny_flags(tmp_path / "b", teacher=first["backbone_dir"], max_train_steps=2,
                                                 teacher_type="supervised", teacher_layer="", strategy="fixed", t=0,
                                                 decoder="none"))
    result = distill.distill(cfg)
    log = result["epochs"][-1]
    assert "loss/decoder" not in log and log["loss/distill"] > 0
    assert (Path(result["backbone_dir"]) / "model.safetensors").is_file()


@pytest.mark.parametrize("pretrained", [True, False])
def test_finetune_model_starts_from_the_folder_weights(tmp_path, pretrained):
    """A distilled backbone folder (no head) fine-tunes from its own weights, with a fresh head."""
    from repfusion_zoo import create_model, save_pretrained
    from repfusion_zoo.tasks import get_task

    torch.manual_seed(0)
    backbone = create_model("resnet18_cifar", num_classes=0, channels=[8, 16, 32, 64])
    with torch.no_grad():  # not what a fresh init would give
        for parameter in backbone.parameters():
            parameter.add_(1.0)
    folder = save_pretrained(backbone, tmp_path / "backbone", architecture="resnet18_cifar")
    task = get_task("classification")()
    model = task.build_model(str(folder), pretrained, {**task.default_config(), "num_classes": 10})
    trunk = task.backbone_of(model)
    assert torch.equal(trunk.conv1.weight, backbone.conv1.weight)
    state = trunk.state_dict()
    assert all(torch.equal(state[k], v) for k, v in backbone.state_dict().items())
    assert trunk.get_classifier().out_features == 10


#: three Tiny-ImageNet classes (goldfish, European fire salamander, bullfrog) and their ImageNet-1k indices
TINY_IMAGENET_WNIDS = {"n01443537": 1, "n01629819": 25, "n01641577": 30}


def _class_conditional_teacher(folder: Path) -> Path:
    """A tiny class-conditional UNet2DModel (1000 ImageNet classes, 3 x 8 x 8) saved as a bare UNet folder."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=1000)
    unet.save_pretrained(folder, safe_serialization=True)
    return folder


def test_tinyimagenet_class_map_feeds_imagenet_ids(tmp_path, monkeypatch):
    """`teacher_class_map: tinyimagenet`: WordNet-id class folders reach the ADM-style teacher as their
    ImageNet indices, never as the dataset's 0..2 (the authors' bug)."""
    from repfusion_zoo.pipelines import distill

    data = write_image_folder(tmp_path / "data", dict.fromkeys(TINY_IMAGENET_WNIDS, 4), size=8)
    seen: list[int] = []
    built: list[torch.nn.Module] = []
    original = distill.build_teacher

    def observed_teacher(*args, **kwargs):  # the recipe's own teacher, with a hook that records the class ids
        teacher = original(*args, **kwargs)
        teacher.unet.class_embedding.register_forward_pre_hook(lambda module, inputs: seen.extend(inputs[0].tolist()))
        built.append(teacher)
        return teacher

    monkeypatch.setattr(distill, "build_teacher", observed_teacher)
    cfg = distill.load_distill_config(tiny_flags(tmp_path / "run", teacher=str(_class_conditional_teacher(tmp_path / "adm")),
                                                 dataset=str(data), teacher_class_map="tinyimagenet",
                                                 train_batch_size=6, max_train_steps=2))
    result = distill.distill(cfg)
    assert built[0].class_map.tolist() == list(TINY_IMAGENET_WNIDS.values())
    # 2 steps x 6 = the whole train split (4 images a class) once: each class id 4 times, none of 0 or 2
    assert sorted(seen) == sorted(list(TINY_IMAGENET_WNIDS.values()) * 4), seen
    assert (Path(result["backbone_dir"]) / "model.safetensors").is_file()


def test_finetune_scores_the_validation_subset_every_epoch_and_times_its_phases(tmp_path):
    """--val_subset: train-split items, un-augmented, scored every --eval_every epochs as val/top1 (the test
    split only at the end); timing.json holds the loop's, the validation's and the test's seconds."""
    from repfusion_zoo.pipelines import finetune

    data = write_image_folder(tmp_path / "data", {"a": 6, "b": 6}, size=8)
    val = _write(tmp_path / "val.json", [0, 1, 6, 7])
    cfg = finetune.load_finetune_config(["--model", "resnet18_cifar", "--pretrained", "false", "--model_kwargs",
                                         "{channels: [8, 16, 32, 64]}", "--dataset", str(data), "--image_size", "8",
                                         "--train_subset", str(_write(tmp_path / "train.json", [2, 3, 4, 5, 8, 9, 10, 11])),
                                         "--val_subset", str(val), "--eval_every", "1", "--train_batch_size", "4",
                                         "--num_train_epochs", "3", "--output_dir", str(tmp_path / "ft")])
    finetune.finetune(cfg)
    epochs = [json.loads(line) for line in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    assert len(epochs) == 3 and all("val/top1" in e and "eval/top1" not in e for e in epochs)
    assert all(v in (0.0, 25.0, 50.0, 75.0, 100.0) for v in (e["val/top1"] for e in epochs))  # 4 validation images
    timing = json.loads((tmp_path / "ft" / "timing.json").read_text())
    assert set(timing) == {"train", "validation", "test"} and all(v >= 0 for v in timing.values())
    from repfusion_zoo.errors import RepFusionError

    with pytest.raises(RepFusionError, match="val_subset"):  # an index outside the train split is named
        finetune.finetune(finetune.load_finetune_config(["--dataset", str(data), "--image_size", "8", "--val_subset",
                                                        str(_write(tmp_path / "bad.json", [99])),
                                                        "--output_dir", str(tmp_path / "ft2")]))


def _write(path: Path, indices: list[int]) -> Path:
    path.write_text(json.dumps(indices))
    return path


def test_a_recipe_mistake_is_one_line_with_a_suggestion_and_exit_code_2(tmp_path):
    """argparse style: `<recipe>: error: ...` on stderr, exit 2, no traceback (unless --debug)."""
    result = subprocess.run([PYTHON, str(RECIPES / "finetune.py"), "--modle", "x", "--output_dir", str(tmp_path / "o")],
                            env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("finetune.py: error: unknown config key(s) ['modle']") and "did you mean 'model'" in lines[0]
    assert "Traceback" not in result.stderr and "--debug" in lines[-1] and len(lines) == 2
    debug = subprocess.run([PYTHON, str(RECIPES / "finetune.py"), "--modle", "x", "--debug"], env=env(),
                           capture_output=True, text=True, timeout=120)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_finetune_keeps_the_distillation_loss_as_a_regulariser(tmp_path, tiny_teacher):
    """--distill_weight: the step adds weight x the hint loss between the backbone's last map and the
    teacher's feature at --distill_t (logged as distill); the saved model is the backbone alone."""
    from repfusion_zoo.method.regularizer import FeatureRegularized
    from repfusion_zoo.pipelines import finetune

    flags = ["--model", "resnet18_cifar", "--pretrained", "false", "--model_kwargs", "{channels: [8, 16, 32, 64]}",
             "--dataset", "digits", "--image_size", "8", "--train_batch_size", "32", "--num_train_epochs", "1",
             "--max_train_steps", "3", "--log_every", "1", "--teacher", str(tiny_teacher), "--distill_t", "100"]
    cfg = finetune.load_finetune_config([*flags, "--distill_weight", "2.0", "--output_dir", str(tmp_path / "reg")])
    task = finetune.get_task("classification")()
    task.build_datasets(finetune.to_dict(cfg))
    model = finetune.regularized(cfg, task, task.build_model(cfg.model, False, finetune.to_dict(cfg)))
    assert isinstance(model, FeatureRegularized) and model.t == 100 and model.weight == 2.0
    batch = torch.rand(4, 3, 8, 8)
    model.train()
    logits = model(batch)
    assert logits.shape == (4, 10) and model.regularizer_loss.ndim == 0 and model.regularizer_loss > 0
    assert not model.teacher.training and all(not p.requires_grad for p in model.teacher.parameters())
    model.regularizer_loss.backward()
    assert model.loss.connector.weight.grad is not None
    assert model.model.backbone.layer1[0].conv1.weight.grad is not None  # the regulariser reaches the backbone
    result = finetune.finetune(cfg)
    log = json.loads((tmp_path / "reg" / "log.jsonl").read_text().splitlines()[-1])
    assert log["loss/distill"] > 0 and log["loss/total"] > log["loss/ce"]
    assert sorted(p.name for p in (tmp_path / "reg" / "model").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    with pytest.raises(ConfigError, match="teacher"):
        finetune.regularized(finetune.load_finetune_config([*flags[:-4], "--distill_weight", "1"]), task, model.model)
    assert result["metrics"]["top1"] >= 0
