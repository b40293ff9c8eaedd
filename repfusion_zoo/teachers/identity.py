"""A teacher's identity: the hash of the weight files it is read from.

A feature cache records it (``teacher_sha256`` of its manifest) and a run from the cache compares
it with the hash of the teacher folder it names, so the run never has to build the teacher (a
Stable Diffusion UNet takes seconds and gigabytes to build; its files hash in a few seconds). The
weight files are the ones a teacher download fetches (`unet_files.HUB_PATTERNS` minus
`HUB_IGNORE`): every ``*.safetensors`` at the folder's root and in its component folders (unet/,
vae/, transformer/, text_encoder/, conditioning.safetensors), never a half-precision or non-EMA
variant.
"""
from __future__ import annotations

import hashlib
from fnmatch import fnmatch
from pathlib import Path

from ..errors import ConfigError, TeacherNotFoundError
from .unet_files import HUB_IGNORE, teacher_root

__all__ = ["weight_files", "weights_sha256", "source_weights_sha256"]

#: where a teacher folder's weights lie (the safetensors patterns of `unet_files.HUB_PATTERNS`)
WEIGHT_PATTERNS = ("*.safetensors", "*/*.safetensors")
_CHUNK = 1 << 24


def weight_files(root: Path) -> list[Path]:
    """The weight files of the teacher folder ``root``, sorted by their path relative to it."""
    files = {p for pattern in WEIGHT_PATTERNS for p in root.glob(pattern) if p.is_file()}
    kept = [p for p in files if not any(fnmatch(p.relative_to(root).as_posix(), skip) for skip in HUB_IGNORE)]
    return sorted(kept, key=lambda p: p.relative_to(root).as_posix())


def weights_sha256(root: Path | None, source: str = "") -> str:
    """sha256 over (relative path, size, bytes) of every weight file of ``root``; a teacher built
    in memory (``root`` None) has no files to name it, so it cannot back a feature cache."""
    if root is None:
        raise ConfigError(f"the teacher {source or '(built in memory)'} was not read from a folder: a feature cache names "
                          "its teacher by the weight files' hash. Save it (save_pretrained) and load it from that folder")
    files = weight_files(root)
    if not files:
        raise TeacherNotFoundError(f"teacher folder {root} holds no *.safetensors weights")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}|{path.stat().st_size}|".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def source_weights_sha256(source: str) -> str:
    """`weights_sha256` of a teacher's folder or Hub id (its files in the Hub cache), without building it."""
    return weights_sha256(teacher_root(source), source)
