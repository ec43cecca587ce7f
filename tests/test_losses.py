"""lab.losses: clip bounds (closed form vs root finding vs the methods table), the autograd
behaviour of the clipped surrogate, aggregation against hand numbers and loops, KL
estimators against exact KL values and gradients, and the errors bad input gets."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import losses
from lab.losses import MEASURES, agg_loss, available_measures, clip_bounds, kl_penalty, numeric_bounds, policy_loss

# bisection values from ../shared/methods.md (Wu et al., arXiv 2602.05494)
TABLE = {
    0.01: {"kl3": (0.8652, 1.1482), "kl2": (0.8681, 1.1519), "kl1": (0.9900, 1.0101)},
    0.02: {"kl3": (0.8131, 1.2135), "kl2": (0.8187, 1.2214), "kl1": (0.9802, 1.0202)},
    0.03: {"kl3": (0.7746, 1.2653), "kl2": (0.7827, 1.2776), "kl1": (0.9704, 1.0305)},
    0.05: {"kl3": (0.7162, 1.3504), "kl2": (0.7289, 1.3719), "kl1": (0.9512, 1.0513)},
    0.1: {"kl3": (0.6168, 1.5162), "kl2": (0.6394, 1.5639), "kl1": (0.9048, 1.1052)},
}
BUILTIN = ["ratio", "kl1", "kl2", "kl3"]


def _bisect(f, lo, hi, n=200):
    """Plain bisection for a sign change of f on [lo, hi]: a root finder independent of the library's."""
    flo = f(lo)
    for _ in range(n):
        mid = 0.5 * (lo + hi)
        if (f(mid) > 0) == (flo > 0):
            lo, flo = mid, f(mid)
        else:
            hi = mid
    return 0.5 * (lo + hi)


# --- bounds -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("delta", sorted(TABLE))
def test_bounds_reproduce_the_methods_table_to_4_decimals(delta):
    for m, (lo, hi) in TABLE[delta].items():
        l, u = clip_bounds(m, delta)
        assert (round(l, 4), round(u, 4)) == (lo, hi), (m, l, u)


DELTA_GRID = [1e-6, 1e-4, 0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.3, 0.9, 2.0]


@pytest.mark.parametrize("measure, delta", [(m, d) for m in BUILTIN for d in DELTA_GRID if not (m == "ratio" and d >= 1)])
def test_closed_form_bounds_agree_with_numeric_root_finding_to_1e_10(measure, delta):
    closed = clip_bounds(measure, delta)
    numeric = clip_bounds(measure, delta, method="numeric")
    d = losses.MEASURES.get(measure).d
    assert numeric == numeric_bounds(d, delta)
    assert abs(closed[0] - numeric[0]) < 1e-10 and abs(closed[1] - numeric[1]) < 1e-10
    assert closed[0] < 1 < closed[1]
    assert abs(d(closed[0]) - delta) < 1e-12 and abs(d(closed[1]) - delta) < 1e-12


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=1e-5, max_value=3.0), st.floats(min_value=1e-5, max_value=3.0))
def test_closed_and_numeric_bounds_agree_with_separate_low_and_high_budgets(dl, dh):
    for m in ("kl1", "kl2", "kl3"):
        c = clip_bounds(m, delta_low=dl, delta_high=dh)
        n = clip_bounds(m, delta_low=dl, delta_high=dh, method="numeric")
        assert abs(c[0] - n[0]) < 1e-10 and abs(c[1] - n[1]) < 1e-10


def test_kl3_bounds_match_independent_bisection_at_delta_003():
    f = lambda w: w - 1 - math.log(w) - 0.03  # noqa: E731
    lo, hi = _bisect(f, 1e-6, 1.0), _bisect(f, 1.0, 10.0)
    l, u = clip_bounds("kl3", 0.03)
    assert abs(l - lo) < 1e-12 and abs(u - hi) < 1e-12
    assert (round(l, 3), round(u, 3)) == (0.775, 1.265)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=1e-6, max_value=5.0))
