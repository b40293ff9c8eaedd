"""``repfusion-zoo prefetch NAME [NAME ...]``: fill the Hugging Face cache ahead of offline use.

For each zoo name (or any timm name with Hub weights, or ``hf-hub:org/repo[@rev]``) it downloads
``config.json`` (when the repo has one) and the safetensors weight into the HF cache, at the
pinned revision, so that later ``create_model(name, pretrained=True)`` works with
``HF_HUB_OFFLINE=1``.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

import timm
from huggingface_hub import snapshot_download
from huggingface_hub.errors import EntryNotFoundError

from ..errors import PretrainedUnavailableError, RepFusionError, UnknownModelError
from ..hub import CONFIG_NAME, WEIGHTS_NAME, guarded_pretrained_load, split_hub_id
from .registry import ZOO, list_models, zoo_info

__all__ = ["prefetch", "resolve_hub_source", "add_parser"]


def resolve_hub_source(name: str) -> tuple[str, str]:
    """``name`` -> (``repo_id@revision`` or ``repo_id``, weight filename); raises for unpublished names."""
    if name.startswith("hf-hub:"):
        return name.removeprefix("hf-hub:"), WEIGHTS_NAME
    if not timm.is_model(name.split(".")[0]):
        close = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.4)
        hint = f" Closest zoo names: {', '.join(close)}." if close else ""
        raise UnknownModelError(
            f"{name!r} is neither a zoo name nor a timm name.{hint} See `repfusion_zoo.list_models()`."
        )
    cfg = timm.models.get_pretrained_cfg(name)
    hf_hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hf_hub_id:
        recipe = zoo_info(name)["repfusion"].get("recipe") if name in ZOO else None
        how = f" Produce it with: {recipe}" if recipe else ""
        raise PretrainedUnavailableError(f"{name!r} has no published Hub weight to prefetch yet.{how}")
    return hf_hub_id, getattr(cfg, "hf_hub_filename", None) or WEIGHTS_NAME


def prefetch(name: str, cache_dir: str | Path | None = None) -> Path:
    """Download the weight (and ``config.json`` if present) of ``name`` into the Hub cache; return the weight path."""
    hf_hub_id, filename = resolve_hub_source(name)
    repo_id, revision = split_hub_id(hf_hub_id)
    cache = None if cache_dir is None else str(cache_dir)

    def download(local_files_only: bool) -> Path:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=local_files_only,
                                   allow_patterns=[CONFIG_NAME, filename])  # config.json where the repo has one
        weight = Path(folder) / filename
        if not weight.is_file():
            raise EntryNotFoundError(f"{repo_id}@{revision or 'main'} has no {filename}")
        return weight

    return guarded_pretrained_load(name, hf_hub_id, download, filename=filename, cache_dir=cache_dir)


def _run(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.names:
        try:
            path = prefetch(name, args.cache_dir)
        except RepFusionError as error:
            failed += 1
            print(f"prefetch {name}: FAILED: {error}", file=sys.stderr)
        else:
            print(f"prefetch {name}: {path}")
    return 1 if failed else 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``prefetch`` to the ``repfusion-zoo`` command."""
    parser = subparsers.add_parser(
        "prefetch",
        help="download zoo weights into the Hugging Face cache for later offline use",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help="zoo names, timm names or hf-hub:org/repo[@rev]")
    parser.add_argument("--cache_dir", default=None, help="Hub cache folder (default: HF_HUB_CACHE)")
    parser.set_defaults(func=_run)
    return parser
