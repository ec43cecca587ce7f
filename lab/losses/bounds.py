"""Trust regions as clip intervals: a divergence d(w) of the ratio w = π_θ/π_old and a budget δ.

The set {w > 0 : d(w) ≤ δ} of a convex d with d(1) = 0 is an interval [l, u] around 1, and
"keep the update inside the trust region" is the same rule as "clip w to [l, u] in the PPO
surrogate" (Wu et al., arXiv 2602.05494). Built-in measures and their closed-form bounds:

* ``ratio``  d = |w − 1|              -> [1 − δ, 1 + δ]   (PPO's ε; clip-higher: δ_low ≠ δ_high)
* ``kl1``    d = |log w|              -> [e^−δ, e^δ]
* ``kl2``    d = ½ (log w)²           -> [e^−√(2δ), e^√(2δ)]
* ``kl3``    d = w − 1 − log w        -> [−W₀(−e^−(1+δ)), −W₋₁(−e^−(1+δ))]  (Lambert W)

KL3 is Schulman's k3 estimator of KL(π_old ‖ π_θ) for one token sampled from π_old; its
interval is asymmetric: more room to raise a token's probability than to lower it.
A user measure needs only d(w): ``register_measure("sq", lambda w: (w - 1) ** 2)``; its
bounds come from bracketing root finding on each side of 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from scipy.optimize import brentq
from scipy.special import lambertw

from lab.registry import Registry


@dataclass(frozen=True)
class Measure:
    """A divergence d(w) ≥ 0 with d(1) = 0, optionally with closed-form bounds (l(δ), u(δ))."""

    name: str
    d: Callable[[float], float]
    lower: Callable[[float], float] | None = None
    upper: Callable[[float], float] | None = None


MEASURES: Registry = Registry("clip measure")


def register_measure(name: str, d: Callable[[float], float], *, lower=None, upper=None) -> Measure:
    """Register a measure by its divergence ``d(w)`` (bounds then come from root finding).

    >>> m = register_measure("doc_sq", lambda w: (w - 1.0) ** 2)
    >>> [round(x, 6) for x in clip_bounds("doc_sq", 0.04)]
    [0.8, 1.2]
    >>> MEASURES.unregister("doc_sq")
    """
    if not callable(d):
        raise ValueError(f"measure {name!r}: d must be a function of the ratio w")
    if abs(float(d(1.0))) > 1e-12:
        raise ValueError(f"measure {name!r}: d(1) must be 0 (no change means no divergence), got {d(1.0)}")
    m = Measure(name, d, lower, upper)
    MEASURES.register(name, m)
    return m


def _kl3_lower(delta: float) -> float:
    return float(-lambertw(-math.exp(-(1.0 + delta)), 0).real)


def _kl3_upper(delta: float) -> float:
    return float(-lambertw(-math.exp(-(1.0 + delta)), -1).real)


register_measure("ratio", lambda w: abs(w - 1.0), lower=lambda d: 1.0 - d, upper=lambda d: 1.0 + d)
register_measure("kl1", lambda w: abs(math.log(w)), lower=lambda d: math.exp(-d), upper=lambda d: math.exp(d))
register_measure("kl2", lambda w: 0.5 * math.log(w) ** 2, lower=lambda d: math.exp(-math.sqrt(2 * d)), upper=lambda d: math.exp(math.sqrt(2 * d)))
register_measure("kl3", lambda w: w - 1.0 - math.log(w), lower=_kl3_lower, upper=_kl3_upper)


def available_measures() -> list[str]:
    return MEASURES.available()


def _check_delta(name: str, delta) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta <= 0:
        raise ValueError(f"{name}: the trust-region budget must be a finite number > 0, got {delta!r}")
    return float(delta)


def numeric_bounds(d: Callable[[float], float], delta_low: float, delta_high: float | None = None) -> tuple[float, float]:
    """[l, u] with d(l) = δ_low (l < 1) and d(u) = δ_high (u > 1), by bracketing + Brent's method.

    The bracket is expanded geometrically away from 1; if d never reaches δ on a side the
    bound is 0 (below) or inf (above).

    >>> [round(x, 12) for x in numeric_bounds(lambda w: abs(w - 1.0), 0.2)]
    [0.8, 1.2]
    """
    dl = _check_delta("delta_low", delta_low)
    dh = dl if delta_high is None else _check_delta("delta_high", delta_high)

    def f_low(w):
        return d(w) - dl

    def f_high(w):
        return d(w) - dh

    a = 0.5
    while f_low(a) <= 0:
        a *= 0.5
        if a < 1e-300:
            a = None
            break
    low = 0.0 if a is None else brentq(f_low, a, 1.0, xtol=1e-15, rtol=1e-15, maxiter=500)
    b = 2.0
    while f_high(b) <= 0:
        b *= 2.0
        if b > 1e300:
            b = None
            break
    high = math.inf if b is None else brentq(f_high, 1.0, b, xtol=1e-15, rtol=1e-15, maxiter=500)
    return float(low), float(high)


def clip_bounds(measure: str, delta: float | None = None, *, delta_low: float | None = None,
                delta_high: float | None = None, method: str = "closed") -> tuple[float, float]:
    """(low, high) in ratio space: the trust region {w : d(w) ≤ δ} of ``measure``.

    ``delta_low``/``delta_high`` give each side its own budget (clip-higher: ``ratio`` with
    0.2/0.28, DAPO); either defaults to ``delta``. ``method="numeric"`` ignores closed forms
    and finds the roots numerically (the tests compare the two to 1e-10).

    >>> [round(x, 4) for x in clip_bounds("kl3", 0.03)]
    [0.7746, 1.2653]
    >>> clip_bounds("ratio", delta_low=0.2, delta_high=0.28)
    (0.8, 1.28)
    """
    m: Measure = MEASURES.get(measure)
    if method not in ("closed", "numeric"):
        raise ValueError(f"method: choose 'closed' or 'numeric', got {method!r}")
    if delta is None and (delta_low is None or delta_high is None):
        raise ValueError("delta: give delta, or both delta_low and delta_high")
    dl = _check_delta("delta_low" if delta_low is not None else "delta", delta_low if delta_low is not None else delta)
    dh = _check_delta("delta_high" if delta_high is not None else "delta", delta_high if delta_high is not None else delta)
    if measure == "ratio" and dl >= 1:
        raise ValueError(f"delta_low: a ratio epsilon must be < 1 so the lower bound 1 - eps stays > 0, got {dl}")
    if method == "closed" and m.lower is not None and m.upper is not None:
        return float(m.lower(dl)), float(m.upper(dh))
    return numeric_bounds(m.d, dl, dh)
