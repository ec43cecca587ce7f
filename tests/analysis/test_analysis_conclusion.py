"""claims.conclusion: the sentence a lesson prints states the verdict of the one rule, on the interval it names."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.analysis import claims, stats

_VERDICT = {"reproduced", "partly", "inconclusive", "not", "not tested"}


@settings(max_examples=200, deadline=None)
@given(lo=st.floats(0.05, 3.0), width=st.floats(0.0, 2.0), claimed=st.one_of(st.none(), st.floats(0.1, 0.9)),
       better=st.sampled_from(["lower", "higher"]))
def test_the_sentence_states_the_rules_verdict_on_a_ratio(lo, width, claimed, better):
    hi = lo + width
    e = stats.Effect(math.sqrt(lo * hi), lo, hi, 5, "steps")
    if better == "higher" and claimed is not None:
        claimed = 1 / claimed
    c = claims.conclusion("x ÷ y", e, claimed, better=better)
    assert c.verdict == claims.verdict(lo, hi, claimed, better=better, value=e.value)
    assert c.verdict in _VERDICT
    assert f": {c.verdict} (" in c.sentence and c.sentence.startswith("x ÷ y: ") and str(c) == c.sentence
    assert claims.fmt_effect(e, "ratio") in c.sentence


def test_each_verdict_gives_its_own_reason():
    cases = {  # (low, high, claimed) on a ratio the paper says falls to 0.36
        "reproduced": (0.2, 0.4, 0.36), "partly": (0.3, 0.8, 0.36), "inconclusive": (0.3, 1.2, 0.36),
        "not": (0.5, 1.2, 0.36)}
    reasons = set()
    for want, (lo, hi, claimed) in cases.items():
        c = claims.conclusion("r", stats.Effect((lo + hi) / 2 if want != "reproduced" else 0.3, lo, hi, 4), claimed)
        assert c.verdict == want
        reasons.add(c.sentence.split(f": {want} (", 1)[1])
    other_side = claims.conclusion("r", stats.Effect(1.5, 1.2, 1.9, 4), 0.36)
    assert other_side.verdict == "not" and "other side of no effect" in other_side.sentence
    assert len(reasons) == len(cases)


def test_a_difference_with_one_unit_is_not_tested():
    e = stats.paired_difference([0.5], [0.4])
    c = claims.conclusion("acc", e, None, null=0.0, better="higher", scale="difference")
    assert c.verdict == "not tested" and "fewer than two units" in c.sentence
