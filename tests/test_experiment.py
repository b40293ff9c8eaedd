"""The experiment runner on a tiny grid (digits at 8 px, a tiny teacher): per-seed label subsets,
the protocol each arm follows, resume after a kill of the whole job, and the results files."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from _recipes_common import PYTHON, RECIPES, env, tiny_teacher  # noqa: F401  (fixture)
from repfusion_zoo.data.subsets import LabelBudget, per_class_subset, read_indices
from repfusion_zoo.config import load_config
from repfusion_zoo.experiments.config import PROBE, ExperimentConfig
from repfusion_zoo.experiments.machine import machine_name, this_machine
from repfusion_zoo.experiments.validate import VALIDATE
from repfusion_zoo.experiments.runner import distill_flags
from repfusion_zoo.experiments.subsets import ExperimentSubsets
from repfusion_zoo.method.decoders import build_decoder, decoder_task_loss
from repfusion_zoo.method.distill import RepFusion
from repfusion_zoo.losses import build_distill_loss
from repfusion_zoo.timesteps import build_strategy

pytestmark = pytest.mark.usefixtures("one_thread")


def experiment_flags(out: Path, teacher: Path) -> list[str]:
    values = {
        "name": "tiny", "output_dir": str(out), "results_dir": "", "dataset": "digits", "image_size": 8, "in_chans": 3,
        "teacher": str(teacher), "teacher_layer": "mid", "student": "resnet18_cifar",
        "student_kwargs": {"channels": [8, 16, 32, 64]}, "timesteps": "0,10,500", "distill_images_per_class": 20,
        "labels_per_class": [3], "val_images_per_class": 2, "seeds": [0, 1],
        "arms": {"scratch": {"distill": False}, "rl": {"strategy": "reinforce", "seeds": [0]},
                 "probe": {"strategy": "fixed", "t": "probe", "seeds": [0]}},
        "distill": {"num_train_epochs": 1, "train_batch_size": 32, "milestones": [], "log_every": 1,
                    "augment": False},  # digits shift, never flip: the cache's identity view only
        "finetune": {"num_train_epochs": 1, "train_batch_size": 10, "milestones": [], "log_every": 1, "eval_batch_size": 128,
                     "eval_every": 1},
        "cache": {"dtype": "float32", "batch_size": 64}, "launcher": "python", "eval_batch_size": 128,
        "probe_test_fraction": 0.5, "publish": "rl",
    }
    flags: list[str] = []
    for key, value in values.items():
        flags += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return flags


def _start(out: Path, teacher: Path) -> subprocess.Popen:
    cmd = [PYTHON, str(RECIPES / "experiment.py"), *experiment_flags(out, teacher)]
    log = (out.parent / f"{out.name}.log").open("a")
    return subprocess.Popen(cmd, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_runner_resumes_after_a_kill_and_keeps_per_seed_label_subsets(tmp_path, tiny_teacher):  # noqa: F811
    out = tmp_path / "tiny"
    first_result = out / "runs" / "lpc3" / "scratch-seed0" / "result.json"
    job = _start(out, tiny_teacher)
    deadline = time.time() + 300
    while not first_result.is_file() and job.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first_result.is_file(), (out.parent / "tiny.log").read_text()[-3000:]
    os.killpg(job.pid, signal.SIGKILL)  # the whole job, recipes included, as a killed shell would
    job.wait()
    kept = first_result.read_bytes(), first_result.stat().st_mtime_ns
    if (out / "tiny.json").exists():  # rewritten after every arm-seed: only the finished ones, marked partial
        assert json.loads((out / "tiny.json").read_text())["arm_seeds"] == {"finished": 1, "planned": 4}

    assert _start(out, tiny_teacher).wait(timeout=600) == 0, (out.parent / "tiny.log").read_text()[-3000:]
    assert (first_result.read_bytes(), first_result.stat().st_mtime_ns) == kept  # a finished arm-seed is not re-run
    summary = json.loads((out / "tiny.json").read_text())
    assert summary["labels_per_class"] == 3 and summary["teacher"] == str(tiny_teacher)
    assert set(summary["arms"]) == {"scratch", "rl", "probe"}
    assert summary["arms"]["scratch"]["seeds"] == [0, 1] and summary["arms"]["rl"]["seeds"] == [0]
    for arm in summary["arms"].values():
        assert all(0.0 <= v <= 100.0 for v in arm["top1"] + arm["knn"])
    assert summary["arms"]["probe"]["t"][0] in (0, 10, 500)
    assert (out / "tiny.png").stat().st_size > 0
    markdown = (out / "tiny.md").read_text()
    assert markdown.count("| scratch |") == 3  # the arms table, the convergence table, the timing table
    assert all(len(curve) == 1 for arm in summary["arms"].values() for curve in arm["val_curve"])  # 1 epoch
    assert "Scratch's final validation top-1" in markdown and "process start-up and saving" in markdown
    timing = summary["arms"]["rl"]["timing"][0]
    assert {"train", "process"} <= set(timing["distill"]) and {"train", "validation", "test", "process"} <= set(timing["finetune"])
    assert timing["machine"] == this_machine() and machine_name(this_machine()) in markdown  # where its seconds were spent
    # the best RL seed's weights, with cards that carry the metrics, the command and the seed
    for kind in ("backbone", "finetuned"):
        card = (out / "weights" / f"tiny-rl-seed0-{kind}" / "README.md").read_text()
        assert "**Seed:** 0" in card and "recipes/experiment.py" in card and str(tmp_path) not in card
    assert "knn_top1" in (out / "weights" / "tiny-rl-seed0-backbone" / "README.md").read_text()

    # the label subsets: one per seed, class-balanced, inside the distilled images, never the validation ones
    distilled, val = set(read_indices(out / "subsets" / "distill_images.json")), set(read_indices(out / "subsets" / "val.json"))
    seed0, seed1 = (read_indices(out / "subsets" / f"labelled-3-seed{s}.json") for s in (0, 1))
    assert len(seed0) == len(seed1) == 30 and seed0 != seed1
    assert set(seed0) <= distilled and not set(seed0) & val and len(distilled) == 200
    # every arm of a seed fine-tunes on that subset alone: 30 images at batch 10 = 3 steps an epoch
    for arm in ("scratch", "rl", "probe"):
        log = out / "runs" / "lpc3" / f"{arm}-seed0" / "finetune" / "log.jsonl"
        assert json.loads(log.read_text().splitlines()[-1])["step"] == 3
    # distillation ran on the 200 distilled images (6 steps at batch 32) from the cache
    [distilled] = (out / "distills").glob("rl-seed0-*/")
    assert json.loads((distilled / "log.jsonl").read_text().splitlines()[-1])["step"] == 6
    # each recipe got its settings as one file, which the recipe reads as it is
    settings = yaml.safe_load(distilled.with_suffix(".yaml").read_text())
    assert settings["strategy"] == "reinforce" and settings["seed"] == 0 and settings["base"].endswith("_paper_schedule.yaml")
    assert settings["timestep_report"] and (distilled / "timestep_report.json").is_file()  # the policy's report


def test_a_distillation_the_labels_cannot_reach_is_shared_by_every_label_budget(tmp_path):
    """A fixed t's student does not read the labels (decoder g only feeds a policy's reward), so its
    distillation is named without the label subset: every budget fine-tunes the same one; a policy's
    (or one clipping gradients over g's too) is its own per budget; seeds never share."""
    cfg = load_config(ExperimentConfig, experiment_flags(tmp_path, tmp_path / "teacher")
                                 + ["--arms", json.dumps({"scratch": {"distill": False}, "rl": {"strategy": "reinforce"},
                                                          "fixed": {"strategy": "fixed", "t": 10},
                                                          "clipped": {"strategy": "fixed", "t": 10, "max_grad_norm": 1.0}})])
    subsets = ExperimentSubsets.of(tmp_path / "subsets")

    def folder(arm: str, lpc: int, seed: int = 0) -> Path:
        return Path(distill_flags(cfg, RECIPES, arm, seed, lpc, subsets, tmp_path / "cache", None)["output_dir"])

    assert folder("fixed", 3) == folder("fixed", 5) != folder("fixed", 3, seed=1)
    assert folder("fixed", 3).parent == tmp_path / "distills"
    assert folder("rl", 3) != folder("rl", 5)
    assert folder("clipped", 3) != folder("clipped", 5)
    assert not distill_flags(cfg, RECIPES, "fixed", 0, 3, subsets, tmp_path / "cache", None)["timestep_report"]


def test_arms_with_the_same_distill_keys_share_a_finished_distillation(tmp_path):
    """A distillation is named by its settings: an arm that differs from another only in its fine-tune
    keys fine-tunes the other's finished distillation instead of running it again."""
    arms = {"scratch": {"distill": False}, "fixed": {"strategy": "fixed", "t": 10},
            "fixed_bf16": {"strategy": "fixed", "t": 10, "finetune": {"mixed_precision": "bf16"}},
            "fixed_t20": {"strategy": "fixed", "t": 20}}
    cfg = load_config(ExperimentConfig, experiment_flags(tmp_path, tmp_path / "teacher") + ["--arms", json.dumps(arms)])
    subsets = ExperimentSubsets.of(tmp_path / "subsets")

    def folder(arm: str, seed: int = 0) -> Path:
        return Path(distill_flags(cfg, RECIPES, arm, seed, 3, subsets, tmp_path / "cache", None)["output_dir"])

    assert folder("fixed_bf16").name.startswith("fixed_bf16-seed0-")  # nothing finished yet: its own name
    finished = folder("fixed")
    finished.mkdir(parents=True)
    (finished / "summary.json").write_text("{}")
    assert folder("fixed_bf16") == finished
    (folder("fixed_bf16").parent / finished.name.replace("fixed", "fixed_bf16", 1)).mkdir()  # its own, half-written
    assert folder("fixed_bf16") == finished
    (folder("fixed_bf16").parent / finished.name.replace("fixed", "fixed_bf16", 1) / "summary.json").write_text("{}")
    assert folder("fixed_bf16").name.startswith("fixed_bf16-seed0-")  # its own, once finished, first
    assert folder("fixed_bf16", seed=1) != finished and folder("fixed_t20") != finished


@pytest.mark.parametrize("native", [True, False])
def test_an_arm_asking_bf16_of_a_cpu_that_emulates_it_is_warned_before_anything_runs(tmp_path, monkeypatch, native):
    """bf16 autocast on a CPU without AVX512-BF16 or AMX is 10-40x slower than fp32: the grid says
    which arm asks it, and the fix, when it starts (the run still goes as asked)."""
    from repfusion_zoo.experiments.runner import check_arm_settings
    from repfusion_zoo.training import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: native)
    arms = {"scratch": {"distill": False}, "scratch_bf16": {"distill": False, "finetune": {"mixed_precision": "bf16"}},
            "fixed": {"strategy": "fixed", "t": 10, "seeds": [0]}}
    cfg = load_config(ExperimentConfig, experiment_flags(tmp_path, tmp_path / "teacher") + ["--arms", json.dumps(arms)])
    warned = check_arm_settings(cfg, RECIPES, ExperimentSubsets.of(tmp_path / "subsets"), tmp_path / "cache")
    assert len(warned) == (0 if native else 1)
    assert all(line.startswith(f"arm 'scratch_bf16': {precision.EMULATED_BF16}") for line in warned)


