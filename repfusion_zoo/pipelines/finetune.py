"""Fine-tune a backbone on a downstream task: the body of ``recipes/finetune.py`` (its docstring is the
command line's help). One loop (`Trainer`) for every task; the task (`repfusion_zoo.tasks`) gives
the model, data, loss, metric and pictures. In-process use: ``finetune(load_finetune_config([...]))``.
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
from torch.utils.data import Subset

from ..data.base import unaugmented
from ..data.subsets import check_indices, read_indices
from ..errors import ConfigError
from ..hub import push_to_hub, update_card_metrics
from ..losses import DISTILL_LOSSES, build_distill_loss
from ..method.regularizer import FeatureRegularized, last_feature_module
from ..modes import evaluating
from ..tasks import TASKS, get_task
from ..teachers import TeacherSettings, build_teacher
from ..training import (LoopSettings, StepOutput, TrainConfig, Trainer, build_optimizer, configure_cpu_threads,
                        evaluate, lr_schedule, seed_everything)
from ..config import extend_schema, format_help, load_config, opt, peek, to_dict, wants_help
from ..training.records import write_timing
from ..zoo import save_pretrained
from .shared import architecture_of, end_processes

__all__ = ["FinetuneConfig", "load_finetune_config", "finetune", "card_fields", "regularized", "main"]


@dataclass
class FinetuneConfig(TrainConfig, TeacherSettings):
    """Keys of recipes/finetune.py (a task adds its own, see `--task NAME --help`); the teacher's
    (`TeacherSettings`) are read only with ``distill_weight`` > 0."""

    task: str = opt("classification", "downstream task", choices=sorted(TASKS))
    model: str = opt("resnet18_cifar", "backbone: zoo/timm name, hf-hub:org/repo[@rev], or a Hub-ready folder")
    pretrained: bool = opt(True, "load the backbone's weights (a folder always does); false = from scratch")
    model_kwargs: dict = opt({}, "extra timm kwargs when building from a name, e.g. {channels: [16, 32, 64, 128]}")
    eval_every: int = opt(0, "also evaluate every N epochs (0 = only at the end): on --val_subset when given, else the test split")
    val_subset: str = opt("", "validation items of the TRAIN split (a JSON list of indices, un-augmented): what --eval_every "
                              "scores, logged as val/<metric> (for choices; the test split is scored once, at the end)")
    model_name: str = opt("", "name written into the saved model card (default: derived from output_dir)")
    update_source_card: str = opt("", "opt-in: also write the metrics into the card of this folder, which must be --model "
                                      "(a local folder); empty = the run never writes into its inputs")
    push_to_hub: bool = opt(False, "push the fine-tuned folder with huggingface_hub")
    hub_model_id: str = opt("", "org/name for --push_to_hub")
    hub_private_repo: bool = opt(False, "create the Hub repo private")
    # the distillation loss kept as a regulariser (method/regularizer.py)
    distill_weight: float = opt(0.0, "add this times the feature-distillation loss between the backbone's last feature map "
                                     "and --teacher's feature at --distill_t (classification; 0 = plain fine-tuning)")
    distill_t: int = opt(300, "the teacher's time step for --distill_weight")
    distill_loss: str = opt("hint", "the distillation loss of --distill_weight", choices=DISTILL_LOSSES)


def load_finetune_config(argv: Sequence[str] | None = None, *, overrides: dict[str, Any] | None = None) -> Any:
    """The finetune config for `argv`, with the chosen task's default keys merged in; `overrides`
    are set last."""
    overrides = dict(overrides or {})
    task_name = str(peek(argv, "task", default=overrides.get("task", "classification")))
    task_cls = get_task(task_name)
    cfg = load_config(FinetuneConfig, argv, extra_defaults=task_cls.default_config())
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ConfigError(f"unknown finetune key {key!r}; valid keys are: {', '.join(sorted(to_dict(cfg)))}")
        setattr(cfg, key, value)
    return cfg


# card fields of a start folder that still describe the fine-tuned weights (where they came from, their terms)
INHERITED_CARD_FIELDS = ("teacher", "paper", "license", "license_name", "license_link", "license_note")


def card_fields(source: str, task: str, dataset: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `card=` of `save_pretrained` for the fine-tuned model: how it was made (`origin`: trained from
    random initialisation, or fine-tuned from `start`), the task and dataset the metrics were
    measured on, the input size it was trained at (tasks with `image_size`/`in_chans`), plus the
    teacher/paper/license of a local start folder's config.json."""
    values = values or {}
    fields: dict[str, Any] = {"origin": "fine-tuned", "start": f"the weights of `{source}`"}
    if values.get("image_size") and values.get("in_chans"):
        fields["input_size"] = (values["in_chans"], values["image_size"], values["image_size"])
    config_file = Path(source).expanduser() / "config.json"
    if config_file.is_file():
        info = json.loads(config_file.read_text()).get("repfusion") or {}
        fields.update({k: info[k] for k in INHERITED_CARD_FIELDS if info.get(k)})
        made = {"distilled": "a RepFusion-distilled backbone"}.get(info.get("origin"), "a saved model")
        fields["start"] = f"{made} (`{info.get('name') or Path(source).name}`)"
    elif not values.get("pretrained", True):
        fields = {k: v for k, v in fields.items() if k != "start"} | {"origin": "trained"}
    fields.update(task=task, dataset=dataset)
    return fields


