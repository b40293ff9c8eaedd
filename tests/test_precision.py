"""The precision a run trains in: its key, else what the user told the launcher, else bf16 autocast
on a CPU with native bf16, else fp32.

`accelerate launch` always exports ACCELERATE_MIXED_PRECISION ("no" by default); the recipes tell
that default from a user's choice by the launcher's start-up environment and command line.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

from repfusion_zoo.training import precision, threads
from repfusion_zoo.training.precision import (EMULATED_BF16, PRECISION_ENV, chosen_precision, native_cpu_bf16,
                                              run_precision)

PROBE = "from repfusion_zoo.training import run_precision; print('precision', run_precision(''))"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No precision variable, no launcher markers, no accelerate config file, no CUDA."""
    for key in (PRECISION_ENV, *threads.LAUNCHER_MARKERS):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(precision, "_accelerate_config_file", lambda: tmp_path / "absent.yaml")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return monkeypatch


def under_launcher(env: pytest.MonkeyPatch, parent_env: dict[str, str], parent_argv: list[str]) -> None:
    """This process as `accelerate launch` starts it: its "no" exported, the launcher's own start as given."""
    env.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    env.setenv(PRECISION_ENV, "no")
    env.setattr(threads, "parent_start", lambda: (parent_env, parent_argv))


@pytest.mark.parametrize("native", [True, False])
def test_nobody_chose_bf16_only_where_the_cpu_has_it(clean_env, native):
    clean_env.setattr(precision, "native_cpu_bf16", lambda: native)
    assert run_precision("") == ("bf16" if native else "no")
    assert run_precision("no") == "no" and run_precision("fp16") == "fp16"  # the key always wins
    under_launcher(clean_env, {}, ["accelerate", "launch", "x.py"])  # the launcher's own "no" is no choice
    assert chosen_precision() is None and run_precision("") == ("bf16" if native else "no")


@pytest.mark.parametrize("parent", [({PRECISION_ENV: "no"}, ["accelerate", "launch", "x.py"]),
                                    ({}, ["accelerate", "launch", "--mixed_precision", "no", "x.py"]),
                                    ({}, ["accelerate", "launch", "--mixed_precision=no", "x.py"]),
                                    ({}, ["accelerate", "launch", "--config_file", "c.yaml", "x.py"])])
def test_a_choice_given_to_the_launcher_is_kept(clean_env, parent):
    clean_env.setattr(precision, "native_cpu_bf16", lambda: True)
    under_launcher(clean_env, *parent)
    assert chosen_precision() == "no" and run_precision("") == "no"


def test_an_accelerate_config_file_is_a_choice(clean_env, tmp_path):
    clean_env.setattr(precision, "native_cpu_bf16", lambda: True)
    under_launcher(clean_env, {}, ["accelerate", "launch", "x.py"])
    config = tmp_path / "default_config.yaml"
    config.write_text("mixed_precision: 'no'\n")
    clean_env.setattr(precision, "_accelerate_config_file", lambda: config)
    assert run_precision("") == "no"


def test_own_variable_without_a_launcher_is_a_choice(clean_env):
    clean_env.setattr(precision, "native_cpu_bf16", lambda: True)
    clean_env.setenv(PRECISION_ENV, "no")
    assert run_precision("") == "no"


def test_a_gpu_run_keeps_accelerates_default(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    assert not native_cpu_bf16() and run_precision("") == "no"


def test_bf16_asked_of_a_cpu_that_emulates_it_is_kept_with_a_warning_that_names_the_fix(clean_env):
    clean_env.setattr(precision, "native_cpu_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated") as caught:
        assert run_precision("bf16") == "bf16"
    assert str(caught[0].message) == EMULATED_BF16 and "--mixed_precision no" in EMULATED_BF16
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say: fp32, a CPU with native bf16, a GPU
        assert run_precision("no") == "no" and run_precision("") == "no"
        clean_env.setattr(precision, "native_cpu_bf16", lambda: True)
        assert run_precision("bf16") == "bf16"
        clean_env.setattr(precision, "native_cpu_bf16", lambda: False)
        clean_env.setattr(torch.cuda, "is_available", lambda: True)
        assert run_precision("bf16") == "bf16"


def _launch(tmp_path, *launcher_flags: str) -> str:
    script = tmp_path / "probe.py"
    script.write_text(PROBE + "\n")
    env = {k: v for k, v in os.environ.items() if k != PRECISION_ENV}
    env["HF_HOME"] = str(tmp_path / "hf")  # no accelerate config file of the user's
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
           "--dynamo_backend", "no", *launcher_flags, str(script)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_accelerate_launch_default_and_flag(tmp_path):
    """The real launcher: without --mixed_precision the CPU's native bf16 decides; with it, the flag."""
    default = "bf16" if native_cpu_bf16() else "no"
    assert f"precision {default}" in _launch(tmp_path)
    assert "precision no" in _launch(tmp_path, "--mixed_precision", "no")
