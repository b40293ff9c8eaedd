"""Latent (Stable Diffusion-style) and transformer (DiT) teachers, with tiny random diffusers models saved as
pipeline folders: the encoder-only feature equals the same layer hooked in the full model's forward,
`load_teacher` tells the kinds apart, the conditioning is what it says, and the cache and distillation
recipes run on them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel, Transformer2DModel, UNet2DConditionModel

from _data_fixtures import write_image_folder
from _recipes_common import tiny_flags
from repfusion_zoo.errors import ConfigError
from repfusion_zoo.teachers import LatentUNetTeacher, TransformerTeacher, load_teacher, save_conditioning, teacher_kind
from repfusion_zoo.teachers.latent import encode_latents

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE = 16  # pixels; the tiny VAE halves once: 8 x 8 latents


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                         norm_num_groups=4, sample_size=IMAGE)


def tiny_sd_unet() -> UNet2DConditionModel:
    torch.manual_seed(1)
    return UNet2DConditionModel(sample_size=IMAGE // 2, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                                cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4)


def tiny_dit(cls: type = DiTTransformer2DModel, **extra) -> torch.nn.Module:
    torch.manual_seed(2)
    return cls(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, num_layers=4,
               sample_size=IMAGE // 2, patch_size=2, num_embeds_ada_norm=10, norm_num_groups=4, **extra)


def save_pipeline(root: Path, parts: dict[str, torch.nn.Module], class_name: str) -> Path:
    for name, model in parts.items():
        model.save_pretrained(root / name)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({"_class_name": class_name, **{k: ["diffusers", type(m).__name__] for k, m in parts.items()}}))
    return root


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory) -> Path:
    return save_pipeline(tmp_path_factory.mktemp("sd"), {"vae": tiny_vae(), "unet": tiny_sd_unet()}, "StableDiffusionPipeline")


@pytest.fixture(scope="module")
def dit_folder(tmp_path_factory) -> Path:
    return save_pipeline(tmp_path_factory.mktemp("dit"), {"vae": tiny_vae(), "transformer": tiny_dit()}, "DiTPipeline")


def _images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _hooked(module: torch.nn.Module, run) -> torch.Tensor:
    """The output of `module` during `run()` (its first element when it returns a tuple)."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        run()
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("layer", ["mid", "mid_resnet2_conv2", "down.0", "up.0"])
def test_latent_unet_layers_equal_the_layer_in_the_full_forward(sd_folder, layer):
    teacher = load_teacher(str(sd_folder), layer=layer, image_size=IMAGE)
    assert isinstance(teacher, LatentUNetTeacher) and teacher.conditioning_source == "zeros"
    x, t = _images(), torch.tensor([0, 250, 999])
    full = UNet2DConditionModel.from_pretrained(sd_folder / "unet").eval()
    latents = encode_latents(AutoencoderKL.from_pretrained(sd_folder / "vae").eval(), x)
    context = torch.zeros(3, 77, 16)
    target = {"mid": full.mid_block, "mid_resnet2_conv2": full.mid_block.resnets[1].conv2, "down.0": full.down_blocks[0],
              "up.0": full.up_blocks[0]}[layer]
    expected = _hooked(target, lambda: full(latents, t, encoder_hidden_states=context))
    feature = teacher(x, t)
    torch.testing.assert_close(feature, expected, rtol=1e-5, atol=1e-5)
    assert tuple(feature.shape[1:]) == teacher.feature_shape
    assert teacher.describe()["conditioning"] == "zeros" and teacher.describe()["kind"] == "latent-unet"


def test_a_latent_layer_it_lacks_names_the_choices(sd_folder):
    with pytest.raises(ConfigError, match=r"latent UNet.*down\.1.*mid_resnet2_conv2.*up\.1"):
        load_teacher(str(sd_folder), layer="up.9", image_size=IMAGE)