def test_a_result_of_other_settings_in_the_run_folder_is_an_error_not_reused(tmp_path):
    """Two grids that share an output_dir and an arm name at other settings share a run folder: the
    second finds the first's result.json and says so, instead of reporting it as its own."""
    from repfusion_zoo.errors import InputError
    from repfusion_zoo.experiments.config import run_dir
    from repfusion_zoo.experiments.record import arm_seed_settings
    from repfusion_zoo.experiments.result import RESULT_FILE, ArmSeedResult
    from repfusion_zoo.experiments.runner import run_arm_seed

    cfg = load_config(ExperimentConfig, experiment_flags(tmp_path, tmp_path / "teacher"))
    longer = dataclasses.replace(cfg, finetune={**cfg.finetune, "num_train_epochs": 2})
    folder = run_dir(cfg, 3, "scratch", 0)
    folder.mkdir(parents=True)
    ArmSeedResult(arm="scratch", seed=0, labels_per_class=3, top1=50.0,
                  settings=arm_seed_settings(cfg, "scratch", 0, 3)).write(folder / RESULT_FILE)
    subsets = ExperimentSubsets.of(tmp_path / "subsets")
    assert run_arm_seed(cfg, RECIPES, "scratch", 0, 3, subsets, None, {}).top1 == 50.0  # its own: kept
    with pytest.raises(InputError, match="other settings.*own output_dir"):
        run_arm_seed(longer, RECIPES, "scratch", 0, 3, subsets, None, {})


