"""DiffusionTeacher: encoder-only features equal the hooked features of a full UNet forward."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from repfusion_zoo.errors import ConfigError, InputError, TeacherNotFoundError, UnsafeWeightsError
from repfusion_zoo.teachers import DiffusionTeacher

CONFIGS = Path(__file__).parent / "configs"


def _published_unet(name: str, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel.from_config(json.loads((CONFIGS / f"{name}.json").read_text())).eval()


def _tiny_unet(**kwargs) -> UNet2DModel:
    torch.manual_seed(0)
    cfg = dict(
        sample_size=16,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
    )
    cfg.update(kwargs)
    return UNet2DModel(**cfg).eval()


class _StopForward(Exception):
    """Raised by the mid-block hook once the features are caught: the decoder cannot change them."""


def _hooked(unet: UNet2DModel, x, t, class_labels=None, *, stop_after_mid: bool = False) -> dict[str, torch.Tensor]:
    """The authors' way: UNet2DModel.forward with hooks on the mid block and mid resnet 2's conv2.

    ``stop_after_mid`` aborts the forward right after the mid block (the big CelebA-HQ UNet:
    the up path runs after the hooked layers and cannot change them).
    """
    out: dict[str, torch.Tensor] = {}

    def catch_mid(module, inputs, output):
        out["mid"] = output
        if stop_after_mid:
            raise _StopForward

    handles = [
        unet.mid_block.register_forward_hook(catch_mid),
        unet.mid_block.resnets[1].conv2.register_forward_hook(lambda m, i, o: out.__setitem__("conv2", o)),
    ]
    try:
        with torch.no_grad():
            unet(x, t, class_labels=class_labels)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return out


@pytest.fixture(scope="module")
def cifar_unet() -> UNet2DModel:
    return _published_unet("ddpm-cifar10-32")


@pytest.fixture(scope="module")
def tiny_unet() -> UNet2DModel:
    return _tiny_unet()


def _images(batch: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------ equivalence with the full forward
def test_cifar10_32_encoder_equals_hooked_full_forward(cifar_unet):
    x, t = _images(2, 32), torch.tensor([0, 999])
    hooked = _hooked(cifar_unet, x, t)
    mid = DiffusionTeacher(cifar_unet)
    authors = DiffusionTeacher(cifar_unet, layer="mid_resnet2_conv2")
    assert mid.feature_shape == (256, 4, 4) == tuple(mid(x, t).shape[1:])
    torch.testing.assert_close(mid(x, t), hooked["mid"], rtol=0, atol=1e-5)
    torch.testing.assert_close(authors(x, t), hooked["conv2"], rtol=0, atol=1e-5)
    assert authors.feature_shape == (256, 4, 4)


def test_celebahq_256_encoder_equals_hooked_full_forward():
    unet = _published_unet("ddpm-ema-celebahq-256")
    x, t = _images(1, 256), torch.tensor([10])
    hooked = _hooked(unet, x, t, stop_after_mid=True)
    mid = DiffusionTeacher(unet)
    assert mid.feature_shape == (512, 8, 8)
    torch.testing.assert_close(mid(x, t), hooked["mid"], rtol=0, atol=1e-5)
    assert DiffusionTeacher(unet, layer="mid_resnet2_conv2").feature_shape == (512, 8, 8)  # layer checked on CIFAR above


def test_down_layer_equals_hooked_down_block(tiny_unet):
    x, t = _images(2, 16), torch.tensor([5, 7])
    out = {}
    handle = tiny_unet.down_blocks[0].register_forward_hook(lambda m, i, o: out.__setitem__("d0", o[0]))
    with torch.no_grad():
        tiny_unet(x, t)
    handle.remove()
    teacher = DiffusionTeacher(tiny_unet, layer="down.0")
    torch.testing.assert_close(teacher(x, t), out["d0"], rtol=0, atol=1e-6)
    assert teacher.feature_shape == (16, 8, 8)


@pytest.mark.parametrize("index, shape", [(0, (32, 16, 16)), (1, (16, 16, 16))])
def test_up_layers_equal_hooked_up_blocks(tiny_unet, index, shape):
    """The decoder layers: UNet2DModel.forward's own up block output (the forward itself, stopped there)."""
    x, t = _images(2, 16), torch.tensor([5, 700])
    out = {}
    handle = tiny_unet.up_blocks[index].register_forward_hook(lambda m, i, o: out.__setitem__("up", o))
    with torch.no_grad():
        tiny_unet(x, t)
    handle.remove()
    teacher = DiffusionTeacher(tiny_unet, layer=f"up.{index}")
    feature = teacher(x, t)
    torch.testing.assert_close(feature, out["up"], rtol=0, atol=1e-6)
    assert teacher.feature_shape == shape == tuple(feature.shape[1:]) and teacher.feature_channels == shape[0]
    assert not any(hook for block in tiny_unet.up_blocks for hook in block._forward_hooks.values())  # none left behind


