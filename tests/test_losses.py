"""Policy losses: bounds vs root finding and the methods table, autograd behaviour of the
clipped surrogate, aggregation against hand numbers, KL estimators against exact KL."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import losses
from lab.losses import AGG_MODES, agg_loss, clip_bounds, kl_penalty, policy_loss

# bisection values from ../shared/methods.md
TABLE = {
    0.01: {"kl3": (0.8652, 1.1482), "kl2": (0.8681, 1.1519), "kl1": (0.9900, 1.0101)},
    0.02: {"kl3": (0.8131, 1.2135), "kl2": (0.8187, 1.2214), "kl1": (0.9802, 1.0202)},
    0.03: {"kl3": (0.7746, 1.2653), "kl2": (0.7827, 1.2776), "kl1": (0.9704, 1.0305)},
    0.05: {"kl3": (0.7162, 1.3504), "kl2": (0.7289, 1.3719), "kl1": (0.9512, 1.0513)},
    0.1: {"kl3": (0.6168, 1.5162), "kl2": (0.6394, 1.5639), "kl1": (0.9048, 1.1052)},
}


def _bisect(f, lo, hi, n=200):
    """Plain bisection for f(lo) > 0 > f(hi) or f(lo) < 0 < f(hi): an independent root finder."""
    flo = f(lo)
    for _ in range(n):
        mid = 0.5 * (lo + hi)
        if (f(mid) > 0) == (flo > 0):
            lo, flo = mid, f(mid)
        else:
            hi = mid
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("delta", sorted(TABLE))
def test_bounds_reproduce_the_methods_table(delta):
    for m, (lo, hi) in TABLE[delta].items():
        l, u = clip_bounds(m, delta)
        assert abs(l - lo) < 6e-5 and abs(u - hi) < 6e-5, (m, l, u)


@pytest.mark.parametrize("measure", ["ratio", "kl1", "kl2", "kl3"])
@pytest.mark.parametrize("delta", [1e-4, 0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.3, 0.9])
def test_closed_form_bounds_agree_with_numeric_root_finding(measure, delta):
    closed = clip_bounds(measure, delta)
    numeric = clip_bounds(measure, delta, method="numeric")
    assert abs(closed[0] - numeric[0]) < 1e-10 and abs(closed[1] - numeric[1]) < 1e-10
    d = losses.MEASURES.get(measure).d
    assert abs(d(closed[0]) - delta) < 1e-9 and abs(d(closed[1]) - delta) < 1e-9


def test_kl3_bounds_match_independent_bisection_at_delta_003():
    f = lambda w: w - 1 - math.log(w) - 0.03
    lo, hi = _bisect(f, 1e-6, 1.0), _bisect(f, 1.0, 10.0)
    l, u = clip_bounds("kl3", 0.03)
    assert abs(l - lo) < 1e-12 and abs(u - hi) < 1e-12
    assert round(l, 3) == 0.775 and round(u, 3) == 1.265


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=1e-6, max_value=5.0))
def test_kl3_interval_is_asymmetric_with_more_room_upward(delta):
    l, u = clip_bounds("kl3", delta)
    assert u - 1 > 1 - l > 0


def test_user_measure_gets_bounds_from_d_alone():
    losses.register_measure("test_sq", lambda w: (w - 1.0) ** 2)
    try:
        for delta in (0.01, 0.04, 0.25):
            l, u = clip_bounds("test_sq", delta)
            assert abs(l - (1 - math.sqrt(delta))) < 1e-10 and abs(u - (1 + math.sqrt(delta))) < 1e-10
        # and the loss uses it like any built-in
        _, diag = policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1, dtype=torch.bool), measure="test_sq", delta=0.04)
        assert abs(diag["actor/clip_high_bound"] - 1.2) < 1e-10
    finally:
        losses.MEASURES.unregister("test_sq")


def test_a_measure_that_never_reaches_delta_gives_an_open_side():
    losses.register_measure("test_capped", lambda w: min(abs(w - 1.0), 0.5) if w > 1 else abs(w - 1.0))
    try:
        l, u = clip_bounds("test_capped", 0.6, method="numeric")
        assert u == math.inf and abs(l - 0.4) < 1e-10
    finally:
        losses.MEASURES.unregister("test_capped")


def test_clip_higher_is_the_ratio_measure_with_two_budgets():
    assert clip_bounds("ratio", delta_low=0.2, delta_high=0.28) == (0.8, 1.28)


# --- autograd behaviour ---------------------------------------------------------------------------
def _grad(ratios, adv, rule="ppo", **kw):
    logp = torch.log(torch.tensor(ratios, dtype=torch.float64)).reshape(-1, 1).requires_grad_(True)
    old = torch.zeros_like(logp)
    mask = torch.ones_like(logp, dtype=torch.bool)
    loss, diag = policy_loss(logp, old, torch.tensor(adv, dtype=torch.float64), mask, rule, **kw)
    loss.backward()
    return logp.grad.flatten(), diag, loss


@pytest.mark.parametrize("measure, delta", [("ratio", 0.2), ("kl2", 0.02), ("kl3", 0.03), ("kl1", 0.05)])
def test_gradient_is_zero_outside_the_region_on_the_pushed_side_and_unclipped_inside(measure, delta):
    l, u = clip_bounds(measure, delta)
    ratios = [u * 1.1, l * 0.9, u * 1.1, l * 0.9, 1.0, (1 + u) / 2, (1 + l) / 2]
    adv = [1.0, -1.0, -1.0, 1.0, 0.5, -2.0, 3.0]
    g, diag, _ = _grad(ratios, adv, measure=measure, delta=delta)
    n = len(ratios)
    # d/dlogp of -w*A/n is -w*A/n (w = exp(logp))
    unclipped = torch.tensor([-w * a / n for w, a in zip(ratios, adv)], dtype=torch.float64)
    assert g[0] == 0 and g[1] == 0  # pushed further out: gradient cut
    assert torch.allclose(g[2:], unclipped[2:], atol=1e-12)  # outside but pulled back in, or inside: plain gradient
    assert diag["actor/clip_frac_high"] == pytest.approx(1 / n)
    assert diag["actor/clip_frac_low"] == pytest.approx(1 / n)
    assert diag["actor/zero_grad_frac"] == pytest.approx(2 / n)


def test_dual_clip_bounds_the_loss_at_minus_c_times_a_for_negative_advantages():
    ratios, adv = [5.0, 2.0, 5.0], [-1.0, -1.0, 1.0]
    g, diag, _ = _grad(ratios, adv, rule="dual_clip", dual_clip_c=3.0)
    logp = torch.log(torch.tensor(ratios, dtype=torch.float64)).reshape(-1, 1)
    mat_loss, _ = policy_loss(logp, torch.zeros_like(logp), torch.tensor(adv, dtype=torch.float64), torch.ones(3, 1, dtype=torch.bool), "dual_clip", "seq-mean-token-sum")
    # per-token: min(max(5, 1.2), 3) = 3 ; min(max(2, 1.2), 3) = 2 ; ppo for A>0: -min(5, 1.2) = -1.2
    assert float(mat_loss) == pytest.approx((3.0 + 2.0 - 1.2) / 3)
    assert g[0] == 0 and g[2] == 0 and g[1] != 0
    assert diag["actor/dual_clip_frac"] == pytest.approx(1 / 3)
    _, ppo_diag, ppo_loss = _grad(ratios, adv, rule="ppo")
    assert float(ppo_loss.detach()) == pytest.approx((5.0 + 2.0 - 1.2) / 3)


def test_vanilla_rule_is_the_unclipped_policy_gradient():
    g, diag, loss = _grad([3.0, 0.1], [1.0, -1.0], rule="vanilla")
    assert torch.allclose(g, torch.tensor([-3.0 / 2, 0.1 / 2], dtype=torch.float64))
    assert diag["actor/zero_grad_frac"] == 0


def test_diagnostics_report_ratio_statistics_and_k3_kl_over_valid_tokens_only():
    logp = torch.log(torch.tensor([[2.0, 0.5], [1.0, 100.0]]))
    mask = torch.tensor([[True, True], [True, False]])
    _, d = policy_loss(logp, torch.zeros(2, 2), torch.zeros(2), mask)
    assert d["actor/ratio_max"] == pytest.approx(2.0) and d["actor/ratio_min"] == pytest.approx(0.5)
    assert d["actor/ratio_mean"] == pytest.approx(3.5 / 3)
    k3 = [(w - 1 - math.log(w)) for w in (2.0, 0.5, 1.0)]
    assert d["actor/approx_kl"] == pytest.approx(sum(k3) / 3, rel=1e-6)


# --- aggregation ----------------------------------------------------------------------------------
def test_each_aggregation_mode_matches_hand_computed_numbers_with_unequal_lengths():
    mat = torch.tensor([[2.0, 9.0, 9.0], [1.0, 3.0, 9.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)  # lengths 1, 2, 3
    # token-mean: (2 + 1 + 3 + 1 + 2 + 3) / 6 = 2
    assert float(agg_loss(mat, mask, "token-mean")) == pytest.approx(2.0)
    # seq-mean-token-sum: (2 + 4 + 6) / 3 = 4
    assert float(agg_loss(mat, mask, "seq-mean-token-sum")) == pytest.approx(4.0)
    # seq-mean-token-mean: (2/1 + 4/2 + 6/3) / 3 = 2
    assert float(agg_loss(mat, mask, "seq-mean-token-mean")) == pytest.approx(2.0)
    # seq-mean-token-sum-norm: (2 + 4 + 6) / T=3 = 4, or / a given constant
    assert float(agg_loss(mat, mask, "seq-mean-token-sum-norm")) == pytest.approx(4.0)
    assert float(agg_loss(mat, mask, "seq-mean-token-sum-norm", norm_const=6)) == pytest.approx(2.0)


def test_sequences_without_tokens_do_not_make_seq_means_nan():
    mat = torch.tensor([[2.0, 4.0], [7.0, 7.0]])
    mask = torch.tensor([[True, True], [False, False]])
    assert float(agg_loss(mat, mask, "seq-mean-token-mean")) == pytest.approx(3.0)
    assert float(agg_loss(mat, mask, "seq-mean-token-sum")) == pytest.approx(6.0)


# --- KL penalties ---------------------------------------------------------------------------------
def test_k1_and_k3_are_unbiased_k3_nonnegative_and_lower_variance_than_k1():
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)  # π_θ (sampling)
    q = torch.tensor([0.4, 0.35, 0.15, 0.10], dtype=torch.float64)  # π_ref
    exact = float((p * (p / q).log()).sum())  # KL(π_θ ‖ π_ref)
    idx = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    logp, ref = p.log()[idx][None], q.log()[idx][None]
    est = {k: kl_penalty(logp, ref, k).flatten() for k in ("k1", "k2", "k3")}
    for k in ("k1", "k3"):
        se = float(est[k].std()) / math.sqrt(idx.numel())
        assert abs(float(est[k].mean()) - exact) < 5 * se, k
    assert bool((est["k3"] >= 0).all())
    assert float(est["k3"].var()) < float(est["k1"].var())
    assert bool((kl_penalty(logp, ref, "low_var_kl") == est["k3"][None]).all())


def test_k1_can_be_negative_per_token_but_k2_and_k3_cannot():
    logp, ref = torch.tensor([[-2.0, -0.5]]), torch.tensor([[-0.5, -2.0]])
    assert float(kl_penalty(logp, ref, "k1").min()) < 0
    assert float(kl_penalty(logp, ref, "k2").min()) >= 0 and float(kl_penalty(logp, ref, "k3").min()) >= 0


# --- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("delta", [0.0, -0.1, float("nan"), float("inf")])
def test_nonpositive_or_nonfinite_delta_is_rejected(delta):
    with pytest.raises(ValueError, match="delta"):
        clip_bounds("kl3", delta)


def test_bad_shapes_empty_masks_and_unknown_names_are_rejected():
    lp, m = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"old_logp has shape \(2, 2\)"):
        policy_loss(lp, torch.zeros(2, 2), torch.zeros(2), m)
    with pytest.raises(ValueError, match="advantages: expected shape"):
        policy_loss(lp, lp, torch.zeros(3), m)
    with pytest.raises(ValueError, match="empty mask"):
        policy_loss(lp, lp, torch.zeros(2), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown clip measure 'kl9'; available: kl1, kl2, kl3, ratio"):
        policy_loss(lp, lp, torch.zeros(2), m, measure="kl9")
    with pytest.raises(ValueError, match="unknown policy-loss rule"):
        policy_loss(lp, lp, torch.zeros(2), m, rule="ppo2")
    with pytest.raises(ValueError, match="unknown aggregation mode"):
        policy_loss(lp, lp, torch.zeros(2), m, agg="mean")
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_penalty(lp, lp, "k4")
    with pytest.raises(ValueError, match="delta_low"):
        clip_bounds("ratio", delta_low=1.0, delta_high=0.2)
    with pytest.raises(ValueError, match="dual_clip_c"):
        policy_loss(lp, lp, torch.zeros(2), m, rule="dual_clip", dual_clip_c=0.5)
    bad = lp.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="logp: non-finite value at sequence 1, token 2"):
        policy_loss(bad, lp, torch.zeros(2), m)
    # a NaN in a padded position is ignored, not an error
    m2 = m.clone()
    m2[1, 2] = False
    loss, _ = policy_loss(bad, lp, torch.ones(2), m2)
    assert torch.isfinite(loss)


def test_the_bounds_table_in_docs_matches_the_code():
    import sys
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    sys.path.insert(0, str(docs))
    try:
        from make_trust_region_figure import bounds_table
    finally:
        sys.path.remove(str(docs))
    assert bounds_table() in (docs / "losses.md").read_text()