def test_kl3_interval_is_asymmetric_with_more_room_upward(delta):
    l, u = clip_bounds("kl3", delta)
    assert u - 1 > 1 - l > 0


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=1e-6, max_value=5.0))
def test_kl3_is_wider_below_and_narrower_above_than_kl2_at_the_same_budget(delta):
    l3, u3 = clip_bounds("kl3", delta)
    l2, u2 = clip_bounds("kl2", delta)
    assert l3 < l2 and u3 < u2


def test_user_measure_gets_bounds_from_d_alone_and_the_loss_uses_them():
    losses.register_measure("test_sq", lambda w: (w - 1.0) ** 2)
    try:
        for delta in (1e-4, 0.01, 0.04, 0.25, 0.81):
            l, u = clip_bounds("test_sq", delta)
            assert abs(l - (1 - math.sqrt(delta))) < 1e-10 and abs(u - (1 + math.sqrt(delta))) < 1e-10
        l, u = clip_bounds("test_sq", delta_low=0.01, delta_high=0.04)
        assert abs(l - 0.9) < 1e-10 and abs(u - 1.2) < 1e-10
        _, diag = policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1, dtype=torch.bool),
                              measure="test_sq", delta=0.04)
        assert abs(diag["actor/clip_low_bound"] - 0.8) < 1e-10 and abs(diag["actor/clip_high_bound"] - 1.2) < 1e-10
    finally:
        losses.MEASURES.unregister("test_sq")


def test_numeric_bounds_expand_the_bracket_far_from_one():
    # d = |log w| / 50: the roots e^{±50δ} lie far outside the first brackets [0.5, 1] and [1, 2]
    l, u = numeric_bounds(lambda w: abs(math.log(w)) / 50, 0.5)
    assert l == pytest.approx(math.exp(-25), rel=1e-10) and u == pytest.approx(math.exp(25), rel=1e-10)


def test_a_measure_that_never_reaches_delta_gives_an_open_side():
    losses.register_measure("test_capped", lambda w: min(w - 1.0, 0.5) if w > 1 else 1.0 - w)
    try:
        l, u = clip_bounds("test_capped", 0.6)
        assert u == math.inf and abs(l - 0.4) < 1e-10
    finally:
        losses.MEASURES.unregister("test_capped")


@pytest.mark.parametrize("d, problem", [
    (lambda w: (w - 1.0) ** 2 + 0.1, r"d\(1\) must be 0"),
    (lambda w: w - 1.0, "must be >= 0"),
    (lambda w: math.sin(5 * (w - 1.0)) ** 2, "increase away"),
    ("not a function", "must be a function"),
])
def test_register_measure_rejects_functions_that_do_not_define_an_interval(d, problem):
    with pytest.raises(ValueError, match=problem):
        losses.register_measure("test_bad", d)
    assert "test_bad" not in losses.MEASURES


def test_register_measure_rejects_a_duplicate_name():
    with pytest.raises(ValueError, match="'kl3' is already registered"):
        losses.register_measure("kl3", lambda w: (w - 1.0) ** 2)


def test_clip_higher_is_the_ratio_measure_with_two_budgets():
    assert clip_bounds("ratio", delta_low=0.2, delta_high=0.28) == (0.8, 1.28)
    assert clip_bounds("ratio", 0.2, delta_high=0.28) == (0.8, 1.28)  # the missing side falls back to delta


# --- autograd behaviour -----------------------------------------------------------------------------
def _grad(ratios, adv, rule="ppo", agg="token-mean", **kw):
    """Loss and d loss / d logp for one-token sequences with old_logp = 0 (so w = exp(logp))."""
    logp = torch.log(torch.tensor(ratios, dtype=torch.float64)).reshape(-1, 1).requires_grad_(True)
    old = torch.zeros_like(logp)
    mask = torch.ones_like(logp, dtype=torch.bool)
    loss, diag = policy_loss(logp, old, torch.tensor(adv, dtype=torch.float64), mask, rule, agg, **kw)
    loss.backward()
    return logp.grad.flatten(), diag, loss.detach()


