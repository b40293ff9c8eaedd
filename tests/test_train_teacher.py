"""recipes/train_teacher.py: a tiny DDPM on digits, the saved folder, atomic saving, reuse, resume."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

import repfusion_zoo.pipelines.train_teacher as tt
from repfusion_zoo.errors import ConfigError
from repfusion_zoo.training import make_accelerator

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

TINY = [
    "--max_train_steps", "4", "--train_batch_size", "16", "--block_out_channels", "8,16,16", "--norm_num_groups", "4",
    "--attention_head_dim", "4", "--log_every", "2", "--num_samples", "4", "--sample_inference_steps", "3",
    "--cpu_threads", "1",
]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "digits-tiny"
    torch.set_num_threads(1)
    return tt.main([*TINY, "--output_dir", str(out), "--checkpointing_steps", "2"])


def test_tiny_teacher_folder_loads(tiny_teacher: Path):
    from diffusers import DDPMPipeline, UNet2DModel

    assert sorted(p.name for p in tiny_teacher.iterdir()) == sorted(
        ["model_index.json", "unet", "scheduler", tt.TEACHER_CONFIG_FILE, tt.TRAINING_INFO_FILE, tt.SAMPLES_FILE]
    )
    assert (tiny_teacher / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    info = json.loads((tiny_teacher / tt.TRAINING_INFO_FILE).read_text())
    assert info["steps"] == 4 and torch.isfinite(torch.tensor(info["final_loss"])) and 0 < info["final_loss"] < 2
    unet = UNet2DModel.from_pretrained(tiny_teacher / "unet")
    assert (unet.config.sample_size, unet.config.in_channels, list(unet.config.block_out_channels)) == (16, 3, [8, 16, 16])
    pipe = DDPMPipeline.from_pretrained(tiny_teacher)
    assert pipe.scheduler.config.num_train_timesteps == 1000
    # no temp or backup folder is left beside the teacher
    assert sorted(p.name for p in tiny_teacher.parent.iterdir()) == ["digits-tiny", "digits-tiny.run"]


def test_tiny_teacher_through_diffusion_teacher(tiny_teacher: Path):
    teachers = pytest.importorskip("repfusion_zoo.teachers")
    teacher = teachers.DiffusionTeacher(tiny_teacher)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    feature = teacher(x, torch.tensor([0, 500]))
    assert tuple(feature.shape) == (2, *teacher.feature_shape) == (2, 16, 4, 4)
    assert torch.isfinite(feature).all()


def test_weights_are_the_ema_not_the_raw_model(tiny_teacher: Path):
    from diffusers import UNet2DModel
    from safetensors.torch import load_file

    saved = UNet2DModel.from_pretrained(tiny_teacher / "unet").state_dict()
    raw = load_file(tiny_teacher.parent / "digits-tiny.run" / "checkpoint-4" / "model.safetensors")
    ema = load_file(tiny_teacher.parent / "digits-tiny.run" / "checkpoint-4" / "ema.safetensors")
    key = "conv_in.weight"
    assert not torch.equal(saved[key], raw[key])
    names = [n for n, _ in UNet2DModel.from_pretrained(tiny_teacher / "unet").named_parameters()]
    assert torch.equal(saved[key], ema[str(names.index(key))])


def test_failed_save_leaves_previous_teacher_intact(tiny_teacher: Path, tmp_path: Path, monkeypatch):
    from diffusers import DDPMPipeline

    target = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, target)
    before = _digest(target)
    cfg = tt.TeacherConfig(**json.loads((target / tt.TEACHER_CONFIG_FILE).read_text()))
    pipe = DDPMPipeline.from_pretrained(target)
    real_save = DDPMPipeline.save_pretrained

    def dies_halfway(self, folder, **kwargs):
        real_save(self, folder, **kwargs)  # files are on disk in the temp folder ...
        (Path(folder) / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt("killed during save")  # ... then the run dies

    monkeypatch.setattr(DDPMPipeline, "save_pretrained", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        tt.save_teacher(pipe.unet, pipe.scheduler, target, cfg, {"steps": 0})
    assert _digest(target) == before
    with pytest.raises(KeyboardInterrupt):
        tt.save_teacher(pipe.unet, pipe.scheduler, tmp_path / "fresh", cfg, {"steps": 0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]  # no half folder, no temp folder


def test_reuse_returns_matching_teacher_only(tiny_teacher: Path):
    cfg = tt.parse_config([*TINY, "--output_dir", str(tiny_teacher), "--reuse"])
    assert tt.reusable(cfg)
    before = _digest(tiny_teacher)
    assert tt.train_teacher(cfg) == tiny_teacher and _digest(tiny_teacher) == before
    assert not tt.reusable(tt.parse_config([*TINY, "--output_dir", str(tiny_teacher), "--learning_rate", "0.01"]))


def test_resume_from_checkpoint_latest_is_bit_exact(tiny_teacher: Path, tmp_path: Path):
    run = tmp_path / "digits-tiny.run"
    shutil.copytree(tiny_teacher.parent / "digits-tiny.run", run)
    shutil.rmtree(run / "checkpoint-4")  # as if killed between step 2 and step 4
    out = tt.main([*TINY, "--output_dir", str(tmp_path / "digits-tiny"), "--resume_from_checkpoint", "latest",
                   "--num_samples", "0"])
    a = (tiny_teacher / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    b = (out / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert a == b


def test_resume_across_an_epoch_boundary_is_bit_exact(tmp_path: Path):
    """2 steps per epoch; resumed at step 3 (epoch 1, batch 1) it must take epoch 1's order, not replay epoch 0's."""
    flags = [*TINY, "--train_batch_size", "512", "--num_samples", "0", "--checkpointing_steps", "3"]
    whole = tt.main([*flags, "--output_dir", str(tmp_path / "a" / "teacher")])
    shutil.copytree(tmp_path / "a" / "teacher.run", tmp_path / "b" / "teacher.run")
    assert sorted(p.name for p in (tmp_path / "b" / "teacher.run").iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-3"]
    resumed = tt.main([*flags, "--output_dir", str(tmp_path / "b" / "teacher"), "--resume_from_checkpoint", "auto"])  # 'auto' = 'latest'
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (whole / weights).read_bytes() == (resumed / weights).read_bytes()


def test_missing_dataset_writes_nothing(tmp_path: Path):
    from repfusion_zoo.errors import DatasetError

    with pytest.raises(DatasetError, match="nowhere"):
        tt.main([*TINY, "--dataset", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "teacher")])
    assert list(tmp_path.iterdir()) == []


def test_config_errors_list_valid_keys():
    with pytest.raises(ConfigError, match="valid keys are:.*block_out_channels"):
        tt.parse_config(["--bogus_key", "1"])
    with pytest.raises(ConfigError, match="same length"):
        tt.build_unet(tt.TeacherConfig(block_out_channels=[8, 16]))
    with pytest.raises(ConfigError, match="divisible"):
        tt.build_unet(tt.TeacherConfig(image_size=18, block_out_channels=[8, 16, 16], norm_num_groups=4))


def test_shipped_configs_parse():
    digits = tt.parse_config([])
    assert (digits.dataset, digits.image_size, digits.block_out_channels) == ("digits", 16, [32, 64, 64])
    cifar = tt.parse_config(["--config", str(RECIPES / "configs" / "teacher_cifar10.yaml")])
    unet = tt.build_unet(cifar)
    published = json.loads((Path(__file__).parent / "configs" / "ddpm-cifar10-32.json").read_text())
    for key in ("block_out_channels", "down_block_types", "up_block_types", "layers_per_block", "norm_num_groups",
                "attention_head_dim", "norm_eps", "downsample_padding", "flip_sin_to_cos", "freq_shift", "sample_size"):
        assert json.loads(json.dumps(unet.config[key])) == published[key], key


def test_two_processes_form_one_gloo_group(tmp_path: Path):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU-only machine: one 2-process run."""
    import os
    import subprocess

    if torch.cuda.is_available():
        pytest.skip("checks the CPU (gloo) path")
    out = tmp_path / "teacher"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(RECIPES / "train_teacher.py"), *TINY, "--num_samples", "0", "--output_dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((out / tt.TRAINING_INFO_FILE).read_text())
    assert info["processes"] == 2 and info["steps"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]  # no temp or half folder


