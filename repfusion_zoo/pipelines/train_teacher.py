"""Train a DDPM teacher (diffusers `UNet2DModel` + `DDPMScheduler`, EMA weights) on unlabelled images:
the body of ``recipes/train_teacher.py`` (its docstring is the command line's help).

The loop is the `Trainer` every recipe uses; what is the teacher's own stays here around it: the
UNet and its noise scheduler, the diffusion loss, the EMA (stepped after each optimiser step,
saved with the resumable state as safetensors + JSON), the loss check at each log, the cosine LR
schedule with warm-up (diffusers'), and the output: a diffusers pipeline folder
(`model_index.json`, `unet/`, `scheduler/`, written by `DDPMPipeline.save_pretrained` with the
EMA weights, plus `teacher_config.json`, `training_info.json`, `samples.png`), written to a temp
folder and renamed. Checkpoints go to ``<output_dir>.run/checkpoint-<step>`` every
``checkpointing_steps`` (never a final one: the teacher folder is the final state).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from diffusers.utils import make_image_grid
from safetensors.torch import load_file, save_file

from ..atomic import atomic_folder
from ..data import build_dataset
from ..errors import ConfigError, InputError
from ..normalize import minus_one_one
from ..teachers.unet_files import load_unet
from ..training import LoopSettings, StepOutput, Trainer, configure_cpu_threads
from ..training.precision import run_precision
from ..config import format_help, load_config, opt, redefault, to_dict, wants_help
from .probe_curve import PROBE_CURVE_FILE, ProbeCurve
from .shared import RECIPE_CONFIGS, end_processes

__all__ = ["TeacherConfig", "train_teacher", "loop_settings", "build_unet", "build_noise_scheduler", "diffusion_loss",
           "save_teacher", "reusable", "config_key", "parse_config", "main", "initial_unet", "probe_curve"]

#: written into the teacher folder beside model_index.json: the config and what training measured
TEACHER_CONFIG_FILE = "teacher_config.json"
TRAINING_INFO_FILE = "training_info.json"
SAMPLES_FILE = "samples.png"


@dataclass
class TeacherConfig(LoopSettings):
    """Every key of a teacher run (the defaults are recipes/configs/teacher_digits.yaml); the loop's keys
    are `LoopSettings`', with the teacher's own defaults."""

    # the loop (LoopSettings), the teacher's defaults: a fixed number of steps, checkpoints in <output_dir>.run
    output_dir: str = redefault(LoopSettings, "output_dir", "outputs/teachers/digits-ddpm16",
                                "the teacher folder (diffusers pipeline layout); checkpoints go to <output_dir>.run")
    num_train_epochs: int | None = redefault(LoopSettings, "num_train_epochs", None)
    max_train_steps: int = redefault(LoopSettings, "max_train_steps", 200)
    train_batch_size: int = redefault(LoopSettings, "train_batch_size", 64)
    max_grad_norm: float = redefault(LoopSettings, "max_grad_norm", 1.0)
    log_every: int = redefault(LoopSettings, "log_every", 25)

    # data
    dataset: str = opt("digits", "build_dataset spec: digits | imagefolder:<path> | <path> | hf:<id or path>[:<config>]")
    split: str = opt("train", "split to train on (labels are ignored)")
    image_size: int = opt(16, "images are resized to image_size x image_size; the UNet's sample_size")
    in_channels: int = opt(3, "image channels (grey data is replicated); 3 matches RGB students")
    augment: bool = opt(True, "flips for image data, small shifts for digits (see repfusion_zoo.data)")
    # UNet2DModel
    block_out_channels: list[int] = opt([32, 64, 64], "channels of each resolution level")
    down_block_types: list[str] = opt(["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"], "diffusers down blocks")
    up_block_types: list[str] = opt(["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"], "diffusers up blocks")
    layers_per_block: int = opt(1, "resnets per block")
    norm_num_groups: int = opt(8, "GroupNorm groups (must divide every block_out_channels entry)")
    attention_head_dim: int | None = opt(8, "attention head width; null = one head per block")
    dropout: float = opt(0.0, "dropout inside the resnets")
    norm_eps: float = opt(1e-5, "GroupNorm epsilon")
    downsample_padding: int = opt(1, "padding of the down-sampling convs (ddpm-cifar10-32 uses 0)")
    flip_sin_to_cos: bool = opt(True, "time-embedding layout (ddpm-cifar10-32: false)")
    freq_shift: int = opt(0, "time-embedding frequency shift (ddpm-cifar10-32: 1)")
    # DDPMScheduler
    num_train_timesteps: int = opt(1000, "diffusion steps T")
    beta_schedule: str = opt("linear", "noise schedule", choices=("linear", "scaled_linear", "squaredcos_cap_v2"))
    beta_start: float = opt(1e-4, "first beta")
    beta_end: float = opt(0.02, "last beta")
    # optimisation
    learning_rate: float = opt(2e-3, "AdamW peak learning rate")
    lr_warmup_steps: int = opt(20, "linear warm-up steps, then cosine decay to 0")
    adam_weight_decay: float = opt(0.0, "AdamW weight decay")
    ema_max_decay: float = opt(0.9999, "EMA decay ceiling (warm-up: 1 - (1 + step) ** -ema_power)")
    ema_power: float = opt(0.75, "EMA warm-up power")
    cpu_threads: int = opt(0, "torch threads (0 = on a CPU the usable cores split among local processes, unless REPFUSION_NUM_THREADS or your OMP_NUM_THREADS says otherwise)")
    # output
    num_samples: int = opt(16, "images sampled from the EMA model into samples.png (0 = none)")
    sample_inference_steps: int = opt(50, "denoising steps for samples.png")
    reuse: bool = opt(False, "return an existing teacher at output_dir trained with the same config instead of training")
    init_from: str = opt("", "start from this teacher's UNet weights (a pipeline or UNet folder of the same architecture; "
                             "the run's own schedule, warm-up and EMA start afresh); '' = random init")
    # the feature probe while training (probe_curve.json in <output_dir>.run and in the teacher folder)
    probe_every: int = opt(0, "probe the EMA UNet's pooled mid-block feature every N steps (a multiple of log_every; "
                              "also at step 0); 0 = never")
    probe_dataset: str = opt("", "labelled dataset with train and test splits for the probe ('' = dataset)")
    probe_timesteps: list[int] = opt([10, 100, 300], "time steps probed")
    probe_train_images: int = opt(5000, "train images the probe is fit on (5000 of CIFAR-10 = about 500 a class)")
    probe_test_images: int = opt(2000, "test images the probe is scored on")


# ------------------------------------------------------------------ building blocks
def build_unet(cfg: TeacherConfig) -> UNet2DModel:
    """A fresh `UNet2DModel` of the config's architecture."""
    levels = len(cfg.block_out_channels)
    if not (len(cfg.down_block_types) == len(cfg.up_block_types) == levels):
        raise ConfigError(
            f"block_out_channels ({levels} levels), down_block_types ({len(cfg.down_block_types)}) and "
            f"up_block_types ({len(cfg.up_block_types)}) must have the same length"
        )
    if cfg.image_size % 2 ** (levels - 1):
        raise ConfigError(f"image_size={cfg.image_size} must be divisible by 2**{levels - 1} for {levels} levels")
    bad = [c for c in cfg.block_out_channels if c % cfg.norm_num_groups]
    if bad:
        raise ConfigError(f"norm_num_groups={cfg.norm_num_groups} must divide every block_out_channels entry (not {bad})")
    return UNet2DModel(
        sample_size=cfg.image_size,
        in_channels=cfg.in_channels,
        out_channels=cfg.in_channels,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(cfg.up_block_types),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        attention_head_dim=cfg.attention_head_dim,
        dropout=cfg.dropout,
        norm_eps=cfg.norm_eps,
        downsample_padding=cfg.downsample_padding,
        flip_sin_to_cos=cfg.flip_sin_to_cos,
        freq_shift=cfg.freq_shift,
    )


