"""The lab's statistics, written once: intervals, paired ratios, equivalence, power, multiplicity.

Every interval the lab prints comes from here (``docs/claims.md``'s rule, the benchmarks'
tables, the notebooks). Conventions:

- An *effect* is a paired ratio of errors (1 = no change), summarised as the geometric mean
  of the per-seed ratios with its interval on the log scale, or a difference of accuracies
  (0 = none).
- Below :data:`BOOTSTRAP_MIN` seeds the interval is a t-interval (on the log-ratio for
  ratios): with 3 seeds a bootstrap has only 10 distinct resamples. From
  :data:`BOOTSTRAP_MIN` seeds on, a percentile bootstrap with :data:`RESAMPLES` resamples
  (fixed generator seed, so a regenerated table is bit-for-bit the same).
- The minimum detectable effect (MDE) of a design is the true effect that a two-sided 5%
  test detects with 80% power: (t₀.₉₇₅ + t₀.₈₀) × se, with se from the seeds at hand.

>>> m, lo, hi, n = mean_ci([1.0, 2.0, 3.0])
>>> round(lo, 4), round(hi, 4), n        # 2 ± t(0.975, 2)·1/√3
(-0.4841, 4.4841, 3)
>>> e = paired_ratio([1.0, 2.0, 4.0], [2.0, 4.0, 8.0])
>>> e.value, e.low, e.high, e.n, e.method   # every seed halves: a zero-width interval
(0.5, 0.5, 0.5, 3, 't on log-ratio')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

BOOTSTRAP_MIN = 8
"""Seeds from which a percentile bootstrap replaces the t-interval."""
RESAMPLES = 10_000
"""Bootstrap resamples (the Monte-Carlo error of a 95% percentile end is then ~0.2 percentile points)."""
POWER = 0.80
ALPHA = 0.05


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with ``df`` degrees of freedom (normal for df = inf).

    >>> round(t_quantile(0.975, 2), 4), round(t_quantile(0.975, math.inf), 4)
    (4.3027, 1.96)
    """
    from scipy.stats import norm, t

    return float(norm.ppf(q)) if math.isinf(df) else float(t.ppf(q, df))


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, t-interval low, high, n) of independent values; the interval is NaN when n < 2.

    >>> mean_ci([0.5, 0.5, 0.5])
    (0.5, 0.5, 0.5, 3)
    """
    x = np.asarray(list(values), dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = t_quantile(0.5 + level / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% t-interval); NaN half-width below 2 values.

    >>> m, h = mean_ci95([1.0, 2.0, 3.0]); m, round(h, 4)
    (2.0, 2.4841)
    """
    m, lo, hi, n = mean_ci(values)
    return m, (hi - m) if n >= 2 else math.nan