def test_per_class_subset_is_seeded_and_balanced():
    labels = [i % 4 for i in range(100)]
    a, b, c = per_class_subset(labels, 5, 0), per_class_subset(labels, 5, 0), per_class_subset(labels, 5, 1)
    assert a == b and a != c and len(a) == 20
    assert sorted(labels[i] for i in a) == sorted([0, 1, 2, 3] * 5)
    among = per_class_subset(labels, 2, 3, among=a)
    assert set(among) <= set(a) and len(among) == 8


def test_grids_sharing_an_output_folder_must_draw_the_same_subsets(tmp_path):
    """A second grid with another validation size in the same output folder is refused, not allowed to
    overwrite the val.json the first grid reads; the same grid again re-reads its files."""
    from repfusion_zoo.errors import InputError
    from repfusion_zoo.experiments.subsets import write_subsets

    labels = [i % 4 for i in range(200)]
    cfg = ExperimentConfig(distill_images_per_class=20, val_images_per_class=5, labels_per_class=[3], seeds=[0])
    first = write_subsets(cfg, labels, tmp_path / "subsets")
    val = first.val.read_text()
    assert write_subsets(cfg, labels, tmp_path / "subsets").val.read_text() == val
    other = ExperimentConfig(distill_images_per_class=20, val_images_per_class=10, labels_per_class=[3], seeds=[0])
    with pytest.raises(InputError, match="val.json holds another subset.*own output_dir"):
        write_subsets(other, labels, tmp_path / "subsets")
    assert first.val.read_text() == val
    assert write_subsets(other, labels, tmp_path / "own" / "subsets").val.read_text() != val


def test_shipped_grids_sharing_an_output_folder_draw_the_same_subsets(tmp_path):
    """The shipped configs that share an output_dir (and so its subsets/ and cache/) draw the same
    subsets there: each writes them (write_subsets, on CIFAR-10's 50,000 labels) into its folder's."""
    from repfusion_zoo.experiments.subsets import write_subsets

    labels = [i % 10 for i in range(50_000)]
    for path in sorted((RECIPES / "configs" / "experiments").glob("*.yaml")):
        cfg = load_config(ExperimentConfig, ["--config", str(path)])
        write_subsets(cfg, labels, tmp_path / cfg.output_dir / "subsets")  # InputError on another draw


