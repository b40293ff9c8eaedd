"""The teacher-feature cache: a frozen clean-input teacher's features, computed once per
(item, view, time step) and read back by distillation instead of running the teacher.

- `build_feature_cache(teacher, dataset, output_dir, ...)` writes one (`build.py`; the command is
  ``accelerate launch recipes/cache_features.py``);
- `FeatureCache(path).lookup(index, flip, t)` reads it (`store.py`);
- `CacheManifest` / `check_cache_matches(manifest, expected)` say what it holds and whether a run
  may use it (`manifest.py`); `layout.py` is the folder's layout, `fingerprint.py` the teacher's
  and the dataset's identities, `encode.py` the teacher pass.
"""
from __future__ import annotations

from .build import build_feature_cache
from .describe import CacheableTeacher
from .fingerprint import dataset_fingerprint
from .layout import VIEWS, human_bytes, row_bytes
from .manifest import CacheManifest, check_cache_matches, read_manifest
from .store import FeatureCache

__all__ = [
    "CacheableTeacher",
    "FeatureCache", "CacheManifest", "build_feature_cache", "check_cache_matches", "read_manifest",
    "dataset_fingerprint", "row_bytes", "human_bytes", "VIEWS",
]