CONFIGS = [
    dict(measure="ratio", delta=0.2),
    dict(measure="ratio", delta_low=0.2, delta_high=0.28),  # clip-higher
    dict(measure="kl1", delta=0.05),
    dict(measure="kl2", delta=0.02),
    dict(measure="kl3", delta=0.03),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_gradient_is_zero_outside_the_region_on_the_pushed_side_and_unclipped_elsewhere(cfg):
    l, u = clip_bounds(cfg["measure"], cfg.get("delta"), delta_low=cfg.get("delta_low"), delta_high=cfg.get("delta_high"))
    # pushed out above, pushed out below, | pulled back in from above, from below, inside x3
    ratios = [u * 1.1, l * 0.9, u * 1.1, l * 0.9, 1.0, (1 + u) / 2, (1 + l) / 2]
    adv = [1.0, -1.0, -1.0, 1.0, 0.5, -2.0, 3.0]
    g, diag, _ = _grad(ratios, adv, **cfg)
    n = len(ratios)
    unclipped = torch.tensor([-w * a / n for w, a in zip(ratios, adv)], dtype=torch.float64)  # d(-w·A/n)/dlogp
    assert g[0] == 0 and g[1] == 0
    assert torch.allclose(g[2:], unclipped[2:], rtol=0, atol=1e-15)
    assert diag["actor/clip_frac_high"] == pytest.approx(1 / n)
    assert diag["actor/clip_frac_low"] == pytest.approx(1 / n)
    assert diag["actor/zero_grad_frac"] == pytest.approx(2 / n)
    assert diag["actor/dual_clip_frac"] == 0
    assert (diag["actor/clip_low_bound"], diag["actor/clip_high_bound"]) == (l, u)


def test_dual_clip_caps_the_loss_at_minus_c_times_a_for_negative_advantages_only():
    ratios, adv = [5.0, 2.0, 0.5, 5.0, 0.5], [-1.0, -1.0, -2.0, 1.0, 2.0]
    g, diag, loss = _grad(ratios, adv, rule="dual_clip", agg="seq-mean-token-sum", dual_clip_c=3.0)
    # per token, l = 0.8, u = 1.2:  A<0: min(-A·max(w, l), -c·A) -> min(5, 3)=3, min(2, 3)=2, min(2·0.8, 6)=1.6
    #                               A>0: ppo -A·min(w, u)      -> -1.2, -1.0
    assert float(loss) == pytest.approx((3.0 + 2.0 + 1.6 - 1.2 - 1.0) / 5)
    assert g[0] == 0  # cap active: no gradient
    assert g[1] == pytest.approx(2.0 / 5)  # -A·w/5 with A=-1, w=2: inside the cap, plain gradient
    assert g[2] == 0  # ordinary lower clip
    assert diag["actor/dual_clip_frac"] == pytest.approx(1 / 5)
    assert diag["actor/zero_grad_frac"] == pytest.approx(3 / 5)
    # tokens with A > 0 get exactly the ppo loss and gradient
    g_ppo, _, _ = _grad(ratios[3:], adv[3:], rule="ppo", agg="seq-mean-token-sum")
    g_dual, _, _ = _grad(ratios[3:], adv[3:], rule="dual_clip", agg="seq-mean-token-sum")
    assert torch.equal(g_ppo, g_dual)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=-5, max_value=5), st.floats(min_value=-3, max_value=3), st.floats(min_value=1.01, max_value=10))
def test_dual_clip_per_token_loss_never_exceeds_c_abs_a_when_a_is_negative(log_w, a, c):
    out = losses.RULES.get("dual_clip")(torch.tensor([[math.exp(log_w)]]), torch.tensor([[a]]), 0.8, 1.2, dual_clip_c=c)
    ppo = losses.RULES.get("ppo")(torch.tensor([[math.exp(log_w)]]), torch.tensor([[a]]), 0.8, 1.2)
    if a < 0:
        assert float(out.loss) <= c * abs(a) * (1 + 1e-6)
        assert float(out.loss) == pytest.approx(min(float(ppo.loss), -c * a))
    else:
        assert float(out.loss) == float(ppo.loss)


def test_vanilla_rule_is_the_unclipped_policy_gradient():
    g, diag, _ = _grad([3.0, 0.1], [1.0, -1.0], rule="vanilla")
    assert torch.allclose(g, torch.tensor([-3.0 / 2, 0.1 / 2], dtype=torch.float64))
    assert diag["actor/zero_grad_frac"] == 0
    assert (diag["actor/clip_low_bound"], diag["actor/clip_high_bound"]) == (0.0, math.inf)