def test_cifar10_32_decoder_layer_equals_hooked_full_forward(cifar_unet):
    x, t = _images(2, 32), torch.tensor([0, 300])
    out = {}
    handle = cifar_unet.up_blocks[1].register_forward_hook(lambda m, i, o: out.__setitem__("up", o))
    with torch.no_grad():
        cifar_unet(x, t)
    handle.remove()
    teacher = DiffusionTeacher(cifar_unet, layer="up.1")
    assert teacher.feature_shape == (256, 16, 16)
    torch.testing.assert_close(teacher(x, t), out["up"], rtol=0, atol=1e-5)


def test_per_sample_timesteps_differ_and_matter(cifar_unet):
    teacher = DiffusionTeacher(cifar_unet)
    x = _images(1, 32).repeat(2, 1, 1, 1)
    feature = teacher(x, torch.tensor([0, 600]))
    assert not torch.allclose(feature[0], feature[1], atol=1e-4)
    alone = teacher(x[:1], torch.tensor([600]))
    # a batch of 1 and of 2 may take other CPU kernels (oneDNN on an AVX2-only EPYC: 1.2e-5 apart);
    # another sample's t would move the feature by far more than 1e-4 (the line above)
    torch.testing.assert_close(feature[1:], alone, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ frozen, eval, no grads
def test_teacher_is_frozen_and_always_eval(tiny_unet):
    teacher = DiffusionTeacher(_tiny_unet(dropout=0.5))
    teacher.train()
    assert not teacher.training and not teacher.unet.training
    assert all(not p.requires_grad for p in teacher.parameters())
    x = _images(2, 16).requires_grad_(True)
    feature = teacher(x, torch.tensor([1, 2]))
    assert not feature.requires_grad
    torch.testing.assert_close(feature, teacher(x, torch.tensor([1, 2])))  # dropout off
    assert teacher.expects == "minus_one_one"
    assert teacher.num_train_timesteps == 1000 and teacher.sample_size == (16, 16) and teacher.in_channels == 3


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "x, t, match",
    [
        (torch.rand(2, 3, 16, 16) * 255, torch.tensor([1, 2]), "0..255"),
        ((torch.rand(2, 3, 16, 16) - 0.45) / 0.225, torch.tensor([1, 2]), "ImageNet-normalised"),
        (torch.rand(2, 1, 16, 16), torch.tensor([1, 2]), "3-channel"),
        (torch.rand(2, 3, 15, 16), torch.tensor([1, 2]), "multiples of 2"),
        (torch.rand(2, 3, 16, 16), torch.tensor([1, 1000]), r"\[0, 1000\)"),
        (torch.rand(2, 3, 16, 16), torch.tensor([-1, 3]), r"\[0, 1000\)"),
        (torch.rand(2, 3, 16, 16), torch.tensor([1.0, 2.0]), "integer"),
    ],
)
def test_bad_input_is_refused_with_the_fix(tiny_unet, x, t, match):
    with pytest.raises(InputError, match=match):
        DiffusionTeacher(tiny_unet)(x, t)


def test_bad_layer_names_the_choices(tiny_unet):
    with pytest.raises(ConfigError, match=r"down\.1.*mid_resnet2_conv2.*up\.1"):
        DiffusionTeacher(tiny_unet, layer="up.2")


