"""ADM (guided-diffusion) -> diffusers conversion, checked against guided-diffusion's own UNet."""
from __future__ import annotations

import dataclasses
import datetime
import warnings

import pytest
import torch

from repfusion_zoo.errors import InputError, UnsafeWeightsError, WeightsMismatchError
from repfusion_zoo.teachers import DiffusionTeacher
from repfusion_zoo.teachers.adm import (
    ADM_IMAGENET64,
    ADMConfig,
    adm_unet_config,
    convert_adm_checkpoint,
    convert_adm_state_dict,
    imagenet_wnids,
    tinyimagenet_class_map,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    script_util = pytest.importorskip("guided_diffusion.script_util", reason="test dependency guided-diffusion-sdk")

SMALL = dict(image_size=32, num_channels=32, num_res_blocks=1, channel_mult=(1, 2, 2), attention_resolutions=(16, 8), learn_sigma=True, class_cond=True)
VARIANTS = {
    # the ImageNet-64 ADM's flags, shrunk: resblock_updown, new attention order, scale-shift norm, head width
    "adm64-style": dict(num_heads=4, num_head_channels=32, resblock_updown=True, use_new_attention_order=True, use_scale_shift_norm=True),
    # older improved-diffusion style: conv resampling, legacy head order, additive time embedding, 1 head
    "legacy": dict(num_heads=1, num_head_channels=-1, resblock_updown=False, use_new_attention_order=False, use_scale_shift_norm=False),
}


def _guided_diffusion_unet(flags: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = script_util.create_model(
        image_size=SMALL["image_size"],
        num_channels=SMALL["num_channels"],
        num_res_blocks=SMALL["num_res_blocks"],
        channel_mult=",".join(str(m) for m in SMALL["channel_mult"]),
        learn_sigma=True,
        class_cond=True,
        attention_resolutions="16,8",
        **flags,
    )
    with torch.no_grad():  # ADM zero-initialises its out convs: perturb every weight so all paths matter
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


def _config(flags: dict) -> ADMConfig:
    return ADMConfig(**SMALL, **flags, dropout=0.0)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_unet_matches_guided_diffusion(variant, tmp_path):
    flags = VARIANTS[variant]
    reference = _guided_diffusion_unet(flags)
    path = tmp_path / "adm.pt"
    torch.save(reference.state_dict(), path)
    unet = convert_adm_checkpoint(path, _config(flags), out_dir=tmp_path / "converted")

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    t, y = torch.tensor([3, 700]), torch.tensor([5, 999])
    caught = {}
    handle = reference.middle_block.register_forward_hook(lambda m, i, o: caught.__setitem__("mid", o))
    with torch.no_grad():
        full_reference = reference(x, t, y)
        full_converted = unet(x, t, class_labels=y).sample
    handle.remove()

    # the teacher loads the saved pipeline folder; identity class map = ImageNet ids passed through
    teacher = DiffusionTeacher(tmp_path / "converted", class_map=torch.arange(1000))
    torch.testing.assert_close(teacher(x, t, y), caught["mid"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full_converted, full_reference, rtol=1e-5, atol=1e-5)  # decoder converts too
    assert teacher.num_train_timesteps == 1000
    assert teacher.scheduler.config.beta_schedule == "squaredcos_cap_v2"


def test_imagenet64_config_is_the_published_architecture():
    from diffusers import UNet2DModel

    cfg = adm_unet_config(ADM_IMAGENET64)
    assert cfg["block_out_channels"] == [192, 384, 576, 768]
    assert cfg["down_block_types"] == ["ResnetDownsampleBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
    assert cfg["attention_head_dim"] == 64 and cfg["num_class_embeds"] == 1000 and cfg["out_channels"] == 6
    assert cfg["resnet_time_scale_shift"] == "scale_shift" and cfg["layers_per_block"] == 3
    with torch.device("meta"):  # 295.9M parameters on both sides: shapes only
        unet = UNet2DModel(**cfg)
        reference = script_util.create_model(
            image_size=64, num_channels=192, num_res_blocks=3, learn_sigma=True, class_cond=True,
            attention_resolutions="32,16,8", num_head_channels=64, use_scale_shift_norm=True,
            resblock_updown=True, use_new_attention_order=True, dropout=0.1,
        )
    teacher = DiffusionTeacher(unet, class_map=torch.arange(1000))
    assert teacher.feature_shape == (768, 8, 8)
    # every tensor of the real 64x64_diffusion.pt layout lands on a diffusers tensor of the same shape
    converted = convert_adm_state_dict(reference.state_dict(), ADM_IMAGENET64, unet)
    expected = unet.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)
    assert sum(v.numel() for v in converted.values()) == sum(p.numel() for p in reference.parameters())


def test_checkpoint_that_does_not_fit_the_config_names_the_keys():
    state = _guided_diffusion_unet(VARIANTS["legacy"]).state_dict()
    with pytest.raises(WeightsMismatchError, match="shape mismatches"):
        convert_adm_checkpoint(state, dataclasses.replace(_config(VARIANTS["legacy"]), num_channels=64))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"when": datetime.date(2023, 1, 1)}, path)
    with pytest.raises(UnsafeWeightsError, match="weights_only"):
        convert_adm_checkpoint(path, _config(VARIANTS["legacy"]))


def test_tinyimagenet_labels_map_to_imagenet_by_wordnet_id():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and wnids == sorted(wnids) and wnids[1] == "n01443537"
    tiny = ["n01443537", "n01629819", "n12267677"]  # goldfish, European fire salamander, acorn
    assert tinyimagenet_class_map(tiny).tolist() == [1, 25, 988]
    with pytest.raises(InputError, match="not ImageNet-1k"):
        tinyimagenet_class_map(["n99999999"])