def test_clip_fractions_count_only_tokens_whose_gradient_the_bound_cuts():
    # w > u with A < 0 and w < l with A > 0 are outside [l, u] but keep their gradient: not counted
    _, diag, _ = _grad([1.5, 0.5, 1.5, 0.5], [-1.0, 1.0, 1.0, -1.0])
    assert diag["actor/clip_frac_high"] == pytest.approx(0.25) and diag["actor/clip_frac_low"] == pytest.approx(0.25)


def test_per_sequence_advantages_broadcast_like_per_token_advantages():
    gen = torch.Generator().manual_seed(0)
    logp = -torch.rand(3, 4, generator=gen, dtype=torch.float64)
    old = logp + 0.3 * torch.randn(3, 4, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    for agg in losses.AGG_MODES:
        a, da = policy_loss(logp, old, adv, mask, "dual_clip", agg, measure="kl3", delta=0.03)
        b, db = policy_loss(logp, old, adv[:, None].expand(3, 4), mask, "dual_clip", agg, measure="kl3", delta=0.03)
        assert torch.equal(a, b) and da == db


def test_diagnostics_report_ratio_statistics_and_k3_kl_over_valid_tokens_only():
    logp = torch.log(torch.tensor([[2.0, 0.5], [1.0, 100.0]]))
    mask = torch.tensor([[True, True], [True, False]])
    loss, d = policy_loss(logp, torch.zeros(2, 2), torch.zeros(2), mask)
    assert d["actor/ratio_max"] == pytest.approx(2.0) and d["actor/ratio_min"] == pytest.approx(0.5)
    assert d["actor/ratio_mean"] == pytest.approx(3.5 / 3)
    k3 = [(w - 1 - math.log(w)) for w in (2.0, 0.5, 1.0)]
    assert d["actor/approx_kl"] == pytest.approx(sum(k3) / 3, rel=1e-6)
    assert d["actor/pg_loss"] == float(loss)
    assert all(isinstance(v, float) for v in d.values())
    assert sorted(d) == sorted([
        "actor/pg_loss", "actor/clip_frac_low", "actor/clip_frac_high", "actor/dual_clip_frac", "actor/zero_grad_frac",
        "actor/ratio_mean", "actor/ratio_min", "actor/ratio_max", "actor/approx_kl", "actor/clip_low_bound",
        "actor/clip_high_bound",
    ])


def test_padding_never_reaches_the_loss_or_the_gradient():
    logp = torch.tensor([[-1.0, float("nan")], [-0.5, float("inf")]], requires_grad=True)
    old = torch.tensor([[-1.2, float("-inf")], [-0.4, 3.0]])
    adv = torch.tensor([[1.0, float("nan")], [-1.0, float("inf")]])
    mask = torch.tensor([[True, False], [True, False]])
    for agg in losses.AGG_MODES:
        logp.grad = None
        loss, d = policy_loss(logp, old, adv, mask, "ppo", agg)
        loss.backward()
        assert torch.isfinite(loss) and bool(torch.isfinite(logp.grad).all())
        assert logp.grad[0, 1] == 0 and logp.grad[1, 1] == 0
        assert all(math.isfinite(v) for v in d.values())


def test_an_empty_sequence_in_the_batch_gives_a_finite_loss_and_gradient_in_seq_mean_modes():
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    for agg in ("seq-mean-token-mean", "seq-mean-token-sum"):
        logp.grad = None
        loss, _ = policy_loss(logp, torch.zeros(2, 3), torch.tensor([1.0, 1.0]), mask, "ppo", agg)
        loss.backward()
        assert float(loss.detach()) == pytest.approx(-1.0 if agg == "seq-mean-token-mean" else -2.0)
        assert bool(torch.isfinite(logp.grad).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_loss_keeps_the_input_dtype_and_gradient_reaches_logp(dtype):
    logp = torch.log(torch.tensor([[0.5, 0.6, 0.7], [0.2, 0.9, 0.1]], dtype=dtype)).requires_grad_(True)
    old = torch.log(torch.tensor([[0.55, 0.5, 0.7], [0.2, 0.6, 0.3]], dtype=dtype))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    for rule in losses.available_rules():
        loss, d = policy_loss(logp, old, torch.tensor([1.0, -1.0], dtype=dtype), mask, rule, measure="kl3", delta=0.03)
        assert loss.dtype == dtype and loss.dim() == 0
        (g,) = torch.autograd.grad(loss, logp)
        assert g.dtype == dtype and bool(torch.isfinite(g).all())
        assert 0 <= d["actor/zero_grad_frac"] <= 1
    assert kl_penalty(logp, old, "k3").dtype == dtype
    assert agg_loss(logp.detach(), mask, "seq-mean-token-mean").dtype == dtype


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loss_matches_cpu_on_cuda():
    gen = torch.Generator().manual_seed(1)
    logp = -torch.rand(4, 5, generator=gen)
    old = logp + 0.3 * torch.randn(4, 5, generator=gen)
    mask = torch.rand(4, 5, generator=gen) > 0.3
    mask[:, 0] = True
    adv = torch.randn(4, generator=gen)
    for rule in losses.available_rules():
        for agg in losses.AGG_MODES:
            cpu, dc = policy_loss(logp, old, adv, mask, rule, agg, measure="kl3", delta=0.03)
            gpu, dg = policy_loss(logp.cuda(), old.cuda(), adv.cuda(), mask.cuda(), rule, agg, measure="kl3", delta=0.03)
            assert gpu.device.type == "cuda" and float(gpu) == pytest.approx(float(cpu), rel=1e-5, abs=1e-6)
            assert dg == pytest.approx(dc, rel=1e-5, abs=1e-6)
    for kind in losses.available_kl():
        assert torch.allclose(kl_penalty(logp.cuda(), old.cuda(), kind).cpu(), kl_penalty(logp, old, kind), atol=1e-6)


# --- aggregation ------------------------------------------------------------------------------------
def test_each_aggregation_mode_matches_hand_computed_numbers_with_unequal_lengths():
    mat = torch.tensor([[2.0, 9.0, 9.0], [1.0, 3.0, 9.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)  # lengths 1, 2, 3
    # token-mean: (2 + 1 + 3 + 1 + 2 + 3) / 6 = 12 / 6 = 2
    assert float(agg_loss(mat, mask, "token-mean")) == pytest.approx(2.0)
    # seq-mean-token-sum: sums 2, 4, 6 -> (2 + 4 + 6) / 3 = 4
    assert float(agg_loss(mat, mask, "seq-mean-token-sum")) == pytest.approx(4.0)
    # seq-mean-token-mean: means 2/1, 4/2, 6/3 -> (2 + 2 + 2) / 3 = 2
    assert float(agg_loss(mat, mask, "seq-mean-token-mean")) == pytest.approx(2.0)
    # seq-mean-token-sum-norm: (2 + 4 + 6) / T = 12 / 3 = 4, or / a given constant 12 / 8 = 1.5
    assert float(agg_loss(mat, mask, "seq-mean-token-sum-norm")) == pytest.approx(4.0)
    assert float(agg_loss(mat, mask, "seq-mean-token-sum-norm", norm_const=8)) == pytest.approx(1.5)


def test_aggregation_modes_weigh_short_and_long_answers_differently():
    # the same per-token loss 1 everywhere; lengths 1 and 4, padded to T = 4
    mat, mask = torch.ones(2, 4), torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    got = {m: float(agg_loss(mat, mask, m)) for m in losses.AGG_MODES}
    assert got == {"token-mean": 1.0, "seq-mean-token-sum": 2.5, "seq-mean-token-mean": 1.0, "seq-mean-token-sum-norm": 1.25}


def test_aggregation_matches_a_python_loop_on_random_ragged_batches():
    gen = torch.Generator().manual_seed(3)
    mat = torch.randn(6, 7, generator=gen, dtype=torch.float64)
    lengths = [7, 1, 0, 3, 5, 2]
    mask = torch.tensor([[t < n for t in range(7)] for n in lengths])
    rows = [[float(mat[b, t]) for t in range(n)] for b, n in enumerate(lengths)]
    nonempty = [r for r in rows if r]
    loop = {
        "token-mean": sum(sum(r) for r in rows) / sum(lengths),
        "seq-mean-token-sum": sum(sum(r) for r in nonempty) / len(nonempty),
        "seq-mean-token-mean": sum(sum(r) / len(r) for r in nonempty) / len(nonempty),
        "seq-mean-token-sum-norm": sum(sum(r) for r in rows) / 7,
    }
    for mode, want in loop.items():
        assert float(agg_loss(mat, mask, mode)) == pytest.approx(want, rel=1e-12)


def test_sequences_without_tokens_are_left_out_of_seq_means_not_nan():
    mat = torch.tensor([[2.0, 4.0], [7.0, float("nan")]])
    mask = torch.tensor([[True, True], [False, False]])
    assert float(agg_loss(mat, mask, "seq-mean-token-mean")) == pytest.approx(3.0)
    assert float(agg_loss(mat, mask, "seq-mean-token-sum")) == pytest.approx(6.0)
    assert float(agg_loss(mat, mask, "token-mean")) == pytest.approx(3.0)


def test_aggregation_modes_are_in_a_registry_with_verl_names():
    assert losses.AGG_MODES.available() == ["seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm", "token-mean"]
    assert "token-mean" in losses.AGG_MODES


# --- KL penalties -----------------------------------------------------------------------------------
P = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)  # π_θ (sampling)
Q = torch.tensor([0.4, 0.35, 0.15, 0.10], dtype=torch.float64)  # π_ref


def _kl(a, b):
    return float((a * (a / b).log()).sum())


def test_k1_and_k3_are_unbiased_for_kl_policy_to_ref_k3_nonnegative_and_lower_variance():
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    idx = torch.multinomial(P, n, replacement=True, generator=gen)
    logp, ref = P.log()[idx][None], Q.log()[idx][None]
    est = {k: kl_penalty(logp, ref, k).flatten() for k in ("k1", "k2", "k3")}
    exact, reverse = _kl(P, Q), _kl(Q, P)  # KL(π_θ ‖ π_ref) = 0.0307, KL(π_ref ‖ π_θ) = 0.0340
    for k in ("k1", "k3"):
        se = float(est[k].std()) / math.sqrt(n)
        assert abs(float(est[k].mean()) - exact) < 5 * se, k
    se3 = float(est["k3"].std()) / math.sqrt(n)
    assert abs(float(est["k3"].mean()) - reverse) > 10 * se3  # the direction is KL(π_θ ‖ π_ref)
    assert bool((est["k3"] >= 0).all()) and bool((est["k2"] >= 0).all())
    assert float(est["k3"].var()) < float(est["k1"].var())
    # k2's expectation is Σ p·½(log q/p)², not the KL: biased (exactly, no sampling)
    k2_mean = float((P * 0.5 * (Q / P).log() ** 2).sum())
    assert abs(k2_mean - exact) > 1e-4


def test_k1_can_be_negative_per_token_but_k2_and_k3_cannot():
    logp, ref = torch.tensor([[-2.0, -0.5]]), torch.tensor([[-0.5, -2.0]])
    assert float(kl_penalty(logp, ref, "k1").min()) < 0
    assert float(kl_penalty(logp, ref, "k2").min()) >= 0 and float(kl_penalty(logp, ref, "k3").min()) >= 0


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=-30, max_value=30), st.floats(min_value=-30, max_value=0))
def test_k3_is_nonnegative_for_any_pair_of_log_probs(log_x, logp):
    assert float(kl_penalty(torch.tensor([logp], dtype=torch.float64), torch.tensor([logp + log_x], dtype=torch.float64), "k3")) >= 0


def test_expected_gradients_of_kl_penalties_as_losses():
    # on-policy samples, loss differentiated through logp only: E_a~π_θ[∇k(a)] = Σ_a π_θ(a)·∇k(a)
    logits = torch.tensor([0.3, -0.2, 0.5, -1.0], dtype=torch.float64, requires_grad=True)
    ref = Q.log()

    def expected_grad(kind):
        logp = torch.log_softmax(logits, -1)
        (g,) = torch.autograd.grad((logp.exp().detach() * kl_penalty(logp, ref, kind)).sum(), logits)
        return g

    def exact_grad(forward):
        p = torch.softmax(logits, -1)
        kl = (Q * (Q.log() - p.log())).sum() if forward else (p * (p.log() - Q.log())).sum()
        (g,) = torch.autograd.grad(kl, logits)
        return g

    assert torch.allclose(expected_grad("k1"), torch.zeros(4, dtype=torch.float64), atol=1e-15)
    assert torch.allclose(expected_grad("k2"), exact_grad(forward=False), atol=1e-12)
    assert torch.allclose(expected_grad("k3"), exact_grad(forward=True), atol=1e-12)


def test_low_var_kl_is_k3_clamped_to_ten():
    logp = torch.tensor([[-1.0, -2.0, -25.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -1.0, -25.0]])
    k3, lv = kl_penalty(logp, ref, "k3"), kl_penalty(logp, ref, "low_var_kl")
    assert torch.equal(lv[:, :2], k3[:, :2])
    assert float(lv[0, 2]) == 10.0 and float(k3[0, 2]) > 1e9  # x = e^24
    assert float(lv[0, 3]) == pytest.approx(min(math.exp(-20) - 1 + 20, 10.0))  # log x clamped to -20, then 10


# --- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("delta", [0.0, -0.1, float("nan"), float("inf"), True, "0.2"])
def test_nonpositive_or_nonfinite_delta_is_rejected(delta):
    with pytest.raises(ValueError, match="delta: the trust-region budget must be a finite number > 0"):
        clip_bounds("kl3", delta)
    with pytest.raises(ValueError, match="delta"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1), torch.ones(1, 1), measure="kl3", delta=delta)


