"""The manifest of a teacher-feature cache and the check that a run may read it.

`CacheManifest` is what ``manifest.json`` holds: which teacher (source, weight files' hash, T, layer,
clean input), which items (dataset spec, split, fingerprint, size, cached indices), which
inputs (image size, channels, normalisation, views, time steps) and how they are stored
(dtype, pooled or spatial, feature shape, shards). `check_cache_matches(manifest, expected)`
compares any of those fields with what a run will ask for and names the first that differs.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import CacheMismatchError, ConfigError, IncompleteCacheError
from .fingerprint import array_sha256
from .layout import BUILD_SPEC, INDICES, MANIFEST, shard_bounds, shard_name

__all__ = ["CacheManifest", "FORMAT_VERSION", "read_manifest", "check_cache_matches", "short_list", "NOT_STORED"]

FORMAT_VERSION = 2  # 2: teacher_sha256 hashes the weight files; num_train_timesteps recorded
#: fields that live in memory only (where the cache was read from, its index array)
NOT_STORED = ("path", "index_array")
#: the cache recipe's flag for each field, for the fix in a mismatch message
FLAGS = {"teacher": "teacher", "layer": "teacher_layer", "dataset": "dataset", "split": "split",
         "image_size": "image_size", "in_chans": "in_chans", "timesteps": "timesteps", "views": "views",
         "dtype": "dtype", "pooled": "pooled", "noise": "teacher_noise"}
#: fields whose difference has no flag to fix: what to do instead
ADVICE = {"teacher_sha256": "rebuild the cache with this teacher (its weights differ from the cached teacher's)",
          "dataset_fingerprint": "rebuild the cache on this dataset (its files differ from the cached ones)",
          "class_map": "rebuild the cache with this run's --teacher_class_map",
          "normalization": "rebuild the cache with this version of repfusion-zoo",
          "format_version": "rebuild the cache with this version of repfusion-zoo"}


@dataclass
class CacheManifest:
    """The fields of ``manifest.json``. Shapes: a cached feature is `feature_shape` =
    ``[C, h, w]`` (spatial) or ``[C]`` (pooled); a shard ``[rows, len(views), len(timesteps), *feature_shape]``."""

    format_version: int
    code_version: str
    teacher: str
    teacher_sha256: str  # of its weight files (repfusion_zoo.teachers.identity.weights_sha256)
    num_train_timesteps: int  # the teacher's T: a run from the cache needs it and never builds the teacher
    layer: str
    noise: bool
    class_conditional: bool
    class_map: list[int] | None
    timesteps: list[int]
    views: list[str]
    dataset: str
    split: str
    dataset_fingerprint: str
    dataset_size: int
    indices: dict[str, Any] | None  # {"file": "indices.npy", "sha256": ..., "count": n}; None = the whole split
    image_size: int
    in_chans: int
    normalization: str
    dtype: str
    pooled: bool
    feature_shape: list[int]
    num_items: int
    shard_rows: int
    created: str
    teacher_info: dict[str, Any] = field(default_factory=dict)  # kind, VAE, conditioning, layer (a record; the weights hash decides)
    path: str | None = field(default=None, compare=False, repr=False)
    index_array: np.ndarray | None = field(default=None, compare=False, repr=False)

    # ------------------------------------------------------------------ storage
    @property
    def shards(self) -> list[str]:
        """The shard file names, in row order."""
        return [shard_name(i) for i in range(len(shard_bounds(self.num_items, self.shard_rows)))]

    def cached_indices(self) -> np.ndarray:
        """``int64[num_items]``: the dataset index of every row."""
        return np.arange(self.num_items, dtype=np.int64) if self.index_array is None else self.index_array

    def to_dict(self) -> dict[str, Any]:
        """The stored fields as JSON-ready values."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in NOT_STORED}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], path: str | Path | None = None) -> CacheManifest:
        names = {f.name for f in dataclasses.fields(cls)} - set(NOT_STORED)
        missing = sorted(names - set(values) - {"teacher_info"})  # caches made before teacher_info have none
        if missing:
            raise IncompleteCacheError(f"the teacher cache manifest at {path} lacks fields {missing}; rebuild the cache")
        manifest = cls(**{k: values[k] for k in names if k in values})
        manifest.path = None if path is None else str(path)
        return manifest


def _read_json(file: Path) -> dict[str, Any]:
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise IncompleteCacheError(f"cannot read {file} ({error}); rerun the same cache command; it resumes") from error


def _missing_shards_message(folder: Path) -> str:
    """What a build in `folder` has finished, from its ``build_spec.json``."""
    spec_file = folder / BUILD_SPEC
    if not spec_file.is_file():
        return "no build was started there"
    spec = _read_json(spec_file)
    names = [shard_name(i) for i in range(len(shard_bounds(spec["num_items"], spec["shard_rows"])))]
    missing = [name for name in names if not (folder / name).is_file()]
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return f"{len(names) - len(missing)} of {len(names)} shards are finished" + (f" (missing: {shown})" if missing else "")


