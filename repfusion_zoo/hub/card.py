"""The generated ``README.md`` model card: YAML front matter (huggingface_hub's ModelCardData) + a short body.

The card is a pure function of ``config.json`` (`build_model_card(config)`), so that rewriting the
metrics (`repfusion_zoo.hub.folder.update_card_metrics`) regenerates a consistent card.

``config["repfusion"]`` holds: ``name`` (zoo name), ``architecture``, ``teacher``, ``dataset``,
``license``, ``paper``, ``recipe``, ``description`` and ``metrics`` as
``{task: {dataset: {metric: value}}}``.
"""
from __future__ import annotations

import re
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

PAPER_TITLE = "Diffusion Model as Representation Learner (RepFusion, ICCV 2023)"
BASE_TAGS = ("timm", "repfusion", "image-classification", "knowledge-distillation", "diffusion-distillation")

# downstream task names of repfusion_zoo.tasks -> Hub task types
HUB_TASK_TYPES = {
    "classification": "image-classification",
    "segmentation": "image-segmentation",
    "face-parsing": "image-segmentation",
    "landmarks": "keypoint-detection",
}

# metric name -> Hub metric type (model-index); others keep their name
HUB_METRIC_TYPES = {
    "top1": "accuracy", "acc": "accuracy", "accuracy": "accuracy", "top5": "top-5-accuracy",
    "miou": "mean_iou", "mIoU": "mean_iou", "aAcc": "accuracy", "mAcc": "mean_accuracy", "nme": "nme",
}

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def arxiv_ref(paper: str) -> str:
    """``"2308.10916"`` or ``"arXiv:2308.10916"`` -> ``"arXiv:2308.10916"``."""
    return f"arXiv:{paper.removeprefix('arXiv:').removeprefix('arxiv:')}"


def hub_task_type(task: str) -> str:
    """``"classification"`` -> ``"image-classification"``; Hub task types pass through."""
    return HUB_TASK_TYPES.get(task, task)


def eval_results(metrics: dict[str, dict[str, dict[str, float]]]) -> list[EvalResult]:
    """``{task: {dataset: {metric: value}}}`` -> model-index entries."""
    results = []
    for task, per_dataset in metrics.items():
        for dataset, values in per_dataset.items():
            for metric, value in values.items():
                results.append(EvalResult(
                    task_type=hub_task_type(task), dataset_type=dataset, dataset_name=dataset,
                    metric_type=HUB_METRIC_TYPES.get(metric, metric), metric_name=metric,
                    metric_value=float(value),
                ))
    return results


def card_data(config: dict[str, Any]) -> ModelCardData:
    """The YAML front matter of the card for a ``config.json`` dict."""
    info = config.get("repfusion", {})
    name = info.get("name") or config["architecture"]
    teacher = info.get("teacher")
    datasets = [d for d in (info.get("dataset"),) if d]
    metrics = info.get("metrics") or {}
    for per_dataset in metrics.values():
        datasets.extend(d for d in per_dataset if d not in datasets)
    tags = list(dict.fromkeys([*BASE_TAGS, *info.get("tags", [])]))
    results = eval_results(metrics)
    license_name = info.get("license_name") or ("non-commercial-research" if info.get("license") == "other" else None)
    extra = {"license_name": license_name} if license_name else {}
    if info.get("license_link"):
        extra["license_link"] = info["license_link"]
    return ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=info.get("license") or "apache-2.0",
        tags=tags,
        datasets=datasets or None,
        # base_model must be a Hub repo id; a locally trained teacher is named in the body instead
        base_model=teacher if isinstance(teacher, str) and _REPO_ID.match(teacher) else None,
        model_name=name if results else None,
        eval_results=results or None,
        **extra,
    )


def _metrics_table(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = [
        f"| {task} | {dataset} | {metric} | {value:.4g} |"
        for task, per_dataset in metrics.items()
        for dataset, values in per_dataset.items()
        for metric, value in values.items()
    ]
    if not rows:
        return "No metric has been measured for this weight yet.\n"
    return "| task | dataset | metric | value |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


def card_body(config: dict[str, Any]) -> str:
    """The Markdown below the front matter."""
    info = config.get("repfusion", {})
    name = info.get("name") or config["architecture"]
    arch = config["architecture"]
    paper = info.get("paper")
    paper_ref = f"[{PAPER_TITLE}](https://arxiv.org/abs/{arxiv_ref(paper)[6:]})" if paper else PAPER_TITLE
    cfg = config.get("pretrained_cfg", {})
    lines = [
        f"# Model card for {name}",
        "",
        info.get("description") or (
            f"A `{arch}` backbone distilled from the features of a diffusion model with RepFusion "
            f"({paper_ref})."
        ),
        "",
        "## Model details",
        f"- **Architecture (timm):** `{arch}`",
        f"- **Teacher:** {info.get('teacher') or 'not recorded'}",
        f"- **Training data:** {info.get('dataset') or 'not recorded'}",
        f"- **Input size:** {tuple(cfg.get('input_size', ())) or 'not recorded'}; "
        f"mean {tuple(cfg.get('mean', ()))}, std {tuple(cfg.get('std', ()))}",
        f"- **Classes:** {config.get('num_classes')}; **features:** {config.get('num_features')}",
        f"- **License of the weights:** {info.get('license') or 'apache-2.0'}"
        + (f" ({info['license_note']})" if info.get("license_note") else ""),
        f"- **Paper:** {arxiv_ref(paper) if paper else PAPER_TITLE}",
    ]
    if info.get("recipe"):
        lines.append(f"- **Recipe:** `{info['recipe']}`")
    lines += [
        "",
        "## Metrics",
        _metrics_table(info.get("metrics") or {}),
        "## Usage",
        "```python",
        "import repfusion_zoo  # pip install repfusion-zoo",
        f"model = repfusion_zoo.create_model({name!r}, pretrained=True)",
    ]
    repo = info.get("hub_repo") or "<org>/<repo>"
    if info.get("timm_native"):
        lines += [
            "",
            f"# or with plain timm, without repfusion-zoo ({arch!r} is timm's own architecture):",
            "import timm",
            f"model = timm.create_model('hf-hub:{repo}', pretrained=True)",
        ]
    lines += ["```", ""]
    return "\n".join(lines)


def build_model_card(config: dict[str, Any]) -> str:
    """The full ``README.md`` text (front matter + body) for a ``config.json`` dict."""
    card = ModelCard(f"---\n{card_data(config).to_yaml()}\n---\n{card_body(config)}")
    return str(card)
