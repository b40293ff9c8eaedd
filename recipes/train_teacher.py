#!/usr/bin/env python
"""Train a DDPM teacher (diffusers `UNet2DModel` + `DDPMScheduler`, EMA weights) on unlabelled images.

For domains with no public diffusion model, and for machines that cannot download one. The
result is a diffusers pipeline folder (`model_index.json`, `unet/`, `scheduler/`, written by
`DDPMPipeline.save_pretrained` with the EMA weights) that `repfusion_zoo.teachers.DiffusionTeacher`
loads; it is written to a temp folder and renamed, so a killed run never leaves half a teacher.

    accelerate launch recipes/train_teacher.py                       # digits, 16 px, ~2 min on 2 CPU cores
    accelerate launch --multi_gpu --num_processes 2 recipes/train_teacher.py   # 2 processes (gloo on CPU)
    accelerate launch --mixed_precision bf16 recipes/train_teacher.py \
        --config recipes/configs/teacher_cifar10.yaml --dataset /data/cifar10   # the ddpm-cifar10-32 architecture
    python recipes/train_teacher.py --help                           # every key, its default and meaning

Every YAML key is also a flag (`--key value`); an unknown key is an error listing the valid ones.
In Python: `from train_teacher import TeacherConfig, train_teacher; train_teacher(TeacherConfig(...))`.
Labels are ignored. The keys are those of the other recipes (and of diffusers' example
scripts; the short names `batch_size`, `max_steps`, `resume`, ... are aliases). `train_batch_size`
is the global batch of one optimiser step: each process takes train_batch_size / (processes x
gradient_accumulation_steps) per micro-batch. `--resume_from_checkpoint latest` continues from
the newest complete `<output_dir>.run/checkpoint-<step>` (written every `checkpointing_steps`).
Mixed precision comes from the launcher (`accelerate launch --mixed_precision bf16`) unless
`--mixed_precision` is given here. `--reuse true` returns an existing teacher trained with the
same config instead of training again.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F

from repfusion_zoo.errors import ConfigError, InputError, RepFusionError
from repfusion_zoo.atomic import atomic_folder
from repfusion_zoo.training.config import format_help, load_config, opt, to_dict, wants_help
from repfusion_zoo.training.threads import configure_cpu_threads

if TYPE_CHECKING:  # imported on first use
    from accelerate import Accelerator
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel

RECIPES = Path(__file__).resolve().parent
DEFAULT_CONFIG = RECIPES / "configs" / "teacher_digits.yaml"
#: written into the teacher folder beside model_index.json: the config and what training measured
TEACHER_CONFIG_FILE = "teacher_config.json"
TRAINING_INFO_FILE = "training_info.json"
SAMPLES_FILE = "samples.png"


@dataclass
class TeacherConfig:
    """Every key of a teacher run (the defaults are recipes/configs/teacher_digits.yaml)."""

    # data
    dataset: str = opt("digits", "build_dataset spec: digits | imagefolder:<path> | <path> | hf:<id or path>[:<config>]")
    split: str = opt("train", "split to train on (labels are ignored)")
    image_size: int = opt(16, "images are resized to image_size x image_size; the UNet's sample_size")
    in_channels: int = opt(3, "image channels (grey data is replicated); 3 matches RGB students")
    augment: bool = opt(True, "flips for image data, small shifts for digits (see repfusion_zoo.data)")
    dataloader_num_workers: int = opt(0, "DataLoader worker processes")
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
    max_train_steps: int = opt(300, "optimiser steps")
    train_batch_size: int = opt(64, "global batch per optimiser step (split over processes x gradient_accumulation_steps)")
    gradient_accumulation_steps: int = opt(1, "micro-batches per optimiser step")
    learning_rate: float = opt(1e-3, "AdamW peak learning rate")
    lr_warmup_steps: int = opt(20, "linear warm-up steps, then cosine decay to 0")
    adam_weight_decay: float = opt(0.0, "AdamW weight decay")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = off)")
    ema_max_decay: float = opt(0.9999, "EMA decay ceiling (warm-up: 1 - (1 + step) ** -ema_power)")
    ema_power: float = opt(0.75, "EMA warm-up power")
    mixed_precision: str = opt("", "no | fp16 | bf16; empty = what `accelerate launch` says", choices=("", "no", "fp16", "bf16"))
    seed: int = opt(0, "seed of the data order, augmentation, noise and time steps")
    cpu_threads: int = opt(0, "torch threads (0 = on a CPU the usable cores split among local processes, unless REPFUSION_NUM_THREADS or your OMP_NUM_THREADS says otherwise)")
    # output
    output_dir: str = opt("outputs/teachers/digits-ddpm16", "the teacher folder (diffusers pipeline layout)")
    num_samples: int = opt(16, "images sampled from the EMA model into samples.png (0 = none)")
    sample_inference_steps: int = opt(50, "denoising steps for samples.png")
    log_every: int = opt(25, "steps between logged losses")
    report_to: str = opt("", "Accelerate trackers, e.g. tensorboard (empty: none)")
    checkpointing_steps: int = opt(0, "save a resumable state <output_dir>.run/checkpoint-<step> every N steps (0 = never)")
    checkpoints_total_limit: int = opt(2, "how many checkpoint-<step> folders to keep")
    resume_from_checkpoint: str = opt("", "'' = fresh, 'latest' (or 'auto') = the newest checkpoint, or a checkpoint folder")
    reuse: bool = opt(False, "return an existing teacher at output_dir trained with the same config instead of training")


# ------------------------------------------------------------------ building blocks
def build_unet(cfg: TeacherConfig) -> UNet2DModel:
    """A fresh `UNet2DModel` of the config's architecture."""
    from diffusers import UNet2DModel

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


