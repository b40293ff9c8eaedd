"""RepFusion distillation: the body of ``recipes/distill.py`` (its docstring is the command line's help).

The run: (1) trains, or reuses, a small DDPM teacher (`train_teacher`) when ``--teacher`` is
empty; (2) distils the student (student + policy + decoder g + connector under one optimiser,
the paper's schedule by default) with the `Trainer`; (3) saves the student backbone as a
Hub-ready folder in ``output_dir/backbone`` (and pushes it); (4) with ``finetune: true``,
fine-tunes that backbone and the same student from scratch (`finetune`, in-process).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data.base import unaugmented
from ..data.settings import DataSettings
from ..data.subsets import LabelBudget, read_indices
from ..method.distill import RepFusion, build_repfusion
from ..method.distill_model import DistillModel
from ..method.settings import RepFusionSettings
from ..errors import ConfigError
from ..hub import push_to_hub
from ..modes import evaluating
from ..method.policy_report import timestep_report
from ..tasks import TASKS, get_task
from ..teachers import SupervisedTeacher, TeacherSettings, build_teacher, class_map_of
from ..teachers.cached import CachedTeacher, check_cache_for_run
from ..timesteps import StrategySettings
from ..training import (LoopSettings, StepOutput, TrainConfig, Trainer, build_optimizer, configure_cpu_threads,
                        lr_schedule, plot_timestep_histograms, run_precision, seed_everything)
from ..config import extend_schema, format_help, load_config, opt, peek, settings_of, to_dict, wants_help
from ..training.data import collate
from ..training.records import write_timing
from ..zoo import create_model, save_pretrained
from . import train_teacher as teacher_pipeline
from .finetune import finetune, load_finetune_config
from .shared import RECIPE_CONFIGS, architecture_of, end_processes, main_print

__all__ = ["DistillConfig", "load_distill_config", "distill", "run_teacher", "build_student", "repfusion_from_config",
           "finetune_settings", "main"]

#: the base config of a run without ``--config`` (a file of the recipes' configs folder)
DEFAULT_CONFIG = "offline_default.yaml"


@dataclass
class DistillConfig(TrainConfig, DataSettings, TeacherSettings, StrategySettings, RepFusionSettings):
    """Keys of recipes/distill.py; the schedule defaults are the paper's."""

    output_dir: str = opt("outputs/distill", "where checkpoints, logs, the backbone and the fine-tune runs go")
    # data (DataSettings: dataset, image_size, in_chans; built through the task, so dense labels work for decoder g too)
    task: str = opt("classification", "what decoder g is trained on (labels of this task's datasets)", choices=sorted(TASKS))
    num_classes: int = opt(0, "classes of decoder g (0 = read from the dataset)")
    augment: bool = opt(True, "training augmentation: flips only for images (shifts for digits)")
    label_key: str = opt("label", "batch key holding decoder g's labels")
    # student
    student: str = opt("resnet18_cifar", "zoo or timm name of the student")
    student_kwargs: dict = opt({}, "extra timm kwargs for the student, e.g. {channels: [16, 32, 64, 128]}")
    # teacher (its source and layer: TeacherSettings)
    teacher_type: str = opt("diffusion", "diffusion (a UNet, latent UNet or DiT: teachers.load_teacher) or supervised (SupervisedTeacher)", choices=["diffusion", "supervised"])
    teacher_noise: bool = opt(False, "feed x_t instead of the clean image (the paper: clean)")
    teacher_config: str = opt("teacher_digits.yaml", "train_teacher config (relative to recipes/configs) when --teacher is empty")
    teacher_dir: str = opt("", "where the trained teacher goes (default: <output_dir>/teacher); reused if complete")
    teacher_max_train_steps: int = opt(0, "override the teacher config's max_train_steps (0 = keep)")
    teacher_overrides: dict = opt({}, "more train_teacher keys for the trained teacher, e.g. {num_samples: 0}")
    # RepFusion (the time-step strategy's keys: StrategySettings; decoder g, loss, connector, reward: RepFusionSettings)
    teacher_cache: str = opt("", "read the teacher's features from this cache (recipes/cache_features.py) instead of running it")
    timestep_report: bool = opt(False, "after distilling, write timestep_report.json: the policy's distribution over t beside decoder g's reward per t")
    label_subset: str = opt("", "decoder g (and the policy's reward) sees only these items' labels: a JSON list of dataset indices")
    # speed (opt-in: it does not pay on a 2-core CPU, see benchmarks/train_step.py; for GPUs, benchmarks/distill_step.py)
    compile: bool = opt(False, "torch.compile the student's forward (input normalisation + forward_features; its backward with it)")
    compile_mode: str = opt("default", "torch.compile mode of --compile",
                            choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    # outputs
    model_name: str = opt("", "name written into the backbone's model card")
    push_to_hub: bool = opt(False, "push the backbone folder with huggingface_hub")
    hub_model_id: str = opt("", "org/name for --push_to_hub")
    hub_private_repo: bool = opt(False, "create the Hub repo private")
    # the downstream chain (the offline default turns it on)
    finetune: bool = opt(False, "then fine-tune the distilled backbone and the same student from scratch")
    finetune_num_train_epochs: int = opt(100, "fine-tune epochs")
    finetune_max_train_steps: int = opt(0, "fine-tune step cap (0 = all epochs)")
    finetune_learning_rate: float = opt(0.1, "fine-tune learning rate")
    finetune_train_batch_size: int = opt(128, "fine-tune global batch")
    finetune_milestones: list[int] = opt([50, 75], "fine-tune multistep milestones (epochs)")


# ------------------------------------------------------------------------------------ config
def _schema(task_name: str) -> type:
    """DistillConfig plus the task's data keys it does not already have."""
    fields = set(to_dict(DistillConfig()))
    defaults = get_task(task_name).default_config()
    extra = {k: v for k, v in defaults.items() if k not in fields}
    return extend_schema(DistillConfig, extra)


def load_distill_config(argv: Sequence[str] | None = None, *, configs: Path = RECIPE_CONFIGS) -> Any:
    """`--config FILE` (default: the offline default, `configs`/offline_default.yaml) plus `--key value` flags."""
    default_file = configs / DEFAULT_CONFIG
    task_name = str(peek(argv, "task", default_file=default_file, default="classification"))
    return load_config(_schema(task_name), argv, default_file=default_file)


# ------------------------------------------------------------------------------------ parts
def resolve_teacher(cfg: Any, configs: Path = RECIPE_CONFIGS) -> str:
    """The teacher source: `--teacher`, or a teacher trained (or reused) by `train_teacher` with
    `cfg.teacher_config` (a path, or a file of `configs`)."""
    if cfg.teacher:
        return cfg.teacher
    config_file = Path(cfg.teacher_config)
    if not config_file.is_absolute() and not config_file.exists():
        config_file = configs / config_file
    teacher_dir = cfg.teacher_dir or str(Path(cfg.output_dir) / "teacher")
    argv = ["--config", str(config_file), "--output_dir", teacher_dir, "--reuse", "true",
            "--image_size", str(cfg.image_size), "--in_channels", str(cfg.in_chans), "--dataset", cfg.dataset,
            "--seed", str(cfg.seed)]
    if cfg.teacher_max_train_steps:
        argv += ["--max_train_steps", str(cfg.teacher_max_train_steps)]
    for key, value in cfg.teacher_overrides.items():
        argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    argv += ["--mixed_precision", run_precision(cfg.mixed_precision)]
    teacher_cfg = teacher_pipeline.parse_config(argv, configs=configs)
    main_print(f"[distill] teacher: training or reusing {teacher_dir}")
    return str(teacher_pipeline.train_teacher(teacher_cfg))  # the process group stays up for distillation


def run_teacher(cfg: Any, source: str, classes: Sequence[str] = ()) -> nn.Module:
    """The run's teacher read from `source` (`cfg.teacher`, or the one trained here): the diffusion
    teacher of its `TeacherSettings` (`teachers.build_teacher`, size checked against the data) or a
    `SupervisedTeacher`."""
    if cfg.teacher_type == "supervised":
        path = Path(source).expanduser()
        model = create_model(str(path) if path.is_dir() else source, pretrained=True)
        layer = int(cfg.teacher_layer) if cfg.teacher_layer.lstrip("-").isdigit() else None
        return SupervisedTeacher(model, layer)
    settings = settings_of(TeacherSettings, cfg, teacher=source)
    return build_teacher(settings, image_size=cfg.image_size, in_chans=cfg.in_chans, classes=classes, noise=cfg.teacher_noise)


def build_student(cfg: Any) -> nn.Module:
    """The student backbone (no head: `num_classes=0`) whose `forward_features` gives `[B, Cs, hs, ws]`."""
    return create_model(cfg.student, pretrained=False, num_classes=0, in_chans=cfg.in_chans, **cfg.student_kwargs)


def feature_channels(module: nn.Module, in_chans: int, size: int, **kwargs: Any) -> int:
    """Channels of a feature map, by one dry forward of a `[2, in_chans, size, size]` batch."""
    x = torch.zeros(2, in_chans, size, size)
    with evaluating(module):
        out = module.forward_features(x) if hasattr(module, "forward_features") else module(x, **kwargs)
    return int(out.shape[1])


def repfusion_from_config(cfg: Any, teacher: nn.Module, student_channels: int, num_classes: int) -> RepFusion:
    """RepFusion around `teacher` from the config's names (`repfusion_zoo.method.build_repfusion`):
    the time-step strategy, decoder g (`num_classes` outputs) and the distillation loss."""
    return build_repfusion(teacher, student_channels=student_channels, num_classes=num_classes,
                           strategy=settings_of(StrategySettings, cfg), settings=settings_of(RepFusionSettings, cfg))


def cached_teacher(cfg: Any, source: str, train_set: Any, classes: Sequence[str] = ()) -> CachedTeacher:
    """The feature cache `cfg.teacher_cache` in the place of the teacher `source`, once its manifest
    matches this run (the teacher's weight files, layer, data, image size, views, time steps and
    images); the teacher itself is never built."""
    if cfg.teacher_type != "diffusion":
        raise ConfigError("--teacher_cache holds a diffusion teacher's features; a supervised teacher runs online "
                          "(drop --teacher_cache)")
    cache = CachedTeacher(cfg.teacher_cache)
    indices = read_indices(cfg.train_subset) if cfg.train_subset else None
    check_cache_for_run(cache, source=source, layer=cfg.teacher_layer, noise=cfg.teacher_noise,
                        class_map=class_map_of(settings_of(TeacherSettings, cfg), classes), dataset=train_set,
                        timesteps=cfg.timesteps, indices=indices)
    return cache


def report_timesteps(cfg: Any, repfusion: nn.Module, train_set: Any, device: torch.device) -> dict[str, Any] | None:
    """`repfusion_zoo.method.timestep_report` on up to 1000 labelled train images, un-augmented
    (classification with a decoder g only; None otherwise)."""
    if not cfg.timestep_report or cfg.task != "classification" or repfusion.decoder is None:
        return None
    dataset = unaugmented(train_set)
    rows = read_indices(cfg.label_subset or cfg.train_subset) if (cfg.label_subset or cfg.train_subset) else range(len(dataset))
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed))[:1000].tolist()
    loader = DataLoader(Subset(dataset, [rows[i] for i in order]), batch_size=cfg.eval_batch_size, collate_fn=collate)
    return timestep_report(repfusion, loader, max_items=1000, max_timesteps=20, device=device)