def test_bad_side_budgets_are_rejected_by_name():
    with pytest.raises(ValueError, match="delta_low: a ratio epsilon must be < 1"):
        clip_bounds("ratio", delta_low=1.0, delta_high=0.2)
    with pytest.raises(ValueError, match="delta: a ratio epsilon must be < 1"):
        clip_bounds("ratio", 1.5)
    with pytest.raises(ValueError, match="delta_high: the trust-region budget"):
        clip_bounds("kl3", 0.03, delta_high=-1.0)
    with pytest.raises(ValueError, match="give delta, or both delta_low and delta_high"):
        clip_bounds("kl3", delta_low=0.03)
    with pytest.raises(ValueError, match="method: choose 'closed' or 'numeric'"):
        clip_bounds("kl3", 0.03, method="bisect")


def test_mismatched_shapes_are_rejected_naming_the_shapes():
    lp, m = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"old_logp has shape \(2, 2\) but logp has \(2, 3\)"):
        policy_loss(lp, torch.zeros(2, 2), torch.zeros(2), m)
    with pytest.raises(ValueError, match=r"mask has shape \(3, 2\) but logp has \(2, 3\)"):
        policy_loss(lp, lp, torch.zeros(2), m.T)
    with pytest.raises(ValueError, match=r"advantages: expected shape \(2,\) \(per sequence\) or \(2, 3\) \(per token\), got \(3,\)"):
        policy_loss(lp, lp, torch.zeros(3), m)
    with pytest.raises(ValueError, match=r"logp: expected shape \(B, T\), got \(6,\)"):
        policy_loss(lp.flatten(), lp.flatten(), torch.zeros(6), m.flatten())
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(3, 2\)"):
        agg_loss(lp, m.T, "token-mean")
    with pytest.raises(ValueError, match=r"logp and ref_logp must have the same shape, got \(2, 3\) and \(2, 2\)"):
        kl_penalty(lp, torch.zeros(2, 2), "k3")


