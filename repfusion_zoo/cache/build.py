"""Writing a teacher-feature cache: `build_feature_cache(teacher, dataset, output_dir, ...)`.

The order of a build (every step safe to kill; rerunning the same call resumes):
1. describe the cache (`describe.describe_cache`): teacher hash, dataset fingerprint, shapes;
2. the main process checks the folder: a finished cache of the same settings is returned as it
   is; one of other settings (its ``manifest.json`` or ``build_spec.json``) is refused; a new
   folder gets ``indices.npy`` (a subset) and ``build_spec.json``, each written atomically;
3. the main process prints the store's size and refuses (`DiskSpaceError`) when the shards
   still to write do not fit on the disk; dead writers' temp files are removed first;
4. every process writes its share of the unfinished shards (round-robin): a shard is a `.npy`
   memmap filled under a hidden temp name, flushed, fsynced, then renamed; each image is
   decoded once and run for every (view, t) in full batches (`encode.encode_views`);
5. once every process is done, the main process writes ``manifest.json`` (atomically).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..atomic import recover, replace_file, replace_text
from ..distributed import on_main, process_state
from ..errors import CacheMismatchError, ConfigError, DiskSpaceError, IncompleteCacheError
from .describe import indices_to_cache, describe_cache, finished_now
from .encode import encode_views
from .layout import (BUILD_SPEC, INDICES, MANIFEST, VIEWS, auto_shard_rows, human_bytes, images_per_chunk,
                     row_bytes, shard_bounds, shard_name)
from .manifest import CacheManifest

__all__ = ["build_feature_cache", "BUILD_FIELDS"]

#: manifest fields a resumed build must share with the one that started the folder
BUILD_FIELDS = tuple(k for k in CacheManifest.__dataclass_fields__ if k not in ("created", "code_version", "path", "index_array"))


# ------------------------------------------------------------------------------ the folder
def _first_difference(theirs: dict[str, Any], ours: dict[str, Any]) -> str | None:
    for name in BUILD_FIELDS:
        if theirs.get(name) != ours.get(name):
            return f"{name}={theirs.get(name)!r} there but {name}={ours.get(name)!r} now"
    return None


def _save_npy(path: Path, array: np.ndarray) -> None:
    """`np.save` through `replace_file` (a temp file beside `path`, fsynced, renamed)."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)

    replace_file(path, write)


def started_shard_rows(folder: Path) -> int:
    """The shard size of a build already started in `folder` (0 if none): a resume keeps it."""
    spec_file = folder / BUILD_SPEC
    return int(json.loads(spec_file.read_text()).get("shard_rows", 0)) if spec_file.is_file() else 0


def prepare_folder(folder: Path, spec: CacheManifest) -> str:
    """"complete" (a finished cache of these settings, every shard there), "resume" or "fresh";
    refuses a folder holding another build."""
    folder.mkdir(parents=True, exist_ok=True)
    ours = json.loads(spec.to_json())
    for name, state in ((MANIFEST, "complete"), (BUILD_SPEC, "resume")):
        if (folder / name).is_file():
            difference = _first_difference(json.loads((folder / name).read_text()), ours)
            if difference:
                raise CacheMismatchError(
                    f"{folder} holds another teacher cache ({name}: {difference}); choose another --output_dir, "
                    f"or delete {folder} to rebuild it with these settings"
                )
            missing = [shard for shard in spec.shards if not (folder / shard).is_file()]
            return "resume" if missing else state
    if any(folder.glob("shard-*.npy")):
        raise CacheMismatchError(f"{folder} holds shard files but no {BUILD_SPEC}: not a build of these settings; "
                                 "choose another --output_dir or delete that folder")
    if spec.index_array is not None:
        _save_npy(folder / INDICES, spec.index_array)
    replace_text(folder / BUILD_SPEC, spec.to_json())
    return "fresh"


def plan_shards(folder: Path, spec: CacheManifest, say: Callable[..., None]) -> list[int]:
    """The unfinished shards; prints the store's size first, `DiskSpaceError` when they do not fit."""
    bounds = shard_bounds(spec.num_items, spec.shard_rows)
    per_row = row_bytes(len(spec.views), len(spec.timesteps), spec.feature_shape, spec.dtype)
    todo = [i for i in range(len(bounds)) if not (folder / shard_name(i)).is_file()]
    for i in todo:
        recover(folder / shard_name(i))  # temp files of killed writers
    need = sum(bounds[i][1] - bounds[i][0] for i in todo) * per_row
    free = shutil.disk_usage(folder).free
    say(f"[cache] {folder}: {spec.num_items} items x {len(spec.views)} views x {len(spec.timesteps)} t x "
        f"{spec.feature_shape} {spec.dtype} = {human_bytes(spec.num_items * per_row)} in {len(bounds)} shards; "
        f"{len(bounds) - len(todo)} finished, {human_bytes(need)} to write, {human_bytes(free)} free", flush=True)
    if need > free:
        raise DiskSpaceError(
            f"the teacher cache needs {human_bytes(need)} more in {folder} but only {human_bytes(free)} is free there; "
            "free space, choose another --output_dir, or shrink the cache (fewer --timesteps, --pooled true, --dtype float16)"
        )
    return todo


def finish(folder: Path, spec: CacheManifest, say: Callable[..., None]) -> None:
    """Write ``manifest.json`` once every shard exists."""
    missing = [name for name in spec.shards if not (folder / name).is_file()]
    if missing:
        raise IncompleteCacheError(f"shards {missing[:5]} of {folder} were not written; rerun the same cache command; it resumes")
    spec.created = finished_now()
    replace_text(folder / MANIFEST, spec.to_json())
    say(f"[cache] complete: {folder / MANIFEST}", flush=True)