def initial_unet(cfg: TeacherConfig) -> UNet2DModel:
    """`build_unet(cfg)`, holding `cfg.init_from`'s weights when it names a teacher (its UNet config
    must equal the run's, dropout aside); a mismatch is a `ConfigError` naming the keys."""
    unet = build_unet(cfg)
    if not cfg.init_from:
        return unet
    if not Path(cfg.init_from).expanduser().exists():
        raise ConfigError(f"init_from={cfg.init_from!r} does not exist; give a teacher folder (model_index.json + unet/) or ''")
    start, _ = load_unet(Path(cfg.init_from).expanduser())
    ours, theirs = (json.loads(json.dumps(dict(m.config), default=str)) for m in (unet, start))
    differ = sorted(k for k in ours if not k.startswith("_") and k != "dropout" and ours[k] != theirs.get(k))
    if differ:
        detail = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours[k]!r} here" for k in differ)
        raise ConfigError(f"init_from={cfg.init_from!r} has another UNet ({detail}); give this run the same architecture keys")
    unet.load_state_dict(start.state_dict())
    return unet


def build_noise_scheduler(cfg: TeacherConfig) -> DDPMScheduler:
    """The `DDPMScheduler` of the config's noise schedule."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
    )


def diffusion_loss(unet: UNet2DModel, noise_scheduler: DDPMScheduler, images: torch.Tensor) -> torch.Tensor:
    """The DDPM epsilon-prediction MSE for `images` `[B, C, H, W]` in [0, 1] (fed as x * 2 - 1)."""
    x0 = minus_one_one(images)
    noise = torch.randn_like(x0)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
    noisy = noise_scheduler.add_noise(x0, noise, t)
    return F.mse_loss(unet(noisy, t).sample.float(), noise.float())


def config_key(cfg: TeacherConfig) -> dict[str, Any]:
    """What decides the teacher's weights: the config minus where it is written and how it is logged."""
    skip = {"output_dir", "num_samples", "sample_inference_steps", "log_every", "report_to", "checkpointing_steps",
            "checkpoints_total_limit", "resume_from_checkpoint", "reuse", "dataloader_num_workers", "cpu_threads",
            "probe_every", "probe_dataset", "probe_timesteps", "probe_train_images", "probe_test_images"}
    key = {k: v for k, v in to_dict(cfg).items() if k not in skip}
    key["mixed_precision"] = run_precision(key["mixed_precision"])
    return key


