"""A drifting Bernoulli bandit: prompts with *known* success probabilities, for exact value checks.

Each prompt x has a logit θ_t(x) that moves as training would move it: a shared upward
trend (the policy improves) plus a per-prompt Gaussian random walk. Its true value is
V_t(x) = sigmoid(θ_t(x)), and a rollout's reward is Bernoulli(V_t(x)). Because V is known
exactly, an estimator's baseline error E[(b − V)²] needs no Monte-Carlo probe. This is the
estimator-only half of the lab's value benchmarks (``benchmarks/value_mse.py``); the
model-based half is ``lab.probes`` inside real runs.

    >>> bandit = DriftingBandit(n_prompts=4, seed=0)
    >>> batch, true_v = bandit.sample(torch.tensor([0, 2]), group_size=3, step=0)
    >>> batch.prompt_ids.tolist(), tuple(true_v.shape)
    ([0, 0, 0, 2, 2, 2], (6,))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lab import estimators
from lab.estimators import RewardBatch


class DriftingBandit:
    """Prompts 0..n_prompts−1 with logits θ_t = θ_0 + trend·t + drift·(random walk).

    Parameters:
        n_prompts: how many prompts exist (batches draw from them, so prompts recur).
        spread: std of the initial logits θ_0 (how different prompt difficulties are).
        trend: logit gained by every prompt per step (the policy improving).
        drift: std of each prompt's own logit step (the policy moving unevenly).
        seed: everything (θ_0, the walk, rewards, prompt draws) follows from it.
    """

    def __init__(self, n_prompts: int, *, spread: float = 1.5, trend: float = 0.03, drift: float = 0.05, seed: int = 0):
        if n_prompts < 1:
            raise ValueError(f"n_prompts: expected >= 1, got {n_prompts}")
        if spread < 0 or drift < 0:
            raise ValueError(f"spread and drift must be >= 0, got spread={spread}, drift={drift}")
        self.n_prompts, self.trend, self.drift = n_prompts, trend, drift
        self._world = torch.Generator().manual_seed(seed)  # θ_0 and the walk
        self._gen = torch.Generator().manual_seed(seed + 1_000_003)  # prompt draws, order, rewards
        self._theta0 = spread * torch.randn(n_prompts, generator=self._world, dtype=torch.float64)
        self._walk = [torch.zeros(n_prompts, dtype=torch.float64)]  # walk[t]: random-walk offset at step t

    def values(self, step: int) -> torch.Tensor:
        """True values V_step(x) for every prompt: (n_prompts,) float64."""
        if step < 0:
            raise ValueError(f"step: expected >= 0, got {step}")
        while len(self._walk) <= step:
            self._walk.append(self._walk[-1] + self.drift * torch.randn(self.n_prompts, generator=self._world, dtype=torch.float64))
        return torch.sigmoid(self._theta0 + self.trend * step + self._walk[step])

    def draw_prompts(self, k: int) -> torch.Tensor:
        """k distinct prompts, uniformly at random: (k,) long."""
        if not 1 <= k <= self.n_prompts:
            raise ValueError(f"k: expected 1..{self.n_prompts} prompts per step, got {k}")
        return torch.randperm(self.n_prompts, generator=self._gen)[:k]

    def sample(self, prompt_ids: torch.Tensor, group_size: int, step: int, *, interleave: bool = False,
               generator: torch.Generator | None = None):
        """``group_size`` rollouts of each prompt at ``step``: (RewardBatch, true values (N,)).

        Rollouts come grouped by prompt, or shuffled with ``interleave`` (as after a real rollout).
        ``generator`` draws the rewards instead of the bandit's own stream (so side samples,
        such as BASIS's reference samples, leave the training batches unchanged).
        """
        if group_size < 1:
            raise ValueError(f"group_size: expected >= 1, got {group_size}")
        gen = generator or self._gen
        ids = prompt_ids.long().repeat_interleave(group_size)  # (N,)
        if interleave:
            ids = ids[torch.randperm(ids.numel(), generator=gen)]
        v = self.values(step)[ids]  # (N,)
        rewards = (torch.rand(ids.numel(), generator=gen, dtype=torch.float64) < v).to(torch.float64)
        return RewardBatch(rewards, ids, step=step), v


@dataclass(frozen=True)
class ValueRun:
    """One estimator on one simulated run: per-step value MSE (steps,) and the steps it covers."""

    estimator: str
    group_size: int
    seed: int
    mse: torch.Tensor  # (steps,) mean over the step's rollouts of (b − V)²
    steps: range


def value_mse_run(
    name: str,
    group_size: int,
    *,
    steps: int = 40,
    n_prompts: int = 64,
    prompts_per_step: int = 16,
    reference_samples: int = 8,
    seed: int = 0,
    make: Callable[[str], estimators.Estimator] | None = None,
    **bandit: float,
) -> ValueRun:
    """Run estimator ``name`` for ``steps`` steps on a fresh bandit; return its value MSE per step.

    Every estimator of the same ``seed`` sees the same batches (common random numbers), so
    differences between estimators are not sampling luck. The estimator sees each batch with
    ``update=True``, so history-based ones (KAE, BASIS, BLEND) learn as in training. An estimator with a ``set_reference`` method (BASIS, BLEND) first
    gets ``reference_samples`` rewards per prompt at step 0 (an offline stage, from the
    initial policy; 0 turns it off). ``make`` builds the estimator (default
    ``estimators.get(name)``).

    >>> run = value_mse_run("rloo", 4, steps=3, seed=1)
    >>> tuple(run.mse.shape), bool((run.mse >= 0).all())
    ((3,), True)
    """
    sim = DriftingBandit(n_prompts, seed=seed, **bandit)
    est = (make or estimators.get)(name)
    if hasattr(est, "set_reference") and reference_samples > 0:
        side = torch.Generator().manual_seed(seed + 2_000_003)
        ref, _ = sim.sample(torch.arange(n_prompts), reference_samples, 0, generator=side)
        est.set_reference(ref.prompt_ids, ref.rewards)
    mse = torch.empty(steps, dtype=torch.float64)
    for t in range(steps):
        batch, v = sim.sample(sim.draw_prompts(prompts_per_step), group_size, t, interleave=True)
        out = est(batch)
        mse[t] = ((out.baselines.double() - v) ** 2).mean()
    return ValueRun(name, group_size, seed, mse, range(steps))