def bootstrap_mean_ci(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float, float]:
    """(mean, percentile-bootstrap low, high) of the mean of ``values`` (seeds resampled with replacement).

    >>> m, lo, hi = bootstrap_mean_ci([1.0, 1.0, 1.0, 1.0])
    >>> (m, lo, hi)
    (1.0, 1.0, 1.0)
    """
    x = np.asarray(list(values), dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(1)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def bootstrap_ratio(a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0
                    ) -> tuple[float, float, float]:
    """mean(a)/mean(b) and a 95% percentile interval, resampling a and b independently (unpaired runs).

    >>> r, lo, hi = bootstrap_ratio([1.0, 1.0], [2.0, 2.0])
    >>> (r, lo, hi)
    (0.5, 0.5, 0.5)
    """
    a, b = np.asarray(list(a), dtype=np.float64), np.asarray(list(b), dtype=np.float64)
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(1)
    rb = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(1)
    q = ra / rb
    return float(a.mean() / b.mean()), float(np.quantile(q, 0.025)), float(np.quantile(q, 0.975))


@dataclass(frozen=True)
class Effect:
    """An effect with its 95% interval: ``value`` in [``low``, ``high``] over ``n`` units (seeds, snapshots).

    ``se`` and ``df`` describe the estimate on the scale it was tested on (the log for ratios),
    for p-values and the minimum detectable effect; ``per_unit`` keeps the per-seed values
    (ratios or differences) when they are known; ``method`` says how the interval was made.
    """

    value: float
    low: float
    high: float
    n: int | None
    unit: str = "seeds"
    se: float = math.nan
    df: float = math.nan
    log_scale: bool = False
    method: str = ""
    per_unit: tuple[float, ...] = ()

    @property
    def exact(self) -> bool:
        """A number computed exactly (no sampling): a zero-width interval by construction."""
        return self.method == "exact"


def exact(value: float, unit: str = "") -> Effect:
    """An exactly computed number (e.g. a clip interval): zero width, no seeds.

    >>> exact(1.2).low, exact(1.2).exact
    (1.2, True)
    """
    return Effect(value, value, value, None, unit, 0.0, math.inf, False, "exact")


def paired_ratio(a: Sequence[float], b: Sequence[float], *, unit: str = "seeds") -> Effect:
    """The paired ratio a/b over units (seeds): geometric mean of per-unit ratios, interval on the log.

    Below :data:`BOOTSTRAP_MIN` units a t-interval on the mean log-ratio; from there on a
    percentile bootstrap of it. Non-positive pairs are dropped.

    Shapes: a (n,), b (n,), paired by position.

    >>> e = paired_ratio([1.0, 1.1, 0.9], [2.0, 2.0, 2.0])
    >>> round(e.value, 3), e.low < e.value < e.high, e.method
    (0.498, True, 't on log-ratio')
    >>> paired_ratio([1.0] * 8, [2.0] * 8).method
    'bootstrap (10000 resamples) on log-ratio'
    """
    logs = [math.log(x / y) for x, y in zip(a, b) if x > 0 and y > 0]
    return log_ratio_effect(logs, unit=unit)


def log_ratio_effect(logs: Sequence[float], *, unit: str = "seeds") -> Effect:
    """An :class:`Effect` from per-unit log-ratios (see :func:`paired_ratio`).

    >>> log_ratio_effect([]).value != log_ratio_effect([]).value   # NaN: no units
    True
    """
    n = len(logs)
    per = tuple(math.exp(x) for x in logs)
    if n == 0:
        return Effect(math.nan, math.nan, math.nan, 0, unit, log_scale=True)
    m = float(np.mean(logs))
    if n < 2:
        return Effect(math.exp(m), math.nan, math.nan, 1, unit, log_scale=True, per_unit=per)
    se = float(np.std(logs, ddof=1)) / math.sqrt(n)
    if n < BOOTSTRAP_MIN:
        half = t_quantile(0.975, n - 1) * se
        lo, hi, how = m - half, m + half, "t on log-ratio"
    else:
        _, lo, hi = bootstrap_mean_ci(logs)
        how = f"bootstrap ({RESAMPLES} resamples) on log-ratio"
    return Effect(math.exp(m), math.exp(lo), math.exp(hi), n, unit, se, n - 1, True, how, per)


def paired_difference(a: Sequence[float], b: Sequence[float], *, unit: str = "seeds") -> Effect:
    """mean(a − b) over paired units: t-interval below :data:`BOOTSTRAP_MIN`, bootstrap from there.

    >>> e = paired_difference([0.6, 0.7, 0.8], [0.5, 0.6, 0.7]); round(e.value, 3), round(e.low, 3)
    (0.1, 0.1)
    """
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    if n < 2:
        v = d[0] if d else math.nan
        return Effect(v, math.nan, math.nan, n, unit, per_unit=tuple(d))
    m, lo, hi, _ = mean_ci(d)
    se = float(np.std(d, ddof=1)) / math.sqrt(n)
    how = "paired t"
    if n >= BOOTSTRAP_MIN:
        _, lo, hi = bootstrap_mean_ci(d)
        how = f"bootstrap ({RESAMPLES} resamples)"
    return Effect(m, lo, hi, n, unit, se, n - 1, False, how, tuple(d))


def welch_difference(mean_a: float, se_a: float, n_a: int, mean_b: float, se_b: float, n_b: int,
                     *, unit: str = "seeds") -> Effect:
    """mean_a − mean_b of two independent groups with a Welch t-interval (Welch–Satterthwaite df).

    >>> e = welch_difference(0.7, 0.01, 3, 0.6, 0.01, 3); round(e.value, 3), round(e.df, 1)
    (0.1, 4.0)
    """
    d = mean_a - mean_b
    se = math.hypot(se_a, se_b)
    den = (se_a ** 4 / (n_a - 1) if n_a > 1 else 0) + (se_b ** 4 / (n_b - 1) if n_b > 1 else 0)
    df = se ** 4 / den if den > 0 else math.inf
    half = t_quantile(0.975, df) * se
    return Effect(d, d - half, d + half, min(n_a, n_b), unit, se, df, False, "Welch t (unpaired)")


def se_from_half_width(half: float, n: int) -> float:
    """The standard error behind a 95% t half-width over n values.

    >>> round(se_from_half_width(2.4841, 3), 3)
    0.577
    """
    return half / t_quantile(0.975, n - 1) if n >= 2 else math.nan


def p_value(e: Effect, null: float) -> float:
    """Two-sided p-value of ``e`` against ``null`` (t with the effect's df; on the log for ratios); 0 or 1 when exact.

    >>> p_value(exact(1.0), 1.0), p_value(exact(2.0), 1.0)
    (1.0, 0.0)
    """
    if e.exact:
        return 1.0 if math.isclose(e.value, null, rel_tol=1e-9, abs_tol=1e-12) else 0.0
    if not (e.se > 0) or math.isnan(e.value):
        return math.nan
    from scipy.stats import t

    est = math.log(e.value) - math.log(null) if e.log_scale else e.value - null
    return float(2 * t.sf(abs(est) / e.se, e.df))


def mde(se: float, df: float, *, power: float = POWER, alpha: float = ALPHA) -> float:
    """Minimum detectable effect on the tested scale: (t_{1−α/2} + t_{power}) × se.

    >>> round(mde(1.0, math.inf), 3)      # 1.96 + 0.84
    2.802
    """
    if not (se > 0):
        return math.nan
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se


def seeds_to_detect(gap: float, se: float, n: int, *, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """Units needed (same per-unit spread) for a true effect of size ``gap`` (tested scale) to be detected
    with ``power``: the smallest n' with MDE(n') ≤ |gap|. None when it cannot be known.

    >>> seeds_to_detect(0.1, 0.1, 4)     # se 0.1 at n = 4 -> per-unit sd 0.2
    34
    """
    if not (se > 0) or n is None or n < 2 or gap == 0 or math.isnan(gap):
        return None
    sd = se * math.sqrt(n)
    for m in range(2, 100_000):
        if mde(sd / math.sqrt(m), m - 1, power=power, alpha=alpha) <= abs(gap):
            return m
    return None


def equivalent(e: Effect, null: float, margin: float) -> bool:
    """Two one-sided tests at 5% (the 90% interval within ``null ± margin``; on the log for ratios).

    >>> equivalent(paired_ratio([1.0, 1.01, 0.99, 1.0], [1.0] * 4), 1.0, math.log(1.1))
    True
    """
    if e.exact:
        v = math.log(e.value / null) if e.log_scale else e.value - null
        return abs(v) < margin
    if not (e.se > 0):
        return False
    c = math.log(e.value) - math.log(null) if e.log_scale else e.value - null
    half = t_quantile(0.95, e.df) * e.se
    return -margin < c - half and c + half < margin


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order; NaN stays NaN.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    out = [math.nan] * len(pvalues)
    running = 0.0
    m = len(order)
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        out[i] = round(running, 12)
    return out


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false-discovery rate), in the input order; NaN stays NaN.

    >>> benjamini_hochberg([0.01, 0.04, 0.03])
    [0.03, 0.04, 0.04]
    """
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i], reverse=True)
    out = [math.nan] * len(pvalues)
    m = len(order)
    running = 1.0
    for k, i in enumerate(order):
        rank = m - k
        running = min(running, pvalues[i] * m / rank)
        out[i] = round(min(1.0, running), 12)
    return out


def unpaired_log_ratio(log_a: Sequence[float], log_b: Sequence[float], *, unit: str = "seeds") -> Effect:
    """Ratio of geometric means of two independent groups from their per-unit logs, with a Welch t-interval on the log.

    >>> e = unpaired_log_ratio([0.0, 0.1, -0.1], [math.log(2)] * 2 + [math.log(2) + 0.1])
    >>> round(e.value, 2), e.log_scale
    (0.48, True)
    """
    na, nb = len(log_a), len(log_b)
    ma, mb = float(np.mean(log_a)), float(np.mean(log_b))
    sa = float(np.std(log_a, ddof=1)) / math.sqrt(na) if na > 1 else math.nan
    sb = float(np.std(log_b, ddof=1)) / math.sqrt(nb) if nb > 1 else math.nan
    d = welch_difference(ma, sa, na, mb, sb, nb, unit=unit)
    return Effect(math.exp(d.value), math.exp(d.low), math.exp(d.high), d.n, unit, d.se, d.df, True,
                  "Welch t on the log (unpaired)")


def seed_ratio(a: Mapping, b: Mapping, *, paired: bool, unit: str = "seeds") -> Effect | None:
    """a against b from per-seed values (seed -> a positive error such as an MSE): the
    :func:`paired_ratio` on the seeds both have when they are the same runs (``paired``), else
    the :func:`unpaired_log_ratio` of all seeds of each. A value <= 0 (a bias-corrected MSE
    that Monte-Carlo noise pushed below 0) has no log and is left out; None below 2 seeds a side.

    >>> round(seed_ratio({0: 1.0, 1: 1.2, 2: 0.0}, {0: 2.0, 1: 2.0, 2: 2.0}, paired=True).value, 3)
    0.548
    >>> seed_ratio({0: 1.0}, {0: 2.0}, paired=True) is None
    True
    """
    if paired:
        seeds = sorted(s for s in set(a) & set(b) if a[s] > 0 and b[s] > 0)
        return paired_ratio([a[s] for s in seeds], [b[s] for s in seeds], unit=unit) if len(seeds) >= 2 else None
    la, lb = [math.log(v) for v in a.values() if v > 0], [math.log(v) for v in b.values() if v > 0]
    return unpaired_log_ratio(la, lb, unit=unit) if len(la) >= 2 and len(lb) >= 2 else None
