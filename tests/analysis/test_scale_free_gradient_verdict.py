"""The gradient verdict is judged on scale-free metrics: multiplying an estimator's advantages by a constant leaves it."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from lab.analysis import claims, gradvar


def _rows(grads_by_snapshot, refs):
    out = []
    for step, (g, ref) in enumerate(zip(grads_by_snapshot, refs)):
        s = gradvar.summarise(gradvar.compare(g, ref), ref)
        out.append({"snapshot_step": step, **s})
    return out


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(0.05, 40.0), seed=st.integers(0, 1000))
def test_gradient_verdict_is_unchanged_when_advantages_are_multiplied_by_a_constant(scale, seed):
    gen = torch.Generator().manual_seed(seed)
    refs, a, b = [], [], []
    for _ in range(3):  # three policy snapshots
        true = torch.randn(20, generator=gen, dtype=torch.float64)
        half = [true + 0.1 * torch.randn(20, generator=gen, dtype=torch.float64) for _ in range(2)]
        refs.append(gradvar.Reference(half[0], half[1], rollouts=64, reward_mean=0.5))
        a.append(true + 1.5 * torch.randn(16, 20, generator=gen, dtype=torch.float64))   # 16 batches, estimator a
        b.append(true + 2.0 * torch.randn(16, 20, generator=gen, dtype=torch.float64))   # estimator b
    claim = claims.CLAIMS_BY_KEY["kae-value"]
    base = claims.gradient_effect(_rows(a, refs), _rows(b, refs)).effect
    # a's advantages × scale: its per-batch gradient (linear in the advantages) × scale
    scaled = claims.gradient_effect(_rows([scale * g for g in a], refs), _rows(b, refs)).effect
    assert scaled.value == pytest.approx(base.value, rel=1e-9)
    assert (scaled.low, scaled.high) == pytest.approx((base.low, base.high), rel=1e-9)
    v = [claims.verdict(e.low, e.high, None, value=e.value) for e in (base, scaled)]
    assert v[0] == v[1]
    # the raw relative error is not scale-free: it moves (for information only)
    raw = [_rows(x, refs)[0]["rel_sq_error"] for x in (a, [scale * g for g in a])]
    assert scale == pytest.approx(1.0, abs=0.05) or raw[0] != pytest.approx(raw[1], rel=1e-3)


def test_the_committed_gradient_checks_read_the_best_scale_column_not_the_raw_error():
    ks = [k for c, ks in claims.evaluate() for k in ks if k.setting == "real-model gradients" and k.effect]
    assert ks and all("rel_sq_error_best_scale" in k.source for k in ks)
    assert all("raw rel_sq_error" in k.extra for k in ks)
