"""Trust regions as clip intervals: a divergence d(w) of the ratio w = π_θ/π_old and a budget δ.

The set {w > 0 : d(w) ≤ δ} of a convex d with d(1) = 0 is an interval [l, u] around 1, and
"keep the update inside the trust region" is the same rule as "clip w to [l, u] in the PPO
surrogate" (Wu et al., arXiv 2602.05494). Built-in measures and their closed-form bounds:

* ``ratio``  d = |w − 1|              -> [1 − δ, 1 + δ]   (PPO's ε; clip-higher: δ_low ≠ δ_high)
* ``kl1``    d = |log w|              -> [e^−δ, e^δ]
* ``kl2``    d = ½ (log w)²           -> [e^−√(2δ), e^√(2δ)]
* ``kl3``    d = w − 1 − log w        -> [−W₀(−e^−(1+δ)), −W₋₁(−e^−(1+δ))]  (Lambert W)

KL3's d is Schulman's k3 estimator of KL(π_old ‖ π_θ) for one token sampled from π_old; its
interval is asymmetric (u − 1 > 1 − l): more room to raise a token's probability than to
lower it. A user measure needs only d(w); its bounds come from bracketing root finding on
each side of 1 (:func:`numeric_bounds`):

>>> _ = register_measure("doc_quartic", lambda w: (w - 1.0) ** 4)
>>> [round(x, 6) for x in clip_bounds("doc_quartic", 0.0016)]   # 1 ± 0.0016 ** (1/4)
[0.8, 1.2]
>>> MEASURES.unregister("doc_quartic")
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

from scipy.optimize import brentq
from scipy.special import lambertw

from lab.registry import Registry

Divergence = Callable[[float], float]
"""d(w): a function of the ratio w > 0 returning a divergence ≥ 0, with d(1) = 0."""


@dataclass(frozen=True)
class Measure:
    """A divergence ``d(w)`` ≥ 0 with d(1) = 0, and optionally closed-form bounds.

    ``lower(δ)`` solves d(l) = δ for l < 1 and ``upper(δ)`` solves d(u) = δ for u > 1; without
    them :func:`clip_bounds` finds the roots numerically.

    >>> m = MEASURES.get("kl2")
    >>> m.d(math.e), round(m.upper(0.5), 6)
    (0.5, 2.718282)
    """

    name: str
    d: Divergence
    lower: Callable[[float], float] | None = None
    upper: Callable[[float], float] | None = None

    @property
    def has_closed_form(self) -> bool:
        return self.lower is not None and self.upper is not None


MEASURES: Registry = Registry("clip measure")

# ratios on which a new measure is checked: d ≥ 0, non-increasing below 1, non-decreasing above
_SHAPE_GRID = [1.0 - 0.95 * (0.6**k) for k in range(40)] + [1.0] + [1.0 + 3.0 * (0.6**k) for k in reversed(range(40))]


def register_measure(name: str, d: Divergence, *, lower: Callable[[float], float] | None = None,
                     upper: Callable[[float], float] | None = None) -> Measure:
    """Register a clip measure by its divergence ``d(w)``; bounds then come from root finding.

    ``d`` takes a float w > 0 and returns a float. It must be 0 at w = 1, ≥ 0, non-increasing
    on (0, 1] and non-decreasing on [1, ∞) (convex d is the usual case): that is what makes
    {w : d(w) ≤ δ} one interval. These are checked on a grid of ratios and a violation is a
    ``ValueError``. ``lower``/``upper`` optionally give closed forms δ -> l and δ -> u.

    >>> m = register_measure("doc_sq", lambda w: (w - 1.0) ** 2)
    >>> [round(x, 6) for x in clip_bounds("doc_sq", 0.04)]   # 1 ± √δ
    [0.8, 1.2]
    >>> MEASURES.unregister("doc_sq")
    >>> register_measure("doc_bad", lambda w: w)
    Traceback (most recent call last):
    ...
    ValueError: measure 'doc_bad': d(1) must be 0 (no change means no divergence), got 1.0
    """
    if not callable(d):
        raise ValueError(f"measure {name!r}: d must be a function of the ratio w, got {d!r}")
    d1 = float(d(1.0))
    if d1 != 0.0:
        raise ValueError(f"measure {name!r}: d(1) must be 0 (no change means no divergence), got {d1}")
    vals = [float(d(w)) for w in _SHAPE_GRID]
    for w, v in zip(_SHAPE_GRID, vals):
        if not (v >= 0):  # also catches NaN
            raise ValueError(f"measure {name!r}: d must be >= 0, got d({w:.6g}) = {v}")
    for (w0, v0), (w1, v1) in zip(zip(_SHAPE_GRID, vals), zip(_SHAPE_GRID[1:], vals[1:])):
        going_down = w1 <= 1.0 and v1 > v0 + 1e-12 * max(1.0, abs(v0))
        going_up = w0 >= 1.0 and v1 < v0 - 1e-12 * max(1.0, abs(v0))
        if going_down or going_up:
            raise ValueError(
                f"measure {name!r}: d must decrease towards w = 1 and increase away from it "
                f"(e.g. convex); d({w0:.6g}) = {v0:.6g}, d({w1:.6g}) = {v1:.6g}"
            )
    m = Measure(name, d, lower, upper)
    MEASURES.register(name, m)
    return m


def _kl3_lower(delta: float) -> float:
    return float(-lambertw(-math.exp(-(1.0 + delta)), 0).real)


def _kl3_upper(delta: float) -> float:
    return float(-lambertw(-math.exp(-(1.0 + delta)), -1).real)


register_measure("ratio", lambda w: abs(w - 1.0), lower=lambda dl: 1.0 - dl, upper=lambda dh: 1.0 + dh)
register_measure("kl1", lambda w: abs(math.log(w)), lower=lambda dl: math.exp(-dl), upper=math.exp)
register_measure("kl2", lambda w: 0.5 * math.log(w) ** 2,
                 lower=lambda dl: math.exp(-math.sqrt(2.0 * dl)), upper=lambda dh: math.exp(math.sqrt(2.0 * dh)))
register_measure("kl3", lambda w: w - 1.0 - math.log(w), lower=_kl3_lower, upper=_kl3_upper)


def available_measures() -> list[str]:
    """Names of the registered clip measures.

    >>> available_measures()
    ['kl1', 'kl2', 'kl3', 'ratio']
    """
    return MEASURES.available()


def _check_delta(name: str, delta) -> float:
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not math.isfinite(delta) or delta <= 0:
        raise ValueError(f"{name}: the trust-region budget must be a finite number > 0, got {delta!r}")
    return float(delta)


def _root(f: Callable[[float], float], inside: float, outside: float) -> float:
    """Root of f between ``inside`` (f < 0) and ``outside`` (f ≥ 0) by Brent's method."""
    if f(outside) == 0.0:
        return outside
    return float(brentq(f, min(inside, outside), max(inside, outside), xtol=1e-15, maxiter=500))