# ------------------------------------------------------------------------------ the shards
class ShardWriter:
    """Fills shard files: decoded images in chunks, every (view, t) through the teacher, into a memmap."""

    def __init__(self, teacher: nn.Module, dataset: Any, folder: Path, spec: CacheManifest, *,
                 batch_size: int, chunk: int, num_workers: int, device: torch.device) -> None:
        self.teacher, self.dataset, self.folder, self.spec = teacher, dataset, folder, spec
        self.batch_size, self.chunk, self.num_workers, self.device = batch_size, chunk, num_workers, device
        self.bounds = shard_bounds(spec.num_items, spec.shard_rows)
        self.indices = spec.cached_indices()
        self.per_image = len(spec.views) * len(spec.timesteps)
        self.torch_dtype = getattr(torch, spec.dtype)

    def rows(self, shard: int) -> int:
        start, end = self.bounds[shard]
        return end - start

    def _loader(self, shard: int) -> DataLoader:
        start, end = self.bounds[shard]
        items = Subset(self.dataset, self.indices[start:end].tolist())
        return DataLoader(items, batch_size=self.chunk, shuffle=False, num_workers=self.num_workers)

    def _fill(self, flat: np.ndarray, shard: int, progress: Any) -> None:
        """Write the features of `shard`'s rows into `flat` ``[rows * V * T, *feature_shape]``."""
        offset = 0
        for batch in self._loader(shard):
            images = batch["image"].to(self.device)
            labels = torch.as_tensor(batch["label"]).to(self.device)
            for k, features in encode_views(self.teacher, images, labels, self.spec.timesteps, num_views=len(self.spec.views),
                                            batch_size=self.batch_size, pooled=self.spec.pooled):
                flat[offset + k: offset + k + len(features)] = features.to(self.torch_dtype).cpu().numpy()
            offset += len(images) * self.per_image
            progress.update(len(images))

    def write(self, shard: int, progress: Any) -> None:
        """Shard `shard`, written under a temp name and renamed when finished (never half under its name)."""
        shape = (self.rows(shard), len(self.spec.views), len(self.spec.timesteps), *self.spec.feature_shape)

        def fill(tmp: Path) -> None:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.spec.dtype, shape=shape)
            self._fill(array.reshape(-1, *self.spec.feature_shape), shard, progress)
            array.flush()
            del array

        replace_file(self.folder / shard_name(shard), fill)


# ------------------------------------------------------------------------------ the build
def build_feature_cache(
    teacher: nn.Module,
    dataset: Any,
    output_dir: str | Path,
    *,
    timesteps: Any,
    dataset_spec: str,
    split: str,
    indices: Sequence[int] | np.ndarray | None = None,
    views: Sequence[str] = VIEWS,
    dtype: str = "float16",
    pooled: bool = False,
    batch_size: int = 256,
    teacher_source: str | None = None,
    state: Any = None,
    shard_rows: int = 0,
    num_workers: int = 0,
) -> Path:
    """Write the teacher features of `dataset`'s items (`indices`, default all) for every view and
    time step into a cache folder `output_dir`; returns it. Resumes an unfinished build of the
    same settings; returns a finished one at once. See the module doc for the steps.

    `teacher`: a `DiffusionTeacher` (clean input); `dataset`: built by `build_dataset(...,
    augment=False)`, items ``{"image": [C, H, W] in [0, 1], "label": int}``; `timesteps`: 'all',
    'start:stop:step', '0,10,50' or ints; `views`: ``("identity", "hflip")`` or ``("identity",)``;
    `dtype`: float16 | float32; `pooled`: store the spatial mean ``[C]`` instead of ``[C, h, w]``;
    `batch_size`: teacher inputs per forward; `state`: an accelerate `PartialState` (default: a new
    one; the shards are split over its processes); `shard_rows`: rows per shard file (0 = about
    128 MiB); `num_workers`: data-loader workers decoding images.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    state = state or process_state()
    folder = Path(output_dir).expanduser()
    teacher = teacher.to(state.device)
    spec = describe_cache(teacher, dataset, timesteps=timesteps, dataset_spec=dataset_spec, split=split,
                          indices=indices_to_cache(indices, len(dataset)), views=views, dtype=dtype, pooled=pooled,
                          teacher_source=teacher_source)
    per_image = len(spec.views) * len(spec.timesteps)
    chunk = images_per_chunk(batch_size, per_image)
    per_row = row_bytes(len(spec.views), len(spec.timesteps), spec.feature_shape, dtype)
    spec.shard_rows = (int(shard_rows) if shard_rows > 0 else started_shard_rows(folder)
                       or auto_shard_rows(spec.num_items, per_row, per_image, chunk))
    if on_main(state, lambda: prepare_folder(folder, spec)) == "complete":
        state.print(f"[cache] {folder} is already complete", flush=True)
        return folder
    todo = on_main(state, lambda: plan_shards(folder, spec, state.print))
    mine = todo[state.process_index::state.num_processes]
    writer = ShardWriter(teacher, dataset, folder, spec, batch_size=batch_size, chunk=chunk,
                         num_workers=num_workers, device=state.device)
    _write_all(writer, mine, len(todo), state)
    state.wait_for_everyone()
    on_main(state, lambda: finish(folder, spec, state.print))
    return folder


def _write_all(writer: ShardWriter, mine: list[int], num_todo: int, state: Any) -> None:
    """This process's shards, with a progress bar (images) on the main process."""
    share = "" if state.num_processes == 1 else f" ({len(mine)} of {num_todo} shards here)"
    with tqdm(total=sum(writer.rows(i) for i in mine), desc=f"teacher cache{share}", unit="img",
              disable=not state.is_main_process, dynamic_ncols=True) as progress:
        for shard in mine:
            writer.write(shard, progress)
