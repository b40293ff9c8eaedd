"""Does a variance-reducing baseline help the REINFORCE time-step policy? Measured, side by side.

A contextual bandit shaped like RepFusion's: the state is an image, the action one of T = 1000
time steps, the reward -task loss of decoder g, i.e.

    reward(x, t) = -(offset(step) + gap(x, t) + noise),

- ``offset`` is the decoder's loss level: 2.3 (chance CE on 10 classes) decaying to 0.5 as g
  trains (so rewards are all negative and drift, as in a real run);
- ``gap(x, t) = 1.5 * |t - t*(x)| / T`` with ``t*(x)`` = 100 or 400 depending on the image
  (the per-sample optimum the policy should find);
- ``noise``: per-sample, skewed like a cross-entropy: ``0.7 * (Exp(1) - 1)``.

The real :class:`repfusion_zoo.timesteps.ReinforcePolicy` (3 conv + 3 linear, entropy bonus 0.1)
is trained with the paper's optimiser (SGD lr 0.1, momentum 0.9, wd 1e-4), batch 64, for the same
steps and seeds with baseline None (the authors), "ema" and "batch_mean".

Reported per variant (mean over seeds): final expected regret
``E_x sum_t pi(t|x) gap(x, t)`` on 512 held-out images (0 = always the optimum; a uniform policy
has ~0.50), averaged over the last 5 evaluations (every 20 steps) to damp noise; the step at which
the regret first drops below 0.35; and the policy-gradient variance (sum over parameters of the
per-element variance of the gradient over 64 independent batches, at the initial policy, with the
EMA baseline at its steady state = the expected reward).

Last line: ``ratio: <final regret with the EMA baseline / final regret with no baseline>``
(< 1: the baseline helps). Run: ``python benchmarks/policy_baseline.py`` (about 1-3 min on 2 cores).
"""
from __future__ import annotations

import argparse
import time

import torch

from repfusion_zoo.timesteps import ReinforcePolicy

T = 1000
OPTIMA = (100, 400)
EVERY = 20  # evaluate the expected regret every EVERY steps
REACH = 0.35  # 'converged enough': regret below this (uniform policy: ~0.50)


def make_images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n, 3, 8, 8]`` images in [-1, 1] and each one's optimal t (by the sign of its mean)."""
    kind = torch.randint(0, 2, (n,), generator=generator)
    x = 0.3 * torch.randn(n, 3, 8, 8, generator=generator) + (kind.float() * 2 - 1)[:, None, None, None] * 0.5
    return x.clamp(-1, 1), torch.tensor(OPTIMA)[kind]


def gap(t: torch.Tensor, t_star: torch.Tensor) -> torch.Tensor:
    """``[B]`` or broadcast: the part of the task loss the time step controls."""
    return 1.5 * (t.float() - t_star.float()).abs() / T


def reward(t: torch.Tensor, t_star: torch.Tensor, progress: float, generator: torch.Generator) -> torch.Tensor:
    offset = 2.3 - 1.8 * progress
    noise = 0.7 * (torch.empty(t.shape).exponential_(1.0, generator=generator) - 1.0)
    return -(offset + gap(t, t_star) + noise)


@torch.no_grad()
def expected_regret(policy: ReinforcePolicy, x: torch.Tensor, t_star: torch.Tensor) -> float:
    probs = policy.probs(x)  # [B, A]
    gaps = gap(policy.actions[None, :], t_star[:, None])  # [B, A]
    return float((probs * gaps).sum(1).mean())


def train(baseline: str | None, seed: int, steps: int, batch: int) -> tuple[float, int]:
    """(final regret = mean of the last 5 evaluations, every 20 steps; first step with regret < REACH)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(10_000 + seed)
    policy = ReinforcePolicy(in_chans=3, num_train_timesteps=T, baseline=baseline)
    opt = torch.optim.SGD(policy.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x_eval, t_eval = make_images(512, torch.Generator().manual_seed(99))
    reached, evaluations = steps, []
    for step in range(steps):
        x, t_star = make_images(batch, gen)
        sample = policy.sample(x)
        r = reward(sample.t, t_star, step / steps, gen)
        losses = policy.loss(sample, r, step / steps)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
        if step % EVERY == EVERY - 1:
            evaluations.append(expected_regret(policy, x_eval, t_eval))
            if reached == steps and evaluations[-1] < REACH:
                reached = step + 1
    return sum(evaluations[-5:]) / len(evaluations[-5:]), reached


def gradient_variance(baseline: str | None, batches: int, batch: int) -> float:
    """Sum of per-element variances of the REINFORCE gradient at the initial policy."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    policy = ReinforcePolicy(in_chans=3, num_train_timesteps=T, baseline=baseline, entropy_weight=0.0)
    # one SGD step off the zero-initialised last layer so every layer has a gradient
    with torch.no_grad():
        for p in policy.net.head[-1].parameters():
            p.normal_(0, 0.01, generator=gen)
    if baseline == "ema":  # steady state: the expected reward of the initial policy
        x, t_star = make_images(4096, gen)
        probs = policy.probs(x)
        expected = -(2.3 + (probs * gap(policy.actions[None, :], t_star[:, None])).sum(1)).mean()
        policy.baseline_value.fill_(float(expected.detach()))
        policy.baseline_initialized.fill_(True)
    policy.eval()  # keeps the EMA fixed; sampling stays on below
    policy.eval_mode = "sample"
    grads = []
    for _ in range(batches):
        x, t_star = make_images(batch, gen)
        sample = policy.sample(x)
        loss = policy.loss(sample, reward(sample.t, t_star, 0.0, gen), 0.0)["policy"]
        g = torch.autograd.grad(loss, list(policy.parameters()))
        grads.append(torch.cat([v.flatten() for v in g]))
    stacked = torch.stack(grads)
    return float(stacked.var(dim=0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    variants: list[str | None] = [None, "ema", "batch_mean"]
    results: dict[str | None, tuple[float, float, float]] = {}
    for baseline in variants:
        runs = [train(baseline, seed, args.steps, args.batch) for seed in range(args.seeds)]
        regret = sum(r for r, _ in runs) / len(runs)
        reached = sum(s for _, s in runs) / len(runs)
        var = gradient_variance(baseline, batches=64, batch=args.batch)
        results[baseline] = (regret, reached, var)
        per_seed = " ".join(f"{r:.3f}" for r, _ in runs)
        print(
            f"baseline={str(baseline):10s} final regret {regret:.4f} (seeds: {per_seed})  "
            f"steps to regret<{REACH} {reached:.0f}/{args.steps}  grad variance {var:.4g}",
            flush=True,
        )
    print(f"uniform-policy regret ~{float(gap(torch.arange(T)[None, :], torch.tensor(OPTIMA)[:, None]).mean()):.3f}; "
          f"{args.seeds} seeds x {args.steps} steps x batch {args.batch}; {time.perf_counter() - start:.0f} s")
    none, ema, batch_mean = results[None], results["ema"], results["batch_mean"]
    print(f"gradient variance ratio ema/none: {ema[2] / none[2]:.4f}  batch_mean/none: {batch_mean[2] / none[2]:.4f}")
    print(f"regret ratio batch_mean/none: {batch_mean[0] / none[0]:.4f}")
    print(f"ratio: {ema[0] / none[0]:.4f}")


if __name__ == "__main__":
    main()
