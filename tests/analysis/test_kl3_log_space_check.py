"""KL3's asymmetry is judged in log-ratio space against KL1/KL2: a measure symmetric in log-ratio must fail it."""

import math

import pytest

from lab.analysis import claims
from lab.losses.bounds import MEASURES, clip_bounds, register_measure


@pytest.mark.parametrize("measure", ["kl1", "kl2"])
def test_the_asymmetry_check_fails_for_a_measure_symmetric_in_log_ratio(measure):
    m = claims.asymmetry_effect(measure)
    assert m.effect.value == pytest.approx(1.0, abs=1e-9)
    c = claims.CLAIMS_BY_KEY["kl3-asymmetric"]
    assert claims.verdict(m.effect.low, m.effect.high, None, null=c.null, better=c.better, value=m.effect.value) == "not"


def test_a_new_log_symmetric_measure_fails_too_and_a_log_skewed_one_passes():
    register_measure("test_log_quartic", lambda w: math.log(w) ** 4)
    register_measure("test_log_skew", lambda w: (2.0 if w > 1 else 1.0) * abs(math.log(w)) ** 1 if w < 1 else 0.5 * math.log(w))
    try:
        c = claims.CLAIMS_BY_KEY["kl3-asymmetric"]
        sym = claims.asymmetry_effect("test_log_quartic").effect
        skew = claims.asymmetry_effect("test_log_skew").effect
        assert claims.verdict(sym.low, sym.high, None, null=c.null, better=c.better, value=sym.value) == "not"
        assert claims.verdict(skew.low, skew.high, None, null=c.null, better=c.better, value=skew.value) == "reproduced"
    finally:
        MEASURES.unregister("test_log_quartic")
        MEASURES.unregister("test_log_skew")


def test_kl3_gives_less_room_upward_in_log_space_and_more_in_ratio_space():
    lo, hi = clip_bounds("kl3", 0.03)
    assert math.log(hi) < -math.log(lo) and hi - 1 > 1 - lo
    ks = {k.reading: k for k in claims.evaluate()[[c.key for c, _ in claims.evaluate()].index("kl3-asymmetric")][1]}
    assert ks["paper"].verdict == "not" and ks["paper"].effect.value < 1
    assert not ks["rejected"].counted