# ------------------------------------------------------------------ class-conditional teachers
def test_class_ids_only_through_an_explicit_map():
    unet = _tiny_unet(num_class_embeds=10)
    x, t, labels = _images(2, 16), torch.tensor([3, 4]), torch.tensor([0, 1])
    with pytest.raises(InputError, match="class_map"):
        DiffusionTeacher(unet)(x, t, labels)
    class_map = torch.tensor([7, 2])
    teacher = DiffusionTeacher(unet, class_map=class_map)
    torch.testing.assert_close(teacher(x, t, labels), _hooked(unet, x, t, class_map[labels])["mid"], rtol=0, atol=1e-6)
    assert not torch.allclose(teacher(x, t, labels), _hooked(unet, x, t, labels)["mid"])
    with pytest.raises(InputError, match="outside the class_map"):
        teacher(x, t, torch.tensor([0, 5]))
    with pytest.raises(InputError, match="no entry"):
        DiffusionTeacher(unet, class_map={0: 3, 2: 4})(x, t, torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="unconditional"):
        DiffusionTeacher(_tiny_unet(), class_map=class_map)


def test_unconditional_teacher_ignores_dataset_labels(tiny_unet):
    teacher = DiffusionTeacher(tiny_unet)
    x, t = _images(2, 16), torch.tensor([3, 4])
    torch.testing.assert_close(teacher(x, t, torch.tensor([0, 1])), teacher(x, t))


