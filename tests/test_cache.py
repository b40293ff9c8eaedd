"""The teacher-feature cache: equal to the online teacher, resumable after kill -9, the same on
1 and 2 processes, refusing what does not match, the disk check and the size print.

Exactness: the cache computes exactly the teacher's function. Built with batch_size=1 (one
teacher input per forward, as the reference below) an fp32 cache equals the online teacher bit
for bit. At larger batches CPU kernels give a sample results that differ in the last bits with
the batch around it (measured: up to ~1e-5 between a sample run alone and in a batch of 24):
the online teacher differs from itself that much, so those builds are compared within it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel

from _recipes_common import accelerate_cmd, run
from repfusion_zoo.cache import FeatureCache, build_feature_cache, check_cache_matches, dataset_fingerprint
from repfusion_zoo.cache.layout import row_bytes
from repfusion_zoo.data import build_dataset
from repfusion_zoo.errors import (CacheMismatchError, ConfigError, DiskSpaceError, IncompleteCacheError, InputError,
                                  RepFusionError)
from repfusion_zoo.teachers import DiffusionTeacher, weights_sha256
from repfusion_zoo.teachers.identity import source_weights_sha256

T_SET = [0, 10, 500]
#: batch-composition noise of the fp32 teacher on this CPU (see the module doc)
BATCH_ATOL = 5e-5


def tiny_unet(**kwargs) -> UNet2DModel:
    torch.manual_seed(0)
    cfg = dict(sample_size=8, block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
               up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8)
    cfg.update(kwargs)
    return UNet2DModel(**cfg).eval()


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cache_teacher") / "unet"
    tiny_unet().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def teacher(teacher_dir) -> DiffusionTeacher:
    return DiffusionTeacher(str(teacher_dir))


@pytest.fixture(scope="module")
def digits8():
    return build_dataset("digits", split="train", image_size=8, in_chans=3)


def build(teacher, dataset, out, **kwargs) -> Path:
    settings = dict(timesteps=T_SET, dataset_spec="digits", split="train", batch_size=6, shard_rows=4)
    settings.update(kwargs)
    return build_feature_cache(teacher, dataset, out, **settings)


def online(teacher, dataset, index, flip, t, conditional: bool = False) -> torch.Tensor:
    """The online teacher, one input at a time: ``teacher(image * 2 - 1, flipped when flip, t)``."""
    out = []
    for i, f, step in zip(index.tolist(), flip.tolist(), t.tolist()):
        x = dataset[i]["image"][None] * 2 - 1
        labels = torch.tensor([dataset[i]["label"]]) if conditional else None
        out.append(teacher(x.flip(-1) if f else x, torch.tensor([step]), class_labels=labels))
    return torch.cat(out)


QUERY = dict(index=torch.tensor([2, 0, 14, 6, 2, 8]), flip=torch.tensor([False, True, True, False, True, False]),
             t=torch.tensor([0, 10, 500, 500, 10, 0]))


# ------------------------------------------------------------------------------ equivalence
def test_fp32_cache_equals_online_teacher_exactly(tmp_path, teacher, digits8, one_thread):
    subset = list(range(0, 16, 2))  # dataset indices 0, 2, ..., 14
    cache = FeatureCache(build(teacher, digits8, tmp_path / "c", indices=subset, dtype="float32", batch_size=1))
    assert len(cache) == 8 and cache.timesteps == T_SET and cache.feature_shape == (16, 4, 4)
    got = cache.lookup(**QUERY)
    assert got.dtype == torch.float32 and got.shape == (6, 16, 4, 4)
    assert torch.equal(got, online(teacher, digits8, **QUERY))


def test_batched_fp32_and_fp16_caches_within_their_rounding(tmp_path, teacher, digits8, one_thread):
    subset = list(range(0, 16, 2))
    reference = online(teacher, digits8, **QUERY)
    fp32 = FeatureCache(build(teacher, digits8, tmp_path / "fp32", indices=subset, dtype="float32", batch_size=12))
    torch.testing.assert_close(fp32.lookup(**QUERY), reference, rtol=0, atol=BATCH_ATOL)
    exact16 = FeatureCache(build(teacher, digits8, tmp_path / "fp16_b1", indices=subset, batch_size=1))
    assert exact16.manifest.dtype == "float16"
    assert torch.equal(exact16.lookup(**QUERY), reference.half().float())  # fp16 rounding of the same values
    fp16 = FeatureCache(build(teacher, digits8, tmp_path / "fp16", indices=subset, batch_size=12))
    torch.testing.assert_close(fp16.lookup(**QUERY), reference, rtol=2**-10, atol=BATCH_ATOL)


def test_pooled_cache_is_the_spatial_mean(tmp_path, teacher, digits8, one_thread):
    spatial = FeatureCache(build(teacher, digits8, tmp_path / "s", indices=range(12), dtype="float32"))
    pooled = FeatureCache(build(teacher, digits8, tmp_path / "p", indices=range(12), dtype="float32", pooled=True))
    assert pooled.feature_shape == (16,) and pooled.manifest.pooled
    query = dict(index=torch.tensor([0, 5, 11]), flip=torch.tensor([True, False, True]), t=torch.tensor([10, 0, 500]))
    torch.testing.assert_close(pooled.lookup(**query), spatial.lookup(**query).mean(dim=(-2, -1)), rtol=0, atol=1e-6)


def test_class_conditional_teacher_gets_the_labels(tmp_path, digits8, one_thread):
    tiny_unet(num_class_embeds=10).save_pretrained(tmp_path / "conditional")
    teacher = DiffusionTeacher(str(tmp_path / "conditional"), class_map=torch.arange(10))
    cache = FeatureCache(build(teacher, digits8, tmp_path / "c", indices=range(8), dtype="float32", batch_size=1))
    assert cache.manifest.class_conditional and cache.manifest.class_map == list(range(10))
    query = dict(index=torch.tensor([1, 3, 7]), flip=torch.tensor([False, True, False]), t=torch.tensor([0, 10, 500]))
    assert torch.equal(cache.lookup(**query), online(teacher, digits8, **query, conditional=True))


def test_lookup_names_what_is_not_cached(tmp_path, teacher, digits8, one_thread):
    cache = FeatureCache(build(teacher, digits8, tmp_path / "c", indices=[0, 2, 4], views=["identity"]))
    with pytest.raises(InputError, match=r"dataset indices \[1, 5000\].*holds 3 of the 1437"):
        cache.lookup(torch.tensor([0, 1, 5000]), torch.tensor([False] * 3), torch.tensor([0, 0, 0]))
    with pytest.raises(InputError, match=r"time steps \[7\].*holds timesteps \[0, 10, 500\]"):
        cache.lookup(torch.tensor([0, 2]), torch.tensor([False, False]), torch.tensor([7, 10]))
    with pytest.raises(InputError, match=r"flipped view.*\['identity'\]"):
        cache.lookup(torch.tensor([0]), torch.tensor([True]), torch.tensor([0]))


# ------------------------------------------------------------------------------ resume after kill -9
KILLER = """
import os, signal, sys
import torch
from repfusion_zoo.cache import build_feature_cache
from repfusion_zoo.data import build_dataset
from repfusion_zoo.teachers import DiffusionTeacher, weights_sha256
from repfusion_zoo.teachers.identity import source_weights_sha256

