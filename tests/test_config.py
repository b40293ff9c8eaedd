"""Recipe configs: YAML + flags into a dataclass; unknown keys list the valid ones; every shipped config validates."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import timm

from repfusion_zoo.errors import ConfigError
from repfusion_zoo.config import load_config, opt, parse_flags, read_yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "configs"


@dataclass
class Small:
    learning_rate: float = opt(0.1, "lr")
    num_train_epochs: int = opt(3)
    milestones: list[int] = opt([1, 2])
    name: str = opt("x")
    push: bool = opt(False)
    extra: dict = opt({})
    kind: str = opt("a", choices=["a", "b"])


def test_flag_forms_and_types():
    cfg = load_config(Small, ["--learning_rate=1e-3", "--num-train-epochs", "7", "--milestones", "4,5", "--push", "--extra",
                              "{a: 1}", "--name=y"])
    assert cfg == Small(learning_rate=1e-3, num_train_epochs=7, milestones=[4, 5], name="y", push=True, extra={"a": 1})
    assert isinstance(cfg.learning_rate, float) and isinstance(cfg.num_train_epochs, int)
    assert load_config(Small, ["--push", "false", "--milestones", "[]"]).push is False
    assert parse_flags(["--dash-name", "v"]) == {"dash_name": "v"}


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(Small, ["--lrr", "0.1"])
    assert "lrr" in str(info.value) and "valid keys are" in str(info.value) and "milestones" in str(info.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.2\nwarmup: 5\n")
    with pytest.raises(ConfigError, match="warmup.*valid keys are"):
        load_config(Small, ["--config", str(bad)])


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="epochs"):
        load_config(Small, ["--num_train_epochs", "three"])
    with pytest.raises(ConfigError, match="kind"):
        load_config(Small, ["--kind", "c"])
    with pytest.raises(ConfigError, match="unexpected argument"):
        load_config(Small, ["positional"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Small, ["--config", "/nonexistent/x.yaml"])


def test_base_inheritance_and_precedence(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("learning_rate: 0.5\nnum_train_epochs: 10\nname: base\n")
    (tmp_path / "sub" / "child.yaml").write_text("base: ../base.yaml\nnum_train_epochs: 20\n")
    cfg = load_config(Small, ["--config", str(tmp_path / "sub" / "child.yaml"), "--name", "flag"])
    assert (cfg.learning_rate, cfg.num_train_epochs, cfg.name) == (0.5, 20, "flag")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        read_yaml(tmp_path / "loop.yaml")


@dataclass
class Nested:
    finetune: dict = opt({}, "another recipe's keys", merge=True)
    student_kwargs: dict = opt({})


def test_a_merged_mapping_takes_a_child_files_and_a_flags_keys_one_by_one(tmp_path):
    """A field declared `merge=True` (an experiment's finetune:) is updated key by key down the `base:`
    chain and by a flag (given as YAML text); any other mapping is replaced whole."""
    (tmp_path / "base.yaml").write_text("finetune: {num_train_epochs: 10, learning_rate: 0.5}\n"
                                        "student_kwargs: {channels: [1, 2], depth: 3}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nfinetune: {num_train_epochs: 20}\nstudent_kwargs: {channels: [4]}\n")
    cfg = load_config(Nested, ["--config", str(tmp_path / "child.yaml")])
    assert cfg.finetune == {"num_train_epochs": 20, "learning_rate": 0.5} and cfg.student_kwargs == {"channels": [4]}
    cfg = load_config(Nested, ["--config", str(tmp_path / "child.yaml"), "--finetune", "{learning_rate: 0.1, eval_every: 5}"])
    assert cfg.finetune == {"num_train_epochs": 20, "learning_rate": 0.1, "eval_every": 5}
    assert load_config(Nested, ["--finetune", "{learning_rate: 0.1}"]).finetune == {"learning_rate": 0.1}
    with pytest.raises(ConfigError, match="finetune"):
        load_config(Nested, ["--config", str(tmp_path / "child.yaml"), "--finetune", "[1, 2"])


def _recipe_of(path: Path) -> str:
    data = read_yaml(path)
    if data.get("recipe"):
        return str(data["recipe"])
    if path.name.startswith("teacher_"):
        return "train_teacher"
    return "finetune"  # the task configs (segmentation_*, landmarks_*) are fine-tune configs


CONFIG_FILES = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=[p.stem for p in CONFIG_FILES])
def test_every_shipped_config_loads_and_validates(path):
    recipe = _recipe_of(path)
    if recipe == "distill":
        from repfusion_zoo.pipelines import distill

        cfg = distill.load_distill_config(["--config", str(path)])
        assert timm.is_model(cfg.student), f"{path.name}: student {cfg.student!r} is not a model name"
        assert cfg.train_batch_size > 0 and cfg.num_train_epochs > 0
        if cfg.strategy == "fixed":
            assert 0 <= cfg.t < 1000
    elif recipe == "finetune":
        from repfusion_zoo.pipelines import finetune

        cfg = finetune.load_finetune_config(["--config", str(path)])
        assert cfg.task in ("classification", "segmentation", "landmarks")
    else:
        from repfusion_zoo.pipelines import train_teacher

        train_teacher.parse_config(["--config", str(path)])


def test_paper_settings_are_present():
    names = {p.stem for p in CONFIG_FILES}
    for student in ("resnet18", "wrn28_2", "mobilenetv2"):
        for loss in ("hint", "at", "rkd"):
            assert f"cifar10_{student}_{loss}" in names
    for t in (0, 10, 50, 100, 200, 300, 500, 999):
        assert f"cifar10_resnet18_fixed_t{t}" in names
    assert {"cifar10_resnet18_random_t", "cifar10_resnet18_no_distill", "tinyimagenet_resnet18_hint",
            "tinyimagenet_mobilenetv2_hint", "celebahq_resnet18", "celebahq_resnet50", "celebahq_hrnet_w18",
            "offline_default"} <= names


def test_paper_schedule_is_the_distill_default():
    from repfusion_zoo.pipelines import distill

    cfg = distill.load_distill_config(["--config", str(CONFIGS / "cifar10_resnet18_hint.yaml")])
    assert (cfg.num_train_epochs, cfg.train_batch_size, cfg.learning_rate, cfg.momentum, cfg.weight_decay) == (200, 128, 0.1, 0.9, 1e-4)
    assert cfg.milestones == [100, 150] and cfg.gamma == 0.1 and (cfg.strategy, cfg.t) == ("fixed", 300)
    celeb = distill.load_distill_config(["--config", str(CONFIGS / "celebahq_resnet18.yaml")])
    assert (celeb.image_size, celeb.loss, celeb.decoder, celeb.task) == (256, "hint", "fcn", "segmentation")


DIFFUSERS_KEYS = ("learning_rate", "train_batch_size", "max_train_steps", "checkpointing_steps",
                  "checkpoints_total_limit", "resume_from_checkpoint", "dataloader_num_workers")


def test_one_name_per_key_and_the_last_flag_wins(tmp_path):
    """No alias table: the short names of old (`lr`, `epochs`) are unknown keys; a child's key replaces
    its base's; of two flags for one key the last wins."""
    (tmp_path / "base.yaml").write_text("learning_rate: 0.5\nnum_train_epochs: 10\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nlearning_rate: 0.25\n")
    cfg = load_config(Small, ["--config", str(tmp_path / "child.yaml"), "--num_train_epochs", "4"])
    assert (cfg.learning_rate, cfg.num_train_epochs) == (0.25, 4)
    assert load_config(Small, ["--learning_rate", "1", "--learning_rate", "2"]).learning_rate == 2.0
    for old in ("lr", "epochs"):
        with pytest.raises(ConfigError, match=f"unknown config key.*'{old}'"):
            load_config(Small, [f"--{old}", "1"])
    with pytest.raises(ConfigError, match="did you mean 'num_train_epochs'"):
        load_config(Small, ["--num_train_epoch", "1"])


def test_every_recipe_uses_the_diffusers_names_and_help_shows_them(capsys):
    """One naming across recipes: the shared keys exist in each; --help lists them."""
    from repfusion_zoo.pipelines import distill
    from repfusion_zoo.pipelines import finetune
    from repfusion_zoo.pipelines import push as push_to_hub
    from repfusion_zoo.pipelines import train_teacher

    from repfusion_zoo.config import schema_fields

    schemas = {"distill": distill.DistillConfig, "finetune": finetune.FinetuneConfig,
               "train_teacher": train_teacher.TeacherConfig, "push_to_hub": push_to_hub.PushConfig}
    for name, schema in schemas.items():
        fields = set(schema_fields(schema))
        if name != "push_to_hub":
            assert set(DIFFUSERS_KEYS) <= fields, f"{name} lacks {set(DIFFUSERS_KEYS) - fields}"
    assert {"hub_model_id", "hub_private_repo"} <= set(schema_fields(push_to_hub.PushConfig))
    assert train_teacher.TeacherConfig().mixed_precision == ""  # the launcher's precision, as in the others
    distill.main(["--help"])
    text = capsys.readouterr().out
    assert "--learning_rate" in text and "--resume_from_checkpoint" in text and "alias" not in text


@dataclass
class OwnBatch:
    batch_size: int = opt(256, "a recipe whose batch is not a training batch (e.g. the cache's teacher batch)")


def test_a_recipes_own_batch_key_and_flags_override_files(tmp_path):
    assert load_config(OwnBatch, ["--batch_size", "6"]).batch_size == 6  # the cache's teacher batch: its own key
    (tmp_path / "file.yaml").write_text("learning_rate: 0.25\n")
    assert load_config(Small, ["--config", str(tmp_path / "file.yaml"), "--learning_rate", "0.5"]).learning_rate == 0.5


def test_setting_groups_are_declared_once_and_inherited():
    """The teacher keys (TeacherSettings) and the strategy keys (StrategySettings) are declared in one
    place each; every recipe config that reads them inherits that declaration, help and choices."""
    import dataclasses

    from repfusion_zoo.experiments.config import ExperimentConfig
    from repfusion_zoo.pipelines.cache_features import CacheConfig
    from repfusion_zoo.pipelines.distill import DistillConfig
    from repfusion_zoo.teachers import TeacherSettings
    from repfusion_zoo.timesteps import StrategySettings

    for config in (DistillConfig, CacheConfig, ExperimentConfig):
        assert issubclass(config, TeacherSettings)
        ours = {f.name: f for f in dataclasses.fields(config)}
        for field in dataclasses.fields(TeacherSettings):
            assert ours[field.name].metadata == field.metadata  # not re-declared with its own help
    assert issubclass(DistillConfig, StrategySettings)
    cfg = load_config(DistillConfig, ["--teacher_conditioning", "zeros", "--policy_baseline", "null"])
    assert (cfg.teacher_conditioning, cfg.policy_baseline) == ("zeros", None)


def test_loop_keys_are_declared_once():
    """LoopSettings declares the loop keys; the student recipes' TrainConfig and the teacher's config
    inherit them (the teacher gives some its own defaults without declaring them again)."""
    import dataclasses

    from repfusion_zoo.pipelines.train_teacher import TeacherConfig
    from repfusion_zoo.training import LoopSettings, TrainConfig

    loop = {f.name: f for f in dataclasses.fields(LoopSettings)}
    for config in (TrainConfig, TeacherConfig):
        assert issubclass(config, LoopSettings)
        fields = {f.name: f for f in dataclasses.fields(config)}
        assert all(fields[name].metadata["choices"] == f.metadata["choices"] for name, f in loop.items())
    teacher = TeacherConfig()
    assert (teacher.num_train_epochs, teacher.max_train_steps, teacher.max_grad_norm, teacher.channels_last) == (None, 200, 1.0, False)
    assert TrainConfig().channels_last and TrainConfig().num_train_epochs == 200
    assert LoopSettings.of(teacher).train_batch_size == 64