def test_a_stored_conditioning_is_what_the_cross_attention_sees(sd_folder, tmp_path):
    folder = save_pipeline(tmp_path / "sd", {"vae": tiny_vae(), "unet": tiny_sd_unet()}, "StableDiffusionPipeline")
    stored = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(4))
    save_conditioning(folder, stored)
    teacher = load_teacher(str(folder), image_size=IMAGE)
    assert teacher.conditioning_source == "stored" and torch.equal(teacher.conditioning, stored)
    zeros = load_teacher(str(folder), image_size=IMAGE, conditioning="zeros")
    assert not torch.allclose(teacher(_images(), torch.tensor([5, 5, 5])), zeros(_images(), torch.tensor([5, 5, 5])))
    with pytest.raises(ConfigError, match="conditioning"):
        load_teacher(str(folder), image_size=IMAGE, conditioning="prompt")


def test_the_empty_prompt_conditioning_comes_from_the_pipelines_text_encoder(tmp_path):
    transformers = pytest.importorskip("transformers", reason="the empty-prompt conditioning needs the latent extra")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "<|startoftext|>": 1, "<|endoftext|>": 2, "<unk>": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<|startoftext|> $A <|endoftext|>",
                                                       special_tokens=[("<|startoftext|>", 1), ("<|endoftext|>", 2)])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", model_max_length=6)
    torch.manual_seed(5)
    encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=4, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=6, eos_token_id=2, bos_token_id=1, pad_token_id=0))
    folder = save_pipeline(tmp_path / "sd", {"vae": tiny_vae(), "unet": tiny_sd_unet(), "text_encoder": encoder},
                           "StableDiffusionPipeline")
    tokenizer.save_pretrained(folder / "tokenizer")
    teacher = load_teacher(str(folder), image_size=IMAGE)
    ids = tokenizer([""], padding="max_length", max_length=6, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = encoder.eval()(ids)[0]
    assert teacher.conditioning_source == "empty-prompt" and teacher.conditioning.shape == (1, 6, 16)
    torch.testing.assert_close(teacher.conditioning, expected)


@pytest.mark.parametrize("cls", [DiTTransformer2DModel, Transformer2DModel])
def test_dit_first_blocks_equal_the_hooked_block_with_the_null_class(cls, tmp_path):
    extra = {"norm_type": "ada_norm_zero"} if cls is Transformer2DModel else {}
    folder = save_pipeline(tmp_path / "dit", {"vae": tiny_vae(), "transformer": tiny_dit(cls, **extra)}, "DiTPipeline")
    teacher = load_teacher(str(folder), layer="blocks.3", image_size=IMAGE)
    assert isinstance(teacher, TransformerTeacher) and teacher.blocks == 3
    x, t = _images(), torch.tensor([0, 400, 999])
    full = cls.from_pretrained(folder / "transformer").eval()
    latents = encode_latents(AutoencoderKL.from_pretrained(folder / "vae").eval(), x)
    null = torch.full((3,), 10)  # 10 classes: id 10 is the null class (classifier-free guidance)
    tokens = _hooked(full.transformer_blocks[2], lambda: full(latents, timestep=t, class_labels=null))
    feature = teacher(x, t)
    assert feature.shape == (3, 16, 4, 4) == (3, *teacher.feature_shape)
    torch.testing.assert_close(feature, tokens.transpose(1, 2).reshape(3, 16, 4, 4), rtol=1e-5, atol=1e-5)
    assert load_teacher(str(folder), image_size=IMAGE).blocks == 2  # "mid": half of the 4 blocks
    with pytest.raises(ConfigError, match="blocks.K"):
        load_teacher(str(folder), layer="blocks.9", image_size=IMAGE)


def test_load_teacher_tells_the_kinds_apart(sd_folder, dit_folder, tmp_path):
    from diffusers import UNet2DModel

    UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1,
                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(tmp_path / "ddpm")
    assert [teacher_kind(p) for p in (sd_folder, dit_folder, tmp_path / "ddpm")] == ["latent-unet", "transformer", "unet"]
    assert teacher_kind(dit_folder / "transformer") == "transformer"  # a bare transformer folder
    with pytest.raises(ConfigError, match="clean image"):
        load_teacher(str(sd_folder), noise=True)


@pytest.mark.parametrize("kind", ["sd", "dit"])
def test_cache_and_distill_run_on_latent_teachers(kind, sd_folder, dit_folder, tmp_path):
    from repfusion_zoo.cache import FeatureCache
    from repfusion_zoo.pipelines import cache_features, distill

    teacher = str(sd_folder if kind == "sd" else dit_folder)
    data = write_image_folder(tmp_path / "data", {"a": 4, "b": 4}, size=IMAGE)
    cache_features.main(["--teacher", teacher, "--dataset", str(data), "--image_size", str(IMAGE), "--timesteps", "0,500",
                         "--output_dir", str(tmp_path / "cache"), "--batch_size", "8"])
    cache = FeatureCache(tmp_path / "cache")
    assert cache.manifest.teacher_info["kind"] == ("latent-unet" if kind == "sd" else "transformer")
    assert cache.manifest.teacher_info["conditioning"] == ("zeros" if kind == "sd" else "null class")
    flags = tiny_flags(tmp_path / "run", dataset=str(data), teacher=teacher, image_size=IMAGE, timesteps="0,500",
                       max_train_steps=2, train_batch_size=4, augment=False)
    distill.main(flags)
    distill.main(tiny_flags(tmp_path / "cached", dataset=str(data), teacher=teacher, image_size=IMAGE, timesteps="0,500",
                            max_train_steps=2, train_batch_size=4, augment=False, teacher_cache=str(tmp_path / "cache")))
    for run in ("run", "cached"):
        assert (tmp_path / run / "backbone" / "model.safetensors").is_file()


def test_every_teacher_implements_the_protocols(sd_folder, dit_folder, tmp_path):
    """What RepFusion asks of a teacher (`Teacher`) and what a cache is built from (`CacheableTeacher`)."""
    from repfusion_zoo.cache import CacheableTeacher
    from repfusion_zoo.teachers import SupervisedTeacher, Teacher
    from test_distill import _teacher

    online = [_teacher(), load_teacher(str(sd_folder), image_size=IMAGE), load_teacher(str(dit_folder), image_size=IMAGE)]
    assert all(isinstance(t, Teacher) and isinstance(t, CacheableTeacher) for t in online)
    assert all(t.timesteps is None and t.time_conditioned for t in online)
    supervised = SupervisedTeacher("resnet18_cifar")
    assert isinstance(supervised, Teacher) and not isinstance(supervised, CacheableTeacher)
    from repfusion_zoo.cache.describe import describe_cache

    with pytest.raises(ConfigError, match="diffusion teacher"):
        describe_cache(supervised, None, timesteps="0", dataset_spec="x", split="train", indices=None, views=["identity"],
                       dtype="float16", pooled=False, teacher_source=None)


@pytest.mark.parametrize("kind", ["sd", "dit"])
def test_the_probe_command_reads_latent_teachers(kind, sd_folder, dit_folder, tmp_path, capsys):
    """`repfusion-zoo probe` on a latent UNet and a DiT folder: the image goes through the VAE, the
    pooled feature of the named layer is probed per t."""
    from repfusion_zoo.cli import main

    folder = sd_folder if kind == "sd" else dit_folder
    layer = "mid" if kind == "sd" else "blocks.2"
    data = write_image_folder(tmp_path / "data", {"a": 6, "b": 6}, size=IMAGE)
    assert main(["probe", "--teacher", str(folder), "--dataset", str(data), "--split", "train", "--timesteps", "0,500",
                 "--num_samples", "12", "--layer", layer, "--output_dir", str(tmp_path / "probe")]) == 0
    result = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert [row["t"] for row in result["results"]] == [0, 500] and result["layer"] == layer
    assert all(0.0 <= row["linear_probe_accuracy"] <= 1.0 for row in result["results"])