# ------------------------------------------------------------------ noise option
def test_noise_uses_the_models_scheduler(tiny_unet):
    scheduler = DDPMScheduler(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2")
    noisy = DiffusionTeacher(tiny_unet, noise=True, scheduler=scheduler)
    clean = DiffusionTeacher(tiny_unet, scheduler=scheduler)
    assert noisy.num_train_timesteps == 50
    x, t = _images(2, 16), torch.tensor([10, 40])
    torch.manual_seed(3)
    got = noisy(x, t)
    torch.manual_seed(3)
    x_t = scheduler.add_noise(x, torch.randn(x.shape), t)
    torch.testing.assert_close(got, _hooked(tiny_unet, x_t, t)["mid"], rtol=0, atol=1e-6)
    assert not torch.allclose(got, clean(x, t), atol=1e-3)


# ------------------------------------------------------------------ folder layouts
def test_folder_layouts_load(tmp_path, tiny_unet):
    x, t = _images(1, 16), torch.tensor([5])
    expected = DiffusionTeacher(tiny_unet)(x, t)
    scheduler = DDPMScheduler(num_train_timesteps=200)

    bare = tmp_path / "bare"
    tiny_unet.save_pretrained(bare)
    pipeline = tmp_path / "pipeline"
    DDPMPipeline(unet=tiny_unet, scheduler=scheduler).save_pretrained(pipeline)
    legacy = tmp_path / "legacy"  # google/ddpm-cifar10-32: UNet config at the root + scheduler_config.json
    tiny_unet.save_pretrained(legacy)
    scheduler.save_pretrained(legacy)
    (legacy / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"]}))

    for folder, steps in ((bare, 1000), (pipeline, 200), (str(legacy), 200)):
        teacher = DiffusionTeacher(folder)
        torch.testing.assert_close(teacher(x, t), expected, rtol=0, atol=1e-5)
        assert teacher.num_train_timesteps == steps


def test_missing_or_unsafe_files_are_named(tmp_path, tiny_unet):
    with pytest.raises(TeacherNotFoundError, match="pipeline folder"):
        DiffusionTeacher(tmp_path)
    with pytest.raises(TeacherNotFoundError, match="neither an existing folder"):
        DiffusionTeacher(str(tmp_path / "nope" / "deeper"))
    tiny_unet.save_pretrained(tmp_path / "u")
    weights = tmp_path / "u" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    with pytest.raises(TeacherNotFoundError, match="diffusion_pytorch_model.safetensors"):
        DiffusionTeacher(tmp_path / "u")
    (tmp_path / "u" / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(UnsafeWeightsError, match="safetensors"):
        DiffusionTeacher(tmp_path / "u")


# ------------------------------------------------------------------ supervised teacher (Tables 4/5 rows)
def test_supervised_teacher_same_forward_ignores_t(tmp_path):
    import timm
    from safetensors.torch import save_file

    from repfusion_zoo.teachers import SupervisedTeacher

    torch.manual_seed(0)
    trained = timm.create_model("resnet18_cifar", num_classes=10)
    save_file(trained.state_dict(), tmp_path / "r18.safetensors")
    teacher = SupervisedTeacher("resnet18_cifar", weights=tmp_path / "r18.safetensors")
    teacher.train()
    assert teacher.expects == "normalized" and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 32, 32)
    feature = teacher(x, torch.tensor([0, 999]))
    assert feature.shape == (2, *teacher.feature_shape) == (2, 512, 4, 4)
    torch.testing.assert_close(feature, teacher(x, torch.tensor([5, 5]), torch.tensor([1, 2])))
    torch.testing.assert_close(feature, trained.eval().forward_features(x))
    wrn = SupervisedTeacher("wrn28_2", layer=-2)
    assert wrn(x, None).shape == (2, *wrn.feature_shape) == (2, 64, 16, 16)
    with pytest.raises(InputError, match="normalised images"):
        teacher(torch.randn(2, 1, 32, 32), None)
    with pytest.raises(ConfigError, match="out of range"):
        SupervisedTeacher(trained, layer=9)


# ------------------------------------------------------------------ Hub ids (local Hub-API server, real client)
def test_hub_id_loads_then_serves_from_cache_offline(tiny_unet, tmp_path, hub_server, monkeypatch):
    from huggingface_hub import HfApi
    from _hub_fixtures import point_hub_at

    folder = tmp_path / "pipeline"
    DDPMPipeline(unet=tiny_unet, scheduler=DDPMScheduler(num_train_timesteps=300)).save_pretrained(folder)
    api = HfApi(endpoint=hub_server)
    api.create_repo("google-test/tiny-ddpm", exist_ok=True)
    api.upload_folder(repo_id="google-test/tiny-ddpm", folder_path=str(folder))
    x, t = _images(1, 16), torch.tensor([5])
    expected = DiffusionTeacher(tiny_unet)(x, t)

    teacher = DiffusionTeacher("google-test/tiny-ddpm")
    torch.testing.assert_close(teacher(x, t), expected, rtol=0, atol=1e-5)
    assert teacher.num_train_timesteps == 300

    from huggingface_hub import constants

    point_hub_at(monkeypatch, "http://127.0.0.1:9", Path(constants.HF_HUB_CACHE), offline=True)
    torch.testing.assert_close(DiffusionTeacher("hf-hub:google-test/tiny-ddpm")(x, t), expected, rtol=0, atol=1e-5)
    from repfusion_zoo.errors import NoNetworkError

    with pytest.raises(NoNetworkError, match="local folder"):
        DiffusionTeacher("google-test/never-published")


COMMITTED_TEACHERS = sorted(p for p in (Path(__file__).resolve().parents[1] / "teachers").glob("*") if p.is_dir())


@pytest.mark.parametrize("folder", COMMITTED_TEACHERS or [pytest.param(None, marks=pytest.mark.skip(
    reason="no teacher is committed under teachers/"))], ids=lambda p: getattr(p, "name", "none"))
def test_a_committed_teacher_is_fp16_small_and_loads_as_a_teacher(folder):
    """A teacher committed under teachers/<name>/: fp16 safetensors of at most 20 MB in a diffusers
    pipeline folder, read back as an fp32 teacher whose features are finite, with a README that
    gives the command that made it and its probe."""
    from safetensors import safe_open

    from repfusion_zoo.teachers import load_teacher

    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size <= 20 * 2**20
    with safe_open(str(weights), "pt") as handle:
        assert {handle.get_slice(key).get_dtype() for key in handle.keys()} == {"F16"}
    teacher = load_teacher(str(folder))
    side = teacher.sample_size[0]
    feature = teacher(torch.rand(2, teacher.in_channels, side, side) * 2 - 1, torch.tensor([10, 300]))
    assert feature.dtype == torch.float32 and torch.isfinite(feature).all()
    readme = (folder / "README.md").read_text()
    assert "recipes/train_teacher.py" in readme and "repfusion-zoo probe" in readme
