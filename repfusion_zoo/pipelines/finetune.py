"""Fine-tune a backbone on a downstream task: the body of ``recipes/finetune.py`` (its docstring is the
command line's help). One loop (`Trainer`) for every task; the task (`repfusion_zoo.tasks`) gives
the model, data, loss, metric and pictures. In-process use: ``finetune(load_finetune_config([...]))``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..hub import push_to_hub, update_card_metrics
from ..tasks import TASKS, get_task
from ..training import (LoopSettings, StepOutput, TrainConfig, Trainer, build_optimizer, configure_cpu_threads,
                        evaluate, lr_schedule, seed_everything)
from ..training.config import canonical, extend_schema, format_help, load_config, opt, peek, to_dict, wants_help
from ..zoo import save_pretrained
from .shared import architecture_of, end_processes

__all__ = ["FinetuneConfig", "load_finetune_config", "finetune", "card_fields", "main"]


@dataclass
class FinetuneConfig(TrainConfig):
    """Keys of recipes/finetune.py (a task adds its own, see `--task NAME --help`)."""

    task: str = opt("classification", "downstream task", choices=sorted(TASKS))
    model: str = opt("resnet18_cifar", "backbone: zoo/timm name, hf-hub:org/repo[@rev], or a Hub-ready folder")
    pretrained: bool = opt(True, "load the backbone's weights (a folder always does); false = from scratch")
    model_kwargs: dict = opt({}, "extra timm kwargs when building from a name, e.g. {channels: [16, 32, 64, 128]}")
    eval_every: int = opt(0, "also evaluate every N epochs (0 = only at the end)")
    model_name: str = opt("", "name written into the saved model card (default: derived from output_dir)")
    update_source_card: bool = opt(True, "also write the metrics into the start folder's card when --model is a local folder")
    push_to_hub: bool = opt(False, "push the fine-tuned folder with huggingface_hub")
    hub_model_id: str = opt("", "org/name for --push_to_hub")
    hub_private_repo: bool = opt(False, "create the Hub repo private")


def load_finetune_config(argv: Sequence[str] | None = None, *, overrides: dict[str, Any] | None = None) -> Any:
    """The finetune config for `argv`, with the chosen task's default keys merged in; `overrides`
    (canonical names or their aliases) are set last."""
    overrides = canonical(overrides or {}, "finetune overrides")
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
    """The `card=` of `save_pretrained` for the fine-tuned model: the task and dataset the metrics
    were measured on, the input size it was trained at (tasks with `image_size`/`in_chans`), plus
    the teacher/paper/license of a local start folder's config.json."""
    fields: dict[str, Any] = {}
    values = values or {}
    if values.get("image_size") and values.get("in_chans"):
        fields["input_size"] = (values["in_chans"], values["image_size"], values["image_size"])
    config_file = Path(source).expanduser() / "config.json"
    if config_file.is_file():
        info = json.loads(config_file.read_text()).get("repfusion") or {}
        fields.update({k: info[k] for k in INHERITED_CARD_FIELDS if info.get(k)})
    fields.update(task=task, dataset=dataset)
    return fields


def finetune(cfg: Any) -> dict[str, Any]:
    """Train, evaluate, save (and push) one fine-tuning run; returns metrics and paths."""
    configure_cpu_threads()
    seed_everything(cfg.seed)  # model initialisation is part of the run's reproducibility
    task = get_task(cfg.task)()
    values = to_dict(cfg)
    if cfg.push_to_hub and not cfg.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id org/name")
    train_set, eval_set = task.build_datasets(values)  # bad data fails here, before anything is written
    model = task.build_model(cfg.model, cfg.pretrained, values)
    trainer = Trainer(LoopSettings.of(cfg), f"finetune-{cfg.task}")
    acc = trainer.accelerator
    out = Path(cfg.output_dir)
    trainer.print(f"[finetune] task={cfg.task} model={cfg.model} pretrained={cfg.pretrained} -> {out.resolve()}")
    optimizer = build_optimizer(model.parameters(), cfg)
    loader = trainer.train_loader(train_set)
    model, optimizer, loader = trainer.prepare(model, optimizer, loader, lr_schedule(cfg), tracker_config=values)

    def step(model: Any, batch: dict[str, Any], progress: float) -> StepOutput:
        losses = task.training_loss(model, batch)  # named losses with "total" (tasks/base.py)
        return StepOutput(loss=losses["total"], losses=losses)

    def on_epoch_end(epoch: int) -> dict[str, float]:
        if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0:
            scores = evaluate(acc, model, eval_set, task, batch_size=cfg.eval_batch_size)
            return {f"eval/{k}": v for k, v in scores.items()}
        return {}

    trainer.fit(step, on_epoch_end=on_epoch_end)
    metrics = evaluate(acc, model, eval_set, task, batch_size=cfg.eval_batch_size, pictures_dir=out / "pictures")
    trainer.print(f"[finetune] {cfg.task} {task.main_metric} = {metrics.get(task.main_metric, float('nan')):.2f}  ({metrics})")
    model_dir = out / "model"
    if acc.is_main_process:
        backbone = task.backbone_of(acc.unwrap_model(model))
        card_metrics = {k: v for k, v in metrics.items() if k != "count"}
        dataset = str(values.get("dataset", "")) or "unknown"
        label_names = getattr(task, "label_names", None) if getattr(backbone, "num_classes", 0) else None
        save_pretrained(backbone, model_dir, architecture=architecture_of(backbone, cfg.model),
                        model_name=cfg.model_name or out.name, metrics=card_metrics,
                        card=card_fields(cfg.model, cfg.task, dataset, values), label_names=label_names)
        source = Path(cfg.model).expanduser()
        if cfg.update_source_card and source.is_dir() and (source / "config.json").is_file():
            update_card_metrics(source, card_metrics, task=cfg.task, dataset=dataset)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
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
