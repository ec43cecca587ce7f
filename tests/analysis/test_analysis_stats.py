"""lab.analysis.stats: intervals checked against numbers computed another way."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import stats as sps

from lab.analysis import stats


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.05, 5.0), min_size=2, max_size=7), st.lists(st.floats(0.05, 5.0), min_size=7, max_size=7))
def test_below_8_seeds_the_ratio_interval_is_a_t_interval_on_the_log(a, b):
    b = b[: len(a)]
    e = stats.paired_ratio(a, b)
    logs = np.log(np.asarray(a) / np.asarray(b))
    lo, hi = sps.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=sps.sem(logs)) if logs.std() > 0 else (logs.mean(),) * 2
    assert e.method == "t on log-ratio"
    assert (math.log(e.low), math.log(e.high)) == pytest.approx((lo, hi), abs=1e-9)


def test_from_8_seeds_a_bootstrap_with_enough_resamples_close_to_the_t_interval():
    rng = np.random.default_rng(0)
    logs = rng.normal(-0.5, 0.2, 30)
    e = stats.log_ratio_effect(list(logs))
    assert e.method.startswith("bootstrap (10000")
    lo, hi = sps.t.interval(0.95, 29, loc=logs.mean(), scale=sps.sem(logs))
    assert math.log(e.low) == pytest.approx(lo, abs=0.03) and math.log(e.high) == pytest.approx(hi, abs=0.03)


def test_mde_matches_a_simulated_power_of_80_percent():
    n, sd = 6, 0.3
    se = sd / math.sqrt(n)
    d = stats.mde(se, n - 1)
    rng = np.random.default_rng(1)
    x = rng.normal(d, sd, (20000, n))
    p = sps.ttest_1samp(x, 0, axis=1).pvalue
    assert (p < 0.05).mean() == pytest.approx(0.80, abs=0.03)


def test_holm_and_bh_against_statsmodels_formulas():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    h = stats.holm(p)
    assert h[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(h[4])
    assert stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_equivalence_needs_the_whole_90_interval_inside_the_margin():
    tight = stats.paired_ratio([1.0, 1.01, 0.99, 1.0, 1.0], [1.0] * 5)
    wide = stats.paired_ratio([0.7, 1.3, 0.9, 1.2, 1.0], [1.0] * 5)
    assert stats.equivalent(tight, 1.0, math.log(1.05)) and not stats.equivalent(wide, 1.0, math.log(1.05))


def test_mean_ci_is_the_student_t_interval_and_nan_below_two_values():
    v = np.array([0.3, 0.1, 0.4, 0.15, 0.2])
    m, lo, hi, n = stats.mean_ci(v)
    ref = sps.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=sps.sem(v))
    assert (m, n) == (pytest.approx(v.mean()), 5) and (lo, hi) == pytest.approx(ref)
    assert math.isnan(stats.mean_ci([1.0])[1]) and stats.mean_ci([])[3] == 0
