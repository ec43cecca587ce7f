"""Policy-loss rules: one clipped surrogate whose interval comes from a divergence measure.

A rule maps per-token ratios w (B, T) and advantages A (B, T) to an *unreduced* per-token
loss matrix plus boolean masks of where clipping cut the gradient; :func:`agg_loss` reduces
it; :func:`policy_loss` composes the two and returns diagnostics. Named configurations:

* PPO ratio clip: ``rule="ppo", measure="ratio", delta=0.2``
* clip-higher (DAPO): ``rule="ppo", measure="ratio", delta_low=0.2, delta_high=0.28, agg="token-mean"``
* KL3 clip: ``rule="ppo", measure="kl3", delta=0.03`` (any measure works the same way)
* dual-clip: ``rule="dual_clip"`` (+ any measure), c = 3: for A < 0 the loss is capped at −c·A
* no clip (vanilla policy gradient, for comparison): ``rule="vanilla"``
* Dr. GRPO: the ``dr_grpo`` estimator with ``agg="seq-mean-token-sum-norm"``
"""

from __future__ import annotations

import math

import torch

from lab.losses.agg import agg_loss
from lab.losses.bounds import clip_bounds
from lab.registry import Registry

RULES: Registry = Registry("policy-loss rule")


@RULES.register("ppo")
def ppo_rule(ratio: torch.Tensor, adv: torch.Tensor, low: float, high: float, *, dual_clip_c: float = 3.0):
    """−min(w·A, clip(w, l, u)·A) per token; gradient zero where the clip is active.

    Returns (loss (B, T), clipped_low (B, T), clipped_high (B, T), dual (B, T) all-False).
    The clip is active (zero gradient) at the lower bound when A < 0 and w < l, at the upper
    bound when A > 0 and w > u: the side the advantage pushes toward.
    """
    surr = ratio * adv
    surr_clip = torch.clamp(ratio, low, high) * adv
    loss = -torch.min(surr, surr_clip)
    clipped_low = (adv < 0) & (ratio < low)
    clipped_high = (adv > 0) & (ratio > high)
    return loss, clipped_low, clipped_high, torch.zeros_like(clipped_low)


@RULES.register("dual_clip")
def dual_clip_rule(ratio: torch.Tensor, adv: torch.Tensor, low: float, high: float, *, dual_clip_c: float = 3.0):
    """PPO plus, for A < 0 only, the loss capped at −c·A (Ye et al. 2020, "dual-clip PPO").

    With a very large w and A < 0 the PPO loss −w·A grows without bound; dual clip caps it at
    −c·A (zero gradient beyond w = c).
    """
    loss, lo, hi, _ = ppo_rule(ratio, adv, low, high)
    cap = -dual_clip_c * adv
    dual = (adv < 0) & (loss > cap)
    loss = torch.where(dual, cap, loss)
    return loss, lo, hi, dual


@RULES.register("vanilla")
def vanilla_rule(ratio: torch.Tensor, adv: torch.Tensor, low: float, high: float, *, dual_clip_c: float = 3.0):
    """−w·A with no clip: the plain policy gradient at w = 1 (first epoch)."""
    z = torch.zeros_like(ratio, dtype=torch.bool)
    return -ratio * adv, z, z, z


def available_rules() -> list[str]:
    return RULES.available()


