"""Feature quality of a teacher over time steps (the paper's Section 3.2, Figure 2).

For each t: the teacher's features of a labelled image set, global-average-pooled to
``[N, C]`` and centred, give
- ``singular_values``: the singular values of the centred ``[N, C]`` matrix divided by
  ``sqrt(N)`` (the standard deviations along the principal directions), largest first;
- ``effective_rank``: Roy & Vetterli (2007), ``exp(H(p))`` with ``p = s / sum(s)``, between 1
  and ``min(N, C)``;
- ``linear_probe_accuracy``: scikit-learn ``LogisticRegression`` on standardised pooled
  features, trained on a seeded stratified split and scored on the held-out part.

``repfusion-zoo probe --teacher PATH_OR_ID --dataset SPEC --timesteps 0,10,100 --output_dir DIR`` writes
``probe.json`` and ``probe.png`` into ``DIR``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError, MissingExtraError
from ..data import build_dataset
from ..data.subsets import per_class_subset
from ..normalize import minus_one_one
from ..teachers import load_teacher
from ..visualize import pyplot

__all__ = ["probe_timesteps", "pooled_features", "spectrum", "fit_probe", "linear_probe_accuracy", "load_probe_images",
           "write_probe", "add_parser"]


@torch.no_grad()
def pooled_features(
    teacher: nn.Module, images: torch.Tensor, t: int, *, batch_size: int = 64, class_labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``images [N, C, H, W]`` (what the teacher expects) at time step ``t`` -> pooled features ``[N, C']``."""
    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    chunks = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        steps = torch.full((len(x),), int(t), dtype=torch.long, device=device)
        labels = None if class_labels is None else class_labels[start : start + batch_size].to(device)
        feature = teacher(x, steps, labels)
        chunks.append(feature.float().mean(dim=(-2, -1)).cpu() if feature.dim() == 4 else feature.float().cpu())
    return torch.cat(chunks)


def spectrum(features: torch.Tensor) -> tuple[list[float], float]:
    """``features [N, C]`` -> (singular values of the centred matrix / sqrt(N), effective rank)."""
    centred = features.double() - features.double().mean(dim=0, keepdim=True)
    values = torch.linalg.svdvals(centred) / math.sqrt(max(len(features), 1))
    total = float(values.sum())
    if total <= 0:
        return values.tolist(), 1.0
    p = values / total
    p = p[p > 0]
    return values.tolist(), float(torch.exp(-(p * p.log()).sum()))


def fit_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
              test_labels: torch.Tensor) -> float:
    """Accuracy on ``test_features [M, C]`` of a logistic regression (on standardised features) fit to
    ``train_features [N, C]``, ``train_labels LongTensor[N]``."""
    try:
        from sklearn.linear_model import LogisticRegression  # optional: the recipes extra (the probe's classifier)
        from sklearn.pipeline import make_pipeline  # optional: as above
        from sklearn.preprocessing import StandardScaler  # optional: as above
    except ImportError as error:
        raise MissingExtraError.of("scikit-learn", "the linear probe") from error

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_features.double().numpy(), train_labels.numpy())
    return float(probe.score(test_features.double().numpy(), test_labels.numpy()))


def linear_probe_accuracy(features: torch.Tensor, labels: torch.Tensor, *, test_fraction: float = 0.3, seed: int = 0) -> float:
    """Held-out accuracy of a logistic-regression probe on ``features [N, C]`` (seeded stratified split)."""
    try:
        from sklearn.model_selection import train_test_split  # optional: the recipes extra
    except ImportError as error:
        raise MissingExtraError.of("scikit-learn", "the linear probe") from error

    counts = torch.bincount(labels - labels.min())
    stratify = labels.numpy() if int(counts[counts > 0].min()) >= 2 else None
    rows = torch.arange(len(labels)).numpy()
    train, test = train_test_split(rows, test_size=test_fraction, random_state=seed, stratify=stratify)
    train, test = torch.as_tensor(train), torch.as_tensor(test)
    return fit_probe(features[train], labels[train], features[test], labels[test])