def test_label_budget_hides_unlabelled_labels_from_decoder_g():
    """Decoder g's loss and the policy's reward come from the labelled rows only; -1 rows still distil."""
    items = [{"image": torch.zeros(1), "label": i % 3, "index": i, "flip": False} for i in range(6)]
    budget = LabelBudget(items, labelled=[1, 4])
    assert [budget[i]["label"] for i in range(6)] == [-1, 1, -1, -1, 1, -1]

    class Teacher(torch.nn.Module):  # the Teacher protocol (repfusion_zoo.teachers.Teacher), nothing more
        feature_channels, in_channels, num_train_timesteps, layer, timesteps, time_conditioned = 4, 3, 10, "mid", None, True

        def to_input(self, images):
            return images * 2 - 1

        def feature(self, images, t, *, labels=None, index=None, flip=None):
            return images.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1).expand(-1, 4, 2, 2) + t.view(-1, 1, 1, 1).float()

    from repfusion_zoo.teachers import Teacher as TeacherProtocol

    assert isinstance(Teacher(), TeacherProtocol)
    torch.manual_seed(0)
    rf = RepFusion(Teacher(), build_strategy("reinforce", in_chans=3, num_train_timesteps=10, timesteps=[0, 5]),
                   build_decoder("linear", 4, 3), build_distill_loss("hint", 4, 4))
    images, student = torch.rand(6, 3, 4, 4) * 2 - 1, torch.rand(6, 4, 2, 2, requires_grad=True)
    labels = torch.tensor([-1, 1, -1, -1, 1, -1])
    out = rf(images, labels, student, 0.0)
    rows = torch.tensor([1, 4])
    expected = decoder_task_loss(rf.decoder(out.teacher_feature[rows]), labels[rows]).mean()
    assert torch.allclose(out.losses["decoder"], expected)
    assert torch.isnan(out.reward[labels < 0]).all() and not torch.isnan(out.reward[rows]).any()
    out.losses["total"].backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    none = rf(images, torch.full((6,), -1), student, 0.0)  # no labelled image in the batch
    assert set(none.losses) == set(out.losses)  # the same names: processes reduce them together
    assert all(float(none.losses[k]) == 0.0 for k in ("decoder", "policy", "entropy"))


@pytest.mark.parametrize("name", sorted(p.stem for p in (RECIPES / "configs" / "experiments").glob("*.yaml")))
def test_shipped_experiment_configs_give_valid_recipe_flags(name, tmp_path):
    """Every arm-seed of a shipped grid turns into distill / finetune flags the recipes accept."""
    from repfusion_zoo.experiments.config import ExperimentConfig, arm_seeds, check_arms
    from repfusion_zoo.experiments.runner import as_flags, distill_flags, finetune_flags
    from repfusion_zoo.experiments.subsets import ExperimentSubsets
    from repfusion_zoo.pipelines.distill import load_distill_config
    from repfusion_zoo.pipelines.finetune import load_finetune_config
    from repfusion_zoo.config import load_config

    cfg = load_config(ExperimentConfig, ["--config", str(RECIPES / "configs" / "experiments" / f"{name}.yaml"),
                                         "--output_dir", str(tmp_path)])
    check_arms(cfg)
    subsets = ExperimentSubsets(tmp_path, tmp_path / "d.json", tmp_path / "v.json")
    for lpc in cfg.labels_per_class:
        for arm, spec in cfg.arms.items():
            for seed in arm_seeds(cfg, arm):
                if spec.get("distill", True):
                    t = 0 if spec.get("t") in (PROBE, VALIDATE) else None  # chosen while it runs
                    distilled = load_distill_config(as_flags(distill_flags(cfg, RECIPES, arm, seed, lpc, subsets, tmp_path, t)))
                    assert distilled.seed == seed and distilled.teacher_cache == str(tmp_path)
                tuned = load_finetune_config(as_flags(finetune_flags(cfg, arm, seed, lpc, subsets, None)))
                assert tuned.crop_padding == 4 and tuned.train_subset.endswith(f"labelled-{lpc}-seed{seed}.json")


def test_an_arm_may_carry_finetune_keys_of_its_own(tmp_path):
    """`{distill: false, finetune: {num_train_epochs: 8}}` changes that arm's fine-tune only; every arm's
    fine-tune scores the validation subset (its curve)."""
    from repfusion_zoo.experiments.config import ExperimentConfig, check_arms
    from repfusion_zoo.experiments.runner import distill_flags, finetune_flags
    from repfusion_zoo.experiments.subsets import ExperimentSubsets
    from repfusion_zoo.errors import ConfigError

    cfg = ExperimentConfig(arms={"scratch": {"distill": False}, "scratch_x2": {"distill": False, "finetune": {"num_train_epochs": 8}},
                                 "fixed_t0": {"strategy": "fixed", "t": 0, "finetune": {"learning_rate": 0.01}},
                                 "kept": {"strategy": "fixed", "t": 0, "finetune": {"distill_weight": 1.0}}},
                           finetune={"num_train_epochs": 4, "learning_rate": 0.05}, teacher="/teachers/x", teacher_layer="down.1")
    check_arms(cfg)
    subsets = ExperimentSubsets(tmp_path, tmp_path / "d.json", tmp_path / "v.json")
    flags = {arm: finetune_flags(cfg, arm, 0, 5, subsets, None) for arm in cfg.arms}
    assert [flags[a]["num_train_epochs"] for a in cfg.arms] == [4, 8, 4, 4]
    assert [flags[a]["learning_rate"] for a in cfg.arms] == [0.05, 0.05, 0.01, 0.05]
    assert (flags["kept"]["teacher"], flags["kept"]["teacher_layer"]) == ("/teachers/x", "down.1")  # the regulariser's
    assert "teacher" not in flags["fixed_t0"]
    assert all(f["val_subset"] == str(tmp_path / "v.json") for f in flags.values())
    assert distill_flags(cfg, RECIPES, "fixed_t0", 0, 5, subsets, tmp_path, 0)["finetune"] is False  # the distill key
    with pytest.raises(ConfigError, match="finetune must be a mapping"):
        check_arms(ExperimentConfig(arms={"scratch": {"distill": False, "finetune": 3}}))