def numeric_bounds(d: Divergence, delta_low: float, delta_high: float | None = None) -> tuple[float, float]:
    """[l, u] with d(l) = δ_low (l < 1) and d(u) = δ_high (u > 1), by bracketing + Brent's method.

    The bracket starts at [0.5, 1] below and [1, 2] above and is expanded geometrically away
    from 1 (halving towards 0, doubling towards ∞) until d exceeds δ; Brent's method then
    finds the crossing to ~1e-15. If d never reaches δ on a side, that side of the trust
    region is open: the bound is 0 (below) or ``inf`` (above). ``delta_high`` defaults to
    ``delta_low``. Used for user measures and to check the closed forms (tests: 1e-10).

    >>> [round(x, 12) for x in numeric_bounds(lambda w: abs(w - 1.0), 0.2)]
    [0.8, 1.2]
    >>> numeric_bounds(lambda w: max(w - 1.0, 0.0), 0.5)   # never grows below 1: open side
    (0.0, 1.5)
    """
    dl = _check_delta("delta_low", delta_low)
    dh = dl if delta_high is None else _check_delta("delta_high", delta_high)

    def excess(delta: float) -> Callable[[float], float]:
        def f(w: float) -> float:
            v = float(d(w))
            if math.isnan(v):
                raise ValueError(f"d({w!r}) is NaN; a measure must be defined for every w > 0")
            return v - delta

        return f

    f_low, f_high = excess(dl), excess(dh)
    a = 0.5
    while f_low(a) < 0:
        if a < 1e-300:
            break
        a *= 0.5
    low = 0.0 if f_low(a) < 0 else _root(f_low, 1.0, a)
    b = 2.0
    while f_high(b) < 0:
        if b > 1e300:
            break
        b *= 2.0
    high = math.inf if f_high(b) < 0 else _root(f_high, 1.0, b)
    return float(low), float(high)


