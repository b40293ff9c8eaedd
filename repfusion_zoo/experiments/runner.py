"""Run an experiment grid: one teacher-feature cache, then every arm x seed x label budget.

For each label budget and seed, every arm follows one protocol: distil on the distilled images
from the cache (not for `scratch`), with decoder g and the policy's reward reading only the seed's
labelled subset (a distillation is named by its settings, `distill_dir`: one whose student the labels
cannot reach, a fixed or random t, runs once for every label budget); fine-tune on that labelled
subset (`recipes/finetune.py`); evaluate once on the full test split; score the frozen backbone by
kNN (bank: the labelled subset; queries: the test split) and the fine-tuned model on the validation
subset (for choices, never the test split).

Every arm-seed's recipe settings are checked (parsed as the recipes parse them) before anything
runs, so a mistyped arm key fails at once, not after the cache is built. Each recipe of an
arm-seed gets its settings as one file (`<distillation>.yaml`, `<run>/finetune.yaml`, run as
``--config``). Each arm-seed writes `result.json` (atomically) when all of that is done: a rerun
skips it, and a killed one resumes its recipes from their last checkpoints. A half-finished
arm-seed never counts. After every arm-seed the results files are rewritten from the finished ones
and copied to `results_dir`: that JSON is the grid's record, and a rerun on another machine (a fresh
checkout) restores the arm-seeds it holds whose settings still match (`record.py`), so a grid longer
than one session goes on across sessions. The recipes run as subprocesses through `cfg.launcher`
(accelerate launch by default).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import yaml
from torch.utils.data import Dataset, Subset

from ..atomic import replace_file, replace_text
from ..cache import FeatureCache, build_feature_cache
from ..config import settings_of
from ..data import build_dataset
from ..data.subsets import read_indices
from ..errors import ConfigError, IncompleteCacheError, InputError, RepFusionError
from ..pipelines.distill import load_distill_config
from ..pipelines.finetune import load_finetune_config
from ..training.precision import EMULATED_BF16, emulated_bf16
from ..training.records import DIVERGED_FILE, TIMING_FILE, write_timing
from ..teachers import TeacherSettings, build_teacher
from ..timesteps import parse_timesteps, strategy_learns
from .config import PROBE, ExperimentConfig, arm_finetune, arm_seeds, check_arms, run_dir
from .result import RESULT_FILE, ArmSeedResult
from .evaluation import frozen_knn, validation_top1
from .machine import this_machine
from .probe import probe_timestep
from .validate import VALIDATE, successive_halving
from .publish import publish_best
from .record import arm_seed_settings, read_record, recorded_seconds, restore_recorded
from .report import results_stem, write_results
from .subsets import ExperimentSubsets, write_subsets

__all__ = ["run_experiment", "ExperimentError", "run_dir"]

#: the distill config every arm starts from (the paper's schedule); the experiment's keys override it
DISTILL_BASE = "_paper_schedule.yaml"


class ExperimentError(RepFusionError, RuntimeError):
    """A recipe of one arm-seed failed; the message names it and the tail of its log."""


def as_flags(values: Mapping[str, Any]) -> list[str]:
    """`{"a": 1, "b": [1, 2], "c": True}` -> `["--a", "1", "--b", "[1, 2]", "--c", "true"]` (JSON is YAML)."""
    flags: list[str] = []
    for key, value in values.items():
        text = json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)
        flags += [f"--{key}", text]
    return flags


def settings_file(flags: Mapping[str, Any], path: Path) -> Path:
    """A recipe's settings as one YAML file (its ``config`` key, a base file, becomes ``base:``)."""
    values = {("base" if key == "config" else key): value for key, value in flags.items()}
    replace_text(path, yaml.safe_dump(values, sort_keys=False))
    return path


