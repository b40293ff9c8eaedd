"""CPU threads: the usable cores split among local processes, unless the user chose a count.

`accelerate launch` exports OMP_NUM_THREADS=1 on a machine without a GPU; the recipes tell that
default from a user's own value by the launcher's start-up environment and command line.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from repfusion_zoo.training import threads
from repfusion_zoo.training.threads import configure_cpu_threads, usable_cores, user_thread_count

PROBE = ("import torch; from repfusion_zoo.training.threads import configure_cpu_threads; "
         "n = configure_cpu_threads(); print('threads', n, torch.get_num_threads())")


@pytest.fixture
def clean_env(monkeypatch):
    """No thread variables and no launcher markers; torch's count restored afterwards."""
    for key in ("REPFUSION_NUM_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", *threads.LAUNCHER_MARKERS):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    previous = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(previous)


def test_explicit_key_then_own_variable_then_users_omp(clean_env):
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert user_thread_count() == 3  # not under a launcher: the user's own
    clean_env.setenv("REPFUSION_NUM_THREADS", "2")
    assert user_thread_count() == 2
    assert user_thread_count(explicit=5) == 5
    assert configure_cpu_threads(explicit=1) == 1 and torch.get_num_threads() == 1


def test_launcher_default_is_replaced_by_cores_per_local_process(clean_env):
    clean_env.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    clean_env.setenv("OMP_NUM_THREADS", "1")
    clean_env.setattr(threads, "parent_start", lambda: ({"PATH": "/bin"}, ["accelerate", "launch", "x.py"]))
    assert user_thread_count() is None
    assert configure_cpu_threads() == usable_cores() == torch.get_num_threads()
    clean_env.setenv("LOCAL_WORLD_SIZE", str(2 * usable_cores()))
    assert configure_cpu_threads() == 1  # never 0


@pytest.mark.parametrize("parent", [({"OMP_NUM_THREADS": "1"}, ["accelerate", "launch", "x.py"]),
                                    ({}, ["accelerate", "launch", "--num_cpu_threads_per_process", "1", "x.py"]),
                                    ({}, ["accelerate", "launch", "--num_cpu_threads_per_process=1", "x.py"])])
def test_users_count_given_to_the_launcher_is_kept(clean_env, parent):
    clean_env.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    clean_env.setenv("OMP_NUM_THREADS", "1")
    clean_env.setattr(threads, "parent_start", lambda: parent)
    assert user_thread_count() == 1


def test_cuda_without_a_users_count_leaves_torch_alone(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    torch.set_num_threads(1)
    assert configure_cpu_threads() == 1


def _launch(tmp_path, env_extra: dict[str, str], *launcher_flags: str) -> str:
    script = tmp_path / "probe.py"
    script.write_text(PROBE + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("REPFUSION_NUM_THREADS", "OMP_NUM_THREADS")}
    env.update(env_extra)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", *launcher_flags, str(script)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_accelerate_launch_on_a_cpu_uses_the_cores(tmp_path):
    """The real launcher: its default OMP_NUM_THREADS=1 is replaced, a user's OMP_NUM_THREADS=1 is kept."""
    cores = usable_cores()
    assert f"threads {cores} {cores}" in _launch(tmp_path, {})
    assert "threads 1 1" in _launch(tmp_path, {"OMP_NUM_THREADS": "1"})