def test_empty_masks_are_rejected():
    lp, empty = torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="mask: no valid tokens"):
        policy_loss(lp, lp, torch.zeros(2), empty)
    with pytest.raises(ValueError, match="mask: no valid tokens"):
        agg_loss(lp, empty, "seq-mean-token-mean")


def test_unknown_names_are_rejected_listing_the_registered_ones():
    lp, m = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="unknown clip measure 'kl9'; available: kl1, kl2, kl3, ratio"):
        policy_loss(lp, lp, torch.zeros(2), m, measure="kl9")
    with pytest.raises(ValueError, match="unknown policy-loss rule 'ppo2'; available: dual_clip, ppo, vanilla"):
        policy_loss(lp, lp, torch.zeros(2), m, rule="ppo2")
    with pytest.raises(ValueError, match="unknown aggregation mode 'mean'; available: seq-mean-token-mean, .*token-mean"):
        policy_loss(lp, lp, torch.zeros(2), m, agg="mean")
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'; available: k1, k2, k3, low_var_kl"):
        kl_penalty(lp, lp, "k4")


def test_non_finite_values_in_valid_positions_are_rejected_naming_the_argument():
    lp, m = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    bad = lp.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="logp: non-finite value at sequence 1, token 2"):
        policy_loss(bad, lp, torch.zeros(2), m)
    with pytest.raises(ValueError, match="old_logp: non-finite value at sequence 1, token 2"):
        policy_loss(lp, bad, torch.zeros(2), m)
    with pytest.raises(ValueError, match="advantages: non-finite value at sequence 0"):
        policy_loss(lp, lp, torch.tensor([float("inf"), 0.0]), m)