def load_index_array(folder: Path, ref: Mapping[str, Any]) -> np.ndarray:
    """The cached dataset indices (``indices.npy``), checked against the manifest's sha256 and count."""
    file = folder / ref.get("file", INDICES)
    if not file.is_file():
        raise IncompleteCacheError(f"the teacher cache at {folder} lacks {file.name}; rerun the same cache command; it resumes")
    array = np.load(file, allow_pickle=False)
    if array_sha256(array) != ref["sha256"] or len(array) != ref["count"]:
        raise IncompleteCacheError(f"{file} does not match the cache's manifest (sha256/count); rebuild the cache")
    return array.astype(np.int64, copy=False)


def read_manifest(folder: str | Path) -> CacheManifest:
    """The manifest of the finished cache in `folder` (with its index array loaded).

    `IncompleteCacheError` when there is no manifest (an unfinished or killed build, or no cache),
    naming what is finished and the fix.
    """
    folder = Path(folder).expanduser()
    file = folder / MANIFEST
    if not file.is_file():
        raise IncompleteCacheError(
            f"the teacher cache at {folder} is not complete: no {MANIFEST}; {_missing_shards_message(folder)}; "
            "rerun the same cache command (accelerate launch recipes/cache_features.py ... "
            f"--output_dir {folder}); it resumes"
        )
    manifest = CacheManifest.from_dict(_read_json(file), folder)
    if manifest.indices is not None:
        manifest.index_array = load_index_array(folder, manifest.indices)
    return manifest


# ---------------------------------------------------------------------------------- the check
def _plain(value: Any) -> Any:
    """Tuples as lists, numpy scalars as Python values: JSON's view of a value."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def short_list(values: Sequence[Any], limit: int = 10) -> str:
    values = list(values)
    if len(values) <= limit:
        return str(values)
    return f"{values[:limit]} and {len(values) - limit} more"


def _where(manifest: CacheManifest) -> str:
    return f"the teacher cache at {manifest.path or '(in memory)'}"


def _fix(name: str, run_value: Any) -> str:
    if name in FLAGS:
        shown = ",".join(map(str, run_value)) if isinstance(run_value, list) else run_value
        return f"rebuild the cache with --{FLAGS[name]} {shown} or use the cache's {name}"
    return ADVICE.get(name, f"rebuild the cache with this run's {name}")


def _check_timesteps(manifest: CacheManifest, wanted: Any) -> None:
    outside = sorted(set(int(t) for t in wanted) - set(manifest.timesteps))
    if outside:
        raise CacheMismatchError(
            f"{_where(manifest)} holds timesteps {short_list(manifest.timesteps)} but this run uses t={short_list(outside)} "
            "outside that set; rebuild the cache with --timesteps covering them or give the run --timesteps within the cache's set"
        )


def _check_views(manifest: CacheManifest, wanted: Any) -> None:
    missing = [v for v in wanted if v not in manifest.views]
    if missing:
        raise CacheMismatchError(
            f"{_where(manifest)} was built with views={manifest.views} but this run needs views={list(wanted)} "
            f"({missing} not cached: the run flips images); rebuild the cache with --views identity,hflip "
            "or run without flips (--augment false)"
        )


def _check_indices(manifest: CacheManifest, wanted: Any) -> None:
    wanted = np.arange(manifest.dataset_size) if wanted is None else np.asarray(wanted, dtype=np.int64).reshape(-1)
    missing = np.setdiff1d(wanted, manifest.cached_indices())
    if len(missing):
        raise CacheMismatchError(
            f"{_where(manifest)} holds {manifest.num_items} of the split's {manifest.dataset_size} items but this run "
            f"uses {len(missing)} items outside them (dataset indices {short_list(missing.tolist())}); rebuild the cache "
            "for the run's items (--images_per_class 0 for all, or the run's images_per_class and subset_seed)"
        )


SPECIAL = {"timesteps": _check_timesteps, "views": _check_views, "indices": _check_indices}


def check_cache_matches(manifest: CacheManifest, expected: Mapping[str, Any]) -> None:
    """Raise `CacheMismatchError` naming the first field of `expected` whose value the cache does not serve.

    `expected` maps manifest field names to the run's values. Equality, except: ``timesteps``
    (the run's set must be a subset of the cache's), ``views`` (every view the run needs must be
    cached: ``["identity", "hflip"]`` when it flips), ``indices`` (the dataset indices the run
    uses, None = the whole split: all must be cached).
    """
    names = {f.name for f in dataclasses.fields(CacheManifest)} - set(NOT_STORED)
    unknown = sorted(set(expected) - names)
    if unknown:
        raise ConfigError(f"check_cache_matches got unknown field(s) {unknown}; manifest fields are {sorted(names)}")
    for name, run_value in expected.items():
        if name in SPECIAL:
            SPECIAL[name](manifest, run_value)
            continue
        cache_value = _plain(getattr(manifest, name))
        run_value = _plain(run_value)
        if cache_value != run_value:
            raise CacheMismatchError(
                f"{_where(manifest)} was built with {name}={cache_value!r} but this run uses {name}={run_value!r}; "
                f"{_fix(name, run_value)}"
            )
