"""BLEND: the lab's own baseline, combining the current group, the prompt's history and the batch.

Each seed estimator uses one source of information about a prompt's value V(x):
the other rollouts of its group (RLOO), its rewards at earlier steps (KAE), or the other
prompts of the batch (REINFORCE++, BASIS). BLEND takes all three as separate estimates of
V(x) and weights them by their *estimated* variances (inverse-variance weighting, the best
linear unbiased combination of independent estimates). For rollout i of prompt x at step t:

1. group:   m₁ = mean of the other rollouts of x this step,              v₁ = s² / (k_x − 1)
2. history: m₂ = h_x + κ · age_x,                   v₂ = s² / n_x + τ² · age_x + var(κ) · age_x²
   h_x is the mean of x's earlier rewards with weight ``decay``^(t − step), n_x their
   weighted count, age_x = t − (their weighted mean step). κ is the drift of values per step
   of age, fitted on the *other* prompts that have both a group now and a history
   (least squares of d_j = mean_j − h_j on age_j, through the origin).
3. batch:   m₃ = mean reward of the other prompts' rollouts this step,   v₃ = s² / K₋ₓ + σ²_between

   b_i = Σ m_k / v_k / Σ 1 / v_k over the sources that exist (``empty_baseline`` if none).

The variances are data-driven and come from the other prompts too: s² is the pooled
within-group reward variance. With no group of two (G = 1) it is separated from the spread
of values by the other prompts' histories (spread of current rewards ≈ σ² + s², spread of
history means ≈ σ² + s²·mean(1/n)), or is the batch mean's m(1 − m) without histories;
τ² is the moment estimate of how far histories wander per step of age beyond the fitted
drift, max(0, Σ (e_j² − s²/k_j − s²/n_j)) / Σ age_j with e_j = d_j − κ age_j; var(κ) =
Σ a_j² var_j / (Σ a_j²)² with var_j = s²(1/k_j + 1/n_j) + τ² a_j is the fit's own variance, so
a drift seen on few prompts weighs little; σ²_between is the spread of the other prompts'
current means minus their sampling noise. Every variance is floored at ``min_var``. On tiny
batches these estimates are rough (one other prompt with equal rewards gives s² = 0), and the
drift-corrected history can leave [min r, max r]; with tens of prompts they settle.

Leave-one-out: rollout i's reward enters nothing that builds b_i. m₁ leaves it out, and
every fitted quantity (s², κ, τ², σ², m₃) leaves out prompt x altogether, so the policy
gradient stays unbiased. All of it is sums over groups minus prompt x's own term: no loop
over prompts.

Uncertain choices, all parameters: the exponential history weight (``decay``, 0.95 per step,
picked from {0.8, 0.9, 0.95, 0.98} on the value benchmark's bandit; held-out seeds and two
other drift settings keep the ranking), a linear drift in age, and the random-walk
staleness model τ² · age. Value error on the
lab's drifting bandit: ``benchmarks/value_mse.py`` (docs/estimators.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lab.estimators.base import Advantages, Estimator, RewardBatch, StepHistory, finite_or_raise, group_by, register


@register("blend")
class Blend(Estimator):
    """Inverse-variance blend of group, history and batch baselines; see the module docstring.

    Parameters:
        decay: weight of a reward one step older than another (history half-life
            ln 2 / ln(1/decay) steps); entries older than ``max_age`` steps are dropped.
        max_age: steps after which a history entry is forgotten (default: where its
            weight falls below 1e-4).
        empty_baseline: baseline when no source exists (a lone rollout of a new prompt).
        min_var: floor on every variance (keeps weights finite when s² is 0).

    >>> est = Blend()
    >>> ids = torch.tensor([0, 0, 1, 1, 2, 2])
    >>> _ = est(RewardBatch(torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]), ids, step=0))
    >>> out = est(RewardBatch(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0]), ids, step=1))
    >>> [round(b, 3) for b in out.baselines.tolist()]
    [0.584, 0.584, 0.745, 0.913, 0.671, 0.503]
    """

    stateful = True
    wants_reference = True

    def __init__(self, *, decay: float = 0.95, max_age: int | None = None, empty_baseline: float = 0.0, min_var: float = 1e-4):
        if not (0 < decay < 1):
            raise ValueError(f"decay: the per-step history weight must be in (0, 1), got {decay}")
        if max_age is None:
            max_age = max(1, math.ceil(math.log(1e-4) / math.log(decay)))
        if max_age < 1:
            raise ValueError(f"max_age: must be >= 1 step, got {max_age}")
        if not min_var > 0:
            raise ValueError(f"min_var: must be > 0, got {min_var}")
        self.decay, self.max_age, self.empty_baseline, self.min_var = float(decay), int(max_age), float(empty_baseline), float(min_var)
        self.reset()

    # --- memory: one entry per (prompt, step) ---------------------------------------------
    def reset(self) -> None:
        self._hist = StepHistory()

    def state_dict(self) -> dict[str, Any]:
        return self._hist.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._hist.load_state_dict(state, "blend")

    def observe(self, batch: RewardBatch) -> None:
        self._hist.add(batch)
        self._hist.keep(self._hist.step >= self._hist.last_step - self.max_age)

    def set_reference(self, prompt_ids: torch.Tensor, rewards: torch.Tensor) -> None:
        """Offline samples (the trainer's reference stage: the starting policy's), remembered as
        history at step 0, the same interface as every ``wants_reference`` estimator.

        They count like any earlier rollout of their prompts: weighted by ``decay`` with age,
        drift-corrected, and forgotten after ``max_age`` steps (only earlier steps count, so
        they inform step 1 on, not step 0 itself).
        """
        self.observe(RewardBatch(torch.as_tensor(rewards, dtype=torch.float64), torch.as_tensor(prompt_ids), step=0))

    def _history(self, ids: torch.Tensor, step: int):
        """Per group (num,): decayed reward sum, decayed count and decayed step-weighted count."""
        h_s, h_n, h_t = (torch.zeros(ids.shape[0], dtype=torch.float64) for _ in range(3))
        h = self._hist
        if len(h):
            slot, hit = h.slots(ids)  # (H,), (H,)
            age = (step - h.step).double()
            w = torch.where(hit & (age > 0) & (age <= self.max_age), self.decay ** age, torch.zeros_like(age))  # (H,) earlier steps only
            h_s.index_add_(0, slot, w * h.sum)
            h_n.index_add_(0, slot, w * h.cnt)
            h_t.index_add_(0, slot, w * h.cnt * h.step.double())
        return h_s, h_n, h_t

    # --- estimate -----------------------------------------------------------------------
    def compute(self, batch: RewardBatch) -> Advantages:
        base, _, info = self._blend(batch)
        adv = batch.rewards.detach().cpu().double() - base
        dev, dt = batch.rewards.device, batch.rewards.dtype
        return Advantages(finite_or_raise("blend", adv.to(device=dev, dtype=dt)), base.to(device=dev, dtype=dt), info)

    def source_weights(self, batch: RewardBatch) -> torch.Tensor:
        """Each rollout's share of the group, history and batch sources in its baseline, without
        remembering ``batch`` (call it before the estimator itself on the same batch).

        Shapes: batch of N rollouts -> (N, 3) float64, columns (group, history, batch); a row
        sums to 1, or is all 0 where no source exists (``empty_baseline``). The step's
        ``info["weight_group"]`` etc. are the column means.

        >>> est = Blend()
        >>> ids = torch.tensor([0, 0, 1, 1])
        >>> _ = est(RewardBatch(torch.tensor([1.0, 0.0, 1.0, 1.0]), ids, step=0))
        >>> b = RewardBatch(torch.tensor([1.0, 1.0, 0.0, 1.0]), ids, step=1)
        >>> w = est.source_weights(b); w.shape, bool(torch.allclose(w.sum(1), torch.ones(4, dtype=torch.float64)))
        (torch.Size([4, 3]), True)
        >>> round(float(w[:, 1].mean()), 6) == round(est(b).info["weight_history"], 6)
        True
        """
        _, w, _ = self._blend(batch)
        return w

    def _blend(self, batch: RewardBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(baselines (N,), source shares (N, 3), info) of ``batch`` from the memory as it is."""
        if batch.step < self._hist.last_step:
            raise ValueError(
                f"step: blend got step {batch.step} after step {self._hist.last_step}; steps must not go "
                "backwards (reset() or load an earlier state_dict to rewind)"
            )
        r = batch.rewards.detach().cpu().double()  # (N,)
        g = group_by(batch.prompt_ids.cpu())
        k = g.counts.double()  # (num,) rollouts per prompt now
        c = g.sum(r)  # (num,) their reward sum
        mean = c / k
        h_s, h_n, h_t = self._history(g.ids, batch.step)
        has_h = h_n > 0
        h_mean = torch.where(has_h, h_s / h_n.clamp(min=1e-300), torch.zeros_like(h_s))
        age = torch.where(has_h, batch.step - h_t / h_n.clamp(min=1e-300), torch.zeros_like(h_s))

        def loo(*per_group: torch.Tensor) -> list[torch.Tensor]:  # Σ over the *other* prompts, each (num,)
            m = torch.stack(per_group)  # (K, num): one pass for K quantities
            return list(m.sum(1, keepdim=True) - m)

        # s²: pooled within-group variance of the other prompts (batch m(1-m) if none has 2 rollouts)
        ss = g.sum((r - mean[g.index]) ** 2)
        # the current means, the histories' means, and how many of each the other prompts have
        inv_hn = torch.where(has_h, 1 / h_n.clamp(min=1e-300), torch.zeros_like(h_n))
        df_o, ss_o, c_o, k_o, n_p, m1, m2, hn_o, h1, h2, q_o = loo(
            k - 1, ss, c, k, torch.ones_like(k), mean, mean * mean, has_h.double(), h_mean, h_mean * h_mean, inv_hn)
        m_o = torch.where(k_o > 0, c_o / k_o.clamp(min=1), torch.full_like(c_o, 0.5))
        s2 = torch.where(df_o > 0, ss_o / df_o.clamp(min=1), m_o * (1 - m_o)).clamp(min=self.min_var)
        # spread of the other prompts' current means (σ²_between plus sampling noise)
        spread = torch.where(n_p > 1, (m2 - m1 * m1 / n_p.clamp(min=1)) / (n_p - 1).clamp(min=1), torch.zeros_like(m1))
        # no group of two (G = 1): s² and σ²_between are not separable from the current means alone;
        # the other prompts' histories separate them: spread_h ≈ σ² + s² q (q = mean 1/n), spread ≈ σ² + s²
        spread_h = torch.where(hn_o > 1, (h2 - h1 * h1 / hn_o.clamp(min=1)) / (hn_o - 1).clamp(min=1), torch.zeros_like(h1))
        q = q_o / hn_o.clamp(min=1)
        split = (df_o == 0) & (hn_o > 1) & (q < 1) & (n_p > 1)
        s2 = torch.where(split, ((spread - spread_h) / (1 - q).clamp(min=1e-300)).clamp(min=self.min_var), s2)
        s2 = torch.where(split, torch.minimum(s2, spread.clamp(min=self.min_var)), s2)

        # drift κ and staleness τ² from the other prompts with a history and a group now
        both = has_h & (age > 0)
        d, a = torch.where(both, mean - h_mean, torch.zeros_like(mean)), torch.where(both, age, torch.zeros_like(age))
        noise = torch.where(both, 1 / k + 1 / h_n.clamp(min=1e-300), torch.zeros_like(k))
        sda, saa, sdd, sa, snoise, saan, saaa, sinvk = loo(d * a, a * a, d * d, a, noise, a * a * noise, a**3, 1 / k)
        kappa = torch.where(saa > 0, sda / saa.clamp(min=1e-300), torch.zeros_like(sda))
        # Σ_j (d_j − κ a_j)² = Σd² − 2κ Σda + κ² Σa²; sampling noise Σ (1/k_j + 1/n_j), times s²
        resid = sdd - 2 * kappa * sda + kappa**2 * saa
        tau2 = torch.where(sa > 0, (resid - s2 * snoise).clamp(min=0) / sa.clamp(min=1e-300), torch.zeros_like(resid))
        # var(κ) of the weighted fit: Σ a² var_j / (Σ a²)² with var_j = s² noise_j + τ² a_j
        var_kappa = torch.where(saa > 0, (s2 * saan + tau2 * saaa) / saa.clamp(min=1e-300) ** 2, torch.zeros_like(saa))
        # σ²_between: the spread of the other prompts' values, beyond their sampling noise
        between = (spread - s2 * sinvk / n_p.clamp(min=1)).clamp(min=0)

        # the three sources, per rollout
        gi = g.index
        others = (k[gi] - 1)  # (N,)
        est1 = (c[gi] - r) / others.clamp(min=1)
        var1 = s2[gi] / others.clamp(min=1)
        w1 = torch.where(others > 0, 1 / var1.clamp(min=self.min_var), torch.zeros_like(r))
        est2 = (h_mean + kappa * age)[gi]
        var2 = (s2 / h_n.clamp(min=1e-300) + tau2 * age + var_kappa * age**2)[gi]
        w2 = torch.where(has_h[gi], 1 / var2.clamp(min=self.min_var), torch.zeros_like(r))
        est3 = m_o[gi]
        var3 = (s2 / k_o.clamp(min=1) + between)[gi]
        w3 = torch.where(k_o[gi] > 0, 1 / var3.clamp(min=self.min_var), torch.zeros_like(r))
        wsum = w1 + w2 + w3
        base = torch.where(wsum > 0, (w1 * est1 + w2 * est2 + w3 * est3) / wsum.clamp(min=1e-300),
                           torch.full_like(r, self.empty_baseline))
        shares = torch.stack([w1, w2, w3], 1) / wsum.clamp(min=1e-300)[:, None]  # (N, 3)
        info = {"num_groups": float(g.num), "weight_group": float(shares[:, 0].mean()),
                "weight_history": float(shares[:, 1].mean()), "weight_batch": float(shares[:, 2].mean()),
                "drift_per_step": float(kappa.mean()), "staleness_var": float(tau2.mean())}
        return base, shares, info