def build_scheduler(cfg: TeacherConfig) -> DDPMScheduler:
    """The `DDPMScheduler` of the config's noise schedule."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
    )


def diffusion_loss(unet: UNet2DModel, scheduler: DDPMScheduler, images: torch.Tensor) -> torch.Tensor:
    """The DDPM epsilon-prediction MSE for `images` `[B, C, H, W]` in [0, 1] (fed as x * 2 - 1)."""
    x0 = images * 2.0 - 1.0
    noise = torch.randn_like(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
    noisy = scheduler.add_noise(x0, noise, t)
    return F.mse_loss(unet(noisy, t).sample.float(), noise.float())


def run_precision(mixed_precision: str | None) -> str:
    """The precision a run uses: its `mixed_precision` key, else the launcher's (`accelerate launch
    --mixed_precision` sets ACCELERATE_MIXED_PRECISION, which Accelerator reads), else "no"."""
    return mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION", "") or "no"


def config_key(cfg: TeacherConfig) -> dict[str, Any]:
    """What decides the teacher's weights: the config minus where it is written and how it is logged."""
    skip = {"output_dir", "num_samples", "sample_inference_steps", "log_every", "report_to", "checkpointing_steps",
            "checkpoints_total_limit", "resume_from_checkpoint", "reuse", "dataloader_num_workers", "cpu_threads"}
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
    """`config_key` of a saved `teacher_config.json` (keys it lacks read as None; short alias names read as theirs)."""
    from repfusion_zoo.training.config import canonical

    fields = config_key(TeacherConfig())
    saved = canonical(saved, "teacher_config.json")
    key = {k: saved.get(k) for k in fields}
    key["mixed_precision"] = run_precision(key["mixed_precision"])
    return key


# ------------------------------------------------------------------ atomic output
# `atomic_folder` (repfusion_zoo.atomic): a temp folder beside the target, swapped in on success;
# a killed earlier writer's leftovers are healed first. A kill never leaves a half teacher.


def save_teacher(unet: UNet2DModel, scheduler: DDPMScheduler, out: Path, cfg: TeacherConfig, info: dict[str, Any]) -> Path:
    """Write `DDPMPipeline(unet, scheduler)` (safetensors) + the config and training info, atomically."""
    from diffusers import DDPMPipeline

    with atomic_folder(out) as tmp:
        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        recorded = {**to_dict(cfg), "mixed_precision": run_precision(cfg.mixed_precision)}
        (tmp / TEACHER_CONFIG_FILE).write_text(json.dumps(recorded, indent=2) + "\n")
        (tmp / TRAINING_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if cfg.num_samples > 0:
            save_samples(unet, scheduler, tmp / SAMPLES_FILE, cfg)
    return Path(out)


@torch.no_grad()
def save_samples(unet: UNet2DModel, scheduler: DDPMScheduler, path: Path, cfg: TeacherConfig) -> None:
    """A grid of `num_samples` images denoised by the EMA UNet in `sample_inference_steps` steps."""
    from diffusers import DDPMPipeline
    from diffusers.utils import make_image_grid

    pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    images = pipe(batch_size=cfg.num_samples, generator=generator, num_inference_steps=cfg.sample_inference_steps).images
    cols = int(math.ceil(math.sqrt(len(images))))
    rows = int(math.ceil(len(images) / cols))
    images += [images[0].copy().point(lambda _: 0)] * (rows * cols - len(images))
    make_image_grid(images, rows=rows, cols=cols).save(path)


# ------------------------------------------------------------------ EMA in the resumable state (safetensors, no pickle)
def ema_state_hooks(accelerator: Accelerator, ema: EMAModel) -> None:
    """Save / restore the EMA shadow weights with `accelerator.save_state` as safetensors + JSON."""
    from safetensors.torch import load_file, save_file

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
def make_accelerator(cfg: TeacherConfig, run_dir: Path) -> Accelerator:
    """An Accelerator for the run; a CPU-only multi-process launch becomes one gloo group.

    (`accelerate launch --multi_gpu --num_processes N` starts N workers; without `cpu=True` they
    would be N lone runs. `accelerate launch --cpu --num_processes N` starts one process.)
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    from repfusion_zoo.distributed import multi_process_cpu

    trackers = [t for t in cfg.report_to.split(",") if t and t != "none"]
    return Accelerator(
        cpu=multi_process_cpu(),
        mixed_precision=cfg.mixed_precision or None,  # None: ACCELERATE_MIXED_PRECISION from `accelerate launch`
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )


@dataclass
class _Run:
    """What one training run holds: prepared model / optimiser / data, the EMA, the checkpointer."""

    accelerator: Any
    unet: Any
    scheduler: Any
    ema: Any
    optimizer: Any
    lr_schedule: Any
    loader: Any
    sampler: Any
    seeded: Any
    dataset: Any
    checkpoints: Any


def _build_run(cfg: TeacherConfig, accelerator, run_dir: Path) -> _Run:
    """Data (epoch-seeded order and augmentation), UNet, EMA, AdamW + cosine schedule, all prepared."""
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    from repfusion_zoo.data import build_dataset
    from repfusion_zoo.training.data import seeded_train_loader
    from repfusion_zoo.training.loop import micro_batch_size
    from repfusion_zoo.training.state import CheckpointManager

    dataset = build_dataset(cfg.dataset, split=cfg.split, image_size=cfg.image_size, in_chans=cfg.in_channels, augment=cfg.augment, seed=cfg.seed)
    if len(dataset) < cfg.train_batch_size:
        raise InputError(f"dataset {cfg.dataset!r} has {len(dataset)} images, fewer than one batch ({cfg.train_batch_size}); lower train_batch_size")
    loader, sampler, seeded = seeded_train_loader(dataset, micro_batch_size(cfg, accelerator.num_processes), cfg.seed, cfg.dataloader_num_workers)
    unet = build_unet(cfg)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_max_decay, use_ema_warmup=True, power=cfg.ema_power, model_cls=type(unet), model_config=unet.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay)
    # a prepared LR schedule steps once per process per optimiser step: scale its horizon to match
    processes = accelerator.num_processes
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, cfg.lr_warmup_steps * processes, cfg.max_train_steps * processes)
    unet, optimizer, loader, lr_schedule = accelerator.prepare(unet, optimizer, loader, lr_schedule)
    ema.to(accelerator.device)
    ema_state_hooks(accelerator, ema)
    return _Run(accelerator, unet, build_scheduler(cfg), ema, optimizer, lr_schedule, loader, sampler, seeded, dataset,
                CheckpointManager(accelerator, run_dir, cfg.checkpoints_total_limit))


def _optimise(cfg: TeacherConfig, run: _Run, progress, bar) -> float:
    """Train from `progress` to `cfg.max_train_steps` optimiser steps; returns the last logged loss."""
    from repfusion_zoo.training.loop import epoch_batches
    from repfusion_zoo.training.state import seed_step

    acc = run.accelerator
    accumulation, micro, losses, last_loss = acc.gradient_accumulation_steps, 0, [], float("nan")
    run.unet.train()
    while progress.step < cfg.max_train_steps:
        run.sampler.set_epoch(progress.epoch)
        run.seeded.set_epoch(progress.epoch)
        # the order and augmentation are a function of the epoch only (Accelerate would reset them to
        # its own pass count, so a resumed run would replay epoch 0's order)
        batches = epoch_batches(acc, run.loader, progress.epoch, progress.batch_in_epoch)
        for batch in batches:
            # noise and time steps are a function of (seed, step, micro-batch, rank): resumable bit-exactly
            seed_step(cfg.seed, progress.step * accumulation + micro, acc.process_index)
            with acc.accumulate(run.unet):
                loss = diffusion_loss(run.unet, run.scheduler, batch["image"])
                acc.backward(loss)
                if acc.sync_gradients and cfg.max_grad_norm > 0:
                    acc.clip_grad_norm_(run.unet.parameters(), cfg.max_grad_norm)
                run.optimizer.step()
                run.lr_schedule.step()
                run.optimizer.zero_grad(set_to_none=True)
            progress.batch_in_epoch += 1
            losses.append(loss.detach())
            micro += 1
            if not acc.sync_gradients:
                continue
            micro = 0
            run.ema.step(acc.unwrap_model(run.unet).parameters())
            progress.step += 1
            bar.update(1)
            if progress.step % cfg.log_every == 0 or progress.step == cfg.max_train_steps:
                last_loss = _log_loss(run, losses, progress.step, bar)
                losses.clear()
            if cfg.checkpointing_steps and progress.step % cfg.checkpointing_steps == 0:
                run.checkpoints.save(progress)
            if progress.step >= cfg.max_train_steps:
                break
        else:
            progress.epoch += 1
            progress.batch_in_epoch = 0
    return last_loss


def _log_loss(run: _Run, losses: list[torch.Tensor], step: int, bar) -> float:
    """Mean loss since the last log, averaged over processes; a non-finite loss stops the run."""
    value = float(run.accelerator.reduce(torch.stack(losses).mean(), reduction="mean"))
    if not math.isfinite(value):
        raise FloatingPointError(f"teacher loss became {value} at step {step}; lower learning_rate")
    bar.set_postfix(loss=f"{value:.4f}")
    run.accelerator.log({"teacher/loss": value, "teacher/lr": run.lr_schedule.get_last_lr()[0]}, step=step)
    return value


def train_teacher(cfg: TeacherConfig, accelerator: Accelerator | None = None) -> Path:
    """Train (or, with `reuse`, find) the teacher described by `cfg`; return its folder.

    `accelerator`: an existing `accelerate.Accelerator` to run under (its precision and
    gradient accumulation apply; its trackers are left open); by default one is made from `cfg`
    (`make_accelerator`), and the trackers this call opened on it are finished before it returns.
    Every process must call this (it is collective); the main process writes the folder.
    The process group is left up either way, so the caller can go on in the same process
    (e.g. recipes/distill.py distils next); only `main()`, where this is the whole program,
    destroys it at the end.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from repfusion_zoo.training.state import Progress, resolve_resume

    out = Path(cfg.output_dir).expanduser()
    if cfg.reuse and reusable(cfg):
        return out
    run_dir = out.parent / f"{out.name}.run"
    configure_cpu_threads(cfg.cpu_threads)
    own_accelerator = accelerator is None
    accelerator = accelerator or make_accelerator(cfg, run_dir)
    set_seed(cfg.seed)
    run = _build_run(cfg, accelerator, run_dir)
    progress = Progress()
    resume_from = resolve_resume(cfg.resume_from_checkpoint, run_dir)
    if resume_from is not None:
        progress = run.checkpoints.load(resume_from)
        accelerator.print(f"resumed from {resume_from} at step {progress.step}")
    if own_accelerator and accelerator.log_with:
        accelerator.init_trackers("train_teacher", config={k: str(v) for k, v in to_dict(cfg).items()})

    bar = tqdm(total=cfg.max_train_steps, initial=progress.step, desc="teacher", disable=not accelerator.is_local_main_process)
    start = time.time()
    last_loss = _optimise(cfg, run, progress, bar)
    bar.close()
    seconds = time.time() - start

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        ema_unet = build_unet(cfg)
        run.ema.copy_to(ema_unet.parameters())
        info = {"steps": progress.step, "final_loss": last_loss if math.isfinite(last_loss) else None, "train_seconds": round(seconds, 1), "images": len(run.dataset),
                "processes": accelerator.num_processes, "skipped_images": len(getattr(run.dataset, "skipped", []))}
        save_teacher(ema_unet.eval(), build_scheduler(cfg), out, cfg, info)
        accelerator.print(f"teacher: {out} ({progress.step} steps, loss {last_loss:.4f}, {seconds:.0f} s)")
    accelerator.wait_for_everyone()
    if own_accelerator:
        # not accelerator.end_training(): it also destroys the process group, which would break
        # any collective the caller runs after this in the same process (main() destroys it)
        for tracker in accelerator.trackers:
            tracker.finish()
    return out


def parse_config(argv: Sequence[str] | None = None) -> TeacherConfig:
    """`--config FILE.yaml` (default recipes/configs/teacher_digits.yaml) plus `--key value` flags."""
    return load_config(TeacherConfig, argv, default_file=DEFAULT_CONFIG)


def main(argv: Sequence[str] | None = None) -> Path:
    if wants_help(argv):
        print(format_help(TeacherConfig, "accelerate launch recipes/train_teacher.py", __doc__.split("\n\n")[0]))
        sys.exit(0)
    out = train_teacher(parse_config(argv))
    from accelerate import PartialState

    PartialState().destroy_process_group()  # the whole program ends here (no-op for one process)
    return out


if __name__ == "__main__":
    try:
        main()
    except RepFusionError as error:  # bad input: one clear line, no traceback
        print(f"train_teacher.py: error: {error}", file=sys.stderr)
        sys.exit(2)
