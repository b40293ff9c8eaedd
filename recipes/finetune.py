#!/usr/bin/env python
"""Fine-tune a backbone on a downstream task with one Accelerate loop for every task.

    accelerate launch recipes/finetune.py --task classification --model PATH/TO/FOLDER [--key value ...]
    accelerate launch recipes/finetune.py --config recipes/configs/finetune_digits.yaml

`--model` is a zoo or timm name, `hf-hub:org/repo[@rev]`, or a Hub-ready folder (e.g. the
`backbone/` that recipes/distill.py writes); `--pretrained false` starts from scratch.
The run trains, evaluates on the held-out split (sharded over processes, metric states summed),
writes pictures into `output_dir/pictures`, saves the fine-tuned model as a Hub-ready folder in
`output_dir/model` with the metrics in its model card (and, for a local start folder, in that
folder's card too), and with `--push_to_hub --hub_model_id org/name` publishes it.
In-process use: `finetune(load_finetune_config([...])) -> dict`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from repfusion_zoo.errors import ConfigError
from repfusion_zoo.tasks import TASKS, get_task
from repfusion_zoo.training import (
    TrainConfig,
    Trainer,
    build_optimizer,
    evaluate,
    format_help,
    load_config,
    opt,
    peek,
    to_dict,
    wants_help,
)
from repfusion_zoo.training.config import canonical
from repfusion_zoo.training.threads import configure_cpu_threads
from repfusion_zoo.training.state import seed_everything


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


DESCRIPTION = __doc__.split("\n\n")[0] + f"\n\ntasks: {', '.join(sorted(TASKS))}"


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


def architecture_of(backbone: Any, source: str) -> str:
    """The plain architecture name to record in config.json (timm's `pretrained_cfg['architecture']`)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    if cfg.get("architecture"):
        return str(cfg["architecture"])
    folder = Path(source).expanduser()
    if (folder / "config.json").is_file():
        return str(json.loads((folder / "config.json").read_text()).get("architecture", source))
    return source


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
    trainer = Trainer(cfg, f"finetune-{cfg.task}")
    acc = trainer.accelerator
    out = Path(cfg.output_dir)
    trainer.print(f"[finetune] task={cfg.task} model={cfg.model} pretrained={cfg.pretrained} -> {out.resolve()}")
    optimizer = build_optimizer(model.parameters(), cfg)
    loader = trainer.train_loader(train_set)
    model, optimizer, loader = trainer.prepare(model, optimizer, loader)

    def step_fn(model: Any, batch: dict[str, Any], fraction: float) -> dict[str, Any]:
        return task.training_loss(model, batch)

    def on_epoch_end(epoch: int) -> dict[str, float]:
        if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0:
            scores = evaluate(acc, model, eval_set, task, batch_size=cfg.eval_batch_size)
            return {f"eval/{k}": v for k, v in scores.items()}
        return {}

    trainer.fit(step_fn, on_epoch_end=on_epoch_end)
    metrics = evaluate(acc, model, eval_set, task, batch_size=cfg.eval_batch_size, pictures_dir=out / "pictures")
    trainer.print(f"[finetune] {cfg.task} {task.main_metric} = {metrics.get(task.main_metric, float('nan')):.2f}  ({metrics})")
    model_dir = out / "model"
    if acc.is_main_process:
        from repfusion_zoo import save_pretrained
        from repfusion_zoo.hub import update_card_metrics

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
        from repfusion_zoo.hub import push_to_hub

        sha = push_to_hub(model_dir, cfg.hub_model_id, private=cfg.hub_private_repo,
                          commit_message=f"fine-tuned on {cfg.task}: {metrics}")
        pushed = f"{cfg.hub_model_id}@{sha}"
        trainer.print(f"[finetune] pushed: {pushed}")
    trainer.finish()
    return {"metrics": metrics, "main_metric": task.main_metric, "model_dir": str(model_dir),
            "output_dir": str(out), "pushed": pushed, "epochs": trainer.epochs_history()}


def main(argv: Sequence[str] | None = None) -> int:
    if wants_help(argv):
        task_name = str(peek([a for a in (sys.argv[1:] if argv is None else argv) if a not in ("-h", "--help")],
                             "task", default="classification"))
        from repfusion_zoo.training.config import extend_schema

        schema = extend_schema(FinetuneConfig, get_task(task_name).default_config())
        print(format_help(schema, "recipes/finetune.py", DESCRIPTION))
        return 0
    finetune(load_finetune_config(argv))
    from accelerate import PartialState

    PartialState().destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
