"""Policy losses: clip bounds from divergence measures, rules, aggregation, KL penalties.

See ``docs/losses.md``: ratio clipping, clip-higher, dual-clip and KL-based (KL3) trust
regions are configurations of one mechanism — a divergence d(w) of the ratio w = π_θ/π_old
with budget δ gives the interval [l, u] = {w : d(w) ≤ δ} that the PPO surrogate clips w to.

>>> from lab import losses
>>> [round(x, 4) for x in losses.clip_bounds("kl3", 0.03)]
[0.7746, 1.2653]
>>> losses.available_rules(), losses.available_kl()
(['dual_clip', 'ppo', 'vanilla'], ['k1', 'k2', 'k3', 'low_var_kl'])
"""

from lab.losses.agg import AGG_MODES, agg_loss
from lab.losses.bounds import MATCHED_WIDTH, MEASURES, Measure, available_measures, clip_bounds, matched_delta, numeric_bounds, register_measure
from lab.losses.kl import KL_ESTIMATORS, available_kl, kl_penalty
from lab.losses.policy import RULES, PolicyRule, RuleOutput, available_rules, policy_loss, register_rule

__all__ = [
    "AGG_MODES", "agg_loss",
    "MATCHED_WIDTH", "MEASURES", "Measure", "available_measures", "clip_bounds", "matched_delta", "numeric_bounds", "register_measure",
    "KL_ESTIMATORS", "available_kl", "kl_penalty",
    "RULES", "PolicyRule", "RuleOutput", "available_rules", "policy_loss", "register_rule",
]