def probe_timesteps(
    teacher: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    timesteps: Sequence[int],
    *,
    batch_size: int = 64,
    test_fraction: float = 0.3,
    seed: int = 0,
    class_labels: torch.Tensor | None = None,
    train: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Per t in ``timesteps``: singular values, effective rank and linear-probe accuracy.

    ``images [N, C, H, W]`` are what the teacher expects ([-1, 1] for a diffusion teacher),
    ``labels LongTensor[N]`` the classes the probe predicts. ``train``: (images ``[M, C, H, W]``,
    labels ``[M]``) the probe is fit on, scored on all of ``images``; None = fit on a seeded
    stratified ``1 - test_fraction`` of ``images`` and score on the rest. ``class_labels`` is passed
    to a class-conditional teacher (mind that conditioning on the probed label leaks it).
    """
    labels = torch.as_tensor(labels).long()
    if images.dim() != 4 or len(images) != len(labels):
        raise InputError(f"probe needs images [N, C, H, W] and labels [N], got {tuple(images.shape)} and {tuple(labels.shape)}")
    if len(labels.unique()) < 2:
        raise InputError("the linear probe needs at least 2 classes among the labels")
    rows = []
    for t in timesteps:
        features = pooled_features(teacher, images, int(t), batch_size=batch_size, class_labels=class_labels)
        values, rank = spectrum(features)
        if train is None:
            accuracy = linear_probe_accuracy(features, labels, test_fraction=test_fraction, seed=seed)
        else:
            fit_on = pooled_features(teacher, train[0], int(t), batch_size=batch_size)
            accuracy = fit_probe(fit_on, torch.as_tensor(train[1]).long(), features, labels)
        rows.append({"t": int(t), "effective_rank": rank, "linear_probe_accuracy": accuracy, "singular_values": values})
    return {
        "num_samples": len(labels),
        "num_train": None if train is None else len(train[1]),
        "num_classes": int(len(labels.unique())),
        "feature_dim": int(features.shape[1]),
        "layer": teacher.layer,
        "test_fraction": None if train is not None else test_fraction,
        "seed": seed,
        "singular_values_note": "of the centred, globally average-pooled [N, C] features, divided by sqrt(N)",
        "results": rows,
    }


def _plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()

    rows = result["results"]
    steps = [row["t"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    for row in rows:
        values = [v for v in row["singular_values"] if v > 0]
        axes[0].semilogy(range(1, len(values) + 1), values, label=f"t={row['t']}")
    axes[0].set(title="singular values (pooled, centred)", xlabel="index")
    axes[0].legend(fontsize="small")
    axes[1].plot(steps, [row["effective_rank"] for row in rows], marker="o")
    axes[1].set(title="effective rank", xlabel="t")
    axes[2].plot(steps, [100 * row["linear_probe_accuracy"] for row in rows], marker="o")
    axes[2].set(title="linear-probe accuracy (%)", xlabel="t")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_probe(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``probe.json`` and ``probe.png`` in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "probe.json", out_dir / "probe.png"
    json_path.write_text(json.dumps(result, indent=2))
    _plot(result, png_path)
    return json_path, png_path


# ---------------------------------------------------------------------------- console
def _timesteps(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--timesteps takes comma-separated integers, e.g. 0,10,100; got {text!r}") from None


def load_probe_images(spec: str, *, image_size: int, in_chans: int, split: str, num_samples: int,
                      seed: int, per_class: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` seeded-random images of ``split`` (un-augmented, in [-1, 1]) ``[N, C, H, W]`` and their
    labels ``[N]``; ``per_class``: the same number from each class (``num_samples // classes``: a label budget)."""
    dataset = build_dataset(spec, split=split, image_size=image_size, in_chans=in_chans)
    if per_class:
        order = per_class_subset(dataset.labels, num_samples // dataset.num_classes, seed)
    else:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_samples].tolist()
    items = [dataset[int(i)] for i in order]
    images = torch.stack([item["image"] for item in items])
    labels = torch.tensor([int(item["label"]) for item in items])
    return minus_one_one(images), labels


def run(args: argparse.Namespace) -> int:
    """`repfusion-zoo probe`: teacher + data -> probe.json, probe.png."""
    teacher = load_teacher(args.teacher, layer=args.layer, noise=args.noise)
    size = {"image_size": teacher.sample_size[0], "in_chans": teacher.in_channels}
    images, labels = load_probe_images(args.dataset, split=args.split, num_samples=args.num_samples, seed=args.seed, **size)
    train = None
    if args.train_split:
        train = load_probe_images(args.dataset, split=args.train_split, num_samples=args.num_train, seed=args.seed,
                                  per_class=True, **size)
    result = probe_timesteps(teacher, images, labels, args.timesteps, batch_size=args.batch_size, seed=args.seed, train=train)
    result.update(teacher=str(args.teacher), data=args.dataset, split=args.split, train_split=args.train_split or None)
    json_path, png_path = write_probe(result, args.output_dir)
    for row in result["results"]:
        print(f"t={row['t']:5d}  effective rank {row['effective_rank']:8.2f}  linear probe {100 * row['linear_probe_accuracy']:6.2f}%")
    print(f"wrote {json_path} and {png_path}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "probe",
        help="feature quality of a diffusion teacher over time steps (singular values, effective rank, linear probe)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--teacher", required=True, help="diffusers UNet2DModel: local folder (pipeline or UNet folder) or Hub id")
    parser.add_argument("--dataset", required=True, help="dataset spec: 'digits', an image folder path, 'imagefolder:<path>' or 'hf:<id>'")
    parser.add_argument("--timesteps", required=True, type=_timesteps, help="comma-separated time steps, e.g. 0,10,100,500")
    parser.add_argument("--output_dir", required=True, help="output folder for probe.json and probe.png")
    parser.add_argument("--num_samples", type=int, default=500, help="images probed (default 500)")
    parser.add_argument("--split", default="test", help="dataset split the probe is scored on (default test)")
    parser.add_argument("--train_split", default="", help="fit the probe on --num_train images of this split (e.g. train) "
                        "and score it on all --num_samples; default: fit on 70%% of the --num_samples and score on the rest")
    parser.add_argument("--num_train", type=int, default=5000, help="images the probe is fit on with --train_split, the same "
                        "number from each class (default 5000: 500 a class on CIFAR-10)")
    parser.add_argument("--layer", default="mid", help="teacher layer: mid, mid_resnet2_conv2, down.{i} or up.{i} (the decoder; default mid)")
    parser.add_argument("--noise", action="store_true", help="feed x_t (noised with the model's scheduler) instead of the clean image")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample choice and the probe's train/test split")
    parser.set_defaults(func=run)
    return parser