def reusable(cfg: TeacherConfig) -> bool:
    """True if `output_dir` holds a complete teacher trained with this config."""
    out = Path(cfg.output_dir).expanduser()
    saved = out / TEACHER_CONFIG_FILE
    if not ((out / "model_index.json").is_file() and saved.is_file()):
        return False
    try:
        return config_key_from(json.loads(saved.read_text())) == json.loads(json.dumps(config_key(cfg)))
    except (json.JSONDecodeError, OSError):
        return False


def config_key_from(saved: dict[str, Any]) -> dict[str, Any]:
    """`config_key` of a saved `teacher_config.json` (a key it lacks, from before the key existed,
    reads as its default: what such a run did)."""
    fields = config_key(TeacherConfig())
    key = {k: saved.get(k, default) for k, default in fields.items()}
    key["mixed_precision"] = run_precision(key["mixed_precision"])
    return key


# ------------------------------------------------------------------ output
def save_teacher(unet: UNet2DModel, noise_scheduler: DDPMScheduler, out: Path, cfg: TeacherConfig,
                 info: dict[str, Any], probe_curve: Path | None = None) -> Path:
    """Write `DDPMPipeline(unet, noise_scheduler)` (safetensors) + the config and training info, atomically
    (`atomic_folder`: a temp folder beside the target, swapped in on success; a kill never leaves
    half a teacher)."""
    with atomic_folder(out) as tmp:
        DDPMPipeline(unet=unet, scheduler=noise_scheduler).save_pretrained(tmp, safe_serialization=True)
        recorded = {**to_dict(cfg), "mixed_precision": run_precision(cfg.mixed_precision)}
        (tmp / TEACHER_CONFIG_FILE).write_text(json.dumps(recorded, indent=2) + "\n")
        (tmp / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if probe_curve is not None and probe_curve.is_file():
            shutil.copyfile(probe_curve, tmp / PROBE_CURVE_FILE)
        if cfg.num_samples > 0:
            save_samples(unet, noise_scheduler, tmp / SAMPLES_FILE, cfg)
    return Path(out)


@torch.no_grad()
def save_samples(unet: UNet2DModel, noise_scheduler: DDPMScheduler, path: Path, cfg: TeacherConfig) -> None:
    """A grid of `num_samples` images denoised by the EMA UNet in `sample_inference_steps` steps."""
    pipe = DDPMPipeline(unet=unet, scheduler=noise_scheduler)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    images = pipe(batch_size=cfg.num_samples, generator=generator, num_inference_steps=cfg.sample_inference_steps).images
    cols = int(math.ceil(math.sqrt(len(images))))
    rows = int(math.ceil(len(images) / cols))
    images += [images[0].copy().point(lambda _: 0)] * (rows * cols - len(images))
    make_image_grid(images, rows=rows, cols=cols).save(path)


# ------------------------------------------------------------------ EMA in the resumable state (safetensors, no pickle)
def ema_state_hooks(accelerator: Accelerator, ema: EMAModel) -> None:
    """Save / restore the EMA shadow weights with `accelerator.save_state` as safetensors + JSON
    (never a pickle: nothing is registered with `register_for_checkpointing`)."""
    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            save_file({str(i): p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)}, os.path.join(output_dir, "ema.safetensors"))
            scalars = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
            Path(output_dir, "ema.json").write_text(json.dumps(scalars))

    def load_hook(models, input_dir):
        tensors = load_file(os.path.join(input_dir, "ema.safetensors"))
        state = json.loads(Path(input_dir, "ema.json").read_text())
        state["shadow_params"] = [tensors[str(i)] for i in range(len(tensors))]
        ema.load_state_dict(state)
        ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