# ------------------------------------------------------------------------------------ the run
def save_outputs(cfg: Any, student: nn.Module, trainer: Trainer, backbone_dir: Path) -> None:
    """The student backbone as a Hub-ready folder, the time-step PNG and the run's config (main process)."""
    out = Path(cfg.output_dir)
    save_pretrained(student, backbone_dir, architecture=architecture_of(student, cfg.student),
                    model_name=cfg.model_name or None,
                    card={"origin": "distilled", "teacher": cfg.teacher or f"recipes/train_teacher.py ({cfg.teacher_config})",
                          "dataset": cfg.dataset, "recipe": recipe_command(),
                          "input_size": (cfg.in_chans, cfg.image_size, cfg.image_size)})
    plot = plot_timestep_histograms(trainer.epochs_history(), out / "timesteps.png")
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2, default=str))
    trainer.print(f"[distill] backbone written to {backbone_dir.resolve()}")
    if plot:
        trainer.print(f"[distill] time-step histograms: {plot.resolve()}")


def distill(cfg: Any, *, configs: Path = RECIPE_CONFIGS) -> dict[str, Any]:
    """Distill, save (and push) the backbone; with `cfg.finetune`, the downstream comparison too.
    `configs`: where a relative `teacher_config` is found when the teacher is trained here."""
    configure_cpu_threads()
    seed_everything(cfg.seed)  # model initialisation is part of the run's reproducibility
    started = time.time()
    if cfg.push_to_hub and not cfg.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id org/name")
    out = Path(cfg.output_dir)
    values = to_dict(cfg)
    task = get_task(cfg.task)()
    train_set, _ = task.build_datasets(values)  # a missing dataset fails here, before anything is written
    num_classes = int(cfg.num_classes or getattr(task, "num_classes", 0) or 0)
    source, classes = resolve_teacher(cfg, configs), getattr(train_set, "classes", ())
    teacher = cached_teacher(cfg, source, train_set, classes) if cfg.teacher_cache else run_teacher(cfg, source, classes)
    plain_train = train_set  # every label, before the label budget
    if cfg.label_subset:  # decoder g and the policy's reward see only these labels
        train_set = LabelBudget(train_set, read_indices(cfg.label_subset))
    seed_everything(cfg.seed)  # the same student init whether the teacher was trained or reused
    student = build_student(cfg)
    repfusion = repfusion_from_config(cfg, teacher, feature_channels(student, cfg.in_chans, cfg.image_size), num_classes)
    model = DistillModel(student, repfusion, cfg.in_chans, compile=cfg.compile, compile_mode=cfg.compile_mode)

    # a batch without a labelled image (a label budget) leaves decoder g and the policy without a gradient
    trainer = Trainer(LoopSettings.of(cfg), "distill", find_unused_parameters=True)
    acc = trainer.accelerator
    trainer.print(f"[distill] student={cfg.student} teacher={cfg.teacher or 'trained'} strategy={cfg.strategy} "
                  f"loss={cfg.loss} decoder={cfg.decoder} processes={acc.num_processes} -> {out.resolve()}")
    optimizer = build_optimizer([*student.parameters(), *repfusion.trainable_parameters()], cfg)
    loader = trainer.train_loader(train_set)
    wrapped, _, _ = trainer.prepare(model, optimizer, loader, lr_schedule(cfg), tracker_config=values)
    num_t = int(teacher.num_train_timesteps)

    def step(model: nn.Module, batch: dict[str, Any], progress: float) -> StepOutput:
        out = model(batch["image"], batch.get(cfg.label_key), progress, batch.get("index"), batch.get("flip"))
        # the entropy of the pi(t | x) a learning strategy sampled from
        scalars = {} if out.policy_entropy is None else {"policy/entropy": out.policy_entropy}
        return StepOutput(loss=out.losses["total"], losses=out.losses, scalars=scalars, histograms={"t": (out.t, num_t)})

    loop_started = time.time()
    trainer.fit(step)
    timing = {"train": time.time() - loop_started}
    result: dict[str, Any] = {"output_dir": str(out), "distill_seconds": round(time.time() - started, 1)}
    unwrapped = acc.unwrap_model(wrapped).repfusion
    report_started = time.time()
    report = report_timesteps(cfg, unwrapped, plain_train, acc.device) if acc.is_main_process else None
    timing["timestep_report"] = time.time() - report_started
    if report is not None:
        (out / "timestep_report.json").write_text(json.dumps(report, indent=2))
        result["timestep_report"] = str(out / "timestep_report.json")
    backbone_dir = out / "backbone"
    if acc.is_main_process:
        save_outputs(cfg, acc.unwrap_model(wrapped).student, trainer, backbone_dir)
        write_timing(out, timing)
    acc.wait_for_everyone()
    result["backbone_dir"] = str(backbone_dir)
    result["epochs"] = trainer.epochs_history()
    if cfg.push_to_hub and acc.is_main_process:
        sha = push_to_hub(backbone_dir, cfg.hub_model_id, private=cfg.hub_private_repo, commit_message="RepFusion backbone")
        result["pushed"] = f"{cfg.hub_model_id}@{sha}"
        trainer.print(f"[distill] pushed: {result['pushed']}  (put this in the zoo registry's hf_hub_id)")
    trainer.finish()
    if cfg.finetune:
        result.update(compare_downstream(cfg, backbone_dir))
    result["seconds"] = round(time.time() - started, 1)
    if acc.is_main_process:
        (out / "summary.json").write_text(json.dumps({k: v for k, v in result.items() if k != "epochs"}, indent=2))
    return result


