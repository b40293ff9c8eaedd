"""Resumable state: atomic checkpoint-<step> folders, checkpoints_total_limit, and kill -9 +
`--resume_from_checkpoint latest` == uninterrupted (bit-exact on CPU)."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch
from accelerate import Accelerator

from _recipes_common import accelerate_cmd, env, load_weights, run, tiny_flags
from _recipes_common import tiny_teacher  # noqa: F401  (a fixture)
from repfusion_zoo.errors import ConfigError
from repfusion_zoo.training.state import CheckpointManager, TrainingState, complete_checkpoints, resolve_resume


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    acc = Accelerator(cpu=True)
    model = acc.prepare(torch.nn.Linear(2, 2))
    manager = CheckpointManager(acc, tmp_path, total_limit=2)
    for step in (1, 2, 3):
        manager.save(TrainingState(step=step, epoch=0, batch_in_epoch=step))
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [2, 3]
    # a save killed half-way leaves a .tmp folder (and no progress.json): it is never picked
    half = tmp_path / "checkpoint-9.tmp"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    assert resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-3"
    with torch.no_grad():
        model.weight.zero_()
    progress = manager.load(resolve_resume("auto", tmp_path))
    assert progress.step == 3 and progress.batch_in_epoch == 3 and model.weight.abs().sum() > 0
    assert resolve_resume("", tmp_path) is None
    assert resolve_resume("auto", tmp_path / "fresh") is None
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        resolve_resume(str(half), tmp_path)


def test_resume_from_checkpoint_takes_latest_auto_or_a_folder_name(tmp_path):
    """diffusers' layout and values: `output_dir/checkpoint-<step>`; 'latest' (and 'auto') pick the
    newest; a bare `checkpoint-<step>` is looked up in output_dir; a path works as is."""
    acc = Accelerator(cpu=True)
    acc.prepare(torch.nn.Linear(2, 2))
    manager = CheckpointManager(acc, tmp_path, total_limit=3)
    for step in (5, 10):
        assert manager.save(TrainingState(step=step)) == tmp_path / f"checkpoint-{step}"
    assert resolve_resume("latest", tmp_path) == resolve_resume("auto", tmp_path) == tmp_path / "checkpoint-10"
    assert resolve_resume("checkpoint-5", tmp_path) == tmp_path / "checkpoint-5"
    assert resolve_resume(str(tmp_path / "checkpoint-5"), tmp_path / "elsewhere") == tmp_path / "checkpoint-5"
    with pytest.raises(ConfigError, match="checkpoint-10"):  # the error lists what there is
        resolve_resume("checkpoint-7", tmp_path)


def test_kill9_then_resume_from_checkpoint_latest_is_bit_exact(tmp_path, tiny_teacher):
    """SIGKILL a distillation mid-training once a checkpoint-<step> exists; resume; weights == uninterrupted run."""
    steps, save_every = 60, 5
    flags = lambda out: tiny_flags(out, teacher=str(tiny_teacher), max_train_steps=steps, checkpointing_steps=save_every,
                                   checkpoints_total_limit=3, num_train_epochs=3, strategy="reinforce")
    reference = tmp_path / "reference"
    run(accelerate_cmd("distill.py", flags(reference)))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(accelerate_cmd("distill.py", flags(killed)), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 180
        while not complete_checkpoints(killed) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        import os

        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the training process it started
    finally:
        proc.wait(timeout=30)
    done = [s for s, _ in complete_checkpoints(killed)]
    assert done and max(done) < steps, done
    assert not (killed / "backbone").exists()

    resumed_run = run(accelerate_cmd("distill.py", flags(killed) + ["--resume_from_checkpoint", "latest"]))
    assert f"resuming from {killed / f'checkpoint-{max(done)}'}" in resumed_run.stdout
    # the log continues the checkpoint's epochs: the uninterrupted run's lines, none twice
    read_log = lambda out: [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert read_log(killed) == read_log(reference)
    expected, resumed = load_weights(reference / "backbone"), load_weights(killed / "backbone")
    assert expected.keys() == resumed.keys()
    different = [k for k in expected if not torch.equal(expected[k], resumed[k])]
    assert not different, f"resumed weights differ from the uninterrupted run in {different[:5]}"
    # the policy, decoder and connector too (the full training state at the end)
    ref_state = load_weights(reference / f"checkpoint-{steps}")
    res_state = load_weights(killed / f"checkpoint-{steps}")
    assert all(torch.equal(ref_state[k], res_state[k]) for k in ref_state)


def test_resume_latest_without_a_checkpoint_says_it_starts_fresh(tmp_path, tiny_teacher):  # noqa: F811
    out = tmp_path / "fresh"
    result = run(accelerate_cmd("distill.py", tiny_flags(out, teacher=str(tiny_teacher), max_train_steps=2)
                                + ["--resume_from_checkpoint", "latest"]))
    assert f"no checkpoint under {out.resolve()}, starting fresh" in result.stdout
