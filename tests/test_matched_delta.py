"""matched_delta: the one definition of a "matched budget" (clip interval as wide as ratio ε = 0.2)."""

import math

import pytest

from lab import losses


def _bisect(f, lo, hi, n=200):
    for _ in range(n):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _width_by_bisection(d, delta):
    """u - l of {w : d(w) <= delta}, each end by plain bisection on d (no closed form used)."""
    low = _bisect(lambda w: -(d(w) - delta), 1e-9, 1.0)  # d decreases towards 1 on the left
    high = _bisect(lambda w: d(w) - delta, 1.0, 1e3)
    return high - low


DIVERGENCES = {
    "ratio": lambda w: abs(w - 1.0),
    "kl1": lambda w: abs(math.log(w)),
    "kl2": lambda w: 0.5 * math.log(w) ** 2,
    "kl3": lambda w: w - 1.0 - math.log(w),
}


@pytest.mark.parametrize("measure", sorted(DIVERGENCES))
def test_matched_delta_gives_the_width_of_ratio_clipping_at_eps_0_2(measure):
    delta = losses.matched_delta(measure)
    assert _width_by_bisection(DIVERGENCES[measure], delta) == pytest.approx(0.4, abs=1e-9)


def test_matched_delta_closed_forms_for_kl1_and_kl2():
    # e^δ − e^−δ = 0.4  ⇔  δ = asinh(0.2);  KL2 is KL1 with δ₁ = √(2δ₂)
    assert losses.matched_delta("kl1") == pytest.approx(math.asinh(0.2), abs=1e-12)
    assert losses.matched_delta("kl2") == pytest.approx(math.asinh(0.2) ** 2 / 2, abs=1e-12)


def test_matched_kl3_is_near_0_02_and_asymmetric_upward():
    d = losses.matched_delta("kl3")
    lo, hi = losses.clip_bounds("kl3", d)
    assert 0.019 < d < 0.021  # methods.md: "δ ≈ 0.02 gives about the room of GRPO's ε = 0.2"
    assert hi - 1 > 1 - lo


def test_matched_delta_names_valid_measures_on_a_typo():
    with pytest.raises(ValueError, match="kl3"):
        losses.matched_delta("kl4")


def test_matched_delta_other_widths_and_bad_width():
    assert losses.matched_delta("ratio", width=0.6) == pytest.approx(0.3)
    assert _width_by_bisection(DIVERGENCES["kl3"], losses.matched_delta("kl3", width=1.0)) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="width"):
        losses.matched_delta("kl3", width=-1)