def test_mixed_precision_comes_from_the_launcher(tmp_path: Path, monkeypatch):
    """`accelerate launch --mixed_precision bf16` sets ACCELERATE_MIXED_PRECISION: train_teacher follows
    it (as the Trainer of distill/finetune does) unless its own --mixed_precision is given."""
    from accelerate.state import AcceleratorState

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    AcceleratorState._reset_state(True)
    try:
        cfg = tt.parse_config([*TINY, "--output_dir", str(tmp_path / "t")])
        assert cfg.mixed_precision == "" and tt.config_key(cfg)["mixed_precision"] == "bf16"
        assert make_accelerator(tt.loop_settings(cfg)).mixed_precision == "bf16"
        AcceleratorState._reset_state(True)
        own = tt.parse_config([*TINY, "--mixed_precision", "no"])
        assert make_accelerator(tt.loop_settings(own)).mixed_precision == "no"
    finally:
        AcceleratorState._reset_state(True)


def test_init_from_starts_at_a_teacher_and_the_probe_curve_is_written(tiny_teacher: Path, tmp_path: Path):
    """init_from: step 0 holds the given teacher's weights (the probe at step 0 probes them); the
    probe row every probe_every steps lands in probe_curve.json, in the run folder and the teacher's."""
    from diffusers import UNet2DModel

    out = tmp_path / "continued"
    cfg = tt.parse_config([*TINY, "--output_dir", str(out), "--init_from", str(tiny_teacher), "--max_train_steps", "0",
                           "--probe_every", "2", "--probe_train_images", "60", "--probe_test_images", "40",
                           "--probe_timesteps", "0,500"])
    start = tt.initial_unet(cfg)
    given = UNet2DModel.from_pretrained(tiny_teacher / "unet")
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), given.state_dict().values()))
    tt.main([*TINY, "--output_dir", str(out), "--init_from", str(tiny_teacher), "--probe_every", "2",
             "--probe_train_images", "60", "--probe_test_images", "40", "--probe_timesteps", "0,500"])
    curve = json.loads((out / "probe_curve.json").read_text())
    assert [row["step"] for row in curve["rows"]] == [0, 2, 4]
    assert set(curve["rows"][0]["top1"]) == {"0", "500"} and curve["train_images"] == 60 and curve["test_images"] == 40
    assert all(0 <= v <= 100 for row in curve["rows"] for v in row["top1"].values())
    assert (tmp_path / "continued.run" / "probe_curve.json").read_text() == (out / "probe_curve.json").read_text()