#: task keys that describe the distillation data only: fine-tuning keeps the task's own value
#: (the paper distils with flips only but fine-tunes face parsing with random scale 0.5-2)
DISTILL_ONLY_KEYS = frozenset({"scale_range"})


def finetune_settings(cfg: Any) -> dict[str, Any]:
    """The fine-tune keys of the downstream comparison: the task's keys from this config (only
    those the task's config accepts, e.g. `data_root` and `crop_size` for segmentation, never
    `image_size` / `in_chans` there), the `finetune_*` schedule, and the shared run keys (seed,
    precision, accumulation, trackers)."""
    train_keys = set(to_dict(TrainConfig()))
    values = to_dict(cfg)
    settings = {k: values[k] for k in get_task(cfg.task).default_config()
                if k in values and k not in train_keys and k not in DISTILL_ONLY_KEYS}
    settings.update(task=cfg.task, num_train_epochs=cfg.finetune_num_train_epochs,
                    max_train_steps=cfg.finetune_max_train_steps, learning_rate=cfg.finetune_learning_rate,
                    train_batch_size=cfg.finetune_train_batch_size, milestones=list(cfg.finetune_milestones), seed=cfg.seed,
                    mixed_precision=cfg.mixed_precision, report_to=cfg.report_to,
                    resume_from_checkpoint=cfg.resume_from_checkpoint,
                    gradient_accumulation_steps=cfg.gradient_accumulation_steps, eval_batch_size=cfg.eval_batch_size,
                    channels_last=cfg.channels_last)
    return settings


