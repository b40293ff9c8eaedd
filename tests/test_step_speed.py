"""The distillation step's speed options and overhead cuts, checked for what they compute (never timed).

- the Trainer's device tally logs the same values, bit for bit, as per-step Python sums;
- the CPU allocator set-up stops the per-step page faults of large tensors;
- recipes/distill.py's `channels_last` and `compile` options (repfusion_zoo.pipelines.distill) run a step on the CPU and match the default.
"""
from __future__ import annotations

import platform
import random
import subprocess
import sys
import textwrap

import pytest
import torch

from _recipes_common import REPO, env
from repfusion_zoo.training.records import DeviceTally

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ the Trainer's tally
def _python_sums(steps: list[dict[str, float]]) -> dict[str, float]:
    """What the Trainer logged before: each step's float32 values added to Python floats."""
    sums: dict[str, float] = {}
    for step in steps:
        values = torch.tensor(list(step.values()), dtype=torch.float32).tolist()
        for key, value in zip(step, values):
            sums[key] = sums.get(key, 0.0) + value
    return sums


def test_device_tally_equals_per_step_python_sums_bit_for_bit():
    rng = random.Random(0)
    steps = []
    for i in range(60):  # a key missing now and then (a batch without labels: no policy losses)
        keys = ["decoder", "distill", "total"] if i % 7 == 3 else ["decoder", "policy", "entropy", "distill", "total"]
        steps.append({k: rng.uniform(-3, 3) * 10 ** rng.randint(-6, 2) for k in keys})
    current = {"sums": {}, "count": 0, "hist": {}}
    tally = DeviceTally()
    for i, step in enumerate(steps):
        tally.add_scalars(current, tuple(step), torch.tensor(list(step.values()), dtype=torch.float32))
        if i % 10 == 9:  # a log boundary reads (and flushes) the running sums
            tally.flush(current)
    tally.flush(current)
    expected = _python_sums(steps)
    assert current["sums"] == expected  # exact float equality
    assert list(current["sums"]) == list(expected)  # and the same key order in the log


def test_device_tally_counts_like_bincount():
    current = {"sums": {}, "count": 0, "hist": {"t": [1] * 10}}
    tally = DeviceTally()
    batches = [torch.randint(-3, 14, (32,), generator=torch.Generator().manual_seed(i)) for i in range(5)]
    for i, values in enumerate(batches):
        tally.add_counts("t", values, 10)
        if i == 2:
            tally.flush(current)
    tally.flush(current)
    counts = sum(torch.bincount(v.clamp(0, 9), minlength=10) for v in batches)
    assert current["hist"]["t"] == [1 + c for c in counts.tolist()]


