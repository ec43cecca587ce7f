"""A drifting Bernoulli bandit: prompts with *known* success probabilities, for exact value checks.

Each prompt x has a logit θ_t(x) that moves as training would move it: a shared upward
trend (the policy improves), a per-prompt trend (``slope``: each prompt improves or worsens
at its own steady rate), a gain for every step the prompt is trained on (``learn``: in real
runs the prompts of the current reuse block climb steadily, mean squared change growing like
lag^1.7, while the population rises slowly) plus a per-prompt Gaussian random walk. Its true value is
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

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from lab import estimators
from lab.estimators import RewardBatch


class DriftingBandit:
    """Prompts 0..n_prompts−1 with logits θ_t = θ_0 + (trend + slope·s)·t + learn·n_t + drift·(random walk),
    s ~ N(0, 1) per prompt, n_t the number of steps before t the prompt was trained on (:meth:`train`).

    Parameters:
        n_prompts: how many prompts exist (batches draw from them, so prompts recur).
        spread: std of the initial logits θ_0 (how different prompt difficulties are).
        trend: logit gained by every prompt per step (the policy improving).
        drift: std of each prompt's own logit step (the policy moving unevenly).
        slope: std of each prompt's own steady logit trend per step (0: the random walk alone).
        learn: logit a prompt gains for each step it is trained on (0: training does not favour
            the prompts it sees). Real runs with prompt reuse climb on the prompts of the current
            block (``benchmarks/value_mse_real.py``'s drift rows measure exactly those prompts),
            which ``trend`` and ``slope`` alone, shared by trained and untrained prompts, cannot give.
        seed: everything (θ_0, the walk, rewards, prompt draws) follows from it.

    >>> b = DriftingBandit(4, spread=0.0, trend=0.0, drift=0.0, learn=0.5)
    >>> b.train(torch.tensor([1]), 0); b.train(torch.tensor([1, 2]), 1)
    >>> [round(float(torch.logit(v)), 3) for v in b.values(2)]   # prompt 1 trained twice, prompt 2 once
    [0.0, 1.0, 0.5, 0.0]
    """

    def __init__(self, n_prompts: int, *, spread: float = 1.5, trend: float = 0.03, drift: float = 0.05, slope: float = 0.0,
                 learn: float = 0.0, seed: int = 0):
        if n_prompts < 1:
            raise ValueError(f"n_prompts: expected >= 1, got {n_prompts}")
        if spread < 0 or drift < 0 or slope < 0:
            raise ValueError(f"spread, drift and slope must be >= 0, got spread={spread}, drift={drift}, slope={slope}")
        if not math.isfinite(learn):
            raise ValueError(f"learn: expected a finite logit gain per trained step, got {learn}")
        self.n_prompts, self.spread, self.trend, self.drift, self.slope = n_prompts, spread, trend, drift, float(slope)
        self.learn = float(learn)
        self._trained = [torch.zeros(n_prompts, dtype=torch.float64)]  # _trained[t]: steps before t each prompt was trained
        self._pending: dict[int, torch.Tensor] = {}  # step -> prompts trained at that step, not yet in _trained
        self._world = torch.Generator().manual_seed(seed)  # θ_0 and the walk
        self._gen = torch.Generator().manual_seed(seed + 1_000_003)  # prompt draws, order, rewards
        self._theta0 = spread * torch.randn(n_prompts, generator=self._world, dtype=torch.float64)
        self._walk = [torch.zeros(n_prompts, dtype=torch.float64)]  # walk[t]: random-walk offset at step t
        # per-prompt trends from their own stream, so slope = 0 leaves every other draw as before
        own = torch.Generator().manual_seed(seed + 3_000_017)
        self.prompt_trend = trend + self.slope * torch.randn(n_prompts, generator=own, dtype=torch.float64)  # (n_prompts,)

    def values(self, step: int) -> torch.Tensor:
        """True values V_step(x) for every prompt: (n_prompts,) float64."""
        if step < 0:
            raise ValueError(f"step: expected >= 0, got {step}")
        while len(self._walk) <= step:
            self._walk.append(self._walk[-1] + self.drift * torch.randn(self.n_prompts, generator=self._world, dtype=torch.float64))
        return torch.sigmoid(self._theta0 + self._walk[step] + self._offset_all(step))

    def train(self, prompt_ids: torch.Tensor, step: int) -> None:
        """Record that ``prompt_ids`` (k,) were trained on at ``step``: each gains ``learn`` from step + 1 on.

        Call it for a step before reading values of a later step (a later step's values, once
        read, cannot change); the trainer's order (sample step t, update, then step t + 1) does.
        """
        if step < 0:
            raise ValueError(f"step: expected >= 0, got {step}")
        if step + 1 < len(self._trained):
            raise ValueError(f"train: step {step} is before step {len(self._trained) - 1}, whose values were already read; "
                             "record each step's prompts before reading a later step")
        ids = torch.as_tensor(prompt_ids).long().unique()
        self._pending[step] = torch.cat([self._pending.get(step, ids[:0]), ids]).unique()

    def trained_steps(self, step: int) -> torch.Tensor:
        """n_step: how many steps before ``step`` each prompt was trained on, (n_prompts,) float64."""
        while len(self._trained) <= step:
            t = len(self._trained) - 1  # the newest step whose count is known; its own training lands at t + 1
            n = self._trained[-1].clone()
            if t in self._pending:
                n[self._pending.pop(t)] += 1.0
            self._trained.append(n)
        return self._trained[step]

    def offset(self, prompt_ids: torch.Tensor, step: int) -> np.ndarray:
        """The known part of each prompt's logit at ``step`` (trend, own trend, training): (k,) float64.

        What an oracle floor that knows the world's schedule adds to θ_0 + walk (:class:`PosteriorBaseline`).
        """
        return self._offset_all(step)[torch.as_tensor(prompt_ids).long()].numpy()

    def _offset_all(self, step: int) -> torch.Tensor:
        out = self.prompt_trend * step
        return out + self.learn * self.trained_steps(step) if self.learn else out

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
    reuse: int = 1


def value_mse_run(
    name: str,
    group_size: int,
    *,
    steps: int = 40,
    n_prompts: int = 64,
    prompts_per_step: int = 16,
    reuse: int = 1,
    reference_samples: int = 8,
    seed: int = 0,
    make: Callable[[str], estimators.Estimator] | None = None,
    **bandit: float,
) -> ValueRun:
    """Run estimator ``name`` for ``steps`` steps on a fresh bandit; return its value MSE per step.

    Every estimator of the same ``seed`` sees the same batches (common random numbers), so
    differences between estimators are not sampling luck. The estimator sees each batch with
    ``update=True``, so history-based ones (KAE, BASIS, BLEND) learn as in training.
    ``reuse = J`` draws ``prompts_per_step`` prompts every J steps and trains on them for J
    consecutive steps (block ``step // J``, as the trainer's ``--prompt-reuse``; KAE's paper
    uses J = 8–10); ``reuse = 1`` draws fresh prompts every step. An estimator with a
    ``set_reference`` method (BASIS, BLEND) first gets ``reference_samples`` rewards per
    prompt at step 0 (an offline stage, from the initial policy; 0 turns it off). ``make``
    builds the estimator (default ``estimators.get(name)``; ``"posterior"``: the floor for this
    run's bandit, :class:`PosteriorBaseline`).

    >>> run = value_mse_run("rloo", 4, steps=3, seed=1)
    >>> tuple(run.mse.shape), bool((run.mse >= 0).all())
    ((3,), True)
    """
    sim = DriftingBandit(n_prompts, seed=seed, **bandit)
    est = PosteriorBaseline.for_bandit(sim) if name == "posterior" and make is None else (make or estimators.get)(name)
    mse = _simulate(est, sim, group_size, steps=steps, prompts_per_step=prompts_per_step, reuse=reuse,
                    reference_samples=reference_samples, seed=seed)
    return ValueRun(name, group_size, seed, mse, range(steps), reuse)


def posterior_mse_run(group_size: int, **kw) -> ValueRun:
    """:func:`value_mse_run` for the floor: :class:`PosteriorBaseline` on the same batches.

    Same arguments, same bandit and batches as every estimator of this ``seed``; the reported
    estimator name is ``"posterior"``.

    >>> floor = posterior_mse_run(4, steps=12, reuse=4, seed=1)
    >>> rloo = value_mse_run("rloo", 4, steps=12, reuse=4, seed=1)
    >>> bool(floor.mse[4:].mean() < rloo.mse[4:].mean())
    True
    """
    return value_mse_run("posterior", group_size, **kw)


def _simulate(est, sim: DriftingBandit, group_size: int, *, steps: int, prompts_per_step: int, reuse: int,
              reference_samples: int, seed: int) -> torch.Tensor:
    """The shared loop: reference stage, then ``steps`` batches; per-step value MSE (steps,)."""
    if isinstance(reuse, bool) or not isinstance(reuse, int) or reuse < 1:
        raise ValueError(f"reuse: expected an int >= 1 (steps each prompt batch is used for), got {reuse!r}")
    if hasattr(est, "set_reference") and reference_samples > 0:
        side = torch.Generator().manual_seed(seed + 2_000_003)
        ref, _ = sim.sample(torch.arange(sim.n_prompts), reference_samples, 0, generator=side)
        est.set_reference(ref.prompt_ids, ref.rewards)
    mse = torch.empty(steps, dtype=torch.float64)
    prompts = None
    for t in range(steps):
        if t % reuse == 0:  # a new block of prompts (every step when reuse = 1)
            prompts = sim.draw_prompts(prompts_per_step)
        batch, v = sim.sample(prompts, group_size, t, interleave=True)
        out = est(batch)
        mse[t] = ((out.baselines.double() - v) ** 2).mean()
        sim.train(prompts, t)  # the update: trained prompts gain the bandit's ``learn`` from t + 1
    return mse


class PosteriorBaseline(estimators.Estimator):
    """The value-error floor: the exact posterior mean of V given everything a baseline may see.

    On the bandit the generative model is known: φ_t(x) = θ_0(x) + walk_t(x) is a Gaussian
    random walk started at N(0, spread²), V_t(x) = sigmoid(φ_t(x) + trend·t), and rewards are
    Bernoulli(V_t). Prompts are independent given the model, so the other prompts of a batch
    carry no information about x. For rollout g of prompt x at step t the baseline is

        b_g = E[V_t(x) | x's rewards at earlier steps (and reference samples), the other
                         G − 1 rollouts of x at step t]

    which minimises E(b − V)² among all baselines that do not see r_g, so no estimator's value
    MSE can be lower in expectation (it also knows the model, which the estimators must
    learn). The posterior of each prompt's φ lives on a grid (``grid_size`` points over
    [−``grid_limit``, ``grid_limit``]): predict = convolution with the N(0, drift²) step,
    update = multiply by the Bernoulli likelihood and renormalise (a forward filter). Binary
    rewards only. ``info["posterior_var"]`` is the mean posterior variance of V over the
    batch: the MSE this baseline expects, which a test compares with the MSE it gets.

    With per-prompt trends (``prompt_trend``, the bandit's ``slope`` > 0) the floor is told each
    prompt's own trend (an oracle: knowing more can only lower the Bayes error, so it is still
    a lower bound on every baseline, and a conservative one for feasibility). ``offset(ids, step)
    -> (k,)`` generalises both: the known part of each prompt's logit at a step (the bandit's
    :meth:`DriftingBandit.offset`, which also holds the ``learn`` gain of trained prompts; the
    floor is told the training schedule, the same kind of oracle).

    ``log_prior(grid) -> (K,)`` replaces the N(0, spread²) prior of φ_0 (e.g. a Beta prior on
    V: a·log σ(φ) + b·log(1 − σ(φ)), for which the posterior mean has a closed form).

    Shapes: batch.rewards (N,) in {0, 1}, batch.prompt_ids (N,) -> baselines (N,).

    >>> est = PosteriorBaseline(spread=1.5, trend=0.0, drift=0.0)
    >>> out = est(RewardBatch(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([0, 0, 0])))
    >>> [round(b, 3) for b in out.baselines.tolist()]   # each sees the other two rollouts only
    [0.5, 0.5, 0.727]
    """

    name = "posterior"
    stateful = True

    def __init__(self, *, spread: float, trend: float, drift: float, grid_size: int = 2401, grid_limit: float = 12.0,
                 log_prior: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 prompt_trend: torch.Tensor | None = None,
                 offset: Callable[[torch.Tensor, int], np.ndarray] | None = None):
        if spread < 0 or drift < 0:
            raise ValueError(f"spread and drift must be >= 0, got spread={spread}, drift={drift}")
        if grid_size < 3 or grid_size % 2 == 0:
            raise ValueError(f"grid_size: expected an odd number >= 3 (the grid holds 0), got {grid_size}")
        self.spread, self.trend, self.drift = float(spread), float(trend), float(drift)
        self._prompt_trend = None if prompt_trend is None else np.asarray(prompt_trend, dtype=np.float64)  # (n_prompts,)
        self._offset = offset
        # the grid work is numpy float64, single-threaded: torch's intra-op threads only contend
        # on these small (prompts × grid) arrays (40× slower on a loaded 2-core machine)
        self.grid = np.linspace(-grid_limit, grid_limit, grid_size)  # (K,)
        self.dx = float(self.grid[1] - self.grid[0])
        if log_prior is not None:
            lp = np.asarray(torch.as_tensor(log_prior(torch.from_numpy(self.grid)), dtype=torch.float64))
        elif self.spread > 0:
            lp = -0.5 * (self.grid / self.spread) ** 2
        else:
            lp = np.where(np.abs(self.grid) < self.dx / 2, 0.0, -np.inf)
        prior = np.exp(lp - lp.max())
        self._prior = prior / prior.sum()  # (K,) probabilities of φ_0
        self.reset()

    @classmethod
    def for_bandit(cls, sim: DriftingBandit, **grid) -> "PosteriorBaseline":
        """The floor for ``sim``'s generative model (its spread, trend, drift, per-prompt trends and the
        gain of trained prompts)."""
        if sim.learn:
            return cls(spread=sim.spread, trend=sim.trend, drift=sim.drift, offset=sim.offset, **grid)
        own = sim.prompt_trend if sim.slope > 0 else None
        return cls(spread=sim.spread, trend=sim.trend, drift=sim.drift, prompt_trend=own, **grid)

    def _shift(self, ids: torch.Tensor, step: int) -> np.ndarray:
        """The known logit offset of each prompt in ``ids`` at ``step``: (num, 1)."""
        if self._offset is not None:
            return np.asarray(self._offset(ids.cpu().long(), step), dtype=np.float64)[:, None]
        if self._prompt_trend is None:
            return np.full((len(ids), 1), self.trend * step)
        return self._prompt_trend[ids.cpu().long().numpy()][:, None] * step

    def reset(self) -> None:
        self._ids: dict[int, int] = {}  # prompt id -> row of _post
        self._post = np.zeros((0, self.grid.size))  # (P, K) posterior of φ at _at
        self._at = np.zeros(0, dtype=np.int64)  # (P,) the step each row describes
        self._step = 0  # newest step seen

    def _rows(self, ids: torch.Tensor, step: int) -> np.ndarray:
        """Rows of ``ids`` (num,), each predicted forward to ``step`` (new prompts start from the prior)."""
        if step < self._step:
            raise ValueError(f"step: posterior got step {step} after step {self._step}; steps must not go backwards")
        self._step = step
        pids = [int(p) for p in ids.tolist()]
        new = [p for p in pids if p not in self._ids]
        if new:
            for p in new:
                self._ids[p] = len(self._ids)
            self._post = np.concatenate([self._post, np.repeat(self._prior[None, :], len(new), 0)])
            self._at = np.concatenate([self._at, np.zeros(len(new), dtype=np.int64)])
        rows = np.array([self._ids[p] for p in pids], dtype=np.int64)
        gap = step - self._at[rows]  # (num,) steps of random walk since each row's last update
        for d in np.unique(gap[gap > 0]):  # rows with the same gap share one kernel
            sel = rows[gap == d]
            self._post[sel] = self._convolve(self._post[sel], int(d))
        self._at[rows] = step
        return rows

    def _convolve(self, p: np.ndarray, steps: int) -> np.ndarray:
        """Predict ``steps`` steps of the random walk: p (P, K) -> (P, K), rows summing to 1.

        A linear convolution with the discretised N(0, drift²·steps) kernel, by FFT.
        """
        if steps <= 0 or self.drift == 0 or p.shape[0] == 0:
            return p
        sd = self.drift * math.sqrt(steps) / self.dx  # kernel std in grid points
        half = max(1, math.ceil(6 * sd))
        u = np.arange(-half, half + 1, dtype=np.float64)
        kern = np.exp(-0.5 * (u / sd) ** 2)
        kern /= kern.sum()  # (2·half + 1,)
        k = p.shape[1]
        n = 1 << (k + 2 * half - 1).bit_length()  # ≥ K + 2·half: linear, not circular; a power of 2 is fast
        full = np.fft.irfft(np.fft.rfft(p, n, axis=1) * np.fft.rfft(kern, n)[None, :], n, axis=1)  # (P, n)
        out = np.clip(full[:, half : half + k], 0.0, None)  # 'same' part; mass pushed off the grid is lost
        return out / out.sum(1, keepdims=True)

    def _counts(self, batch: RewardBatch):
        r = batch.rewards.detach().cpu().double()
        if not bool(((r == 0) | (r == 1)).all()):
            raise ValueError("rewards: the posterior floor needs binary rewards (0 or 1), as the bandit's")
        g = estimators.group_by(batch.prompt_ids.cpu())
        return r, g, g.sum(r).numpy(), g.counts.double().numpy()  # (N,), groups, successes (num,), trials (num,)

    def _lik(self, k: np.ndarray, n: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """P(k successes in n | φ) on the grid, each row scaled to max 1: (num,), shift (num, 1) -> (num, K)."""
        x = self.grid[None, :] + shift  # (num, K)
        log_s, log_f = -np.logaddexp(0.0, -x), -np.logaddexp(0.0, x)  # log σ(x), log(1 − σ(x))
        ll = k[:, None] * log_s + (n - k)[:, None] * log_f
        return np.exp(ll - ll.max(1, keepdims=True))

    def compute(self, batch: RewardBatch) -> estimators.Advantages:
        r, g, k, n = self._counts(batch)
        rows = self._rows(g.ids, batch.step)  # (num,) (may grow the table: index it afterwards)
        post = self._post[rows]  # (num, K)
        shift = self._shift(g.ids, batch.step)  # (num, 1)
        v = 1.0 / (1.0 + np.exp(-(self.grid[None, :] + shift)))  # (num, K) V on the grid
        means, second = [], []
        for own in (0.0, 1.0):  # the other rollouts: k − own successes in n − 1
            w = post * self._lik(np.clip(k - own, 0, None), n - 1, shift)  # (num, K)
            w = w / w.sum(1, keepdims=True)
            means.append(torch.from_numpy((w * v).sum(1)))
            second.append(torch.from_numpy((w * v * v).sum(1)))
        own1 = r == 1  # (N,) the rollout's own reward picks which posterior it gets
        mean = torch.where(own1, means[1][g.index], means[0][g.index])  # (N,)
        var = torch.where(own1, second[1][g.index], second[0][g.index]) - mean**2
        dev, dt = batch.rewards.device, batch.rewards.dtype
        info = {"posterior_var": float(var.mean()), "num_groups": float(g.num)}
        return estimators.Advantages((r - mean).to(device=dev, dtype=dt), mean.to(device=dev, dtype=dt), info)

    def observe(self, batch: RewardBatch) -> None:
        _, g, k, n = self._counts(batch)
        rows = self._rows(g.ids, batch.step)
        p = self._post[rows] * self._lik(k, n, self._shift(g.ids, batch.step))
        self._post[rows] = p / p.sum(1, keepdims=True)

    def set_reference(self, prompt_ids: torch.Tensor, rewards: torch.Tensor) -> None:
        """Reference samples at step 0 (before any batch): the same information BASIS and BLEND get."""
        self.observe(RewardBatch(torch.as_tensor(rewards, dtype=torch.float64), torch.as_tensor(prompt_ids), step=0))

    def state_dict(self) -> dict:
        return {"ids": dict(self._ids), "post": self._post.copy(), "at": self._at.copy(), "step": self._step}

    def load_state_dict(self, state: dict) -> None:
        self._ids, self._post, self._at = dict(state["ids"]), state["post"].copy(), state["at"].copy()
        self._step = int(state["step"])


# --- fitting the bandit's shape to real runs ---------------------------------------------------------
def probe_steps(steps: int, probe_every: int) -> list[int]:
    """The steps a run of ``steps`` probes at (every ``probe_every`` and the last), as ``lab.probes`` does.

    >>> probe_steps(10, 3)
    [0, 3, 6, 9]
    """
    return [s for s in range(steps) if s % probe_every == 0 or s == steps - 1]


@dataclass(frozen=True)
class ProbeDesign:
    """How the real runs measured value drift (``benchmarks/value_mse_real.py``), to measure the bandit the same way.

    Each (G, J) of ``cells`` is one run of ``steps`` steps with ``rollouts_per_step // G`` prompts
    per step, drawn every J steps from a ``pool`` large enough that prompts come back only by
    reuse; every ``probe_every`` steps (and the last) the step's first ``probe_prompts`` prompts
    are probed. Drift pairs are two probes of one prompt in one run ≤ ``max_lag`` steps apart, so
    they are prompts *inside a reuse block*, being trained on: the population the real drift
    rows describe (all prompts of the bandit drift differently when training favours the prompts
    it sees: ``DriftingBandit``'s ``learn``). The pool is smaller than the real task's (~27k
    problems) only to keep the fit fast; a prompt still comes back outside reuse only rarely.
    """

    cells: tuple[tuple[int, int], ...] = tuple((g, j) for g in (1, 2, 4, 8) for j in (1, 4, 10))
    steps: int = 31
    probe_every: int = 3
    probe_prompts: int = 8
    rollouts_per_step: int = 64
    pool: int = 4096
    warmup: int = 3
    max_lag: int = 9


def probed_drift(world: dict, design: ProbeDesign = ProbeDesign(), *, seeds=range(2)) -> dict:
    """The bandit's drift measured as the real runs measure theirs: {"lags": {k: (msd, mean change per step)},
    "level": mean V(1 − V) of the probes at steps ≥ ``warmup``, "climb": (mean probed V at the last
    probe step − at step 0) / (steps − 1), "start_var": the variance of the probed V at step 0}.
    Exact values, so no noise correction.

    >>> d = probed_drift({"spread": 0.0, "trend": 0.0, "drift": 0.0, "learn": 0.0}, ProbeDesign(cells=((1, 4),), steps=4))
    >>> d["lags"], d["level"], d["climb"], d["start_var"]
    ({3: (0.0, 0.0)}, 0.25, 0.0, 0.0)
    """
    steps = probe_steps(design.steps, design.probe_every)
    diffs: dict[int, list[float]] = {}
    level, first, last = [], [], []
    for g, j in design.cells:
        per_step = design.rollouts_per_step // g
        for seed in seeds:
            sim = DriftingBandit(design.pool, seed=seed, **world)
            seen: dict[int, list[tuple[int, float]]] = {}
            prompts = None
            for t in range(design.steps):
                if t % j == 0:
                    prompts = sim.draw_prompts(per_step)
                if t in steps:
                    ids = prompts[: design.probe_prompts]
                    v = sim.values(t)[ids].numpy()
                    for p, x in zip(ids.tolist(), v.tolist()):
                        for t0, x0 in seen.get(p, ()):
                            if t - t0 <= design.max_lag:
                                diffs.setdefault(t - t0, []).append(x - x0)
                        seen.setdefault(p, []).append((t, x))
                    if t >= design.warmup:
                        level.extend((v * (1 - v)).tolist())
                    (first if t == 0 else last if t == steps[-1] else []).extend(v.tolist())
                sim.train(prompts, t)
    lags = {k: (float(np.mean(np.square(d))), float(np.mean(d)) / k) for k, d in sorted(diffs.items())}
    climb = (float(np.mean(last)) - float(np.mean(first))) / max(steps[-1], 1)
    return {"lags": lags, "level": float(np.mean(level)), "climb": climb, "start_var": float(np.var(first))}


def drift_loss(world: dict, target: dict, design: ProbeDesign = ProbeDesign(), *, seeds=range(2)) -> float:
    """How far the world's probed drift is from ``target`` (``probed_drift``'s layout, from the real runs) over
    *all* lags: squared relative error of each msd, squared error of each mean change over the lag in
    units of √msd, and, where the target has them, the squared relative errors of the level and of the
    start variance, and the squared error of the climb over the run in units of the largest msd."""
    have = probed_drift(world, design, seeds=seeds)
    loss = 0.0
    for k, (msd, mc) in target["lags"].items():
        if k not in have["lags"]:
            return math.inf
        loss += ((have["lags"][k][0] - msd) / msd) ** 2 + (k * (have["lags"][k][1] - mc)) ** 2 / msd
    if target.get("level"):
        loss += ((have["level"] - target["level"]) / target["level"]) ** 2
    if target.get("start_var"):
        loss += ((have["start_var"] - target["start_var"]) / target["start_var"]) ** 2
    if target.get("climb") is not None:
        scale = max(target["lags"].values(), key=lambda x: x[0])[0]
        loss += ((have["climb"] - target["climb"]) * (design.steps - 1)) ** 2 / scale
    return loss


WORLD_KEYS = ("spread", "trend", "learn", "slope", "drift")
"""The bandit parameters a drift fit sets (spread, slope and drift are standard deviations, so ≥ 0)."""


def fit_drift(target: dict, design: ProbeDesign = ProbeDesign(), *, starts=None, seeds=range(4),
              maxiter: int = 400) -> dict[str, float]:
    """The (spread, trend, learn, slope, drift) whose probed drift best fits ``target`` at every lag, its level
    and its climb: Nelder–Mead on :func:`drift_loss` from each of ``starts`` (the loss is a smooth
    function of the parameters: the prompt draws and the walk's noise are fixed by the seeds). At the
    defaults, on the real runs' design, about 6 minutes on one core.

    ``learn`` (trained prompts climb) gives the within-block ballistic climb of the real drift rows,
    ``trend`` the climb of every prompt, ``slope`` per-prompt steady trends, ``drift`` a random walk,
    ``spread`` how far values start from 1/2 (with the level, it keeps values off 0 and 1).
    """
    from scipy.optimize import minimize

    starts = starts or [
        {"spread": 1.0, "trend": 0.0, "learn": 0.2, "slope": 0.05, "drift": 0.1},
        {"spread": 1.5, "trend": 0.02, "learn": 0.1, "slope": 0.0, "drift": 0.3},
        {"spread": 0.6, "trend": 0.05, "learn": 0.3, "slope": 0.1, "drift": 0.05},
    ]

    def world(x):
        w = dict(zip(WORLD_KEYS, (float(v) for v in x)))
        return {k: (abs(v) if k in ("spread", "slope", "drift") else v) for k, v in w.items()}

    best = None
    for s0 in starts:
        r = minimize(lambda x: drift_loss(world(x), target, design, seeds=seeds), [s0[k] for k in WORLD_KEYS],
                     method="Nelder-Mead", options={"maxiter": maxiter, "xatol": 1e-3, "fatol": 1e-4})
        if best is None or r.fun < best.fun:
            best = r
    return {k: round(v, 4) for k, v in world(best.x).items()}


def stretch(world: dict, from_steps: int, to_steps: int) -> dict[str, float]:
    """The same value path over ``to_steps`` steps instead of ``from_steps``: rates scaled so that θ at step
    t·to/from has the law θ had at t (trend, slope and the gain per trained step × from/to, the random
    walk's step × √(from/to)).

    >>> stretch({"spread": 1.5, "trend": 0.3, "slope": 0.1, "drift": 0.4}, 30, 300)
    {'spread': 1.5, 'trend': 0.03, 'slope': 0.01, 'drift': 0.126491}
    """
    f = from_steps / to_steps
    out = dict(world)
    for k in ("trend", "slope", "learn"):
        if k in out:
            out[k] = round(out[k] * f, 6)
    if "drift" in out:
        out["drift"] = round(out["drift"] * math.sqrt(f), 6)
    return out
