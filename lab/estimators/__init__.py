"""Advantage estimators: ``lab.estimators.get(name, **params)(RewardBatch(...)) -> Advantages``.

Registered names (``available()``): the group family ``grpo``, ``dr_grpo``, ``rloo``,
``reinforce_plus_plus``, ``reinforce_plus_plus_baseline``; the Kalman family ``krpo``,
``krpo_invariant``; kernel smoothing over steps ``kae``; batch sharing ``basis``; and the
lab's own ``blend`` (group, history and batch, weighted by estimated variances).
See ``docs/estimators.md`` for formulas, sources and conventions.
"""

from lab.estimators.base import (
    ESTIMATORS,
    Advantages,
    Estimator,
    RewardBatch,
    available,
    get,
    group_by,
    register,
    shared_grouping,
    validate_batch,
    zero_std_frac,
)
from lab.estimators import group, kalman, kernel, basis, blend  # noqa: E402,F401  (registers the estimators)

__all__ = [
    "ESTIMATORS",
    "Advantages",
    "Estimator",
    "RewardBatch",
    "available",
    "get",
    "group_by",
    "register",
    "shared_grouping",
    "validate_batch",
    "zero_std_frac",
]
