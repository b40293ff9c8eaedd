"""The generated ``README.md`` model card: YAML front matter (huggingface_hub's ModelCardData) + a short body.

The card is a pure function of ``config.json`` (`build_model_card(config)`), so that rewriting the
metrics (`repfusion_zoo.hub.save.update_card_metrics`) regenerates a consistent card.

``config["repfusion"]`` holds: ``name`` (zoo name), ``architecture``, ``teacher``, ``dataset``,
``license``, ``paper``, ``recipe``, ``description``, ``origin`` (how the weights were made, `ORIGINS`;
the card's first line says it, and "not recorded" where it is absent), ``start`` (a fine-tune's
starting weights) and ``metrics`` as ``{task: {dataset: {metric: value}}}``.

A card is published: local paths never enter it (`public_fields`: a dataset is a Hub dataset id
or a plain name, a path in the recipe or the teacher is cut to its last part). The card's
``datasets`` and model-index list Hub dataset ids only. ``pipeline_tag`` follows timm: a backbone
without classifier (``num_classes`` 0) is ``image-feature-extraction``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

PAPER_TITLE = "Diffusion Model as Representation Learner (RepFusion, ICCV 2023)"
BASE_TAGS = ("timm", "repfusion", "knowledge-distillation", "diffusion-distillation")
FEATURE_EXTRACTION = "image-feature-extraction"
CLASSIFICATION = "image-classification"

#: dataset names of this project -> their Hub dataset ids (only ids known to be the same data)
HUB_DATASETS = {"cifar-10": "uoft-cs/cifar10"}
#: a path (absolute or home-relative) inside a command line or a spec, e.g. `--dataset imagefolder:/data/x`
_PATH = re.compile(r"(?:^|(?<=[\s='\"(:]))(?:~|/)[^\s'\")]*")

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

#: how a weight was made -> the card's first line (`{arch}`, `{paper}`, `{start}` filled in)
ORIGINS = {
    "distilled": "A `{arch}` backbone distilled from the features of a diffusion model with RepFusion ({paper}).",
    "fine-tuned": "A `{arch}` model fine-tuned from {start}.",
    "trained": "A `{arch}` model trained from random initialisation (no distillation).",
    "random-init": "A randomly initialised `{arch}`: these weights were not trained.",
}

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_DATASET_ID = re.compile(r"^(?:[\w-][\w.-]*/)?[\w-][\w.-]*$")


def arxiv_ref(paper: str) -> str:
    """``"2308.10916"`` or ``"arXiv:2308.10916"`` -> ``"arXiv:2308.10916"``."""
    return f"arXiv:{paper.removeprefix('arXiv:').removeprefix('arxiv:')}"


def _cut_path(match: re.Match[str]) -> str:
    return f".../{Path(match.group().rstrip('/')).name}"


def scrub_paths(text: str) -> str:
    """``text`` with every local path cut to ``.../<last part>`` (URLs keep their ``//``)."""
    return _PATH.sub(lambda m: m.group() if m.string[max(0, m.start() - 1)] == ":" and m.group().startswith("//")
                     else _cut_path(m), text)


def public_dataset(spec: str) -> str:
    """A dataset spec as it may be published: a Hub dataset id (``hf:org/name[:config]``, a known
    name such as ``CIFAR-10``), else a plain name (a local folder: its last part, no path)."""
    spec = str(spec).strip()
    if spec.startswith("hf:"):
        ident = spec[3:].split(":")[0]
        if _REPO_ID.match(ident) and not Path(ident).expanduser().exists():
            return ident
        spec = ident
    name = spec.removeprefix("imagefolder:")
    if name in HUB_DATASETS.values():  # already published (a second card update keeps it)
        return name
    if name.lower() in HUB_DATASETS:
        return HUB_DATASETS[name.lower()]
    if "/" in name or "\\" in name or name.startswith(("~", ".")):  # a path; a bare name is publishable as is
        return f"{Path(name).expanduser().name or 'dataset'} (a local folder)"
    return name


def hub_dataset_id(name: str | None) -> str | None:
    """``name`` when it can be a Hub dataset id (``org/name``, or a legacy canonical ``name`` such as
    ``cifar10``), else None (a description with spaces, a local folder)."""
    return name if name and _DATASET_ID.match(name) else None


def public_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The card fields that may hold local paths, made publishable (dataset, teacher, recipe, description)."""
    out: dict[str, Any] = {}
    if info.get("dataset"):
        out["dataset"] = public_dataset(info["dataset"])
    for key in ("teacher", "recipe", "description"):
        if isinstance(info.get(key), str):
            out[key] = scrub_paths(info[key])
    return out


def pipeline_tag(config: dict[str, Any]) -> str:
    """timm's convention: weights without a classifier are a feature extractor."""
    return CLASSIFICATION if config.get("num_classes") else FEATURE_EXTRACTION


def hub_task_type(task: str) -> str:
    """``"classification"`` -> ``"image-classification"``; Hub task types pass through."""
    return HUB_TASK_TYPES.get(task, task)


def eval_results(metrics: dict[str, dict[str, dict[str, float]]]) -> list[EvalResult]:
    """``{task: {dataset: {metric: value}}}`` -> model-index entries."""
    results = []
    for task, per_dataset in metrics.items():
        for dataset, values in per_dataset.items():
            if not hub_dataset_id(dataset):  # model-index needs a Hub dataset id: the body's table has the rest
                continue
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
    metrics = info.get("metrics") or {}
    named = [info.get("dataset"), *(d for per_dataset in metrics.values() for d in per_dataset)]
    datasets = list(dict.fromkeys(d for d in named if hub_dataset_id(d)))
    tag = pipeline_tag(config)
    tags = list(dict.fromkeys([*BASE_TAGS, tag, *info.get("tags", [])]))
    results = eval_results(metrics)
    license_name = info.get("license_name") or ("non-commercial-research" if info.get("license") == "other" else None)
    extra = {"license_name": license_name} if license_name else {}
    if info.get("license_link"):
        extra["license_link"] = info["license_link"]
    return ModelCardData(
        library_name="timm",
        pipeline_tag=tag,
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


def origin_line(info: dict[str, Any], arch: str, paper_ref: str) -> str:
    """The card's first line: what the weights are, from ``info["origin"]`` (never assumed)."""
    template = ORIGINS.get(info.get("origin") or "")
    if template is None:
        return f"A `{arch}` model saved with repfusion-zoo; how its weights were made is not recorded."
    return template.format(arch=arch, paper=paper_ref, start=info.get("start") or "weights not recorded")


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
        info.get("description") or origin_line(info, arch, paper_ref),
        "",
        "## Model details",
        f"- **Architecture (timm):** `{arch}`",
        f"- **Teacher:** {info.get('teacher') or 'not recorded'}"
        + (f" (weights sha256: {info['teacher_sha256']})" if info.get("teacher_sha256") else ""),
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
    if info.get("seed") is not None:
        lines.append(f"- **Seed:** {info['seed']}")
    if info.get("labels_per_class"):
        lines.append(f"- **Labelled images per class (fine-tuning, kNN bank):** {info['labels_per_class']}")
    if info.get("results"):
        lines.append(f"- **Results of the run that made it:** {info['results']}")
    lines += ["", "## Metrics", _metrics_table(info.get("metrics") or {}), *usage(config), ""]
    return "\n".join(lines)


def usage(config: dict[str, Any]) -> list[str]:
    """The Usage section: a snippet that works for this architecture. timm's own architectures load
    with plain timm; the ones this package adds need `import repfusion_zoo` first (it registers them
    in timm), which the Hub's generic timm snippet lacks."""
    info = config.get("repfusion", {})
    arch = config["architecture"]
    repo = info.get("hub_repo") or "<org>/<repo>"
    head = "model = timm.create_model" if config.get("num_classes") else "backbone = timm.create_model"
    if info.get("shipped_name"):
        code = ["import repfusion_zoo  # pip install repfusion-zoo: the weight ships inside the package", "import timm",
                "", f"{head}('{info['shipped_name']}', pretrained=True)  # no network, no Hub cache",
                "# the same name: repfusion_zoo.create_model, torch.hub.load(<repo>, name, pretrained=True)"]
        note = "This weight is package data of repfusion-zoo: `import repfusion_zoo` registers its name in timm."
    elif info.get("timm_native"):
        code = ["import timm", "", f"{head}('hf-hub:{repo}', pretrained=True)",
                "# repfusion_zoo.create_model takes the same 'hf-hub:' id"]
        note = f"`{arch}` is timm's own architecture: plain timm loads it."
    else:
        code = ["import repfusion_zoo  # pip install repfusion-zoo; registers '%s' in timm" % arch, "import timm", "",
                f"{head}('hf-hub:{repo}', pretrained=True)"]
        note = (f"`{arch}` is not one of timm's own architectures: `import repfusion_zoo` (pip install repfusion-zoo) "
                "before `timm.create_model`, or the Hub's generic timm snippet fails with an unknown model.")
    return ["## Usage", note, "", "```python", *code, "```"]


def build_model_card(config: dict[str, Any]) -> str:
    """The full ``README.md`` text (front matter + body) for a ``config.json`` dict."""
    card = ModelCard(f"---\n{card_data(config).to_yaml()}\n---\n{card_body(config)}")
    return str(card)