def test_convergence_check_and_speed_from_validation_curves():
    from repfusion_zoo.experiments.curves import convergence_lines, difference_noise, epochs_to_reach, timing_lines

    assert difference_noise(50.0, 1000) == pytest.approx(200 * (0.5 / 1000) ** 0.5)
    assert difference_noise(50.0, 1000, seeds=3) == pytest.approx(difference_noise(50.0, 3000))

    assert epochs_to_reach([50.0, 60.0, 70.0], 60.0) == 2 and epochs_to_reach([50.0], 60.0) is None
    summary = {"arms": {
        "scratch": {"seeds": [0, 1], "val_curve": [[40.0, 60.0, 70.0], [42.0, 61.0, 70.4]], "seconds": [10, 12],
                    "timing": [{"finetune": {"train": 5.0, "validation": 1.0, "test": 1.0, "process": 9.0},
                                "runner": {"knn": 1.0, "val": 0.5}}, None]},
        "scratch_x2": {"seeds": [0], "val_curve": [[[2, 50.0], [4, 60.0], [6, 70.8]]], "seconds": [20]},  # every 2 epochs
        "fixed_t300": {"seeds": [0, 1], "val_curve": [[65.0, 70.3, 71.0], [60.0, 69.0, 70.0]], "seconds": [30, 30],
                       "distill": [{"epochs": [{}, {}], "last_epoch_t_histogram": [0, 0, 6]}] * 2,
                       "timing": [{"distill": {"train": 20.0, "process": 22.0},
                                   "machine": {"cpu": "AMD EPYC", "cores": 2, "native_bf16": False}},
                                  {"distill": {"train": 20.0, "process": 22.0},
                                   "machine": {"cpu": "Xeon", "cores": 2, "native_bf16": True, "accelerator": None}}]},
    }}
    text = "\n".join(convergence_lines(summary))
    assert "| fixed_t300 | 3 | 70.50 ± 0.71 | 2, never |" in text  # scratch's final val: 70.2
    assert "| scratch_x2 | 6 | 70.80 | 6 |" in text  # its curve carries its epochs
    assert "scratch_x2 (6 epochs) − scratch (3 epochs) = +0.80 validation top-1, seeds [0]" in text  # seed 0 to seed 0
    assert "NOT converged" in text and "noise" not in text  # no validation size known: no noise said
    summary["val_images"] = 1000
    text = "\n".join(convergence_lines(summary))
    assert "noise ±4.1 (two standard errors on 1000 validation images x 1 seed(s))" in text  # 200 sqrt(2 .708 .292 / 1000)
    table = timing_lines(summary)
    assert table[2].startswith("| scratch | - | - | 5 | 1 | 1 | 1 | 0 | 2 | 11 | - | - |")  # start-up: 9 - 7 s; no machine
    # 2 epochs of 6 teacher features; the machines of its two seeds
    assert table[3].endswith("| 30 | 12 | AMD EPYC, 2 cores, bf16 emulated; Xeon, 2 cores, native bf16 |")


def test_successive_halving_keeps_the_better_half_with_twice_the_steps():
    from repfusion_zoo.experiments.validate import successive_halving

    quality = {0: 10.0, 10: 30.0, 50: 25.0, 100: 31.0, 500: 5.0}
    calls = []

    def distil(t, steps):
        calls.append((t, steps))
        return Path(f"/runs/t{t}-{steps}")

    def score(folder):
        t, steps = (int(v) for v in folder.name[1:].split("-"))
        return quality[t] + (2.0 if (t, steps) == (10, 20) else 0.0)  # t = 10 gains from more steps

    t, record = successive_halving(list(quality), 10, distil, score)
    assert calls[:5] == [(0, 10), (10, 10), (50, 10), (100, 10), (500, 10)]
    assert calls[5:8] == [(10, 20), (50, 20), (100, 20)]  # the better 3 of 5, twice the steps
    assert calls[8:] == [(10, 40), (100, 40)]  # the better 2 of 3: the last round decides
    assert t == 100 and record["steps"] == 5 * 10 + 3 * 20 + 2 * 40 and len(record["rounds"]) == 3


@pytest.mark.slow
def test_the_validate_arm_picks_t_on_the_validation_subset(tmp_path, tiny_teacher):  # noqa: F811
    flags = experiment_flags(tmp_path / "v", tiny_teacher)
    arms = {"scratch": {"distill": False, "seeds": [0]}, "validate": {"strategy": "fixed", "t": "validate", "seeds": [0]}}
    flags[flags.index("--arms") + 1] = json.dumps(arms)
    result = subprocess.run([PYTHON, str(RECIPES / "experiment.py"), *flags, "--validate_steps", "2", "--publish", "validate"],
                            env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "v" / "weights" / "tiny-validate-seed0-backbone" / "model.safetensors").is_file()  # the named arm
    run = json.loads((tmp_path / "v" / "runs" / "lpc3" / "validate-seed0" / "result.json").read_text())
    rounds = run["validate"]["rounds"]
    assert [r["steps"] for r in rounds] == [2, 4] and set(rounds[0]["scores"]) == {"0", "10", "500"}  # 3, then 2
    assert run["t"] in (0, 10, 500) and str(run["t"]) in rounds[-1]["scores"]
    assert run["validate"]["steps"] == 3 * 2 + 2 * 4 and run["validate"]["cost"] > 0
    assert json.loads((tmp_path / "v" / "tiny.json").read_text())["arms"]["validate"]["t"] == [run["t"]]