def clip_bounds(measure: str, delta: float | None = None, *, delta_low: float | None = None,
                delta_high: float | None = None, method: str = "closed") -> tuple[float, float]:
    """(low, high) in ratio space: the trust region {w : d(w) ≤ δ} of ``measure``.

    ``delta_low``/``delta_high`` give each side its own budget, and either defaults to
    ``delta``: clip-higher (DAPO) is ``clip_bounds("ratio", delta_low=0.2, delta_high=0.28)``.
    For ``ratio`` the lower budget must be < 1 (so 1 − ε > 0). ``method="closed"`` uses the
    measure's closed form when it has one (else root finding); ``method="numeric"`` always
    uses :func:`numeric_bounds` (the tests compare the two to 1e-10).

    >>> [round(x, 4) for x in clip_bounds("kl3", 0.03)]
    [0.7746, 1.2653]
    >>> [round(x, 4) for x in clip_bounds("kl3", 0.03, method="numeric")]
    [0.7746, 1.2653]
    >>> clip_bounds("ratio", 0.2, delta_high=0.28)
    (0.8, 1.28)
    >>> clip_bounds("kl4", 0.03)
    Traceback (most recent call last):
    ...
    ValueError: unknown clip measure 'kl4'; available: kl1, kl2, kl3, ratio
    """
    m: Measure = MEASURES.get(measure)
    if method not in ("closed", "numeric"):
        raise ValueError(f"method: choose 'closed' or 'numeric', got {method!r}")
    if delta is None and (delta_low is None or delta_high is None):
        raise ValueError("delta: give delta, or both delta_low and delta_high")
    dl = _check_delta("delta_low", delta_low) if delta_low is not None else _check_delta("delta", delta)
    dh = _check_delta("delta_high", delta_high) if delta_high is not None else _check_delta("delta", delta)
    if measure == "ratio" and dl >= 1:
        name = "delta_low" if delta_low is not None else "delta"
        raise ValueError(f"{name}: a ratio epsilon must be < 1 so the lower bound 1 - eps stays > 0, got {dl}")
    if method == "closed" and m.has_closed_form:
        return float(m.lower(dl)), float(m.upper(dh))
    return numeric_bounds(m.d, dl, dh)


MATCHED_WIDTH = 0.4
"""Total width u − l of the lab's "matched budget": ratio clipping with ε = 0.2 gives [0.8, 1.2]."""


def matched_delta(measure: str, width: float = MATCHED_WIDTH) -> float:
    """The budget δ at which ``measure``'s clip interval is as wide as ratio clipping's with ε = 0.2.

    This is the one definition of "matched budget" in the lab: the δ with u(δ) − l(δ) =
    ``width`` (0.4 by default), found by Brent's method on the width, which grows with δ.
    ``TrainConfig.clip_delta=None`` resolves to it, and notebooks and sample runs compare
    clip measures at it. KL2 has the closed form δ = asinh(width/2)² / 2; KL1 δ = asinh(width/2).

    >>> matched_delta("ratio")
    0.2
    >>> round(matched_delta("kl3"), 5), [round(x, 4) for x in clip_bounds("kl3", matched_delta("kl3"))]
    (0.01996, [0.8133, 1.2133])
    >>> round(matched_delta("kl2"), 6) == round(math.asinh(0.2) ** 2 / 2, 6)
    True
    """
    m: Measure = MEASURES.get(measure)  # unknown names fail here, listing the valid ones
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not (0 < width < math.inf):
        raise ValueError(f"width: must be a finite number > 0, got {width!r}")
    if measure == "ratio" and width == MATCHED_WIDTH:
        return 0.2

    def excess(log_delta: float) -> float:
        lo, hi = clip_bounds(m.name, math.exp(log_delta)) if measure != "ratio" else (1 - math.exp(log_delta), 1 + math.exp(log_delta))
        return (hi - lo) - width

    lo, hi = math.log(1e-12), math.log(1e-3)
    while excess(hi) < 0:
        lo, hi = hi, hi + math.log(4.0)
        if hi > math.log(1e6):
            raise ValueError(f"measure {measure!r}: no budget up to 1e6 gives a clip interval of width {width}")
    if excess(lo) >= 0:
        raise ValueError(f"measure {measure!r}: even a budget of 1e-12 gives a clip interval wider than {width}")
    return float(math.exp(brentq(excess, lo, hi, xtol=1e-14, maxiter=500)))