# ------------------------------------------------------------------ the CPU allocator
FAULTS = textwrap.dedent("""
    import resource, sys, torch
    from repfusion_zoo.training.allocator import configure_cpu_allocator
    applied = configure_cpu_allocator()
    for _ in range(3):
        torch.ones(40 * 2**20 // 4)  # 40 MiB: above glibc's largest mmap threshold
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        torch.ones(40 * 2**20 // 4)
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_cpu_allocator_reuses_freed_memory_instead_of_faulting_it_in_again():
    def faults(**extra: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", FAULTS], env=env(CUDA_VISIBLE_DEVICES="", **extra), cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0], int(out[1])

    applied, reused = faults()
    system, fresh = faults(REPFUSION_CPU_ALLOCATOR="system")
    assert (applied, system) == ("True", "False")
    assert fresh > 10 * 5000  # 10 x 40 MiB of new 4 KiB pages (10240 each)
    assert reused < 1000, reused


# ------------------------------------------------------------------ the step's options
@pytest.fixture(scope="module")
def recipe():
    from repfusion_zoo.pipelines import distill  # the body of recipes/distill.py

    return distill


def _model(recipe, **options):
    from repfusion_zoo import create_model
    from repfusion_zoo.method.decoders import build_decoder
    from repfusion_zoo.method.distill import RepFusion
    from repfusion_zoo.losses import build_distill_loss
    from repfusion_zoo.timesteps import build_strategy
    from test_distill import _teacher

    torch.manual_seed(0)
    student = create_model("resnet18_cifar", num_classes=0, channels=[8, 16, 32, 64])
    rf = RepFusion(_teacher(), build_strategy("reinforce", in_chans=3, num_train_timesteps=1000),
                   build_decoder("linear", 32, 10), build_distill_loss("hint", student.num_features, 32))
    return recipe.DistillModel(student, rf, 3, **options)


def _step(model) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(4, 3, 16, 16, generator=gen), torch.randint(0, 10, (4,), generator=gen)
    torch.manual_seed(1)  # the policy's draw
    out = model(images, labels, 0.25)
    out.losses["total"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    values = {**out.losses, "t": out.t, "policy_entropy": out.policy_entropy}
    return {k: v.detach() for k, v in values.items()}, grads


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_channels_last_step_matches_the_default(recipe, tmp_path):
    reference, grads = _step(_model(recipe))
    model = _model(recipe).to(memory_format=torch.channels_last)  # what the Trainer does with channels_last: true
    conv = model.student.conv1.weight if hasattr(model.student, "conv1") else next(model.student.parameters())
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert model.repfusion.strategy.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    out, grads_cl = _step(model)
    _close(reference, out)
    _close(grads, grads_cl)
    from repfusion_zoo import load_pretrained, save_pretrained

    folder = save_pretrained(model.student, tmp_path / "backbone", architecture="resnet18_cifar")  # saved contiguous
    loaded = load_pretrained(str(folder), channels=[8, 16, 32, 64])
    for key, value in model.student.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_compile_step_matches_the_default(recipe):
    reference, grads = _step(_model(recipe))
    model = _model(recipe, compile=True)
    assert model._compiled is not None
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.exc import InductorError

    try:
        out, grads_c = _step(model)
    except (BackendCompilerFailed, InductorError) as error:  # inductor builds C++ kernels on the CPU
        pytest.skip(f"torch.compile cannot build on this CPU toolchain: {type(error).__name__}: {str(error)[:300]}")
    _close(reference, out)
    _close(grads, grads_c)
    assert set(model.state_dict()) == set(_model(recipe).state_dict())  # the student stays a plain module


def test_recipe_keys_reach_the_model(recipe):
    cfg = recipe.load_distill_config(["--compile", "true", "--compile_mode", "max-autotune-no-cudagraphs",
                                      "--channels_last", "false"])
    assert (cfg.compile, cfg.compile_mode, cfg.channels_last) == (True, "max-autotune-no-cudagraphs", False)
    defaults = recipe.load_distill_config([])
    assert (defaults.compile, defaults.compile_mode, defaults.channels_last) == (False, "default", True)
    assert recipe.finetune_settings(cfg)["channels_last"] is False  # the downstream fine-tunes follow the key


@pytest.mark.parametrize("channels_last", [True, False])
def test_trainer_puts_the_model_in_the_settings_memory_format(tmp_path, channels_last):
    """`channels_last` (TrainConfig: on by default) is applied by the loop to whatever model a recipe trains,
    in place: the optimiser's parameters are the model's."""
    from repfusion_zoo import create_model
    from repfusion_zoo.training import LoopSettings, Trainer
    from repfusion_zoo.training.settings import TrainConfig

    assert TrainConfig().channels_last and not LoopSettings().channels_last  # teachers: NCHW (benchmarks/teacher_step.py: 1.1x slower)
    model = create_model("resnet18_cifar", num_classes=2, channels=[8, 16, 32, 64])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(LoopSettings(output_dir=str(tmp_path), train_batch_size=2, num_train_epochs=1, channels_last=channels_last), "t")
    data = [{"image": torch.rand(3, 8, 8), "label": i % 2} for i in range(4)]
    prepared, _, _ = trainer.prepare(model, optimizer, trainer.train_loader(data), lambda o, s, t: torch.optim.lr_scheduler.LambdaLR(o, lambda _: 1.0))
    weight = prepared.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert weight is optimizer.param_groups[0]["params"][0]