def test_a_mistyped_arm_key_fails_before_anything_runs(tmp_path, tiny_teacher):  # noqa: F811
    flags = experiment_flags(tmp_path / "bad", tiny_teacher)
    flags[flags.index("--arms") + 1] = json.dumps({"scratch": {"distill": False}, "rl": {"strategy": "reinforce", "rewrad": "task"}})
    result = subprocess.run([PYTHON, str(RECIPES / "experiment.py"), *flags], env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "arm 'rl' (seed 0, 3 labels per class)" in result.stderr
    assert "did you mean 'reward'" in result.stderr
    assert not (tmp_path / "bad" / "cache").exists() and not (tmp_path / "bad" / "runs").exists()  # nothing was built


def test_the_published_arm_is_named_and_its_best_seed_chosen_on_validation():
    """`publish` names an arm of the grid; its seed with the best validation top-1 is published (the
    test top-1 plays no part; ties go to the lowest seed)."""
    from repfusion_zoo.experiments.config import ExperimentConfig, check_arms
    from repfusion_zoo.errors import ConfigError
    from repfusion_zoo.experiments.publish import best_seed
    from repfusion_zoo.experiments.result import ArmSeedResult

    with pytest.raises(ConfigError, match=r"publish names arm 'rl'.*\['scratch'\]"):
        check_arms(ExperimentConfig(arms={"scratch": {"distill": False}}, publish="rl"))
    results = [ArmSeedResult("fixed", 0, 5, top1=90.0, val_top1=50.0), ArmSeedResult("fixed", 1, 5, top1=10.0, val_top1=60.0),
               ArmSeedResult("fixed", 2, 5, top1=95.0, val_top1=60.0)]
    assert best_seed(results).seed == 1


def test_a_diverging_arm_is_recorded_and_the_grid_goes_on(tmp_path, tiny_teacher):  # noqa: F811
    """A distillation that diverges (here: SGD at lr 1e30) leaves its error in diverged.json; the runner
    records the arm-seed without a fine-tune, runs the rest and says so in the results."""
    out = tmp_path / "tiny"
    flags = experiment_flags(out, tiny_teacher)
    overrides = {"--arms": {"scratch": {"distill": False}, "boom": {"strategy": "reinforce", "learning_rate": 1.0e30}},
                 "--seeds": [0], "--publish": ""}
    for key, value in overrides.items():
        flags[flags.index(key) + 1] = json.dumps(value) if value != "" else value
    done = subprocess.run([PYTHON, str(RECIPES / "experiment.py"), *flags], env=env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [distilled] = (out / "distills").glob("boom-seed0-*/")
    assert "diverged" in json.loads((distilled / "diverged.json").read_text())["error"]
    result = json.loads((out / "runs" / "lpc3" / "boom-seed0" / "result.json").read_text())
    assert result["top1"] is None and "max_grad_norm" in result["diverged"]
    assert not (out / "runs" / "lpc3" / "boom-seed0" / "finetune").exists()
    summary = json.loads((out / "tiny.json").read_text())
    assert summary["arms"]["boom"]["diverged"][0]["seed"] == 0 and summary["arms"]["scratch"]["top1"][0] is not None
    assert "boom, seed 0: " in (out / "tiny.md").read_text()


def test_the_report_shows_what_every_learning_arm_chose():
    """Every arm with a time-step report gets a row (mode t, its probability, entropy per epoch, g's best t),
    under the seed of its own distillation (rl_sum's seed 0 diverged: its only report is seed 1's)."""
    from repfusion_zoo.experiments.report import results_markdown

    def arm(mode: int, entropy: list[float], seed: int = 0) -> dict:
        probs = [0.9 if t == mode else 0.05 for t in (0, 10, 300)]
        report = {"timesteps": [0, 10, 300], "probs": probs, "mode": mode, "mean_t": float(mode), "entropy_of_mean": 0.3,
                  "mean_entropy": 0.25, "log_num_actions": 1.0986, "reward_timesteps": [0, 10, 300],
                  "reward": [-3.0 + (t == mode) for t in (0, 10, 300)], "num_images": 30}
        return {"seeds": [seed], "top1": [50.0], "knn": [40.0], "val_top1": [51.0],
                "distill": [{"seed": seed, "epochs": [{"policy/entropy": e} for e in entropy],
                             "last_epoch_t_histogram": None, "timestep_report": report}]}

    diverged_first = arm(300, [0.5, 0.0], seed=1)
    diverged_first.update(seeds=[0, 1], top1=[None, 50.0], knn=[None, 40.0], val_top1=[None, 51.0],
                          diverged=[{"seed": 0, "error": "the time-step policy diverged"}])

    summary = {"name": "g", "teacher": "t", "teacher_layer": "mid", "student": "s", "student_kwargs": {}, "dataset": "d",
               "distill_images_per_class": 0, "timesteps": "0,10,300", "command": "c", "labels_per_class": 3,
               "arms": {"scratch": {"seeds": [0], "top1": [45.0], "knn": [30.0], "val_top1": [46.0]},
                        "rl": arm(10, [0.9, 0.1]), "rl_sum": diverged_first}}
    text = results_markdown(summary)
    assert "| rl | 0 | 10 | 0.900 | 0.250 | 10 | 0.900, 0.100 |" in text
    assert "| rl_sum | 1 | 300 | 0.900 | 0.250 | 300 | 0.500, 0.000 |" in text
    assert "### rl_sum, seed 1" in text and "### rl_sum, seed 0" not in text


def test_the_table_shows_a_fixed_t_once_and_a_chosen_t_per_seed():
    from repfusion_zoo.experiments.report import results_markdown

    def arm(t: list[int]) -> dict:
        return {"seeds": [0, 1], "t": t, "top1": [50.0, 51.0], "knn": [40.0, 41.0], "val_top1": [51.0, 52.0]}

    summary = {"name": "g", "teacher": "t", "teacher_layer": "mid", "student": "s", "student_kwargs": {}, "dataset": "d",
               "distill_images_per_class": 0, "timesteps": "0,10,300", "command": "c", "labels_per_class": 3,
               "arms": {"scratch": {"seeds": [0, 1], "top1": [45.0, 46.0], "knn": [30.0, 31.0], "val_top1": [46.0, 47.0]},
                        "fixed_t300": arm([300, 300]), "validate": arm([10, 300])}}
    text = results_markdown(summary)
    assert "| fixed_t300 | 300 | [0, 1] |" in text and "| validate | 10, 300 | [0, 1] |" in text
    assert "| scratch | - | [0, 1] |" in text


def test_a_distilled_arm_is_compared_with_scratch_fine_tuned_as_long(tmp_path):
    """A grid whose arms ran several fine-tuning lengths compares a distilled arm with the scratch arm
    of its own length (named in the table), and its figure keeps the t curve to scratch's length and
    draws the lengths beside it."""
    from repfusion_zoo.experiments.report import _fixed_points, compared_scratch, figure8, results_markdown

    def arm(top1: float, epochs: int, t: int | None = None) -> dict:
        return {"seeds": [0], "top1": [top1], "knn": [30.0], "val_top1": [top1], "val_curve": [[[epochs, top1]]],
                **({"t": [t], "distill": [{"seed": 0, "epochs": []}]} if t is not None else {})}

    summary = {"name": "g", "teacher": "t", "teacher_layer": "mid", "student": "s", "student_kwargs": {}, "dataset": "d",
               "distill_images_per_class": 0, "timesteps": "0,300", "command": "c", "labels_per_class": 3,
               "arms": {"scratch": arm(50.0, 400), "fixed_t300": arm(51.0, 400, 300), "scratch_e800": arm(54.0, 800),
                        "fixed_t300_e800": arm(53.0, 800, 300), "fixed_t0_e800": arm(52.0, 800, 0)}}
    assert compared_scratch(summary, "fixed_t300") == "scratch" and compared_scratch(summary, "scratch") is None
    assert compared_scratch(summary, "fixed_t300_e800") == "scratch_e800"
    assert compared_scratch(summary, "scratch_e800") == "scratch"  # the check itself: against the base length
    text = results_markdown(summary)
    assert "| fixed_t300_e800 | 300 | [0] | 53.00 ± 0.00 (n=1) | -1.00 (vs scratch_e800) |" in text
    assert "| fixed_t300 | 300 | [0] | 51.00 ± 0.00 (n=1) | +1.00 |" in text
    assert _fixed_points(summary) == [(300, (51.0, 0.0))]  # no 800-epoch point on the 400-epoch curve
    assert figure8(summary, tmp_path / "g.png").stat().st_size > 0


def test_a_results_file_from_before_distillations_named_their_seed_is_read():
    """Older results files hold one distillation record per seed without its seed: read in order."""
    from repfusion_zoo.experiments.record import recorded_results

    summary = {"labels_per_class": 3, "arms": {"fixed_t300": {
        "seeds": [0, 1], "top1": [50.0, 51.0], "distill": [{"seconds": 1.0}, {"seconds": 2.0}]}}}
    assert [(r.seed, r.distill) for r in recorded_results(summary)] == [(0, {"seconds": 1.0}), (1, {"seconds": 2.0})]


def _scratch_result(arm: str, seed: int, **fields) -> "ArmSeedResult":  # noqa: F821
    from repfusion_zoo.experiments.result import ArmSeedResult

    return ArmSeedResult(arm, seed, 3, top1=50.0 + seed, val_top1=40.0, knn=30.0, val_curve=[[1, 40.0]],
                         timing={"finetune": {"process": 1.0}}, seconds=2.0, **fields)


def test_the_results_json_holds_every_arm_seed_as_the_runner_wrote_it(tmp_path):
    """`recorded_results` reads back what `summarise` wrote, field by field (not the backbone folder, a
    path of the machine that ran it), a diverged seed and a chosen t included."""
    from repfusion_zoo.experiments.record import recorded_results
    from repfusion_zoo.experiments.report import summarise

    cfg = load_config(ExperimentConfig, experiment_flags(tmp_path, tmp_path / "teacher"))
    distill = {"epochs": [{"epoch": 0, "loss/distill": 0.5}], "last_epoch_t_histogram": None, "timestep_report": None,
               "seconds": 3.0}
    results = [_scratch_result("scratch", 0, settings="a"), _scratch_result("scratch", 1, settings="b"),
               _scratch_result("probe", 0, t=10, probe={"0": 20.0, "10": 30.0}, distill=distill, backbone="/x/backbone"),
               dataclasses.replace(_scratch_result("probe", 1, t=500, diverged="boom"), top1=None, val_top1=None, knn=None)]
    summary = json.loads(json.dumps(summarise(cfg, 3, results, command="c", planned=6)))
    assert summary["arm_seeds"] == {"finished": 4, "planned": 6}
    assert recorded_results(summary) == [dataclasses.replace(results[2], backbone=None) if r is results[2] else r
                                         for r in results]


def test_a_recorded_arm_seed_is_restored_only_while_its_settings_match(tmp_path):
    """A results file written elsewhere restores an arm-seed into an empty run folder when its settings
    digest is this grid's; a changed key of that arm (here its fine-tune learning rate) runs it again,
    and a change elsewhere (the teacher) does not touch a scratch arm."""
    from repfusion_zoo.experiments.config import run_dir
    from repfusion_zoo.experiments.record import arm_seed_settings, read_record, restore_recorded
    from repfusion_zoo.experiments.report import write_results

    cfg = load_config(ExperimentConfig, experiment_flags(tmp_path / "there", tmp_path / "teacher"))
    recorded = [_scratch_result("scratch", s, settings=arm_seed_settings(cfg, "scratch", s, 3)) for s in (0, 1)]
    [path, *_] = write_results(cfg, 3, recorded, command="c", planned=4)

    other_teacher = dataclasses.replace(cfg, output_dir=str(tmp_path / "here"), teacher=str(tmp_path / "other"))
    assert restore_recorded(other_teacher, 3, read_record(path), path) == [
        f"scratch seed {s} (3 labels per class) recorded in {path}: restored, not run again" for s in (0, 1)]
    restored = run_dir(other_teacher, 3, "scratch", 1) / "result.json"
    assert json.loads(restored.read_text())["top1"] == 51.0
    assert restore_recorded(other_teacher, 3, read_record(path), path) == []  # a run folder's own result.json wins
    assert restore_recorded(other_teacher, 3, read_record(tmp_path / "none.json"), tmp_path / "none.json") == []

    arms = {**cfg.arms, "scratch": {"distill": False, "finetune": {"learning_rate": 0.01}}}
    changed = dataclasses.replace(cfg, output_dir=str(tmp_path / "changed"), arms=arms)
    assert all(line.endswith("with other settings: it runs again") for line in restore_recorded(changed, 3, read_record(path), path))
    assert not (tmp_path / "changed").exists()

    from repfusion_zoo.experiments.publish import publish_best
    from repfusion_zoo.experiments.record import recorded_results

    restored = recorded_results(read_record(path))
    assert publish_best(dataclasses.replace(other_teacher, publish="scratch"), restored, "tiny", "c") == []  # weights not here


@pytest.mark.slow
def test_a_grid_goes_on_from_its_results_file_on_a_fresh_machine(tmp_path, tiny_teacher):  # noqa: F811
    """The results file in results_dir is rewritten after every arm-seed; a rerun without the run folders
    (a fresh checkout) runs only the arm-seeds it does not hold, and builds no teacher-feature cache
    when every distilling arm-seed is restored."""
    flags = experiment_flags(tmp_path / "first", tiny_teacher)
    arms = {"scratch": {"distill": False}, "fixed": {"strategy": "fixed", "t": 10, "seeds": [0]}}
    for key, value in {"--arms": json.dumps(arms), "--seeds": "[0]", "--publish": "",
                       "--results_dir": str(tmp_path / "results")}.items():
        flags[flags.index(key) + 1] = value
    run = [PYTHON, str(RECIPES / "experiment.py"), *flags]
    first = subprocess.run(run, env=env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    first_summary = json.loads((tmp_path / "results" / "tiny.json").read_text())
    kept, kept_fixed, first_seconds = first_summary["arms"]["scratch"], first_summary["arms"]["fixed"], first_summary["seconds"]

    run[run.index(str(tmp_path / "first"))] = str(tmp_path / "fresh")
    run[run.index("[0]")] = "[0, 1]"
    second = subprocess.run(run, env=env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "scratch seed 0 (3 labels per class) recorded in" in second.stdout and "restored, not run again" in second.stdout
    ran = [line.split(": ", 1)[1] for line in second.stdout.splitlines() if line.startswith("[experiment] tiny: ")]
    assert ran == [f"{arm} seed {seed}, 3 labels per class" for arm, seed in (("scratch", 0), ("fixed", 0), ("scratch", 1))]
    assert not (tmp_path / "fresh" / "runs" / "lpc3" / "scratch-seed0" / "finetune").exists()
    assert "fixed seed 0 (3 labels per class) recorded in" in second.stdout and not (tmp_path / "fresh" / "cache").exists()
    assert (tmp_path / "fresh" / "runs" / "lpc3" / "scratch-seed1" / "finetune" / "metrics.json").is_file()
    summary = json.loads((tmp_path / "results" / "tiny.json").read_text())
    assert summary["arm_seeds"] == {"finished": 3, "planned": 3} and summary["arms"]["scratch"]["seeds"] == [0, 1]
    # the grid's wall time goes on from the first run's: it holds both runs' arm-seeds
    assert summary["seconds"] >= first_seconds + summary["arms"]["scratch"]["seconds"][1] - 0.2
    assert summary["arms"]["fixed"]["distill"][0]["epochs"] == kept_fixed["distill"][0]["epochs"]
    assert summary["arms"]["scratch"]["top1"][0] == kept["top1"][0]
    assert summary["arms"]["scratch"]["settings"][0] == kept["settings"][0]