def run_recipe(cfg: ExperimentConfig, recipes_dir: Path, recipe: str, flags: Mapping[str, Any], log: Path) -> None:
    """`<launcher> recipes/<recipe>.py --config <log's folder>/<recipe>.yaml` (the settings as one file),
    its output appended to `log`; the process's wall seconds go into the run's `timing.json` as
    ``process`` (beside the phases the recipe timed)."""
    launcher = shlex.split(cfg.launcher)
    if launcher == ["python"]:
        launcher = [sys.executable]
    settings = settings_file(flags, log.with_suffix(".yaml"))
    command = [*launcher, str(recipes_dir / f"{recipe}.py"), "--config", str(settings)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(f"\n$ {shlex.join(command)}\n")
        handle.flush()
        started = time.time()
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code:
        tail = "".join(log.read_text().splitlines(keepends=True)[-25:])
        raise ExperimentError(f"{recipe} failed (exit {code}); full log {log}; its end:\n{tail}")
    timing = Path(flags["output_dir"]) / TIMING_FILE
    phases = json.loads(timing.read_text()) if timing.is_file() else {}
    write_timing(timing.parent, {**phases, "process": time.time() - started})


def ensure_cache(cfg: ExperimentConfig, train: Dataset, subsets: ExperimentSubsets) -> Path:
    """The teacher-feature cache of the distilled images at every t of `cfg.timesteps` (built or resumed)."""
    folder = Path(cfg.output_dir) / "cache"
    try:
        FeatureCache(folder)
        return folder
    except IncompleteCacheError:
        pass
    teacher = build_teacher(cfg, image_size=cfg.image_size, in_chans=cfg.in_chans, classes=getattr(train, "classes", ()))
    build_feature_cache(teacher, train, folder, timesteps=parse_timesteps(cfg.timesteps, teacher.num_train_timesteps),
                        dataset_spec=cfg.dataset, split="train", indices=read_indices(subsets.distill_images),
                        teacher_source=cfg.teacher, **cfg.cache)
    return folder


def distill_flags(cfg: ExperimentConfig, recipes_dir: Path, arm: str, seed: int, lpc: int, subsets: ExperimentSubsets,
                  cache: Path, t: int | None) -> dict[str, Any]:
    """recipes/distill.py keys of one arm-seed: the experiment's, the arm's, then the protocol's; its
    ``output_dir`` is `distill_dir` of the rest (the time-step report only where a policy learns)."""
    own = {k: v for k, v in cfg.arms[arm].items() if k not in ("seeds", "distill", "finetune")}
    flags: dict[str, Any] = {"config": str(recipes_dir / "configs" / DISTILL_BASE), "augment": True, "crop_padding": 0}
    flags.update({**cfg.distill, **own})  # flips only by default: the views the cache holds
    if t is not None:
        flags["t"] = t
    flags.update(task="classification", dataset=cfg.dataset, image_size=cfg.image_size, in_chans=cfg.in_chans,
                 **dataclasses.asdict(settings_of(TeacherSettings, cfg)), student=cfg.student,
                 student_kwargs=dict(cfg.student_kwargs), teacher_cache=str(cache),
                 train_subset=str(subsets.distill_images), label_subset=str(subsets.labelled(lpc, seed)),
                 seed=seed, finetune=False, resume_from_checkpoint="latest")
    settings = load_distill_config(as_flags(flags))  # as the recipe will read them
    flags["timestep_report"] = strategy_learns(settings.strategy)
    return {**flags, "output_dir": str(distill_dir(cfg, arm, seed, flags, labels_reach_student(settings)))}


def labels_reach_student(settings: Any) -> bool:
    """Whether a distillation's student depends on its label subset (`settings`: the parsed distill
    config): decoder g learns from the labels only for the policy's reward, so they reach the student
    through a learning strategy, or through gradient clipping over every parameter (g's gradient in the norm)."""
    return strategy_learns(settings.strategy) or settings.max_grad_norm > 0


def distill_dir(cfg: ExperimentConfig, arm: str, seed: int, flags: Mapping[str, Any], labels_matter: bool) -> Path:
    """Where a distillation runs: ``<output_dir>/distills/<arm>-seed<s>-<digest>``, the digest over its
    recipe settings (without the label subset unless `labels_matter`, `labels_reach_student`). A fixed
    or random t's distillation is the same at every label budget, so it runs once and every budget
    fine-tunes it; a policy's runs once per budget. The settings alone name it: where a finished
    distillation with the same digest exists under another arm's name (the same distill keys, other
    fine-tune keys), that one is used."""
    key = {k: v for k, v in flags.items() if k != "output_dir" and (labels_matter or k != "label_subset")}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    own = Path(cfg.output_dir) / "distills" / f"{arm}-seed{seed}-{digest}"
    done = sorted(folder.parent for folder in own.parent.glob(f"*-seed{seed}-{digest}/summary.json"))
    return own if own in done or not done else done[0]


def finetune_flags(cfg: ExperimentConfig, arm: str, seed: int, lpc: int, subsets: ExperimentSubsets,
                   backbone: Path | None) -> dict[str, Any]:
    """recipes/finetune.py keys of one arm-seed: the experiment's, the arm's own, then the protocol's
    (every `eval_every` epochs the validation subset is scored: the arm's validation curve). The
    experiment's teacher goes along where the fine-tune keeps the distillation loss (`distill_weight`)."""
    start = {"model": str(backbone), "pretrained": True} if backbone else {
        "model": cfg.student, "pretrained": False, "model_kwargs": dict(cfg.student_kwargs)}
    own = arm_finetune(cfg, arm)
    teacher = dataclasses.asdict(settings_of(TeacherSettings, cfg)) if own.get("distill_weight") else {}
    return {**own, **teacher, "task": "classification", "dataset": cfg.dataset,
            "image_size": cfg.image_size, "in_chans": cfg.in_chans, "train_subset": str(subsets.labelled(lpc, seed)),
            "val_subset": str(subsets.val), "seed": seed, "resume_from_checkpoint": "latest",
            "output_dir": str(run_dir(cfg, lpc, arm, seed) / "finetune"), **start}


def run_arm_seed(cfg: ExperimentConfig, recipes_dir: Path, arm: str, seed: int, lpc: int, subsets: ExperimentSubsets,
                 cache: Path | None, data: Mapping[str, Dataset]) -> ArmSeedResult:
    """Distil (unless scratch), fine-tune, evaluate; `result.json` once all of it is done (one made
    with other settings, e.g. by another grid sharing `output_dir`, is an `InputError`, not reused)."""
    folder = run_dir(cfg, lpc, arm, seed)
    settings = arm_seed_settings(cfg, arm, seed, lpc)
    if (folder / RESULT_FILE).is_file():
        return finished_result(folder / RESULT_FILE, settings)
    started = time.time()
    result = ArmSeedResult(arm=arm, seed=seed, labels_per_class=lpc, settings=settings)
    backbone = None
    labelled = read_indices(subsets.labelled(lpc, seed))
    if cfg.arms[arm].get("distill", True):
        if cfg.arms[arm].get("t") == PROBE:
            result.t, result.probe = probe_timestep(cache, labelled, data["train"], cfg.probe_test_fraction, seed)
        elif cfg.arms[arm].get("t") == VALIDATE:
            result.t, result.validate = validate_timestep(cfg, recipes_dir, arm, seed, lpc, subsets, cache, data)
        elif cfg.arms[arm].get("strategy") == "fixed":
            result.t = int(cfg.arms[arm].get("t", 0))
        chosen = result.t if cfg.arms[arm].get("t") in (PROBE, VALIDATE) else None  # else the arm's own t
        flags = distill_flags(cfg, recipes_dir, arm, seed, lpc, subsets, cache, chosen)
        distilled = Path(flags["output_dir"])
        if not (distilled / "summary.json").is_file():
            result.diverged = distil_or_diverge(cfg, recipes_dir, flags, distilled)
            if result.diverged:  # recorded without a fine-tune: the grid goes on, the report says so
                result.seconds = round(time.time() - started, 1)
                result.write(folder / RESULT_FILE)
                return result
        backbone = distilled / "backbone"
        result.backbone = str(backbone)
        result.distill = distill_summary(distilled)
        if result.validate:  # its cost against this full distillation's optimiser steps
            full = result.distill["epochs"][-1]["step"]
            result.validate["cost"] = round(result.validate["steps"] / max(1, full), 2)
    if not (folder / "finetune" / "metrics.json").is_file():
        run_recipe(cfg, recipes_dir, "finetune", finetune_flags(cfg, arm, seed, lpc, subsets, backbone), folder / "finetune.log")
    result.top1 = float(json.loads((folder / "finetune" / "metrics.json").read_text())["top1"])
    result.val_curve = epoch_values(folder / "finetune", "val/top1")
    timing = {"knn": time.time()}
    result.knn = frozen_knn(cfg, backbone, seed, Subset(data["train"], labelled), data["test"])
    timing["val"] = time.time()
    timing["knn"] = timing["val"] - timing["knn"]
    result.val_top1 = validation_top1(cfg, folder / "finetune" / "model", Subset(data["train"], read_indices(subsets.val)))
    timing["val"] = time.time() - timing["val"]
    runs = {"distill": backbone.parent if backbone else None, "finetune": folder / "finetune"}
    result.timing = {"runner": {k: round(v, 1) for k, v in timing.items()},
                     **{recipe: recipe_timing(run) for recipe, run in runs.items() if run and (run / TIMING_FILE).is_file()},
                     "machine": this_machine()}
    result.seconds = round(time.time() - started, 1)
    result.write(folder / RESULT_FILE)
    return result


def finished_result(path: Path, settings: str) -> ArmSeedResult:
    """The arm-seed `path` holds, where its settings digest is `settings` (or it predates digests)."""
    done = ArmSeedResult.read(path)
    if done.settings not in (None, settings):
        raise InputError(f"{path} was made with other settings than arm {done.arm!r} has now (another grid with "
                         f"the same output_dir and arm name, or a changed config): give this grid its own output_dir, "
                         f"or delete {path.parent} to run that arm-seed again")
    return done


def distil_or_diverge(cfg: ExperimentConfig, recipes_dir: Path, flags: Mapping[str, Any], distilled: Path) -> str | None:
    """Run the distillation into `distilled`; None once done, or the error of a distillation that
    diverged (its `DIVERGED_FILE`: a rerun resumes from the last checkpoint and diverges the same way).
    Any other failure raises `ExperimentError`."""
    try:
        run_recipe(cfg, recipes_dir, "distill", flags, distilled.with_suffix(".log"))
    except ExperimentError:
        if not (distilled / DIVERGED_FILE).is_file():
            raise
        return str(json.loads((distilled / DIVERGED_FILE).read_text())["error"])
    return None


def epoch_values(folder: Path, key: str) -> list[list[float]]:
    """``[[epoch (1-based), value], ...]``: `key` of every epoch record of a run's `log.jsonl` that has it
    (e.g. the validation curve, scored every `eval_every` epochs)."""
    epochs = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    return [[int(e["epoch"]) + 1, float(e[key])] for e in epochs if key in e]


def recipe_timing(folder: Path) -> dict[str, float]:
    """A recipe run's `timing.json`."""
    return json.loads((folder / TIMING_FILE).read_text())


def validate_timestep(cfg: ExperimentConfig, recipes_dir: Path, arm: str, seed: int, lpc: int, subsets: ExperimentSubsets,
                      cache: Path, data: Mapping[str, Dataset]) -> tuple[int, dict[str, Any]]:
    """The `validate` arm's t: successive halving of short cached distillations (`cfg.validate_steps`
    optimiser steps first), each scored by its frozen kNN top-1 on the validation subset."""
    folder = run_dir(cfg, lpc, arm, seed) / "validate"
    bank = Subset(data["train"], read_indices(subsets.labelled(lpc, seed)))
    queries = Subset(data["train"], read_indices(subsets.val))

    def distil(t: int, steps: int) -> Path:
        out = folder / f"t{t}-steps{steps}"
        if not (out / "summary.json").is_file():
            flags = {**distill_flags(cfg, recipes_dir, arm, seed, lpc, subsets, cache, t), "output_dir": str(out),
                     "max_train_steps": steps, "timestep_report": False, "checkpointing_steps": 0}
            run_recipe(cfg, recipes_dir, "distill", flags, folder / f"t{t}-steps{steps}.log")
        return out / "backbone"

    return successive_halving(FeatureCache(cache).timesteps, cfg.validate_steps, distil,
                              lambda backbone: frozen_knn(cfg, backbone, seed, bank, queries))


def distill_summary(folder: Path) -> dict[str, Any]:
    """What a finished distillation logged: per-epoch losses and entropy, and its time-step report."""
    epochs = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    report = folder / "timestep_report.json"
    return {"epochs": [{k: v for k, v in e.items() if k != "hist"} for e in epochs],
            "last_epoch_t_histogram": epochs[-1].get("hist", {}).get("t") if epochs else None,
            "timestep_report": json.loads(report.read_text()) if report.is_file() else None,
            "seconds": json.loads((folder / "summary.json").read_text()).get("distill_seconds")}


def check_arm_settings(cfg: ExperimentConfig, recipes_dir: Path, subsets: ExperimentSubsets, cache: Path) -> list[str]:
    """Parse every arm-seed's distill and fine-tune settings as the recipes will (before anything
    runs): a `ConfigError` names the arm and the key. Returns a warning for each arm whose own
    `mixed_precision` asks bf16 of a CPU that only emulates it (`EMULATED_BF16`: hours become days)."""
    emulated: dict[str, None] = {}
    for lpc in cfg.labels_per_class:
        for arm, spec in cfg.arms.items():
            for seed in arm_seeds(cfg, arm):
                try:
                    parsed = []
                    if spec.get("distill", True):
                        t = 0 if spec.get("t") in (PROBE, VALIDATE) else None  # chosen later; any t of the set parses
                        flags = distill_flags(cfg, recipes_dir, arm, seed, lpc, subsets, cache, t)
                        parsed.append(load_distill_config(as_flags(flags)))
                    parsed.append(load_finetune_config(as_flags(finetune_flags(cfg, arm, seed, lpc, subsets, None))))
                except ConfigError as error:
                    raise ConfigError(f"arm {arm!r} (seed {seed}, {lpc} labels per class): {error}") from None
                if any(emulated_bf16(settings.mixed_precision) for settings in parsed):
                    emulated[arm] = None
    return [f"arm {arm!r}: {EMULATED_BF16}; or run it where bf16 is native (AVX512-BF16, AMX, a GPU)"
            for arm in emulated]


def run_experiment(cfg: ExperimentConfig, *, recipes_dir: Path, command: str) -> list[Path]:
    """The whole grid (resumable); returns the results files written (see `report.write_results`)."""
    check_arms(cfg)
    if not cfg.teacher:
        raise ConfigError("the experiment needs --teacher (a diffusers teacher folder or Hub id)")
    out = Path(cfg.output_dir)
    started = time.time()
    subsets = ExperimentSubsets.of(out / "subsets")
    for warning in check_arm_settings(cfg, recipes_dir, subsets, out / "cache"):
        print(f"[experiment] {warning}", flush=True)
    data = {"train": build_dataset(cfg.dataset, split="train", image_size=cfg.image_size, in_chans=cfg.in_chans),
            "test": build_dataset(cfg.dataset, split="test", image_size=cfg.image_size, in_chans=cfg.in_chans)}
    subsets = write_subsets(cfg, data["train"].labels, out / "subsets")
    earlier: dict[int, float] = {}  # the seconds earlier runs of this grid recorded, per label budget
    for lpc in cfg.labels_per_class if cfg.results_dir else []:
        recorded = Path(cfg.results_dir) / f"{results_stem(cfg, lpc)}.json"
        summary = read_record(recorded)
        earlier[lpc] = recorded_seconds(summary)
        for line in restore_recorded(cfg, lpc, summary, recorded):
            print(f"[experiment] {line}", flush=True)
    grid = [(arm, seed) for arm in cfg.arms for seed in arm_seeds(cfg, arm)]  # the results' order
    # run seed by seed (arms in their order within a seed): a grid cut short holds paired arm comparisons
    order = sorted(grid, key=lambda arm_seed: cfg.seeds.index(arm_seed[1]))
    to_distil = any(cfg.arms[arm].get("distill", True) and not (run_dir(cfg, lpc, arm, seed) / RESULT_FILE).is_file()
                    for lpc in cfg.labels_per_class for arm, seed in grid)
    # the teacher-feature cache only where a distillation is still to run (scratch arms and restored ones need none)
    cache = ensure_cache(cfg, data["train"], subsets) if to_distil else None
    written: list[Path] = []
    for lpc in cfg.labels_per_class:
        for arm, seed in order:
            print(f"[experiment] {cfg.name}: {arm} seed {seed}, {lpc} labels per class", flush=True)
            run_arm_seed(cfg, recipes_dir, arm, seed, lpc, subsets, cache, data)
            results = [ArmSeedResult.read(run_dir(cfg, lpc, a, s) / RESULT_FILE) for a, s in grid
                       if (run_dir(cfg, lpc, a, s) / RESULT_FILE).is_file()]
            seconds = earlier.get(lpc, 0.0) + time.time() - started
            files = write_results(cfg, lpc, results, command=command, seconds=seconds,
                                  cache=out / "cache" if any(r.distill for r in results) else None,
                                  val_images=len(read_indices(subsets.val)), planned=len(grid))
            copy_results(cfg, files)  # after every arm-seed: the record a rerun elsewhere restores from
        written += files
        for folder in publish_best(cfg, results, files[0].stem, command):
            print(f"[experiment] weights with their model card: {folder}", flush=True)
    return written


def copy_results(cfg: ExperimentConfig, files: list[Path]) -> None:
    """The results files into `cfg.results_dir` (nothing where it is empty), each atomically."""
    if not cfg.results_dir:
        return
    Path(cfg.results_dir).mkdir(parents=True, exist_ok=True)
    for path in files:
        replace_file(Path(cfg.results_dir) / path.name, lambda tmp, source=path: shutil.copyfile(source, tmp))