def test_bad_dual_clip_constant_and_norm_const_are_rejected():
    lp, m = torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="dual_clip_c: must be a finite number > 1"):
        policy_loss(lp, lp, torch.zeros(2), m, rule="dual_clip", dual_clip_c=0.5)
    with pytest.raises(ValueError, match="norm_const: must be a finite number > 0"):
        agg_loss(lp, m, "seq-mean-token-sum-norm", norm_const=0)


# --- docs ---------------------------------------------------------------------------------------------
def test_the_bounds_table_in_docs_is_the_one_the_code_prints():
    import sys
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    sys.path.insert(0, str(docs))
    try:
        from make_trust_region_figure import bounds_table, matched_table
    finally:
        sys.path.remove(str(docs))
    text = (docs / "losses.md").read_text()
    assert bounds_table() in text and matched_table() in text


# --- matched budgets and KL3's direction ------------------------------------------------------------------
def test_matched_budget_gives_every_measure_the_total_width_of_ratio_clipping_at_0_2():
    from lab.losses import MATCHED_WIDTH, matched_delta

    assert MATCHED_WIDTH == 0.4 and matched_delta("ratio") == 0.2
    for m in available_measures():
        d = matched_delta(m)
        lo, hi = numeric_bounds(MEASURES.get(m).d, d)  # root finding, not the closed form matched_delta used
        assert hi - lo == pytest.approx(0.4, abs=1e-9), m
    assert 0.0199 < matched_delta("kl3") < 0.0201  # "δ ≈ 0.02", not the shared 0.2 that gives [0.49, 1.77]
    lo, hi = clip_bounds("kl3", 0.2)
    assert hi - lo > 1.2  # why one δ for every measure silently loosens KL3


def test_kl3_measure_is_k3_of_kl_from_old_to_new_policy_for_tokens_sampled_from_old():
    # w = π_θ/π_old: E_{a∼π_old}[w − 1 − log w] = KL(π_old ‖ π_θ) exactly, since E_old[w] = 1
    gen = torch.Generator().manual_seed(0)
    old = torch.softmax(torch.randn(50, generator=gen, dtype=torch.float64), 0)
    new = torch.softmax(torch.randn(50, generator=gen, dtype=torch.float64), 0)
    d = MEASURES.get("kl3").d
    k3 = sum(float(po) * d(float(pn / po)) for po, pn in zip(old, new))
    kl_old_new = float((old * (old / new).log()).sum())
    kl_new_old = float((new * (new / old).log()).sum())
    assert k3 == pytest.approx(kl_old_new, abs=1e-12)
    assert abs(k3 - kl_new_old) > 0.05  # the other direction is a different number
    # the reversed ratio π_old/π_θ would mirror the interval: [1/u, 1/l], more room down than up
    lo, hi = clip_bounds("kl3", 0.03)
    assert hi - 1 > 1 - lo and 1 / lo - 1 > 1 - 1 / hi