# ------------------------------------------------------------------ training
def loop_settings(cfg: TeacherConfig) -> LoopSettings:
    """The loop's settings of a teacher run: checkpoints and tracker logs in ``<output_dir>.run`` (the
    teacher folder is the final state)."""
    out = Path(cfg.output_dir).expanduser()
    return LoopSettings.of(cfg, output_dir=str(out.parent / f"{out.name}.run"))


def _cosine_with_warmup(cfg: TeacherConfig):  # noqa: ANN202  (the loop's LrSchedule)
    def build(optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_steps: int) -> Any:
        return get_cosine_schedule_with_warmup(optimizer, cfg.lr_warmup_steps, total_steps)

    return build


def probe_curve(cfg: TeacherConfig, accelerator: Accelerator) -> ProbeCurve | None:
    """The run's `ProbeCurve` (main process, ``probe_every`` > 0), in ``<output_dir>.run``."""
    if not cfg.probe_every:
        return None
    if cfg.probe_every % max(1, cfg.log_every):
        raise ConfigError(f"probe_every={cfg.probe_every} must be a multiple of log_every={cfg.log_every}")
    if not accelerator.is_main_process:
        return None
    return ProbeCurve(Path(loop_settings(cfg).output_dir) / PROBE_CURVE_FILE, dataset=cfg.probe_dataset or cfg.dataset,
                      image_size=cfg.image_size, in_chans=cfg.in_channels, timesteps=cfg.probe_timesteps,
                      train_images=cfg.probe_train_images, test_images=cfg.probe_test_images, seed=cfg.seed)