torch.set_num_threads(1)
teacher_dir, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
teacher = DiffusionTeacher(teacher_dir)
forward, calls = teacher.forward, [0]

def forward_then_die(*args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # a real kill -9, in the middle of a shard
    return forward(*args, **kwargs)

teacher.forward = forward_then_die
dataset = build_dataset("digits", split="train", image_size=8, in_chans=3)
build_feature_cache(teacher, dataset, out, timesteps=[0, 10, 500], dataset_spec="digits", split="train",
                    indices=list(range(24)), dtype="float32", batch_size=6, shard_rows=4, teacher_source=teacher_dir)
"""


def _stats(folder: Path, names: list[str]) -> dict[str, tuple[int, bytes]]:
    return {name: ((folder / name).stat().st_mtime_ns, (folder / name).read_bytes()) for name in names}


def test_killed_build_keeps_finished_shards_and_resumes(tmp_path, teacher_dir, digits8, one_thread):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out = tmp_path / "killed"
    # 6 inputs per image (2 views x 3 t) = one forward per image; 4 images a shard; call 1 is the shape probe
    killed = subprocess.run([sys.executable, str(script), str(teacher_dir), str(out), str(1 + 3 * 4 + 3)],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    finished = sorted(p.name for p in out.glob("shard-*.npy"))
    assert finished == ["shard-00000.npy", "shard-00001.npy", "shard-00002.npy"]
    assert not (out / "manifest.json").exists()
    assert len(list(out.glob(".shard-00003.npy.tmp-*"))) == 1  # the half-written shard, under its temp name
    before = _stats(out, finished)
    with pytest.raises(IncompleteCacheError, match=r"no manifest.json; 3 of 6 shards are finished \(missing: shard-00003.npy.*rerun the same cache command.*it resumes"):
        FeatureCache(out)

    teacher = DiffusionTeacher(str(teacher_dir))
    settings = dict(indices=list(range(24)), dtype="float32", teacher_source=str(teacher_dir))
    resumed = FeatureCache(build(teacher, digits8, out, **settings))
    assert _stats(out, finished) == before  # finished shards are never rewritten
    assert not list(out.glob(".shard-*"))  # the dead writer's temp file is gone
    whole = FeatureCache(build(teacher, digits8, tmp_path / "whole", **settings))
    for name in resumed.manifest.shards:
        assert np.array_equal(np.load(out / name), np.load(tmp_path / "whole" / name)), name
    assert {k: v for k, v in resumed.manifest.to_dict().items() if k != "created"} == \
        {k: v for k, v in whole.manifest.to_dict().items() if k != "created"}


def test_complete_cache_is_kept_and_other_settings_are_refused(tmp_path, teacher, digits8, one_thread):
    out = build(teacher, digits8, tmp_path / "c", indices=range(8))
    shard = out / "shard-00000.npy"
    stamp = shard.stat().st_mtime_ns
    assert build(teacher, digits8, out, indices=range(8)) == out and shard.stat().st_mtime_ns == stamp
    with pytest.raises(CacheMismatchError, match=r"holds another teacher cache \(manifest.json: timesteps=\[0, 10, 500\] there but timesteps=\[0, 10\] now"):
        build(teacher, digits8, out, indices=range(8), timesteps=[0, 10])
    (out / "manifest.json").unlink()  # an unfinished build of other settings is refused the same way
    with pytest.raises(CacheMismatchError, match=r"build_spec.json: dtype='float16' there but dtype='float32' now"):
        build(teacher, digits8, out, indices=range(8), dtype="float32")


def test_missing_shard_of_a_finished_cache(tmp_path, teacher, digits8, one_thread):
    out = build(teacher, digits8, tmp_path / "c", indices=range(8))
    (out / "shard-00001.npy").unlink()
    with pytest.raises(IncompleteCacheError, match="lacks shard shard-00001.npy.*it resumes"):
        FeatureCache(out)
    kept = (out / "shard-00000.npy").stat().st_mtime_ns
    build(teacher, digits8, out, indices=range(8), shard_rows=0, batch_size=12)  # a rerun rebuilds only that shard
    assert len(FeatureCache(out)) == 8 and (out / "shard-00000.npy").stat().st_mtime_ns == kept
    with pytest.raises(IncompleteCacheError, match=r"no manifest.json; no build was started there"):
        FeatureCache(tmp_path / "nothing")


# ------------------------------------------------------------------------------ size and disk
def test_size_is_printed_before_writing_and_a_full_disk_refuses(tmp_path, teacher, digits8, one_thread, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    expected = 8 * row_bytes(2, 3, (16, 4, 4), "float16")  # 8 items x 2 views x 3 t x 256 values x 2 bytes
    out = build(teacher, digits8, tmp_path / "ok", indices=range(8))
    printed = capsys.readouterr().out
    assert f"8 items x 2 views x 3 t x [16, 4, 4] float16 = {expected / 1024:.2f} KiB in 2 shards" in printed
    assert printed.index("KiB in 2 shards") < printed.index("[cache] complete")
    assert sum((out / f"shard-{i:05d}.npy").stat().st_size for i in range(2)) >= expected

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskSpaceError, match=r"needs 24.00 KiB more in .*full but only 1000 B is free"):
        build(teacher, digits8, tmp_path / "full", indices=range(8))
    assert "24.00 KiB to write, 1000 B free" in capsys.readouterr().out
    assert not list((tmp_path / "full").glob("*shard*"))


# ------------------------------------------------------------------------------ the manifest check
def test_mismatch_names_each_field_with_both_values(tmp_path, teacher, digits8, one_thread):
    manifest = FeatureCache(build(teacher, digits8, tmp_path / "c", indices=range(0, 20, 2))).manifest
    changed = {"teacher": "org/other", "teacher_sha256": "0" * 64, "layer": "down.1", "dataset": "imagefolder:x",
               "split": "test", "dataset_fingerprint": "f" * 64, "image_size": 16, "in_chans": 1,
               "normalization": "imagenet", "dtype": "float32", "pooled": True, "noise": True,
               "feature_shape": [16], "class_map": [0, 1]}
    for name, value in changed.items():
        with pytest.raises(CacheMismatchError) as info:
            check_cache_matches(manifest, {name: value})
        message = str(info.value)
        assert f"{name}={getattr(manifest, name)!r}" in message and f"{name}={value!r}" in message, message
        assert str(tmp_path / "c") in message
    with pytest.raises(CacheMismatchError, match=r"layer='mid' but this run uses layer='down.1'; rebuild the cache with --teacher_layer down.1"):
        check_cache_matches(manifest, {"dtype": "float16", "layer": "down.1"})
    check_cache_matches(manifest, {"layer": "mid", "timesteps": [0, 500], "views": ["identity", "hflip"], "indices": [0, 4, 18]})


def test_mismatch_rules_for_timesteps_views_and_indices(tmp_path, teacher, digits8, one_thread):
    manifest = FeatureCache(build(teacher, digits8, tmp_path / "c", indices=range(0, 20, 2), views=["identity"])).manifest
    with pytest.raises(CacheMismatchError, match=r"holds timesteps \[0, 10, 500\] but this run uses t=\[1, 999\] outside"):
        check_cache_matches(manifest, {"timesteps": [0, 1, 999]})
    with pytest.raises(CacheMismatchError, match=r"views=\['identity'\].*\['hflip'\] not cached.*--views identity,hflip"):
        check_cache_matches(manifest, {"views": ["identity", "hflip"]})
    with pytest.raises(CacheMismatchError, match=r"holds 10 of the split's 1437 items.*uses 2 items outside them \(dataset indices \[1, 3\]\)"):
        check_cache_matches(manifest, {"indices": [0, 1, 2, 3]})
    with pytest.raises(CacheMismatchError, match="uses 1427 items outside them"):
        check_cache_matches(manifest, {"indices": None})  # the whole split
    with pytest.raises(ConfigError, match="unknown field"):
        check_cache_matches(manifest, {"colour": "red"})


# ------------------------------------------------------------------------------ identities
def test_teacher_hash_names_the_weight_files(tmp_path, teacher_dir, teacher, digits8, one_thread):
    """The cache names its teacher by the hash of its weight files: the same for the loaded teacher and
    the bare folder (what a run from the cache compares without building it), other for other weights;
    a variant or a config does not count, and a teacher built in memory cannot back a cache."""
    assert teacher.weights_sha256() == source_weights_sha256(str(teacher_dir)) == weights_sha256(teacher_dir)
    copy = tmp_path / "copy"
    tiny_unet().save_pretrained(copy)
    (copy / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"a variant the teacher never reads")
    assert weights_sha256(copy) == teacher.weights_sha256()
    other = tiny_unet()
    with torch.no_grad():
        other.conv_in.bias[0] += 1e-3
    other.save_pretrained(tmp_path / "other")
    assert weights_sha256(tmp_path / "other") != teacher.weights_sha256()
    with pytest.raises(ConfigError, match="not read from a folder.*save_pretrained"):
        build(DiffusionTeacher(tiny_unet()), digits8, tmp_path / "memory", indices=range(4))
    manifest = FeatureCache(build(teacher, digits8, tmp_path / "c", indices=range(4))).manifest
    assert manifest.teacher_sha256 == teacher.weights_sha256() and manifest.num_train_timesteps == 1000


def test_image_folder_fingerprint_follows_the_files(tiny_image_folder):
    spec = dict(split="train", image_size=8, in_chans=3)
    first = dataset_fingerprint(build_dataset(str(tiny_image_folder), **spec))
    assert dataset_fingerprint(build_dataset(str(tiny_image_folder), **spec)) == first
    image = tiny_image_folder / "train" / "a" / "0000.png"
    from PIL import Image

    Image.new("RGB", (12, 12), (1, 2, 3)).save(image)  # same name, other content and size
    assert dataset_fingerprint(build_dataset(str(tiny_image_folder), **spec)) != first


def test_build_refuses_augmented_data_and_noised_teachers(tmp_path, teacher_dir, digits8):
    augmented = build_dataset("digits", split="train", image_size=8, in_chans=3, augment=True)
    with pytest.raises(ConfigError, match="non-augmented"):
        build(DiffusionTeacher(str(teacher_dir)), augmented, tmp_path / "a")
    with pytest.raises(ConfigError, match="noise=True"):
        build(DiffusionTeacher(str(teacher_dir), noise=True), digits8, tmp_path / "b")
    with pytest.raises(RepFusionError, match="views"):
        build(DiffusionTeacher(str(teacher_dir)), digits8, tmp_path / "c", views=["hflip"])


# ------------------------------------------------------------------------------ the recipe, 1 and 2 processes
def test_recipe_on_two_processes_equals_one_process(tmp_path, teacher_dir):
    flags = ["--teacher", str(teacher_dir), "--dataset", "digits", "--image_size", "8", "--in_chans", "3",
             "--timesteps", "0,10,500", "--images_per_class", "2", "--subset_seed", "3", "--shard_rows", "3",
             "--batch_size", "6", "--dtype", "float32"]
    one = run(accelerate_cmd("cache_features.py", [*flags, "--output_dir", str(tmp_path / "one")], num_processes=1))
    two = run(accelerate_cmd("cache_features.py", [*flags, "--output_dir", str(tmp_path / "two")], num_processes=2))
    assert two.stdout.count("[cache] ") == 2 and two.stdout.count("7 shards") == 1, two.stdout
    assert two.stderr.count("teacher cache (") == two.stderr.count("teacher cache (4 of 7 shards here)") >= 1
    a, b = FeatureCache(tmp_path / "one"), FeatureCache(tmp_path / "two")
    assert len(a) == len(b) == 20 and a.manifest.indices == b.manifest.indices
    assert {k: v for k, v in a.manifest.to_dict().items() if k != "created"} == \
        {k: v for k, v in b.manifest.to_dict().items() if k != "created"}
    for name in a.manifest.shards:
        assert np.array_equal(np.load(tmp_path / "one" / name), np.load(tmp_path / "two" / name)), name
    info = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert info["teacher"] == str(teacher_dir) and info["views"] == ["identity", "hflip"]


def test_recipe_help_and_size_check(tmp_path, teacher_dir):
    from repfusion_zoo.pipelines import cache_features

    assert cache_features.main(["--help"]) == 0
    cfg = cache_features.load_config(cache_features.CacheConfig, ["--teacher", str(teacher_dir), "--image_size", "16"])
    with pytest.raises(ConfigError, match="takes 3x8x8 images but the data is 3x16x16; set --image_size 8"):
        cache_features.cache_teacher(cfg, [])