def _check_inputs(logp, old_logp, advantages, mask):
    if logp.dim() != 2:
        raise ValueError(f"logp: expected shape (B, T), got {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("mask", mask)):
        if t.shape != logp.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but logp has {tuple(logp.shape)}; they must match")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"advantages: expected shape {tuple(logp.shape[:1])} or {tuple(logp.shape)}, got {tuple(advantages.shape)}")
    m = mask.bool()
    if not bool(m.any()):
        raise ValueError("mask: no valid tokens (empty mask)")
    for name, t in (("logp", logp), ("old_logp", old_logp)):
        bad = ~torch.isfinite(t) & m
        if bool(bad.any()):
            i, j = (int(x) for x in bad.nonzero()[0])
            raise ValueError(f"{name}: non-finite value at sequence {i}, token {j}")
    adv = advantages if advantages.dim() == 2 else advantages[:, None].expand_as(logp)
    bad = ~torch.isfinite(adv) & m
    if bool(bad.any()):
        raise ValueError(f"advantages: non-finite value at sequence {int(bad.nonzero()[0, 0])}")
    return m, adv


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    rule: str = "ppo",
    agg: str = "token-mean",
    *,
    measure: str = "ratio",
    delta: float = 0.2,
    delta_low: float | None = None,
    delta_high: float | None = None,
    dual_clip_c: float = 3.0,
    norm_const: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Aggregated policy loss and its diagnostics.

    Shapes: logp, old_logp, mask (B, T); advantages (B,) per sequence or (B, T) per token.
    Returns (scalar loss with grad, dict of Python floats):

    ``actor/pg_loss``; ``actor/clip_frac_low`` / ``actor/clip_frac_high`` (fraction of valid
    tokens whose gradient the lower / upper bound cut: A < 0 and w < l / A > 0 and w > u);
    ``actor/zero_grad_frac`` (tokens with zero gradient from any clip, dual clip included);
    ``actor/dual_clip_frac``; ``actor/ratio_mean|min|max``; ``actor/approx_kl`` (mean k3 of
    KL(π_old ‖ π_θ), w − 1 − log w); ``actor/clip_low_bound`` / ``actor/clip_high_bound``.

    >>> logp = torch.log(torch.tensor([[1.5, 1.0], [0.5, 1.0]]))   # old_logp = 0 -> w = exp(logp)
    >>> mask = torch.tensor([[True, False], [True, False]])
    >>> loss, d = policy_loss(logp, torch.zeros(2, 2), torch.tensor([1.0, -1.0]), mask)
    >>> round(float(loss), 4), d["actor/clip_frac_high"], d["actor/clip_frac_low"]
    (-0.2, 0.5, 0.5)
    """
    m, adv = _check_inputs(logp, old_logp, advantages, mask)
    if isinstance(dual_clip_c, bool) or not (isinstance(dual_clip_c, (int, float)) and math.isfinite(dual_clip_c) and dual_clip_c > 1):
        raise ValueError(f"dual_clip_c: must be a finite number > 1, got {dual_clip_c!r}")
    fn = RULES.get(rule)
    if rule == "vanilla":
        low, high = 0.0, math.inf
    else:
        low, high = clip_bounds(measure, delta, delta_low=delta_low, delta_high=delta_high)
    log_ratio = torch.where(m, torch.clamp(logp - old_logp, -20.0, 20.0), torch.zeros_like(logp))  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = adv.to(ratio.dtype)
    loss_mat, c_low, c_high, dual = fn(ratio, adv, low, high, dual_clip_c=dual_clip_c)
    loss = agg_loss(loss_mat, m, agg, norm_const=norm_const)
    with torch.no_grad():
        n = m.sum().clamp(min=1).to(ratio.dtype)

        def frac(b):
            return float((b & m).sum() / n)

        r_valid = ratio[m]
        diag = {
            "actor/pg_loss": float(loss.detach()),
            "actor/clip_frac_low": frac(c_low),
            "actor/clip_frac_high": frac(c_high),
            "actor/dual_clip_frac": frac(dual),
            "actor/zero_grad_frac": frac(c_low | c_high | dual),
            "actor/ratio_mean": float(r_valid.mean()),
            "actor/ratio_min": float(r_valid.min()),
            "actor/ratio_max": float(r_valid.max()),
            "actor/approx_kl": float((ratio - 1 - log_ratio)[m].mean()),
            "actor/clip_low_bound": float(low),
            "actor/clip_high_bound": float(high),
        }
    return loss, diag
