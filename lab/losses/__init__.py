"""Policy losses: clip bounds from divergence measures, rules, aggregation, KL penalties.

See ``docs/losses.md``: ratio clipping, clip-higher, dual-clip and KL-based (KL3) trust
regions are configurations of one mechanism.
"""

from lab.losses.agg import AGG_MODES, agg_loss
from lab.losses.bounds import MEASURES, Measure, available_measures, clip_bounds, numeric_bounds, register_measure
from lab.losses.kl import KL_ESTIMATORS, available_kl, kl_penalty
from lab.losses.policy import RULES, available_rules, policy_loss

__all__ = [
    "AGG_MODES", "agg_loss", "MEASURES", "Measure", "available_measures", "clip_bounds", "numeric_bounds",
    "register_measure", "KL_ESTIMATORS", "available_kl", "kl_penalty", "RULES", "available_rules", "policy_loss",
]
