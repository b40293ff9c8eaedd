"""A diffusers UNet2DModel (and its own DDPMScheduler) from a local folder or a Hub repo: a pipeline
folder (``unet/`` + ``scheduler/``, as `DDPMPipeline.save_pretrained` writes), a bare UNet folder, or
the legacy ``google/ddpm-*`` layout with the UNet config at the root. Safetensors only; a Hub
download fails fast without network and falls back to the cache.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from diffusers import DDPMScheduler, UNet2DModel
from huggingface_hub import snapshot_download

from ..errors import NoNetworkError, TeacherNotFoundError, UnsafeWeightsError
from ..hub import guarded_pretrained_load, split_hub_id

__all__ = ["load_unet", "teacher_root", "WEIGHTS"]

WEIGHTS = "diffusion_pytorch_model.safetensors"


def _is_unet_folder(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("_class_name", "UNet2DModel") == "UNet2DModel"
    except json.JSONDecodeError:
        return False


def _unet_folder(root: Path) -> Path:
    """The folder holding the UNet's config.json: ``root/unet`` (pipeline) or ``root`` (bare / legacy)."""
    if _is_unet_folder(root / "unet"):
        return root / "unet"
    if _is_unet_folder(root):
        return root
    raise TeacherNotFoundError(
        f"no diffusers UNet2DModel in {root}: expected either a pipeline folder "
        f"(model_index.json + unet/config.json + unet/{WEIGHTS}, as DDPMPipeline.save_pretrained "
        f"writes) or a UNet folder (config.json with _class_name UNet2DModel + {WEIGHTS})"
    )


def _check_weights(unet_dir: Path) -> None:
    if (unet_dir / WEIGHTS).is_file():
        return
    pickles = sorted(p.name for p in unet_dir.glob("*.bin")) + sorted(p.name for p in unet_dir.glob("*.pt*"))
    if pickles:
        raise UnsafeWeightsError(
            f"{unet_dir} holds only pickled weights ({', '.join(pickles)}); repfusion-zoo reads only "
            f"safetensors. Convert once where you trust the file: "
            f"UNet2DModel.from_pretrained(folder, use_safetensors=False).save_pretrained(folder)"
        )
    raise TeacherNotFoundError(f"{unet_dir} has config.json but no {WEIGHTS}: expected the UNet's weights there")


def _scheduler_from(root: Path, unet_dir: Path) -> DDPMScheduler | None:
    """The model's own DDPMScheduler: ``root/scheduler/`` or ``scheduler_config.json`` beside the UNet; else None."""
    for folder in (root / "scheduler", root, unet_dir):
        if (folder / "scheduler_config.json").is_file():
            return DDPMScheduler.from_pretrained(folder)
    return None


#: the files of a teacher repo on the Hub: configs, the safetensors weights of every component (never a
#: pickle), the stored conditioning of a latent teacher, a tokenizer's files
HUB_PATTERNS = ["*.json", "*.safetensors", "*/*.safetensors", "*.txt", "*/*.txt", "*/*.model"]
#: what a teacher never needs: half-precision and non-EMA variants, a safety checker, pickles
HUB_IGNORE = ["*.fp16.*", "*non_ema*", "*.ema.*", "safety_checker/*", "feature_extractor/*", "*.bin", "*.ckpt", "*.pt", "*.pth"]


def _download(source: str) -> Path:
    """A Hub repo's (``org/name[@revision]``) teacher files (`HUB_PATTERNS`) in the local cache.

    Fails fast without network (`repfusion_zoo.hub.network.guarded_pretrained_load`) and falls
    back to the cache; ``HF_HUB_OFFLINE=1`` with a filled cache makes no request.
    """
    repo_id, revision = split_hub_id(source)
    patterns = HUB_PATTERNS

    def fetch(local_files_only: bool) -> str:
        return snapshot_download(repo_id, revision=revision, allow_patterns=patterns, ignore_patterns=HUB_IGNORE,
                                 local_files_only=local_files_only)

    try:
        return Path(guarded_pretrained_load(repo_id, source, fetch, filename="config.json"))
    except NoNetworkError as error:
        try:  # a pipeline repo has no root config.json: the cache may still hold it
            return Path(fetch(True))
        except Exception:
            pass
        raise NoNetworkError(
            f"cannot fetch the diffusion teacher {source!r} from the Hugging Face Hub and it is not in the cache. "
            f"Ways out: a local folder (a pipeline folder, e.g. unet/ + scheduler/, or a UNet folder with config.json + "
            f"{WEIGHTS}); or fill the cache where there is network and set HF_HUB_OFFLINE=1. ({error})"
        ) from error


def teacher_root(source: str | Path) -> Path:
    """The local folder of a teacher: ``source`` itself, or a Hub id's (``org/name[@revision]``) files in the cache."""
    path = Path(source).expanduser()
    if path.exists():
        root = path
    elif isinstance(source, str) and re.fullmatch(r"[\w.-]+/[\w.-]+(@[\w./-]+)?", source.removeprefix("hf-hub:")):
        root = _download(source.removeprefix("hf-hub:"))
    else:
        raise TeacherNotFoundError(
            f"diffusion teacher {str(source)!r} is neither an existing folder nor a Hub id 'org/name'"
        )
    if not root.is_dir():
        raise TeacherNotFoundError(f"diffusion teacher {root} is a file; expected a folder (pipeline or UNet folder)")
    return root


def load_unet(source: str | Path) -> tuple[UNet2DModel, DDPMScheduler | None]:
    """(UNet2DModel, DDPMScheduler | None) from a local folder or a Hub id ``org/name[@revision]``."""
    root = teacher_root(source)
    unet_dir = _unet_folder(root)
    _check_weights(unet_dir)
    unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=True)
    return unet, _scheduler_from(root, unet_dir)
