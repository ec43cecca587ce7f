"""Group-baseline estimators: GRPO, Dr. GRPO, RLOO, REINFORCE++ and REINFORCE++-baseline.

Conventions follow verl's ``core_algos.py`` (names included) and are pinned by tests:

* group statistics are over the rollouts that share a prompt id, wherever they sit in the batch;
* the group std is the *unbiased* one (divide by n − 1) and ε = 1e-6 is added to it (GRPO);
* a group of size 1 has mean 0 and std 1, so its advantage is its own reward (GRPO, Dr. GRPO,
  REINFORCE++-baseline) and RLOO's leave-one-out baseline is 0;
* a group whose rewards are all equal gets advantage exactly 0 (no NaN);
* REINFORCE++ whitens *per rollout* (each sequence counts once). verl whitens token-level
  returns over valid tokens, so long responses weigh more there; with outcome rewards the two
  differ only in those weights.

Every function is pure: ``fn(rewards (N,), prompt_ids (N,), *, params) -> Advantages``.
"""

from __future__ import annotations

import torch

from lab.estimators.base import Advantages, Groups, finite_or_raise, group_by, register, whiten


def _group_baseline(rewards: torch.Tensor, g: Groups) -> torch.Tensor:
    """Per-group mean as each rollout's baseline (N,), with verl's singleton convention (mean 0).

    The sum is taken relative to the group minimum, so an all-equal group's mean is exactly its
    value and its advantages exactly 0 (sum/n of five 0.9s is not 0.9 in floating point: A
    would be ~1e-10).
    """
    counts = g.counts.to(rewards.dtype)  # (num,)
    low = torch.full((g.num,), float("inf"), dtype=rewards.dtype, device=rewards.device)
    low = low.scatter_reduce_(0, g.index, rewards, "amin")  # (num,)
    mean = low + g.sum(rewards - low.take(g.index)) / counts  # (num,)
    base = torch.where(g.counts == 1, torch.zeros_like(mean), mean)  # (num,) singleton: 0
    return base.take(g.index)


def _std_scale(dev: torch.Tensor, g: Groups, eps: float) -> tuple[torch.Tensor, float]:
    """Per-rollout GRPO divisor std_g + eps (unbiased std; singleton: 1) from deviations r − mean_g.

    Also returns the fraction of groups of >= 2 rollouts with zero spread. Their deviations are
    exactly 0 (see ``_group_baseline``), so the squared sum is exactly 0 too.
    """
    dev2 = g.sum(dev * dev)  # (num,) singletons: r², ignored below
    single = g.counts == 1
    std = torch.sqrt(dev2 / torch.clamp(g.counts - 1, min=1).to(dev.dtype))  # (num,)
    std = torch.where(single, torch.ones_like(std), std)
    multi = int((~single).sum())
    flat = float(((dev2 == 0) & ~single).sum()) / multi if multi else 0.0
    return (std + eps).take(g.index), flat


@register("grpo")
def grpo(rewards: torch.Tensor, prompt_ids: torch.Tensor, *, eps: float = 1e-6, norm_by_std: bool = True) -> Advantages:
    """GRPO: A_i = (r_i − mean_g) / (std_g + eps), baseline mean_g (DeepSeekMath, §4.1.2).

    Shapes: rewards (N,) float, prompt_ids (N,) long -> advantages (N,), baselines (N,).
    ``norm_by_std=False`` skips the division (that is :func:`dr_grpo`). Unbiased std; a
    singleton group has mean 0 and std 1 (verl); an all-equal group gets A = 0.

    >>> out = grpo(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 1, 1, 0]))
    >>> out.baselines.tolist()
    [1.0, 0.5, 0.5, 1.0]
    >>> [round(a, 4) for a in out.advantages.tolist()]
    [0.0, -0.7071, 0.7071, 0.0]
    """
    g = group_by(prompt_ids)
    base = _group_baseline(rewards, g)  # (N,)
    adv = rewards - base
    scale, flat = _std_scale(adv, g, eps)  # (N,); zero_std_frac is reported by dr_grpo too
    if norm_by_std:
        adv = adv / scale
    info = {"num_groups": float(g.num), "zero_std_frac": flat}
    return Advantages(finite_or_raise("grpo", adv), base, info)