def test_init_from_another_architecture_names_the_keys(tiny_teacher: Path, tmp_path: Path):
    cfg = tt.parse_config([*TINY, "--output_dir", str(tmp_path / "x"), "--init_from", str(tiny_teacher),
                           "--block_out_channels", "8,16,32"])
    with pytest.raises(ConfigError, match="block_out_channels"):
        tt.initial_unet(cfg)
    cfg = tt.parse_config([*TINY, "--output_dir", str(tmp_path / "x"), "--init_from", str(tmp_path / "nowhere")])
    with pytest.raises(ConfigError, match="does not exist"):
        tt.initial_unet(cfg)


def test_a_teacher_saved_before_a_key_existed_is_still_reused(tiny_teacher: Path, tmp_path: Path):
    """A teacher_config.json without a later key (here the loop's channels_last, train_subset and
    num_train_epochs) reads that key as its default: what the run did."""
    copy = tmp_path / "old"
    shutil.copytree(tiny_teacher, copy)
    saved = json.loads((copy / tt.TEACHER_CONFIG_FILE).read_text())
    for key in ("channels_last", "train_subset", "num_train_epochs"):
        saved.pop(key)
    (copy / tt.TEACHER_CONFIG_FILE).write_text(json.dumps(saved))
    assert tt.reusable(tt.parse_config([*TINY, "--output_dir", str(copy)]))