def regularized(cfg: Any, task: Any, model: nn.Module, classes: Sequence[str] = ()) -> nn.Module:
    """``model``, or with ``cfg.distill_weight`` > 0 the model with the distillation loss to ``cfg.teacher``'s
    feature at ``cfg.distill_t`` as a regulariser (`FeatureRegularized`; a fresh connector)."""
    if not cfg.distill_weight:
        return model
    if cfg.task != "classification" or not cfg.teacher:
        raise ConfigError("--distill_weight needs --task classification and a --teacher (a diffusion teacher folder or Hub id)")
    teacher = build_teacher(cfg, image_size=cfg.image_size, in_chans=cfg.in_chans, classes=classes)
    backbone = task.backbone_of(model)
    channels = feature_channels(last_feature_module(backbone), backbone, cfg.in_chans, cfg.image_size)
    loss = build_distill_loss(cfg.distill_loss, channels, int(teacher.feature_channels))
    return FeatureRegularized(model, backbone, teacher, loss, cfg.distill_t, cfg.distill_weight)


def feature_channels(stage: nn.Module, backbone: nn.Module, in_chans: int, size: int) -> int:
    """Channels of ``stage``'s output in ``backbone`` (one dry forward of a ``[2, in_chans, size, size]`` batch)."""
    seen: list[int] = []
    handle = stage.register_forward_hook(lambda module, inputs, output: seen.append(int(output.shape[1])))
    with evaluating(backbone):
        backbone(torch.zeros(2, in_chans, size, size))
    handle.remove()
    return seen[0]