@register("dr_grpo")
def dr_grpo(rewards: torch.Tensor, prompt_ids: torch.Tensor) -> Advantages:
    """Dr. GRPO: A_i = r_i − mean_g, no std division (Liu et al. 2025, "Understanding R1-Zero-like training").

    Pair it with the ``seq-mean-token-sum-norm`` loss aggregation for the paper's full fix.
    Singleton group: baseline 0, advantage r.

    >>> dr_grpo(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([3, 3, 3])).advantages
    tensor([ 0.6667, -0.3333, -0.3333])
    """
    return grpo(rewards, prompt_ids, norm_by_std=False)


@register("rloo")
def rloo(rewards: torch.Tensor, prompt_ids: torch.Tensor) -> Advantages:
    """RLOO: baseline b_i = (Σ_g r − r_i)/(n − 1), the mean of the *other* rollouts (Ahmadian et al. 2024).

    A_i = r_i − b_i = n/(n − 1)·(r_i − mean_g). A rollout's own reward never enters its
    baseline, so the gradient estimate stays unbiased. Singleton group: baseline 0 (verl).

    >>> out = rloo(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0, 0, 0]))
    >>> out.baselines.tolist(), out.advantages.tolist()
    ([0.0, 0.5, 0.5], [1.0, -0.5, -0.5])
    """
    g = group_by(prompt_ids)
    total = g.sum(rewards).take(g.index)  # (N,)
    others = torch.clamp(g.counts - 1, min=1).to(rewards.dtype).take(g.index)  # (N,)
    base = (total - rewards) / others  # singleton: total == r exactly, so (r - r) / 1 = 0
    return Advantages(finite_or_raise("rloo", rewards - base), base, {"num_groups": float(g.num)})


@register("reinforce_plus_plus")
def reinforce_plus_plus(rewards: torch.Tensor, prompt_ids: torch.Tensor, *, eps: float = 1e-8) -> Advantages:
    """REINFORCE++: no per-prompt baseline; rewards are whitened over the batch (Hu 2025).

    A_i = (r_i − mean_batch) / sqrt(var_batch + eps) with the unbiased batch variance; the
    baseline reported is the batch mean. Whitening is per rollout (verl does it per token).
    A batch of one rollout gets A = 0. ``prompt_ids`` is accepted for the common interface.

    >>> out = reinforce_plus_plus(torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([0, 0, 1, 1]))
    >>> out.baselines.tolist(), [round(a, 4) for a in out.advantages.tolist()]
    ([0.5, 0.5, 0.5, 0.5], [0.866, -0.866, -0.866, 0.866])
    """
    base = rewards.mean().expand_as(rewards).clone()  # (N,)
    adv = whiten(rewards, eps)
    return Advantages(finite_or_raise("reinforce_plus_plus", adv), base, {})


@register("reinforce_plus_plus_baseline")
def reinforce_plus_plus_baseline(rewards: torch.Tensor, prompt_ids: torch.Tensor, *, eps: float = 1e-8) -> Advantages:
    """REINFORCE++-baseline: subtract the group mean, then whiten over the batch.

    A = whiten(r − mean_g); the baseline reported is the group mean (singleton: 0, as verl).

    >>> out = reinforce_plus_plus_baseline(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1]))
    >>> out.baselines.tolist(), [round(a, 4) for a in out.advantages.tolist()]
    ([0.5, 0.5, 1.0, 1.0], [1.2247, -1.2247, 0.0, 0.0])
    """
    g = group_by(prompt_ids)
    mean = _group_baseline(rewards, g)  # (N,)
    adv = whiten(rewards - mean, eps)
    return Advantages(finite_or_raise("reinforce_plus_plus_baseline", adv), mean, {"num_groups": float(g.num)})
