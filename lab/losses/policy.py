"""Policy-loss rules: one clipped surrogate whose interval comes from a divergence measure.

A rule maps per-token ratios w (B, T), advantages A (B, T) and a clip interval [l, u] to an
*unreduced* per-token loss matrix plus boolean masks of where clipping cut the gradient
(:class:`RuleOutput`); :func:`lab.losses.agg_loss` reduces it; :func:`policy_loss` composes
the two and returns diagnostics. The interval comes from :func:`lab.losses.clip_bounds`, so
the names people use are configurations, not code paths:

* PPO / GRPO ratio clip: ``rule="ppo", measure="ratio", delta=0.2``
* clip-higher: ``rule="ppo", measure="ratio", delta_low=0.2, delta_high=0.28``;
  **DAPO** = clip-higher + ``agg="token-mean"``
* KL3 clip: ``rule="ppo", measure="kl3", delta=0.03`` (any registered measure works the same way)
* dual-clip: ``rule="dual_clip"`` (+ any measure), c = ``dual_clip_c`` = 3: for A < 0 the
  per-token loss is capped at −c·A
* no clip (plain policy gradient −w·A, for comparison): ``rule="vanilla"``
* **Dr. GRPO** = the ``dr_grpo`` estimator + ``agg="seq-mean-token-sum-norm"`` (with ``ppo``)

Name clash to know about: verl's policy loss called ``"vanilla"`` is PPO clip *with* dual
clip (c = 3); the lab's ``vanilla`` is the unclipped −w·A, and verl's is ``dual_clip`` here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from lab.losses.agg import AGG_MODES, agg_loss
from lab.losses.bounds import clip_bounds
from lab.registry import Registry


class RuleOutput(NamedTuple):
    """What a rule returns: all (B, T); the masks are bool and True where the gradient was cut."""

    loss: torch.Tensor  # (B, T) per-token loss, unreduced
    clipped_low: torch.Tensor  # (B, T) A < 0 and w < l: the lower bound holds the gradient at 0
    clipped_high: torch.Tensor  # (B, T) A > 0 and w > u: the upper bound holds the gradient at 0
    dual_clipped: torch.Tensor  # (B, T) A < 0 and the dual-clip cap −c·A is active


@dataclass(frozen=True)
class PolicyRule:
    """A registered rule: ``fn(ratio, adv, low, high, *, dual_clip_c) -> RuleOutput``.

    ``uses_bounds`` is False for rules that ignore [l, u] (``vanilla``); their diagnostics
    then report the interval as [0, inf].
    """

    name: str
    fn: Callable[..., RuleOutput]
    uses_bounds: bool = True

    def __call__(self, ratio: torch.Tensor, adv: torch.Tensor, low: float, high: float, *,
                 dual_clip_c: float = 3.0) -> RuleOutput:
        return self.fn(ratio, adv, low, high, dual_clip_c=dual_clip_c)


RULES: Registry = Registry("policy-loss rule")


def register_rule(name: str, *, uses_bounds: bool = True):
    """Decorator: register ``fn(ratio, adv, low, high, *, dual_clip_c) -> RuleOutput`` as ``name``.

    >>> @register_rule("doc_half_pg", uses_bounds=False)
    ... def half(ratio, adv, low, high, *, dual_clip_c=3.0):
    ...     no = torch.zeros_like(ratio, dtype=torch.bool)
    ...     return RuleOutput(-0.5 * ratio * adv, no, no, no)
    >>> RULES.get("doc_half_pg")(torch.ones(1, 1), torch.ones(1, 1), 0.8, 1.2).loss
    tensor([[-0.5000]])
    >>> RULES.unregister("doc_half_pg")
    """

    def deco(fn: Callable[..., RuleOutput]) -> Callable[..., RuleOutput]:
        RULES.register(name, PolicyRule(name, fn, uses_bounds))
        return fn

    return deco


@register_rule("ppo")
def ppo_rule(ratio: torch.Tensor, adv: torch.Tensor, low: float, high: float, *, dual_clip_c: float = 3.0) -> RuleOutput:
    """−min(w·A, clip(w, l, u)·A) per token; ratio, adv (B, T) -> RuleOutput of (B, T).

    The clip is active (the token's gradient is exactly zero) on the side the advantage
    pushes toward: at the upper bound when A > 0 and w > u, at the lower bound when A < 0
    and w < l. A token outside [l, u] that the advantage pulls back in keeps its full
    gradient −A·w (d/dlogp). ``dual_clip_c`` is ignored.

    >>> w = torch.tensor([[1.5, 0.5, 1.5, 1.0]])
    >>> a = torch.tensor([[1.0, -1.0, -1.0, 2.0]])
    >>> out = ppo_rule(w, a, 0.8, 1.2)
    >>> out.loss, out.clipped_high, out.clipped_low
    (tensor([[-1.2000,  0.8000,  1.5000, -2.0000]]), tensor([[ True, False, False, False]]), tensor([[False,  True, False, False]]))
    """
    surr = ratio * adv  # (B, T)
    surr_clip = torch.clamp(ratio, low, high) * adv  # (B, T)
    loss = -torch.minimum(surr, surr_clip)  # (B, T)
    clipped_low = (adv < 0) & (ratio < low)
    clipped_high = (adv > 0) & (ratio > high)
    return RuleOutput(loss, clipped_low, clipped_high, torch.zeros_like(clipped_low))


@register_rule("dual_clip")
def dual_clip_rule(ratio: torch.Tensor, adv: torch.Tensor, low: float, high: float, *, dual_clip_c: float = 3.0) -> RuleOutput:
    """``ppo``, and for A < 0 only the loss capped at −c·A (Ye et al. 2020, dual-clip PPO).

    With A < 0 the PPO loss −w·A grows without bound in w (a token the old policy rarely
    sampled and the new one likes); the cap makes it min(−w·A, −c·A) beyond w = c, with zero
    gradient there. Tokens with A ≥ 0 get exactly the ``ppo`` loss. verl's default policy loss.

    >>> w = torch.tensor([[5.0, 2.0, 5.0]])
    >>> a = torch.tensor([[-1.0, -1.0, 1.0]])
    >>> out = dual_clip_rule(w, a, 0.8, 1.2, dual_clip_c=3.0)
    >>> out.loss, out.dual_clipped
    (tensor([[ 3.0000,  2.0000, -1.2000]]), tensor([[ True, False, False]]))
    """
    base = ppo_rule(ratio, adv, low, high)
    cap = -dual_clip_c * adv  # (B, T)
    dual = (adv < 0) & (base.loss > cap)
    loss = torch.where(dual, cap, base.loss)  # (B, T)
    return RuleOutput(loss, base.clipped_low, base.clipped_high, dual)


@register_rule("vanilla", uses_bounds=False)
def vanilla_rule(ratio: torch.Tensor, adv: torch.Tensor, low: float, high: float, *, dual_clip_c: float = 3.0) -> RuleOutput:
    """−w·A with no clip (bounds ignored): the plain policy gradient (at w = 1, REINFORCE).

    >>> vanilla_rule(torch.tensor([[3.0, 0.1]]), torch.tensor([[1.0, -1.0]]), 0.8, 1.2).loss
    tensor([[-3.0000,  0.1000]])
    """
    no = torch.zeros_like(ratio, dtype=torch.bool)
    return RuleOutput(-ratio * adv, no, no, no)


def available_rules() -> list[str]:
    """Names of the policy-loss rules.

    >>> available_rules()
    ['dual_clip', 'ppo', 'vanilla']
    """
    return RULES.available()


def _check_inputs(logp, old_logp, advantages, mask):
    for name, t in (("logp", logp), ("old_logp", old_logp), ("advantages", advantages), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if logp.dim() != 2:
        raise ValueError(f"logp: expected shape (B, T), got {tuple(logp.shape)}")
    for name, t in (("old_logp", old_logp), ("mask", mask)):
        if t.shape != logp.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but logp has {tuple(logp.shape)}; they must match")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(
            f"advantages: expected shape {tuple(logp.shape[:1])} (per sequence) or {tuple(logp.shape)} "
            f"(per token), got {tuple(advantages.shape)}"
        )
    m = mask.bool()  # (B, T)
    if not bool(m.any()):
        raise ValueError("mask: no valid tokens (empty mask)")
    adv = advantages if advantages.dim() == 2 else advantages[:, None].expand_as(logp)  # (B, T)
    for name, t in (("logp", logp), ("old_logp", old_logp), ("advantages", adv)):
        bad = ~torch.isfinite(t.detach()) & m
        if bool(bad.any()):
            i, j = (int(x) for x in bad.nonzero()[0])
            raise ValueError(f"{name}: non-finite value at sequence {i}, token {j}")
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

    Shapes: ``logp`` (log π_θ, with grad), ``old_logp`` (log π_old), ``mask`` (B, T);
    ``advantages`` (B,) per sequence (broadcast over tokens) or (B, T) per token.
    ``rule`` ∈ :func:`available_rules`, ``agg`` ∈ ``AGG_MODES`` (``norm_const`` goes to it);
    the clip interval is ``clip_bounds(measure, delta, delta_low=..., delta_high=...)``.
    The log-ratio is clamped to [−20, 20] before exp (as verl); padded positions get w = 1,
    A = 0 and never reach the loss. Returns (scalar loss in the dtype of logp − old_logp,
    dict of Python floats), with the fractions taken over valid tokens:

    * ``actor/pg_loss``: the aggregated loss;
    * ``actor/clip_frac_low``: A < 0 and w < l, the lower bound cut the gradient;
    * ``actor/clip_frac_high``: A > 0 and w > u, the upper bound cut the gradient;
    * ``actor/dual_clip_frac``: A < 0 and the dual-clip cap is active (0 for other rules);
    * ``actor/zero_grad_frac``: gradient zero because of any clip (the union of the three);
    * ``actor/ratio_mean``, ``actor/ratio_min``, ``actor/ratio_max``: statistics of w;
    * ``actor/approx_kl``: mean of w − 1 − log w, the k3 estimate of KL(π_old ‖ π_θ);
    * ``actor/clip_low_bound``, ``actor/clip_high_bound``: [l, u] used ([0, inf] for ``vanilla``).

    Worked example: two one-token answers, w = 1.5 with A = +1 (clipped at u = 1.2) and
    w = 0.5 with A = −1 (clipped at l = 0.8): loss = (−1.2 + 0.8) / 2 = −0.2.

    >>> logp = torch.log(torch.tensor([[1.5, 1.0], [0.5, 1.0]]))   # old_logp = 0 -> w = exp(logp)
    >>> mask = torch.tensor([[True, False], [True, False]])
    >>> loss, d = policy_loss(logp, torch.zeros(2, 2), torch.tensor([1.0, -1.0]), mask)
    >>> round(float(loss), 4), d["actor/clip_frac_high"], d["actor/clip_frac_low"], d["actor/zero_grad_frac"]
    (-0.2, 0.5, 0.5, 1.0)
    >>> _, d = policy_loss(logp, torch.zeros(2, 2), torch.tensor([1.0, -1.0]), mask, measure="kl3", delta=0.03)
    >>> round(d["actor/clip_low_bound"], 4), round(d["actor/clip_high_bound"], 4)
    (0.7746, 1.2653)
    """
    m, adv = _check_inputs(logp, old_logp, advantages, mask)
    if isinstance(dual_clip_c, bool) or not isinstance(dual_clip_c, numbers.Real) or not (math.isfinite(dual_clip_c) and dual_clip_c > 1):
        raise ValueError(f"dual_clip_c: must be a finite number > 1, got {dual_clip_c!r}")
    fn: PolicyRule = RULES.get(rule)
    AGG_MODES.get(agg)  # fail early, listing the valid modes
    if fn.uses_bounds:
        low, high = clip_bounds(measure, delta, delta_low=delta_low, delta_high=delta_high)
    else:
        low, high = 0.0, math.inf
    log_ratio = torch.where(m, torch.clamp(logp - old_logp, -20.0, 20.0), torch.zeros((), dtype=logp.dtype, device=logp.device))  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = torch.where(m, adv.to(ratio.dtype), torch.zeros((), dtype=ratio.dtype, device=ratio.device))  # (B, T)
    out = fn(ratio, adv, low, high, dual_clip_c=float(dual_clip_c))
    loss = agg_loss(out.loss, m, agg, norm_const=norm_const)
    with torch.no_grad():
        n = m.sum().double()

        def frac(b: torch.Tensor) -> float:
            return float((b & m).sum().double() / n)

        r = ratio.detach().double()[m]  # (N,) valid tokens only
        lr = log_ratio.detach().double()[m]
        diag = {
            "actor/pg_loss": float(loss.detach()),
            "actor/clip_frac_low": frac(out.clipped_low),
            "actor/clip_frac_high": frac(out.clipped_high),
            "actor/dual_clip_frac": frac(out.dual_clipped),
            "actor/zero_grad_frac": frac(out.clipped_low | out.clipped_high | out.dual_clipped),
            "actor/ratio_mean": float(r.mean()),
            "actor/ratio_min": float(r.min()),
            "actor/ratio_max": float(r.max()),
            "actor/approx_kl": float((torch.expm1(lr) - lr).mean()),  # k3 = w − 1 − log w
            "actor/clip_low_bound": float(low),
            "actor/clip_high_bound": float(high),
        }
    return loss, diag