def compare_downstream(cfg: Any, backbone_dir: Path) -> dict[str, Any]:
    """Fine-tune the distilled backbone and the same student from scratch; print both metrics."""
    out = Path(cfg.output_dir)
    runs = {
        # this run's own backbone (not an input): its card gets the downstream metrics
        "distilled": {"model": str(backbone_dir), "output_dir": str(out / "finetune_distilled"),
                      "update_source_card": str(backbone_dir)},
        "scratch": {"model": cfg.student, "pretrained": False, "model_kwargs": dict(cfg.student_kwargs),
                    "output_dir": str(out / "finetune_scratch")},
    }
    results: dict[str, Any] = {}
    for name, run in runs.items():
        ft_cfg = load_finetune_config(["--task", cfg.task], overrides={**finetune_settings(cfg), **run})
        results[name] = finetune(ft_cfg)
    main_metric = results["distilled"]["main_metric"]
    lines = {name: r["metrics"][main_metric] for name, r in results.items()}
    main_print(f"[distill] downstream {cfg.task} {main_metric}: distilled {lines['distilled']:.2f}  vs  scratch {lines['scratch']:.2f}")
    for name, r in results.items():
        main_print(f"[distill] {name} fine-tuned model: {Path(r['model_dir']).resolve()}")
    return {"downstream": {name: {"metrics": r["metrics"], "model_dir": r["model_dir"]} for name, r in results.items()}}


def recipe_command() -> str:
    """This run's command line, as a card records it."""
    return "accelerate launch recipes/distill.py " + " ".join(sys.argv[1:])


def main(argv: Sequence[str] | None = None, *, doc: str = __doc__, configs: Path = RECIPE_CONFIGS) -> int:
    """``recipes/distill.py``: ``--help`` (with the recipe's `doc`), or the run, then the processes end."""
    if wants_help(argv):
        print(format_help(_schema("classification"), "accelerate launch recipes/distill.py", doc))
        return 0
    cfg = load_distill_config(argv, configs=configs)
    given = "--config" in " ".join(sys.argv[1:] if argv is None else argv)
    main_print(f"[distill] config: {'--config given' if given else configs / DEFAULT_CONFIG}; "
               f"outputs under {Path(cfg.output_dir).resolve()}")
    distill(cfg, configs=configs)
    end_processes()
    return 0