def finetune(cfg: Any) -> dict[str, Any]:
    """Train, evaluate, save (and push) one fine-tuning run; returns metrics and paths."""
    configure_cpu_threads()
    seed_everything(cfg.seed)  # model initialisation is part of the run's reproducibility
    task = get_task(cfg.task)()
    values = to_dict(cfg)
    if cfg.push_to_hub and not cfg.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id org/name")
    check_source_card(cfg.update_source_card, cfg.model)
    train_set, eval_set = task.build_datasets(values)  # bad data fails here, before anything is written
    val_set = validation_set(train_set, cfg.val_subset)
    model = regularized(cfg, task, task.build_model(cfg.model, cfg.pretrained, values), getattr(train_set, "classes", ()))
    trainer = Trainer(LoopSettings.of(cfg), f"finetune-{cfg.task}")
    acc = trainer.accelerator
    out = Path(cfg.output_dir)
    trainer.print(f"[finetune] task={cfg.task} model={cfg.model} pretrained={cfg.pretrained} -> {out.resolve()}")
    optimizer = build_optimizer(model.parameters(), cfg)
    loader = trainer.train_loader(train_set)
    model, optimizer, loader = trainer.prepare(model, optimizer, loader, lr_schedule(cfg), tracker_config=values)

    def step(model: Any, batch: dict[str, Any], progress: float) -> StepOutput:
        losses = task.training_loss(model, batch)  # named losses with "total" (tasks/base.py)
        inner = acc.unwrap_model(model)
        if isinstance(inner, FeatureRegularized):
            losses = {**losses, "distill": inner.regularizer_loss, "total": losses["total"] + inner.regularizer_loss}
        return StepOutput(loss=losses["total"], losses=losses)

    timing = {"validation": 0.0}

    def on_epoch_end(epoch: int) -> dict[str, float]:
        if not cfg.eval_every or (epoch + 1) % cfg.eval_every:
            return {}
        started = time.perf_counter()
        scores = evaluate(acc, model, val_set if val_set is not None else eval_set, task, batch_size=cfg.eval_batch_size)
        timing["validation"] += time.perf_counter() - started
        return {f"{'val' if val_set is not None else 'eval'}/{k}": v for k, v in scores.items() if k != "count"}

    started = time.perf_counter()
    trainer.fit(step, on_epoch_end=on_epoch_end)
    timing["train"] = time.perf_counter() - started - timing["validation"]
    started = time.perf_counter()
    metrics = evaluate(acc, model, eval_set, task, batch_size=cfg.eval_batch_size, pictures_dir=out / "pictures")
    timing["test"] = time.perf_counter() - started
    trainer.print(f"[finetune] {cfg.task} {task.main_metric} = {metrics.get(task.main_metric, float('nan')):.2f}  ({metrics})")
    model_dir = out / "model"
    if acc.is_main_process:
        inner = acc.unwrap_model(model)
        backbone = task.backbone_of(inner.model if isinstance(inner, FeatureRegularized) else inner)
        card_metrics = {k: v for k, v in metrics.items() if k != "count"}
        dataset = str(values.get("dataset", "")) or "unknown"
        label_names = getattr(task, "label_names", None) if getattr(backbone, "num_classes", 0) else None
        save_pretrained(backbone, model_dir, architecture=architecture_of(backbone, cfg.model),
                        model_name=cfg.model_name or out.name, metrics=card_metrics,
                        card=card_fields(cfg.model, cfg.task, dataset, values), label_names=label_names)
        if cfg.update_source_card:
            update_card_metrics(cfg.update_source_card, card_metrics, task=cfg.task, dataset=dataset)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_timing(out, timing)
        trainer.print(f"[finetune] fine-tuned model written to {model_dir.resolve()}")
    acc.wait_for_everyone()
    pushed = None
    if cfg.push_to_hub and acc.is_main_process:
        sha = push_to_hub(model_dir, cfg.hub_model_id, private=cfg.hub_private_repo,
                          commit_message=f"fine-tuned on {cfg.task}: {metrics}")
        pushed = f"{cfg.hub_model_id}@{sha}"
        trainer.print(f"[finetune] pushed: {pushed}")
    trainer.finish()
    return {"metrics": metrics, "main_metric": task.main_metric, "model_dir": str(model_dir),
            "output_dir": str(out), "pushed": pushed, "epochs": trainer.epochs_history()}


def check_source_card(folder: str, model: str) -> None:
    """`ConfigError` unless `folder` is empty or the local Hub-ready folder `model` starts from (checked
    before training: the card of any other folder is not this run's to write)."""
    if not folder:
        return
    target, source = Path(folder).expanduser(), Path(model).expanduser()
    if not (source.is_dir() and target.is_dir() and target.resolve() == source.resolve()):
        raise ConfigError(f"--update_source_card {folder!r} must name the local folder --model starts from "
                          f"(--model is {model!r}); leave it empty to write only into --output_dir")
    if not (target / "config.json").is_file():
        raise ConfigError(f"--update_source_card {folder!r} has no config.json: it is not a Hub-ready model folder")


def validation_set(train_set: Any, val_subset: str) -> Any:
    """The items `val_subset` names of the train split, without training augmentation (None without one)."""
    if not val_subset:
        return None
    if not hasattr(train_set, "augmentation"):
        raise ConfigError(f"--val_subset needs a dataset with a training augmentation to turn off; "
                          f"{type(train_set).__name__} has none (leave --val_subset empty)")
    indices = read_indices(val_subset)
    check_indices(indices, train_set, f"val_subset {val_subset}")
    return Subset(unaugmented(train_set), indices)


def main(argv: Sequence[str] | None = None, *, doc: str = __doc__) -> int:
    """``recipes/finetune.py``: ``--help`` (the chosen task's keys too), or one run, then the processes end."""
    if wants_help(argv):
        task_name = str(peek([a for a in (sys.argv[1:] if argv is None else argv) if a not in ("-h", "--help")],
                             "task", default="classification"))
        schema = extend_schema(FinetuneConfig, get_task(task_name).default_config())
        print(format_help(schema, "recipes/finetune.py", doc.split("\n\n")[0] + f"\n\ntasks: {', '.join(sorted(TASKS))}"))
        return 0
    finetune(load_finetune_config(argv))
    end_processes()
    return 0
