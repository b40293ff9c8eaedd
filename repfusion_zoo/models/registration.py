"""What the student architectures share: the registration that refuses a name timm already has, and
the CIFAR pretrained cfg."""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from timm.models import register_model
from timm.models._registry import _model_entrypoints

from ..errors import RepFusionError

F = TypeVar("F", bound=Callable)

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def cifar_cfg(*, first_conv: str, classifier: str, pool_size: tuple[int, int] = (4, 4), **kwargs: Any) -> dict[str, Any]:
    """The pretrained cfg shared by the CIFAR students: 32 px, CIFAR-10 mean/std, 10 classes."""
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": pool_size,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": first_conv,
        "classifier": classifier,
        "license": "apache-2.0",
        **kwargs,
    }


def register_new_model(fn: F) -> F:
    """`timm.models.register_model`, refusing any name timm (or anyone else) already registered.

    timm silently replaces an entry registered twice, dropping its pretrained cfgs and tags.
    Re-running the same module (``importlib.reload``) re-registers its own names, which is allowed.
    """
    existing = _model_entrypoints.get(fn.__name__)
    if existing is not None and existing.__module__ != fn.__module__:
        raise RepFusionError(
            f"Model name {fn.__name__!r} is already registered in timm by {existing.__module__}; "
            f"registering it from {fn.__module__} would replace it. Rename the repfusion_zoo entry."
        )
    return register_model(fn)