def train_teacher(cfg: TeacherConfig) -> Path:
    """Train (or, with `reuse`, find) the teacher described by `cfg`; return its folder.

    Every process must call this (it is collective); the main process writes the folder. The
    process group is left up, so the caller can go on in the same process (recipes/distill.py
    distils next); only `main()`, where this is the whole program, destroys it at the end.
    """
    out = Path(cfg.output_dir).expanduser()
    if cfg.reuse and reusable(cfg):
        return out
    configure_cpu_threads(cfg.cpu_threads)
    trainer = Trainer(loop_settings(cfg), "train_teacher", epoch_records=False, final_checkpoint=False)
    accelerator = trainer.accelerator
    set_seed(cfg.seed)
    dataset = build_dataset(cfg.dataset, split=cfg.split, image_size=cfg.image_size, in_chans=cfg.in_channels,
                            augment=cfg.augment, seed=cfg.seed)
    if len(dataset) < cfg.train_batch_size:
        raise InputError(f"dataset {cfg.dataset!r} has {len(dataset)} images, fewer than one batch ({cfg.train_batch_size}); "
                         "lower train_batch_size")
    loader = trainer.train_loader(dataset)
    unet = initial_unet(cfg)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, power=cfg.ema_power,
                   model_cls=type(unet), model_config=unet.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay)
    ema.to(accelerator.device)
    ema_state_hooks(accelerator, ema)
    model, _, _ = trainer.prepare(unet, optimizer, loader, _cosine_with_warmup(cfg), tracker_config=to_dict(cfg))
    noise_scheduler = build_noise_scheduler(cfg)
    logged = {"loss": float("nan")}
    curve = probe_curve(cfg, accelerator)

    def probe(step_number: int) -> None:
        """The EMA weights' probe row (main process; the others go on to the next collective)."""
        if curve is None or step_number % cfg.probe_every:
            return
        ema_unet = build_unet(cfg)
        ema.copy_to(ema_unet.parameters())
        top1 = curve.record(step_number, ema_unet)
        accelerator.print(f"teacher: probe at step {step_number}: " + ", ".join(f"t={t} {v:.2f}%" for t, v in top1.items()))

    def step(model: torch.nn.Module, batch: dict[str, Any], progress: float) -> StepOutput:
        loss = diffusion_loss(model, noise_scheduler, batch["image"])
        return StepOutput(loss=loss, losses={"loss": loss})

    def check_loss(step_number: int, means: dict[str, float]) -> None:
        """The mean loss since the last log (over processes); a non-finite loss stops the run."""
        value = means["loss"]
        if not math.isfinite(value):
            raise FloatingPointError(f"teacher loss became {value} at step {step_number}; lower learning_rate")
        logged["loss"] = value
        accelerator.log({"teacher/loss": value, "teacher/lr": trainer.lr_schedule.get_last_lr()[0]}, step=step_number)
        probe(step_number)

    if trainer.state.step == 0:
        probe(0)  # the starting weights (init_from's, or random)
    start = time.time()
    state = trainer.fit(step, after_optimizer_step=lambda: ema.step(accelerator.unwrap_model(model).parameters()),
                        on_log=check_loss)
    seconds = time.time() - start
    last_loss = logged["loss"]
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ema_unet = build_unet(cfg)
        ema.copy_to(ema_unet.parameters())
        info = {"steps": state.step, "final_loss": last_loss if math.isfinite(last_loss) else None,
                "train_seconds": round(seconds, 1), "images": len(dataset), "processes": accelerator.num_processes,
                "skipped_images": len(getattr(dataset, "skipped", []))}
        save_teacher(ema_unet.eval(), build_noise_scheduler(cfg), out, cfg, info, curve.path if curve else None)
        accelerator.print(f"teacher: {out} ({state.step} steps, loss {last_loss:.4f}, {seconds:.0f} s)")
    accelerator.wait_for_everyone()
    trainer.finish()
    return out


def parse_config(argv: Sequence[str] | None = None, *, configs: Path = RECIPE_CONFIGS) -> TeacherConfig:
    """`--config FILE.yaml` (default `configs`/teacher_digits.yaml) plus `--key value` flags."""
    return load_config(TeacherConfig, argv, default_file=configs / "teacher_digits.yaml")


def main(argv: Sequence[str] | None = None, *, doc: str = __doc__, configs: Path = RECIPE_CONFIGS) -> Path:
    """``recipes/train_teacher.py``: ``--help`` (with the recipe's `doc`), or train and end the processes."""
    if wants_help(argv):
        print(format_help(TeacherConfig, "accelerate launch recipes/train_teacher.py", doc.split("\n\n")[0]))
        raise SystemExit(0)
    out = train_teacher(parse_config(argv, configs=configs))
    end_processes()  # the whole program ends here (no-op for one process)
    return out
