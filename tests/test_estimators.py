"""Advantage estimators against hand-computed examples and plain-Python loop references,
plus the properties each one promises (permutation equivariance, leave-one-out, ...).

The references below are written straight from ../shared/methods.md and the docstrings:
dicts of lists per prompt, Python floats, no torch vector tricks. The vectorised estimators
are compared with them on random batches (hypothesis).
"""

import io
import math
from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import estimators
from lab.estimators import RewardBatch, get
from lab.estimators.base import finite_or_raise, positions_in_group
from lab.estimators.basis import BASIS, DEFAULT_BETAS, soft_value
from lab.estimators.kernel import KAE, KERNELS, kernel_weights

ALL = estimators.available()
STATEFUL = ["kae", "basis", "blend"]
FAST = settings(max_examples=60, deadline=None)


# --- loop references written from the formulas ----------------------------------------------------------
def groups_of(ids):
    """prompt id -> list of rollout indices, in batch order."""
    g = defaultdict(list)
    for i, p in enumerate(ids):
        g[p].append(i)
    return g


def ref_grpo(r, ids, eps=1e-6, norm=True):
    adv, base = [0.0] * len(r), [0.0] * len(r)
    for members in groups_of(ids).values():
        vals = [r[i] for i in members]
        n = len(vals)
        mean = sum(vals) / n if n > 1 else 0.0  # verl: a singleton has mean 0, std 1
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 1.0
        for i in members:
            base[i] = mean
            adv[i] = (r[i] - mean) / (std + eps) if norm else r[i] - mean
    return adv, base


def ref_rloo(r, ids):
    adv, base = [0.0] * len(r), [0.0] * len(r)
    for members in groups_of(ids).values():
        for i in members:
            others = [r[j] for j in members if j != i]
            base[i] = sum(others) / len(others) if others else 0.0
            adv[i] = r[i] - base[i]
    return adv, base


def ref_whiten(x, eps=1e-8):
    n = len(x)
    if n < 2:
        return [0.0] * n
    m = sum(x) / n
    var = sum((v - m) ** 2 for v in x) / (n - 1)
    return [(v - m) / math.sqrt(var + eps) for v in x]


class RefKalmanFilter:
    """The reference code's ``KalmanFilter`` (KRPO ``train.py``), on Python floats."""

    def __init__(self, q=1e-5, r=1e-2, x0=0.0, p0=1.0):
        self.q, self.r, self.x, self.p = q, r, x0, p0

    def update(self, z):
        p_pred = self.p + self.q
        k = p_pred / (p_pred + self.r)
        self.x = self.x + k * (z - self.x)
        self.p = (1 - k) * p_pred
        return self.x, self.p


def ref_krpo(r, ids):
    """``group_advantages`` called once per prompt's group, members in rollout order."""
    adv, base = [0.0] * len(r), [0.0] * len(r)
    for members in groups_of(ids).values():
        kf = RefKalmanFilter()
        for i in members:
            x, p = kf.update(r[i])
            base[i] = x
            adv[i] = (r[i] - x) / (math.sqrt(p) + 1e-8)
    return adv, base


def ref_krpo_invariant(r, ids, rr=1e-2, x0=0.0, p0=1.0, normalize=True):
    """Posterior of a constant value given the *other* rollouts: precision-weighted prior + others."""
    adv, base = [0.0] * len(r), [0.0] * len(r)
    for members in groups_of(ids).values():
        for i in members:
            others = [r[j] for j in members if j != i]
            prec = 1 / p0 + len(others) / rr
            base[i] = (x0 / p0 + sum(others) / rr) / prec
            adv[i] = (r[i] - base[i]) / (math.sqrt(1 / prec) + 1e-8) if normalize else r[i] - base[i]
    return adv, base


def ref_kernel(u, kernel, rho=0.5, cutoff=3.0):
    a = abs(u)
    if kernel == "triangular":
        return max(1.0 - a, 0.0)
    if kernel == "epanechnikov":
        return 0.75 * max(1.0 - a * a, 0.0)
    if kernel == "gaussian":
        return math.exp(-a * a / 2) if a <= cutoff else 0.0
    if kernel == "exponential":
        return rho**a if a <= cutoff else 0.0
    raise AssertionError(kernel)


def ref_kae_baseline(history, r, ids, t, window, kernel="triangular", empty=0.0):
    """Full memory (every (prompt, step, reward) ever seen), no pruning:
    b = (Σ_{s<t} K((t−s)/w) z + K(0) Σ_{k≠g} r_k) / (Σ_{s<t} K((t−s)/w) + (G−1) K(0))."""
    base = []
    for i, p in enumerate(ids):
        num = den = 0.0
        for hp, s, z in history:
            if hp == p and s < t:
                w = ref_kernel((t - s) / window, kernel)
                num += w * z
                den += w
        for j, pj in enumerate(ids):
            if pj == p and j != i:
                num += ref_kernel(0.0, kernel) * r[j]
                den += ref_kernel(0.0, kernel)
        base.append(num / den if den > 0 else empty)
    return base


def ref_soft_value(samples, beta):
    """β log((1/m) Σ exp(s/β)), shifted by the max so small β does not overflow."""
    top = max(samples)
    return top + beta * math.log(sum(math.exp((s - top) / beta) for s in samples) / len(samples))


def ref_fold(pid):
    """BASIS's cross-fitting fold of a prompt id (the same multiplicative hash, on Python ints)."""
    return ((pid * 0x9E3779B1 + 0x7F4A7C15) >> 16) & 1


def ref_basis_loo(r, mu, active, pool, i, drift="additive", clip=True):
    """Leave-one-out BLUE baseline of rollout i from the active pooled others (mu, active per rollout)."""
    num = den = 0.0
    for j in range(len(r)):
        if j != i and active[j] and pool[j]:
            if drift == "additive":
                w = 1.0 / (mu[j] * (1 - mu[j]))
                num += w * (r[j] - mu[j])
            else:
                w = mu[j] / (1 - mu[j])
                num += w * r[j] / mu[j]
            den += w
    if den == 0:
        b = mu[i]
    else:
        b = mu[i] + num / den if drift == "additive" else mu[i] * (num / den)
    return min(max(b, 0.0), 1.0) if clip else b


def ref_basis_additive(r, mu, eps=0.03, fallback="prior"):
    """Additive-drift BASIS baselines at fixed priors mu (i.e. one fixed β); inactive -> mu (or 0)."""
    active = [eps < m < 1 - eps for m in mu]
    pool = [True] * len(r)
    return [ref_basis_loo(r, mu, active, pool, i) if active[i] else (0.0 if fallback == "zero" else mu[i]) for i in range(len(r))]


class RefBASIS:
    """BASIS on one batch: priors from a bank {prompt: [samples]}, β picked on the grid."""

    def __init__(self, bank, betas=DEFAULT_BETAS, eps=0.03, drift="additive", fallback="prior", default_prior=0.5):
        self.bank, self.betas, self.eps, self.drift, self.fallback = bank, betas, eps, drift, fallback
        self.default_prior = default_prior

    def mu(self, ids, beta):
        return [ref_soft_value(self.bank[p], beta) if self.bank.get(p) else self.default_prior for p in ids]

    def used(self, r, ids, beta, pool):
        """The baseline each rollout gets at β: leave-one-out if active, the fallback otherwise."""
        mu = self.mu(ids, beta)
        active = [self.eps < m < 1 - self.eps for m in mu]
        out = []
        for i in range(len(r)):
            if active[i]:
                out.append(ref_basis_loo(r, mu, active, pool, i, self.drift))
            else:
                out.append(0.0 if self.fallback == "zero" else mu[i])
        return out

    def loss(self, r, ids, beta, pool):
        """Squared error of the baselines against the pooled rewards (every pooled rollout)."""
        b = self.used(r, ids, beta, pool)
        return sum((r[j] - b[j]) ** 2 for j in range(len(r)) if pool[j])

    def any_active(self, ids, pool):
        return any(
            self.eps < m < 1 - self.eps and pool[j] for beta in self.betas for j, m in enumerate(self.mu(ids, beta))
        )


def ref_blend(history, r, ids, t, decay=0.95, min_var=1e-4, empty=0.0):
    """BLEND from its docstring, one rollout at a time; ``history`` is [(rewards, ids, step)]."""
    max_age = max(1, math.ceil(math.log(1e-4) / math.log(decay)))
    hist = defaultdict(lambda: [0.0, 0.0, 0.0])  # prompt -> [Σ w r, Σ w, Σ w step]
    for hr, hids, step in history:
        if 0 < t - step <= max_age:
            w = decay ** (t - step)
            for rr, p in zip(hr, hids):
                hist[p][0] += w * rr
                hist[p][1] += w
                hist[p][2] += w * step
    groups = groups_of(ids)
    st_ = {}
    for p, members in groups.items():
        vals = [r[i] for i in members]
        k, c = len(vals), sum(vals)
        mean = c / k
        hs, hn, ht = hist[p] if p in hist else (0.0, 0.0, 0.0)
        st_[p] = dict(k=k, c=c, mean=mean, ss=sum((v - mean) ** 2 for v in vals), has=hn > 0,
                      h=hs / hn if hn > 0 else 0.0, n=hn, age=t - ht / hn if hn > 0 else 0.0)
    base = []
    for i, x in enumerate(ids):
        o = [st_[p] for p in groups if p != x]
        df, c_o, k_o = sum(q["k"] - 1 for q in o), sum(q["c"] for q in o), sum(q["k"] for q in o)
        m_o = c_o / k_o if k_o else 0.5
        s2 = max(sum(q["ss"] for q in o) / df if df else m_o * (1 - m_o), min_var)
        means = [q["mean"] for q in o]
        spread = sum((m - sum(means) / len(means)) ** 2 for m in means) / (len(means) - 1) if len(means) > 1 else 0.0
        hs = [q for q in o if q["has"]]
        if not df and len(hs) > 1 and len(means) > 1 and sum(1 / q["n"] for q in hs) / len(hs) < 1:
            hm = [q["h"] for q in hs]
            spread_h = sum((h - sum(hm) / len(hm)) ** 2 for h in hm) / (len(hm) - 1)
            qq = sum(1 / q["n"] for q in hs) / len(hs)
            s2 = min(max((spread - spread_h) / (1 - qq), min_var), max(spread, min_var))
        both = [q for q in o if q["has"] and q["age"] > 0]
        saa = sum(q["age"] ** 2 for q in both)
        kappa = sum((q["mean"] - q["h"]) * q["age"] for q in both) / saa if saa else 0.0
        sa = sum(q["age"] for q in both)
        resid = sum((q["mean"] - q["h"] - kappa * q["age"]) ** 2 for q in both)
        noise = sum(1 / q["k"] + 1 / q["n"] for q in both)
        tau2 = max(0.0, resid - s2 * noise) / sa if sa else 0.0
        var_kappa = sum(q["age"] ** 2 * (s2 * (1 / q["k"] + 1 / q["n"]) + tau2 * q["age"]) for q in both) / saa**2 if saa else 0.0
        between = max(0.0, spread - s2 * (sum(1 / q["k"] for q in o) / len(o) if o else 0.0))
        me = st_[x]
        src = []  # (estimate, variance)
        if me["k"] > 1:
            src.append(((me["c"] - r[i]) / (me["k"] - 1), s2 / (me["k"] - 1)))
        if me["has"]:
            src.append((me["h"] + kappa * me["age"], s2 / me["n"] + tau2 * me["age"] + var_kappa * me["age"] ** 2))
        if k_o:
            src.append((m_o, s2 / k_o + between))
        w = [1 / max(v, min_var) for _, v in src]
        base.append(sum(wi * e for wi, (e, _) in zip(w, src)) / sum(w) if src else empty)
    return [ri - b for ri, b in zip(r, base)], base


# --- strategies and helpers ----------------------------------------------------------------------------
@st.composite
def batches(draw, min_n=1, max_n=24, binary=False, n_prompts=7):
    n = draw(st.integers(min_n, max_n))
    ids = draw(st.lists(st.integers(0, n_prompts - 1), min_size=n, max_size=n))
    if binary:
        r = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    else:
        r = draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n))
    return r, ids


def B(r, ids, step=0, dtype=torch.float64):
    return RewardBatch(torch.tensor(r, dtype=dtype), torch.tensor(ids, dtype=torch.long), step=step)


# reference samples for prompts 0..6: 8 samples each with 0, 1, 3, 4, 5, 7, 8 successes, so
# priors differ, prompt 0 (μ = 0) and 6 (μ = 1) are inactive and prompts 1..5 are active.
REF_SUCCESSES = [0, 1, 3, 4, 5, 7, 8]
REF_IDS = [p for p in range(7) for _ in range(8)]
REF_R = [1.0 if k < REF_SUCCESSES[p] else 0.0 for p in range(7) for k in range(8)]


def make(name, **params):
    """A fresh estimator; BASIS gets the reference samples above (its offline stage)."""
    est = get(name, **params)
    if name == "basis":
        est.set_reference(torch.tensor(REF_IDS), torch.tensor(REF_R, dtype=torch.float64))
    return est


def _run(name, r, ids, history=(), **params):
    """Fresh instance, fed the history batches at steps 0, 1, ..., then the batch (r, ids)."""
    est = make(name, **params)
    for t, (hr, hids) in enumerate(history):
        est(B(hr, hids, step=t))
    return est(B(r, ids, step=len(history)))


def _close(t, ref, atol=1e-9, rtol=0.0):
    return torch.allclose(t, torch.tensor(ref, dtype=t.dtype), atol=atol, rtol=rtol)


# --- worked examples (the ones in the docstrings and methods.md), by hand ---------------------------------
def test_grpo_worked_example_uses_unbiased_std_and_eps_1e6():
    out = get("grpo")(B([1.0, 0.0, 1.0, 1.0], [0, 1, 1, 0]))
    assert out.baselines.tolist() == [1.0, 0.5, 0.5, 1.0]
    s = math.sqrt(0.5)  # unbiased std of {0, 1}: sqrt((0.25 + 0.25) / 1)
    assert _close(out.advantages, [0.0, -0.5 / (s + 1e-6), 0.5 / (s + 1e-6), 0.0], atol=1e-15)
    assert [round(a, 4) for a in out.advantages.tolist()] == [0.0, -0.7071, 0.7071, 0.0]


def test_dr_grpo_worked_example_is_reward_minus_group_mean():
    out = get("dr_grpo")(B([1.0, 0.0, 0.0], [3, 3, 3]))
    assert _close(out.advantages, [2 / 3, -1 / 3, -1 / 3], atol=1e-15)
    assert _close(out.baselines, [1 / 3] * 3, atol=1e-15)


def test_rloo_worked_example_is_leave_one_out_mean():
    out = get("rloo")(B([1.0, 0.0, 0.0], [0, 0, 0]))
    assert out.baselines.tolist() == [0.0, 0.5, 0.5]  # (0+0)/2, (1+0)/2, (1+0)/2
    assert out.advantages.tolist() == [1.0, -0.5, -0.5]


def test_reinforce_plus_plus_worked_example_whitens_over_the_batch():
    out = get("reinforce_plus_plus")(B([1.0, 0.0, 0.0, 1.0], [0, 0, 1, 1]))
    # batch mean 0.5, unbiased var 4·0.25/3 = 1/3
    assert out.baselines.tolist() == [0.5] * 4
    assert _close(out.advantages, [x * 0.5 / math.sqrt(1 / 3 + 1e-8) for x in (1, -1, -1, 1)], atol=1e-12)
    assert [round(a, 4) for a in out.advantages.tolist()] == [0.866, -0.866, -0.866, 0.866]


def test_reinforce_plus_plus_baseline_worked_example_centres_per_group_then_whitens():
    out = get("reinforce_plus_plus_baseline")(B([1.0, 0.0, 1.0, 1.0], [0, 0, 1, 1]))
    # centred [0.5, -0.5, 0, 0]: mean 0, unbiased var 0.5/3
    assert out.baselines.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert _close(out.advantages, [x * 0.5 / math.sqrt(0.5 / 3 + 1e-8) for x in (1, -1, 0, 0)], atol=1e-12)
    assert [round(a, 4) for a in out.advantages.tolist()] == [1.2247, -1.2247, 0.0, 0.0]


@pytest.mark.parametrize(
    "rewards, expected",
    [([1.0, 0.0, 0.0, 1.0], [0.0995, -7.048, -5.751, 10.015]), ([0.0, 1.0, 1.0, 0.0], [0.0, 7.119, 5.809, -9.965])],
)
def test_krpo_reproduces_the_reference_code_numbers(rewards, expected):
    adv = get("krpo")(B(rewards, [0, 0, 0, 0])).advantages.tolist()
    assert all(abs(a - e) < 6e-4 for a, e in zip(adv, expected)), adv
    # the reference code's KalmanFilter class, run by hand, gives the same numbers
    ref, _ = ref_krpo(rewards, [0, 0, 0, 0])
    assert all(abs(a - e) < 1e-9 for a, e in zip(adv, ref))
    # first step by hand: P⁻ = 1 + 1e-5, K = P⁻/(P⁻ + 0.01), x = K·z, P = (1 − K)P⁻
    pm = 1 + 1e-5
    k = pm / (pm + 1e-2)
    assert adv[0] == pytest.approx((rewards[0] - k * rewards[0]) / (math.sqrt((1 - k) * pm) + 1e-8), abs=1e-12)


def test_krpo_invariant_worked_example_is_the_shrunk_leave_one_out_mean():
    out = get("krpo_invariant", normalize=False)(B([1.0, 0.0, 1.0], [0, 0, 0]))
    # b_i = (x0/P0 + Σ_{j≠i} r_j/R) / (1/P0 + 2/R) with x0 = 0, P0 = 1, R = 0.01: others sum to 1, 2, 1
    expect = [(s / 0.01) / (1 + 2 / 0.01) for s in (1.0, 2.0, 1.0)]
    assert _close(out.baselines, expect, atol=1e-15)
    assert [round(b, 4) for b in out.baselines.tolist()] == [0.4975, 0.995, 0.4975]


def test_kae_worked_example_mixes_history_and_the_other_rollouts():
    kae = get("kae", width=2.0)
    kae(B([1.0, 0.0], [7, 7], step=1))
    out = kae(B([1.0, 0.0], [7, 7], step=2))
    # history weight K((2−1)/2) = 0.5 on 2 rewards summing to 1; the other current rollout weighs K(0) = 1
    assert out.baselines.tolist() == [(0.5 * 1 + 1 * 0) / (0.5 * 2 + 1), (0.5 * 1 + 1 * 1) / (0.5 * 2 + 1)]
    assert out.baselines.tolist() == [0.25, 0.75] and out.advantages.tolist() == [0.75, -0.75]


def test_kae_growing_window_worked_example():
    kae = get("kae", h=0.5, min_width=1.0)
    kae(B([1.0], [1], step=2))
    out = kae(B([0.0, 0.0], [1, 1], step=3))
    # window max(0.5·3, 1) = 1.5; weight K(1/1.5) = 1/3 on the reward 1; the other current rollout adds 0 with weight 1
    assert _close(out.baselines, [(1 / 3) / (1 / 3 + 1)] * 2, atol=1e-15)  # 0.25


def test_basis_worked_example():
    est = BASIS(online_prior=False)
    est.set_reference(torch.tensor([1, 2, 3]), torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64))
    out = est(B([1.0, 0.0, 1.0], [1, 2, 3]))
    # one sample per prompt: μ is that sample for every β; weights 1/(μ(1−μ)) = 4, 6.25, 6.25
    by_hand = [0.5 + (6.25 * -0.2 + 6.25 * 0.2) / 12.5, 0.2 + (4 * 0.5 + 6.25 * 0.2) / 10.25, 0.8 + (4 * 0.5 - 6.25 * 0.2) / 10.25]
    assert _close(out.baselines, by_hand, atol=1e-12)
    assert _close(out.baselines, ref_basis_additive([1.0, 0.0, 1.0], [0.5, 0.2, 0.8]), atol=1e-12)
    assert [round(b, 3) for b in by_hand] == [0.5, 0.517, 0.873]


# --- vectorised == loop reference -----------------------------------------------------------------------------
@FAST
@given(batches())
def test_group_family_matches_loop_references(b):
    r, ids = b
    for name, (adv, base) in [
        ("grpo", ref_grpo(r, ids)),
        ("dr_grpo", ref_grpo(r, ids, norm=False)),
        ("rloo", ref_rloo(r, ids)),
    ]:
        out = get(name)(B(r, ids))
        assert _close(out.advantages, adv, atol=1e-7, rtol=1e-9), name
        assert _close(out.baselines, base, atol=1e-12), name
    out = get("reinforce_plus_plus")(B(r, ids))
    assert _close(out.advantages, ref_whiten(r), atol=1e-6)
    assert _close(out.baselines, [sum(r) / len(r)] * len(r), atol=1e-12)
    _, gbase = ref_grpo(r, ids)
    out = get("reinforce_plus_plus_baseline")(B(r, ids))
    assert _close(out.advantages, ref_whiten([x - m for x, m in zip(r, gbase)]), atol=1e-6)
    assert _close(out.baselines, gbase, atol=1e-12)


@FAST
@given(batches())
def test_krpo_matches_the_reference_kalman_loop_in_the_given_order(b):
    r, ids = b
    out = get("krpo")(B(r, ids))
    adv, base = ref_krpo(r, ids)
    assert _close(out.baselines, base, atol=1e-10)
    assert _close(out.advantages, adv, atol=1e-6, rtol=1e-7)


@FAST
@given(batches(), st.booleans())
def test_krpo_invariant_matches_the_closed_form_posterior_given_the_other_rollouts(b, normalize):
    r, ids = b
    out = get("krpo_invariant", normalize=normalize)(B(r, ids))
    adv, base = ref_krpo_invariant(r, ids, normalize=normalize)
    assert _close(out.baselines, base, atol=1e-12)
    assert _close(out.advantages, adv, atol=1e-8, rtol=1e-9)


@st.composite
def kae_runs(draw):
    """A KAE configuration and a few batches at non-decreasing steps (repeats allowed)."""
    kernel = draw(st.sampled_from(KERNELS))
    width = draw(st.sampled_from([None, 1.0, 2.0, 2.5, 4.0]))
    h = draw(st.sampled_from([0.1, 0.3, 0.5, 0.9]))
    min_width = draw(st.sampled_from([1.0, 2.0, 3.0]))
    gaps = draw(st.lists(st.sampled_from([0, 0, 1, 1, 2, 3]), min_size=2, max_size=7))  # 0: another batch of the same step
    steps = [sum(gaps[: k + 1]) for k in range(len(gaps))]
    runs = [draw(batches(min_n=1, max_n=8, binary=True, n_prompts=2)) for _ in steps]
    updates = draw(st.lists(st.sampled_from([True, True, False]), min_size=len(steps), max_size=len(steps)))
    return dict(kernel=kernel, width=width, h=h, min_width=min_width), steps, runs, updates


@settings(max_examples=80, deadline=None)
@given(kae_runs())
def test_kae_matches_a_full_memory_loop_reference_over_several_steps(run):
    params, steps, runs, updates = run
    kae = KAE(**params)
    history = []  # every (prompt, step, reward) fed with update=True; never pruned
    for t, (r, ids), update in zip(steps, runs, updates):
        window = params["width"] if params["width"] is not None else max(params["h"] * t, params["min_width"])
        out = kae(B(r, ids, step=t), update=update)
        expect = ref_kae_baseline(history, r, ids, t, window, params["kernel"])
        assert _close(out.baselines, expect, atol=1e-12), (t, window)
        assert _close(out.advantages, [x - e for x, e in zip(r, expect)], atol=1e-12)
        if update:
            history += [(p, t, z) for p, z in zip(ids, r)]


def test_kae_keeps_history_that_still_weighs_at_the_last_step():
    # regression: pruning used the weight at last_step + 1, so a second batch of the same step
    # (compute accepts step == last step) lost an entry that still weighs there.
    kae = KAE(width=2.0)
    kae(B([1.0, 1.0], [3, 3], step=4))
    kae(B([0.0, 0.0], [5, 5], step=5))
    out = kae(B([0.0, 0.0], [3, 3], step=5), update=False)
    # weight of step 4 at step 5: K(1/2) = 0.5 on two rewards of 1; the other current rollout: 0
    assert out.baselines.tolist() == [0.5, 0.5]


@st.composite
def basis_cases(draw):
    """A bank of reference samples for prompts 0..7 (some with none) and a batch of those prompts."""
    bank = {}
    for p in range(8):
        bank[p] = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=0, max_size=6))
    r, ids = draw(batches(min_n=1, max_n=16, binary=True, n_prompts=8))
    params = dict(
        beta_selection=draw(st.sampled_from(["crossfit", "batch"])),
        drift=draw(st.sampled_from(["additive", "multiplicative"])),
        fallback=draw(st.sampled_from(["zero", "prior"])),
    )
    return bank, r, ids, params


@FAST
@given(basis_cases())
def test_basis_matches_a_loop_reference_with_beta_picked_by_squared_error(case):
    bank, r, ids, params = case
    est = BASIS(online_prior=False, **params)
    ref_ids = [p for p, s in bank.items() for _ in s]
    if ref_ids:
        est.set_reference(torch.tensor(ref_ids), torch.tensor([z for s in bank.values() for z in s], dtype=torch.float64))
    out = est(B(r, ids))
    ref = RefBASIS(bank, drift=params["drift"], fallback=params["fallback"])
    default = min(DEFAULT_BETAS, key=lambda b: abs(math.log(b)))
    n = len(r)
    if params["beta_selection"] == "batch":
        fold_of = [0] * n
        chosen = {0: out.info["beta"]}
        pools = {0: [True] * n}
    else:
        fold_of = [ref_fold(p) for p in ids]
        chosen = {f: out.info[f"beta_fold{f}"] for f in (0, 1)}
        pools = {f: [fold_of[j] != f for j in range(n)] for f in (0, 1)}  # β of fold f is fitted on the other fold
    for f, beta in chosen.items():
        pool = pools[f]
        if not ref.any_active(ids, pool):
            assert beta == default
            continue
        losses = [ref.loss(r, ids, b, pool) for b in DEFAULT_BETAS]
        assert ref.loss(r, ids, beta, pool) <= min(losses) + 1e-9, (beta, losses)
    everyone = [True] * n
    expect = [ref.used(r, ids, chosen[fold_of[i]], everyone)[i] for i in range(n)]
    assert _close(out.baselines, expect, atol=1e-9)
    assert _close(out.advantages, [x - e for x, e in zip(r, expect)], atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.integers(0, 9), st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=6), min_size=1),
    st.sampled_from(DEFAULT_BETAS),
    st.data(),
)
def test_basis_additive_drift_at_a_fixed_beta_matches_the_loop_formula(bank, beta, data):
    ids = data.draw(st.lists(st.sampled_from(sorted(bank)), min_size=1, max_size=12))
    r = data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(ids), max_size=len(ids)))
    est = BASIS(online_prior=False, betas=(beta,))
    est.set_reference(
        torch.tensor([p for p, s in bank.items() for _ in s]), torch.tensor([z for s in bank.values() for z in s], dtype=torch.float64)
    )
    mu = [ref_soft_value(bank[p], beta) for p in ids]
    out = est(B(r, ids))
    assert _close(out.baselines, ref_basis_additive(r, mu), atol=1e-9)


@FAST
@given(batches(min_n=1, n_prompts=5), st.lists(batches(min_n=1, max_n=10, n_prompts=5), max_size=3), st.sampled_from([0.5, 0.8]))
def test_blend_matches_its_formula_one_rollout_at_a_time(b, history, decay):
    r, ids = b
    est = get("blend", decay=decay)
    for t, (hr, hids) in enumerate(history):
        est(B(hr, hids, step=t))
    out = est(B(r, ids, step=len(history)))
    adv, base = ref_blend([(hr, hids, t) for t, (hr, hids) in enumerate(history)], r, ids, len(history), decay=decay)
    assert _close(out.baselines, base, atol=1e-9, rtol=1e-9) and _close(out.advantages, adv, atol=1e-9, rtol=1e-9)


def test_blend_weights_follow_the_information_each_source_has():
    gen = torch.Generator().manual_seed(0)
    ids = torch.arange(30).repeat_interleave(8)
    same = lambda p: (torch.rand(torch.as_tensor(p).expand(240).shape if torch.as_tensor(p).dim() == 0 else p.shape, generator=gen) < p).double()  # noqa: E731
    first = get("blend")(RewardBatch(same(0.5), ids, step=0))  # every prompt has the same value
    assert first.info["weight_batch"] > 0.9  # so the 232 other rollouts beat the group's 7
    spread = torch.linspace(0.05, 0.95, 30).repeat_interleave(8)
    est = get("blend")
    first = est(RewardBatch(same(spread), ids, step=0))  # values differ: the batch says little
    assert first.info["weight_history"] == 0.0 and first.info["weight_group"] > 2 * first.info["weight_batch"]
    for t in range(1, 6):
        out = est(RewardBatch(same(spread), ids, step=t))
    assert out.info["weight_history"] > 0.3  # stationary values: history is worth several groups
    single = est(RewardBatch(same(spread[::8]), torch.arange(30), step=6))  # G = 1: no group source
    assert single.info["weight_group"] == 0.0 and single.info["weight_history"] > 0.5


def test_blend_reference_samples_are_history_at_step_zero():
    ref_ids, ref_r = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    a, b = get("blend"), get("blend")
    a.set_reference(ref_ids, ref_r)
    b.observe(RewardBatch(ref_r, ref_ids, step=0))
    assert all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    batch = B([1.0, 0.0], [0, 1], step=3)  # G = 1: only history and batch
    with_ref, without = a(batch), get("blend")(batch)
    assert with_ref.info["weight_history"] > 0 and without.info["weight_history"] == 0.0
    with pytest.raises(ValueError, match="non-finite"):
        get("blend").set_reference(torch.tensor([0]), torch.tensor([float("nan")]))


def test_blend_rejects_bad_parameters_naming_them():
    for params, match in [({"decay": 1.0}, "decay"), ({"max_age": 0}, "max_age"), ({"min_var": 0.0}, "min_var")]:
        with pytest.raises(ValueError, match=match):
            get("blend", **params)


# --- properties ---------------------------------------------------------------------------------------------
@FAST
@given(batches(min_n=2), st.randoms(use_true_random=False), st.lists(batches(min_n=1, max_n=8), max_size=2))
def test_every_estimator_but_krpo_is_permutation_equivariant(b, rnd, history):
    r, ids = b
    perm = list(range(len(r)))
    rnd.shuffle(perm)
    for name in ALL:
        if name == "krpo":
            continue
        for hist in ((), history):  # fresh instances; stateful ones also after some history
            a = _run(name, r, ids, hist)
            p = _run(name, [r[i] for i in perm], [ids[i] for i in perm], hist)
            assert torch.allclose(p.advantages, a.advantages[perm], atol=1e-9), name
            assert torch.allclose(p.baselines, a.baselines[perm], atol=1e-12), name


@FAST
@given(st.integers(1, 6), st.integers(1, 6), batches(max_n=6))
def test_krpo_changes_when_a_group_is_permuted(n0, n1, other):
    # zeros then ones: the filter stays exactly at x0 = 0 through the zeros (A = 0), then every
    # one sits above x < 1 (A > 0). Ones then zeros: the first zero is below x > 0 (A < 0).
    # So the same group in another order gets different advantages, not permuted ones.
    r_other, ids_other = other
    ids = [100] * (n0 + n1) + ids_other
    up = get("krpo")(B([0.0] * n0 + [1.0] * n1 + r_other, ids))
    down = get("krpo")(B([1.0] * n1 + [0.0] * n0 + r_other, ids))
    g = n0 + n1
    assert bool((up.advantages[:g] >= 0).all()) and bool((down.advantages[:g] < 0).any())
    assert not torch.allclose(up.advantages[:g].sort().values, down.advantages[:g].sort().values)
    # rollouts of other prompts are untouched by the reordering, and both orders match the loop
    assert torch.equal(up.advantages[g:], down.advantages[g:])
    for out, rr in ((up, [0.0] * n0 + [1.0] * n1 + r_other), (down, [1.0] * n1 + [0.0] * n0 + r_other)):
        assert _close(out.advantages, ref_krpo(rr, ids)[0], atol=1e-6, rtol=1e-7)


@FAST
@given(batches(min_n=2), st.data(), st.lists(batches(min_n=1, max_n=8), min_size=1, max_size=2))
def test_own_reward_never_changes_own_baseline_for_leave_one_out_estimators(b, data, history):
    r, ids = b
    i = data.draw(st.integers(0, len(r) - 1))
    delta = data.draw(st.floats(0.1, 0.5))
    new = r[i] + delta if r[i] + delta <= 1 else r[i] - delta
    changed = list(r)
    changed[i] = new
    cases = [("rloo", ()), ("krpo_invariant", ()), ("kae", ()), ("kae", history), ("basis", ()), ("basis", history),
             ("blend", ()), ("blend", history)]
    for name, hist in cases:
        a = _run(name, r, ids, hist)
        f = _run(name, changed, ids, hist)
        assert float(a.baselines[i]) == pytest.approx(float(f.baselines[i]), abs=1e-12), (name, hist)
    # the check has teeth: KRPO's baseline absorbs the rollout's own reward (gain K > 0)
    assert float(_run("krpo", r, ids).baselines[i]) != float(_run("krpo", changed, ids).baselines[i])


def test_basis_own_reward_independence_with_distinct_priors_and_an_active_set():
    gen = torch.Generator().manual_seed(3)
    ids = torch.arange(40)
    ref_ids = ids.repeat_interleave(8)
    ref_r = (torch.rand(320, generator=gen) < torch.linspace(0.05, 0.95, 40).repeat_interleave(8)).double()
    r = (torch.rand(40, generator=gen) < 0.5).double()
    for i in range(0, 40, 3):
        outs = []
        for v in (0.0, 1.0):
            est = BASIS(online_prior=False)  # default: crossfit β selection
            est.set_reference(ref_ids, ref_r)
            rr = r.clone()
            rr[i] = v
            outs.append(est(RewardBatch(rr, ids)))
        assert 0.2 < outs[0].info["active_frac"] < 1.0
        assert float(outs[0].baselines[i]) == pytest.approx(float(outs[1].baselines[i]), abs=1e-12)


def test_basis_batch_beta_selection_lets_own_reward_reach_its_baseline_through_beta():
    # the documented leak of beta_selection="batch" (why crossfit is the default): some single
    # flip changes the β picked on the whole batch, and with it the flipped rollout's baseline
    gen = torch.Generator().manual_seed(0)
    ids = torch.arange(30)
    ref_r = (torch.rand(240, generator=gen) < torch.linspace(0.1, 0.9, 30).repeat_interleave(8)).double()
    found = False
    for seed in range(20):
        r = (torch.rand(30, generator=torch.Generator().manual_seed(seed)) < 0.6).double()
        for i in range(30):
            b, betas = [], []
            for v in (0.0, 1.0):
                est = BASIS(online_prior=False, beta_selection="batch")
                est.set_reference(ids.repeat_interleave(8), ref_r)
                rr = r.clone()
                rr[i] = v
                out = est(RewardBatch(rr, ids))
                b.append(float(out.baselines[i]))
                betas.append(out.info["beta"])
            if betas[0] != betas[1] and abs(b[0] - b[1]) > 1e-9:
                found = True
                break
        if found:
            break
    assert found


def test_basis_beta_selection_does_not_reward_shrinking_the_active_set():
    # regression: the squared error used to be summed over the active set only, so the smallest
    # β (which pushes confident prompts past 1 − ε and out of the set) always won, with a value
    # error several times the grid's best. Truth p is known here: compare value MSEs.
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        n, m = 400, 16
        p = torch.rand(n, generator=gen, dtype=torch.float64)
        ids = torch.arange(n)
        ref = (torch.rand(n, m, generator=gen, dtype=torch.float64) < p[:, None]).double()
        r = (torch.rand(n, generator=gen, dtype=torch.float64) < p).double()

        def value_mse(**params):
            est = BASIS(online_prior=False, **params)
            est.set_reference(ids.repeat_interleave(m), ref.flatten())
            return float(((est(RewardBatch(r, ids)).baselines - p) ** 2).mean())

        best = min(value_mse(betas=(beta,)) for beta in DEFAULT_BETAS)
        for selection in ("crossfit", "batch"):
            assert value_mse(beta_selection=selection) <= 1.25 * best, (seed, selection)


@FAST
@given(batches(min_n=2), st.lists(batches(min_n=1, max_n=8), max_size=2))
def test_interleaved_group_members_give_the_same_result_as_contiguous_ones(b, history):
    r, ids = b
    order = sorted(range(len(r)), key=lambda i: (ids[i], i))  # contiguous, batch order kept within a group
    for name in ALL:  # krpo too: the order inside each group is the same
        inter = _run(name, r, ids, history)
        contig = _run(name, [r[i] for i in order], [ids[i] for i in order], history)
        assert torch.allclose(contig.advantages, inter.advantages[order], atol=1e-9), name
        assert torch.allclose(contig.baselines, inter.baselines[order], atol=1e-12), name


EDGE_BATCHES = [
    ([1.0], [0]),  # one singleton
    ([0.0, 1.0, 0.5], [0, 1, 2]),  # singletons only
    ([1.0, 1.0, 1.0], [4, 4, 4]),  # one all-equal group
    ([0.0, 0.0, 0.0, 0.0], [1, 1, 2, 2]),  # everything zero
    ([0.0, 0.0, 1.0, 1.0, 0.3], [1, 1, 2, 2, 3]),  # all-equal groups and a singleton
]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("r, ids", EDGE_BATCHES)
def test_singletons_and_all_equal_groups_give_finite_advantages(name, r, ids):
    for hist in ((), [(r, ids)]):
        out = _run(name, r, ids, hist)
        assert bool(torch.isfinite(out.advantages).all()) and bool(torch.isfinite(out.baselines).all()), name


@FAST
@given(batches(min_n=2))
def test_grpo_dr_grpo_and_rloo_advantages_sum_to_zero_in_every_group_of_two_or_more(b):
    r, ids = b
    for name in ("grpo", "dr_grpo", "rloo"):
        adv = get(name)(B(r, ids)).advantages
        for members in groups_of(ids).values():
            if len(members) > 1:
                assert abs(float(adv[members].sum())) < 1e-9, name


@FAST
@given(st.integers(2, 12), st.floats(0, 1), batches(max_n=6))
def test_grpo_gives_exactly_zero_to_an_all_equal_group(n, value, other):
    r_other, ids_other = other
    out = get("grpo")(B([value] * n + r_other, [50] * n + ids_other))
    assert out.advantages[:n].tolist() == [0.0] * n
    assert out.info["zero_std_frac"] > 0


@FAST
@given(st.integers(2, 12), st.floats(0, 1))
def test_reinforce_plus_plus_gives_exactly_zero_when_every_reward_is_equal(n, value):
    for name in ("reinforce_plus_plus", "reinforce_plus_plus_baseline"):
        assert get(name)(B([value] * n, list(range(n)))).advantages.tolist() == [0.0] * n, name


def test_singleton_groups_follow_verl_conventions():
    r, ids = [0.3, 1.0, 0.0], [9, 4, 4]
    assert float(get("grpo")(B(r, ids)).advantages[0]) == pytest.approx(0.3 / (1 + 1e-6), abs=1e-15)  # mean 0, std 1
    assert float(get("dr_grpo")(B(r, ids)).advantages[0]) == 0.3
    assert float(get("rloo")(B(r, ids)).baselines[0]) == 0.0
    assert float(get("reinforce_plus_plus_baseline")(B(r, ids)).baselines[0]) == 0.0
    assert float(get("krpo_invariant")(B(r, ids)).baselines[0]) == 0.0  # the prior x0
    assert get("reinforce_plus_plus")(B([0.7], [0])).advantages.tolist() == [0.0]  # batch of one


@FAST
@given(batches(min_n=1), st.sampled_from([0.0, 0.5]), st.integers(0, 50))
def test_kae_with_empty_history_equals_its_current_step_leave_one_out_baseline(b, empty, step):
    r, ids = b
    out = get("kae", empty_baseline=empty)(B(r, ids, step=step))
    rloo = get("rloo")(B(r, ids)).baselines
    sizes = {p: len(m) for p, m in groups_of(ids).items()}
    for i, p in enumerate(ids):
        expect = float(rloo[i]) if sizes[p] >= 2 else empty
        assert float(out.baselines[i]) == pytest.approx(expect, abs=1e-12)


# --- KAE specifics -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", KERNELS)
def test_kae_kernel_weights_follow_their_formulas(kernel):
    us = [-4.0, -3.5, -1.0, -0.6, -0.25, 0.0, 0.25, 0.5, 0.99, 1.0, 1.5, 2.0, 3.0, 3.01, 10.0]
    got = kernel_weights(torch.tensor(us, dtype=torch.float64), kernel, rho=0.3, cutoff=3.0).tolist()
    expect = [ref_kernel(u, kernel, rho=0.3, cutoff=3.0) for u in us]
    assert got == pytest.approx(expect, abs=1e-15)
    hand = {"triangular": [1.0, 0.5, 0.0], "epanechnikov": [0.75, 0.5625, 0.0], "gaussian": [1.0, math.exp(-0.125), math.exp(-0.5)], "exponential": [1.0, 0.3**0.5, 0.3]}
    assert kernel_weights(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), kernel, rho=0.3).tolist() == pytest.approx(hand[kernel])


def test_kae_window_grows_as_h_times_step_but_a_fixed_width_does_not():
    assert [KAE(h=0.2).window(t) for t in (1, 10, 100, 1000)] == [3.0, 3.0, 20.0, 200.0]  # default floor min_width = 3
    assert [KAE(h=0.2, min_width=2.0).window(t) for t in (1, 10, 100, 1000)] == [2.0, 2.0, 20.0, 200.0]
    assert [KAE(width=4.0).window(t) for t in (1, 100, 1000)] == [4.0, 4.0, 4.0]
    # a reward 10 steps back: outside the window at step 20 (h·t = 4), inside at step 100 (h·t = 20)
    for t, h_base, fixed_base in ((20, 0.0, 0.0), (100, 1.0, 0.0)):
        grow, fixed = KAE(h=0.2), KAE(width=4.0)
        for est in (grow, fixed):
            est(B([1.0], [5], step=t - 10))
        assert float(grow(B([0.0], [5], step=t)).baselines[0]) == h_base
        assert float(fixed(B([0.0], [5], step=t)).baselines[0]) == fixed_base


def test_kae_memory_stays_bounded_by_the_kernel_window():
    gen = torch.Generator().manual_seed(0)
    for kae in (KAE(h=0.1), KAE(width=4.0), KAE(width=3.0, kernel="gaussian", cutoff=2.0)):
        sizes = []
        for t in range(200):
            ids = torch.arange(8) + 8 * (t // 5)  # 8 prompts per step, each reused for 5 steps
            kae(RewardBatch((torch.rand(16, generator=gen) < 0.5).double(), ids.repeat(2), step=t))
            # one (prompt, step) entry per prompt and step still weighing at step t
            reach = kae.window(t) * (kae.cutoff if kae.kernel == "gaussian" else 1.0)
            assert kae.history_size <= 8 * (math.floor(reach) + 1), (t, kae.history_size)
            sizes.append(kae.history_size)
        if kae.width is not None:
            assert max(sizes[100:]) == max(sizes[20:100])  # constant memory, not growing with t
        else:
            assert kae.history_size <= 8 * 21  # window 19.9 at t = 199: 1,600 observations, ~160 entries


# --- BASIS specifics ----------------------------------------------------------------------------------------
@FAST
@given(st.lists(st.floats(0, 1), min_size=1, max_size=10))
def test_basis_soft_value_lies_between_mean_and_max_and_falls_with_beta(samples):
    s = torch.tensor([samples], dtype=torch.float64)
    v = torch.ones_like(s, dtype=torch.bool)
    vals = [float(soft_value(s, v, beta)) for beta in DEFAULT_BETAS]
    mean, top = sum(samples) / len(samples), max(samples)
    assert all(mean - 1e-12 <= x <= top + 1e-12 for x in vals)
    assert all(a >= b - 1e-12 for a, b in zip(vals, vals[1:]))  # larger β -> closer to the mean
    assert vals == pytest.approx([ref_soft_value(samples, beta) for beta in DEFAULT_BETAS], abs=1e-12)
    assert vals[-1] == pytest.approx(mean, abs=1e-3) and float(soft_value(s, v, 1e-3)) == pytest.approx(top, abs=3e-3)


def test_basis_inactive_prompts_get_their_prior_by_default_and_zero_with_the_zero_fallback():
    est = BASIS(online_prior=False, fallback="zero")
    # prompt 1: μ = 1 for every β; prompt 2: μ = 0; prompt 3: μ strictly inside (0, 1)
    est.set_reference(torch.tensor([1, 1, 2, 2, 3, 3]), torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    out = est(B([1.0, 1.0, 0.0], [1, 2, 3]))
    assert out.baselines[:2].tolist() == [0.0, 0.0] and out.advantages[:2].tolist() == [1.0, 1.0]
    assert out.info["active_frac"] == pytest.approx(1 / 3)
    est = BASIS()  # default fallback="prior": the prior itself
    est.set_reference(torch.tensor([1, 1, 2, 2]), torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    out = est(B([1.0, 1.0], [1, 2]))
    assert out.baselines.tolist() == pytest.approx([1.0, 0.0], abs=1e-12) and out.advantages.tolist() == pytest.approx([0.0, 1.0], abs=1e-12)


def test_basis_online_prior_learns_from_observed_rollouts_and_update_false_does_not():
    est = BASIS()
    est(B([1.0, 0.0], [3, 4]), update=False)
    assert est.state_dict()["ids"].numel() == 0  # nothing remembered
    est(B([1.0, 0.0], [3, 4]))
    mu = est.priors(torch.tensor([3, 4, 5]))  # (B, 3): one sample each; prompt 5 unseen -> default 0.5
    assert mu[:, 0].tolist() == pytest.approx([1.0] * len(DEFAULT_BETAS)) and mu[:, 1].abs().max() < 1e-12
    assert mu[:, 2].tolist() == [0.5] * len(DEFAULT_BETAS)


def test_basis_online_prior_modes_decide_which_rollouts_join_the_prior():
    ref_ids, ref_r = torch.tensor([1, 1]), torch.tensor([1.0, 0.0], dtype=torch.float64)  # prompt 1: reference mean 0.5
    batch = B([1.0, 1.0], [1, 2])  # prompt 2 has no reference samples
    means = {}
    for mode in ("missing", "never", "always", True, False):
        est = BASIS(online_prior=mode, betas=(1000.0,))  # β → ∞: μ is the plain sample mean
        est.set_reference(ref_ids, ref_r)
        est(batch)
        means[mode] = [round(float(m), 3) for m in est.priors(torch.tensor([1, 2]))[0]]
    assert means["missing"] == [0.5, 1.0]  # the offline prior kept; a running prior where it is missing
    assert means["never"] == means[False] == [0.5, 0.5]  # prompt 2 stays at default_prior
    assert means["always"] == means[True] == [0.667, 1.0]
    assert BASIS().online_prior == "missing" and BASIS().fallback == "prior"
    with pytest.raises(ValueError, match="online_prior: choose one of 'missing', 'never', 'always'"):
        BASIS(online_prior="sometimes")


def test_basis_state_saved_before_reference_flags_existed_still_loads():
    est = BASIS()
    est(B([1.0, 0.0], [3, 4]))
    old = {k: v for k, v in est.state_dict().items() if k != "ref"}  # the format of earlier runs
    other = BASIS()
    other.load_state_dict(old)
    other(B([1.0], [3]))  # prompt 3 had no reference samples, so it keeps learning
    assert other.state_dict()["seen"].tolist() == [2, 1]


def test_estimators_with_an_offline_stage_say_so():
    wants = {n for n in ALL if getattr(get(n), "wants_reference", False)}
    assert wants == {"basis", "blend"} and all(hasattr(get(n), "set_reference") for n in wants)


# --- grouping: counting (row-number ids) and sorting (hashed ids) give the same groups ----------------------
def _unique_groups(ids):
    """Reference grouping: sorted distinct ids, each rollout's rank among them, and the counts."""
    distinct = sorted(set(ids))
    rank = {p: k for k, p in enumerate(distinct)}
    return [rank[p] for p in ids], distinct, [ids.count(p) for p in distinct]


@FAST
@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.sampled_from([0, 2**40, 2**61]))
def test_group_by_counting_and_sorting_paths_give_the_same_groups(ids, offset):
    # offset 0 takes the counting path (small ids, gaps allowed); large offsets force torch.unique
    shifted = [p + offset for p in ids]
    g = estimators.group_by(torch.tensor(shifted))
    index, distinct, counts = _unique_groups(shifted)
    assert (g.index.tolist(), g.ids.tolist(), g.counts.tolist()) == (index, distinct, counts)


def test_group_by_accepts_any_integer_dtype_and_returns_long_indices():
    for dtype in (torch.int32, torch.int16, torch.uint8, torch.long):
        g = estimators.group_by(torch.tensor([3, 1, 3, 0], dtype=dtype))
        assert g.index.dtype == g.ids.dtype == g.counts.dtype == torch.long
        assert g.index.tolist() == [2, 1, 2, 0]


def test_positions_in_group_count_earlier_members_of_the_same_prompt():
    ids = [7, 3, 7, 7, 3, 9, 7]
    expect = [sum(1 for j in range(i) if ids[j] == ids[i]) for i in range(len(ids))]
    for offset in (0, 2**50):
        assert positions_in_group(estimators.group_by(torch.tensor(ids) + offset)).tolist() == expect


HASH = 0x5DEECE66D  # odd multiplier: a bijection on 62-bit ids, as the trainer's hashed prompt ids


@FAST
@given(batches(min_n=1), st.lists(batches(min_n=1, max_n=8), max_size=2))
def test_every_estimator_gives_the_same_numbers_for_row_number_and_hashed_ids(b, history):
    r, ids = b
    hashed = lambda xs: [(p * HASH + 12345) % 2**62 for p in xs]  # noqa: E731
    for name in ALL:
        params = {"beta_selection": "batch"} if name == "basis" else {}  # crossfit folds hash the id itself
        dense = make(name, **params)
        sparse = make(name, **params)
        if name == "basis":  # the same reference samples, under the hashed ids
            sparse = BASIS(beta_selection="batch")
            sparse.set_reference(torch.tensor(hashed(REF_IDS)), torch.tensor(REF_R, dtype=torch.float64))
        for t, (hr, hids) in enumerate(history):
            dense(B(hr, hids, step=t))
            sparse(B(hr, hashed(hids), step=t))
        a = dense(B(r, ids, step=len(history)))
        c = sparse(B(r, hashed(ids), step=len(history)))
        assert torch.equal(a.advantages, c.advantages) and torch.equal(a.baselines, c.baselines), name


def test_finite_check_passes_finite_values_whose_sum_overflows_and_names_a_bad_index():
    big = torch.tensor([3e38, 3e38, -1.0], dtype=torch.float32)  # the sum is inf, every value finite
    assert finite_or_raise("x", big) is big
    with pytest.raises(FloatingPointError, match="index 2"):
        finite_or_raise("x", torch.tensor([0.0, 1.0, float("nan")]))


@pytest.mark.parametrize("ids", [[0, 1, 2] * 4, [5, 5, 8, 5, 8, 9, 9, 9, 9]], ids=["equal groups", "unequal groups"])
def test_krpo_matches_the_reference_loop_with_equal_and_unequal_interleaved_groups(ids):
    r = [float((i * 7) % 3 == 0) for i in range(len(ids))]
    out = get("krpo")(B(r, ids))
    adv, base = ref_krpo(r, ids)
    assert _close(out.advantages, adv, atol=1e-9) and _close(out.baselines, base, atol=1e-12)


# --- KRPO specifics ------------------------------------------------------------------------------------------
def test_krpo_all_equal_group_still_gets_nonzero_advantages():
    out = get("krpo")(B([1.0] * 4, [0] * 4))
    # z = 1 always: 1 − x_k = Π_{j≤k}(1 − K_j), so A_k = Π(1 − K_j)/√P_k, all positive
    kf, keep, expect = RefKalmanFilter(), 1.0, []
    for _ in range(4):
        pm = kf.p + kf.q
        keep *= 1 - pm / (pm + kf.r)
        _, p = kf.update(1.0)
        expect.append(keep / (math.sqrt(p) + 1e-8))
    assert _close(out.advantages, expect, atol=1e-9)
    assert bool((out.advantages > 0.04).all())  # ≈ [0.0995, 0.0705, 0.0575, 0.0497]
    assert get("grpo")(B([1.0] * 4, [0] * 4)).advantages.tolist() == [0.0] * 4  # where GRPO gives 0


def test_krpo_advantages_are_about_ten_times_grpo_scale_on_typical_groups():
    # √P_k ≈ √(R/k) = 0.1/√k is the uncertainty of the mean, not the reward spread (≈ 0.5)
    gen = torch.Generator().manual_seed(0)
    r = (torch.rand(8 * 2000, generator=gen) < 0.5).double()
    ids = torch.arange(2000).repeat_interleave(8)
    krpo, grpo = get("krpo")(RewardBatch(r, ids)).advantages, get("grpo")(RewardBatch(r, ids)).advantages
    ratio = float(krpo.std() / grpo.std())
    assert 7 < ratio < 14, ratio


@pytest.mark.parametrize("matrix_max", [64, 0], ids=["coefficient matrix", "position by position"])
def test_krpo_matrix_and_position_by_position_filters_agree_with_the_reference(monkeypatch, matrix_max):
    from lab.estimators import kalman

    monkeypatch.setattr(kalman, "MATRIX_MAX_GROUP", matrix_max)
    gen = torch.Generator().manual_seed(3)
    ids = torch.arange(50).repeat(6)[torch.randperm(300, generator=gen)]  # equal groups of 6, interleaved
    r = (torch.rand(300, generator=gen) < 0.4).double()
    out = get("krpo")(RewardBatch(r, ids))
    adv, base = ref_krpo(r.tolist(), ids.tolist())
    assert _close(out.advantages, adv, atol=1e-9) and _close(out.baselines, base, atol=1e-12)


def test_krpo_handles_one_huge_group_beside_small_ones_without_a_quadratic_matrix():
    # 20k rollouts of one prompt: a (G x G) matrix would be 3.2 GB of float64; the filter runs per position
    n_big = 20_000
    ids = torch.cat([torch.zeros(n_big, dtype=torch.long), torch.arange(1, 301).repeat(3)])
    r = (torch.arange(ids.numel()) % 3 == 0).double()
    out = get("krpo")(RewardBatch(r, ids))
    adv, base = ref_krpo(r.tolist(), ids.tolist())
    assert _close(out.advantages, adv, atol=1e-7, rtol=1e-9) and _close(out.baselines, base, atol=1e-12)


def test_krpo_invariant_is_order_invariant_where_krpo_is_not():
    order, rev = [1.0, 0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0, 1.0]
    a, p = get("krpo_invariant")(B(order, [0] * 5)), get("krpo_invariant")(B(rev, [0] * 5))
    # the same reward gets the same advantage wherever it sits
    assert {round(x, 9) for x in a.advantages.tolist()} == {round(x, 9) for x in p.advantages.tolist()}
    a, p = get("krpo")(B(order, [0] * 5)), get("krpo")(B(rev, [0] * 5))
    assert len({round(x, 6) for x in a.advantages.tolist()}) > 2  # KRPO: equal rewards, different advantages


# --- state, dtype, device ----------------------------------------------------------------------------------
def _stateful_batches(name, n_steps, seed):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(n_steps):
        if name == "basis":  # single rollouts over a pool of prompts, some of them repeated across steps
            ids = torch.randperm(12, generator=gen)[:8]
        else:  # groups of 2, prompts reused
            ids = torch.arange(6).repeat(2) + 3 * (t // 3)
        out.append(RewardBatch((torch.rand(ids.numel(), generator=gen) < 0.5).double(), ids, step=t))
    return out


@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("via_file", [False, True], ids=["state_dict", "torch.save+load"])
def test_state_dict_round_trip_reproduces_the_next_steps_exactly(name, via_file):
    steps = _stateful_batches(name, 8, seed=1)
    est = make(name)
    for batch in steps[:5]:
        est(batch)
    state = est.state_dict()
    if via_file:
        buf = io.BytesIO()
        torch.save(state, buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)
    fresh = get(name)  # no reference samples: everything must come from the state
    fresh.load_state_dict(state)
    for batch in steps[5:]:
        a, b = est(batch), fresh(batch)
        assert torch.equal(a.advantages, b.advantages) and torch.equal(a.baselines, b.baselines)
        assert a.info == b.info


@pytest.mark.parametrize("name", STATEFUL)
def test_update_false_computes_without_remembering(name):
    est = make(name)
    est(B([1.0, 0.0], [1, 2], step=0))
    before = est.state_dict()
    est(B([0.0, 1.0], [1, 3], step=1), update=False)
    after = est.state_dict()
    assert before.keys() == after.keys()
    for k in before:  # (BASIS's bank marks empty slots with NaN)
        if isinstance(before[k], torch.Tensor):
            assert before[k].shape == after[k].shape and torch.allclose(before[k], after[k], rtol=0, atol=0, equal_nan=True), k
        else:
            assert before[k] == after[k], k


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_are_preserved(name, dtype):
    r, ids = [1.0, 0.0, 1.0, 1.0], [0, 0, 1, 2]
    est = make(name)
    est(B(r, ids, step=0, dtype=dtype))
    out = est(B(r, ids, step=1, dtype=dtype))
    for t in (out.advantages, out.baselines):
        assert t.dtype == dtype and t.device.type == "cpu" and t.shape == (4,)
    assert all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in out.info.items())
    ref = _run(name, r, ids, [(r, ids)])  # float64 run of the same steps
    assert torch.allclose(out.advantages.double(), ref.advantages, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_keeps_device_and_dtype_and_matches_cpu(name, dtype):
    r, ids = [1.0, 0.0, 1.0, 1.0, 0.0], [0, 0, 1, 1, 2]
    cpu, gpu = make(name), make(name)
    outs = []
    for t in range(2):
        outs.append((
            cpu(B(r, ids, step=t, dtype=dtype)),
            gpu(RewardBatch(torch.tensor(r, dtype=dtype, device="cuda"), torch.tensor(ids, device="cuda"), step=t)),
        ))
    for c, g in outs:
        assert g.advantages.device.type == "cuda" and g.baselines.device.type == "cuda"
        assert g.advantages.dtype == dtype and g.baselines.dtype == dtype
        assert torch.allclose(g.advantages.cpu(), c.advantages, atol=1e-5)
        assert torch.allclose(g.baselines.cpu(), c.baselines, atol=1e-6)


# --- std-normalisation options: rewards without spread are not blown up ---------------------------------------
def test_kae_and_basis_std_options_leave_rewards_without_spread_unscaled():
    # regression: std + 1e-6 with std = 0 multiplied r − b (not 0 for these estimators) by a million
    out = get("kae", std_norm="group")(B([1.0, 0.5], [1, 2], step=2))  # singletons, no history: b = 0
    assert _close(out.advantages, [1.0 / (1 + 1e-6), 0.5 / (1 + 1e-6)], atol=1e-12)
    kae = get("kae", std_norm="group", width=2.0)
    kae(B([0.0, 0.0], [1, 1], step=1))
    out = kae(B([1.0, 1.0, 1.0, 0.0], [1, 1, 2, 2], step=2))
    # group 1 all equal: b = (0.5·0 + 1·1)/(0.5·2 + 1) = 0.5, unscaled; group 2 spread: divided by std + 1e-6
    s = math.sqrt(0.5)
    assert _close(out.advantages, [0.5 / (1 + 1e-6), 0.5 / (1 + 1e-6), 1.0 / (s + 1e-6), -1.0 / (s + 1e-6)], atol=1e-12)
    kae = get("kae", std_norm="batch", width=2.0)
    kae(B([0.0, 0.0], [1, 1], step=1))
    assert _close(kae(B([1.0, 1.0], [1, 1], step=2)).advantages, [0.5 / (1 + 1e-6)] * 2, atol=1e-12)
    est = make("basis", norm_by_std=True)
    plain = make("basis")
    for r in ([0.0, 0.0, 0.0], [1.0, 0.0, 1.0]):
        a, p = est(B(r, [1, 2, 3]), update=False), plain(B(r, [1, 2, 3]), update=False)
        std = torch.tensor(r, dtype=torch.float64).std()
        scale = (float(std) if std > 0 else 1.0) + 1e-6
        assert torch.allclose(a.advantages, p.advantages / scale, atol=1e-12) and a.advantages.abs().max() <= 2


# --- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rewards, ids, match",
    [
        ([1.0, float("nan")], [0, 0], r"rewards: non-finite value nan at index 1"),
        ([float("inf"), 0.0], [0, 0], r"rewards: non-finite value inf at index 0"),
        ([0.0, 1.0, float("-inf")], [0, 0, 1], r"rewards: non-finite value -inf at index 2"),
        ([1.0, 0.0], [0], r"rewards and prompt_ids have different lengths \(2 vs 1\)"),
        ([], [], r"empty batch"),
        ([1.0, 0.0, 1.0], [0, -3, 1], r"prompt_ids: negative value -3 at index 1"),
        ([1.0, 0.0], [0.0, 1.5], r"prompt_ids: non-integer value 1.5 at index 1"),
    ],
)
def test_bad_input_raises_value_error_naming_problem_and_index(rewards, ids, match):
    with pytest.raises(ValueError, match=match):
        RewardBatch(torch.tensor(rewards, dtype=torch.float64), torch.tensor(ids))
    with pytest.raises(ValueError, match=match):  # plain lists go through the same checks
        RewardBatch(rewards, ids)


def test_bad_input_types_and_steps_are_named():
    with pytest.raises(ValueError, match=r"prompt_ids: expected an integer \(long\) tensor, got torch.float32"):
        RewardBatch(torch.tensor([1.0]), torch.tensor([2.0]))
    with pytest.raises(ValueError, match=r"step: expected a non-negative int, got -1"):
        RewardBatch([1.0], [0], step=-1)
    with pytest.raises(ValueError, match=r"expected a RewardBatch, got tuple"):
        get("grpo")((torch.tensor([1.0]), torch.tensor([0])))
    kae = get("kae")
    kae(B([1.0], [0], step=5))
    with pytest.raises(ValueError, match=r"step: kae got step 4 after step 5"):
        kae(B([1.0], [0], step=4))


def test_unknown_estimator_lists_every_valid_name():
    with pytest.raises(ValueError, match=r"unknown estimator 'grpox'; available: ") as e:
        get("grpox")
    listed = str(e.value).split("available: ")[1].split(", ")
    assert listed == ALL and {"grpo", "rloo", "krpo", "kae", "basis"} <= set(listed)


@pytest.mark.parametrize("name, bad, valid", [("grpo", "epsilon", "eps, norm_by_std"), ("kae", "bandwith", "kernel, h, width")])
def test_unknown_parameter_is_named(name, bad, valid):
    with pytest.raises(ValueError, match=rf"estimator '{name}' has no parameter '{bad}'; valid parameters: {valid}"):
        get(name, **{bad: 3})


def test_registering_a_duplicate_name_fails_and_keeps_the_original():
    original = estimators.ESTIMATORS.get("grpo")
    with pytest.raises(ValueError, match=r"estimator 'grpo' is already registered"):
        estimators.register("grpo")(lambda rewards, prompt_ids: None)
    assert estimators.ESTIMATORS.get("grpo") is original


# --- step speed: batched and memoised paths give the numbers of the plain ones -------------------------
def test_basis_soft_values_for_the_whole_grid_equal_one_soft_value_per_beta():
    from lab.estimators.basis import soft_values

    g = torch.Generator().manual_seed(3)
    samples = (torch.rand(40, 9, generator=g) < 0.4).double()
    valid = torch.rand(40, 9, generator=g) < 0.6
    valid[:, 0] = True
    grid = soft_values(samples, valid, DEFAULT_BETAS)
    assert torch.equal(grid, torch.stack([soft_value(samples, valid, b) for b in DEFAULT_BETAS]))


def test_basis_sample_bank_keeps_the_newest_samples_per_prompt_across_growth_and_resume():
    """The bank (grown by doubling, rows in arrival order) against a dict of per-prompt lists."""
    m = 3
    est, ref = BASIS(max_samples=m, online_prior="always"), defaultdict(list)
    g = torch.Generator().manual_seed(5)
    est.set_reference(torch.tensor([9, 9, 4]), torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    for pid, r in ((9, 1.0), (9, 0.0), (4, 1.0)):
        ref[pid].append(r)
    outs = []
    for step in range(90):  # ~8 new prompts a step: the store grows past 64, 128, 256, 512 rows
        ids = torch.randint(0, 5 + 8 * step, (12,), generator=g) * 7919 % 100003
        r = (torch.rand(12, generator=g) < 0.5).double()
        if step == 45:  # resume: a fresh estimator from the state dict continues identically
            fresh = BASIS(max_samples=m, online_prior="always")
            fresh.load_state_dict(est.state_dict())
            est = fresh
        outs.append(est(RewardBatch(r, ids, step=step)).baselines)
        for pid, x in zip(ids.tolist(), r.tolist()):
            ref[pid].append(x)
    state = est.state_dict()
    assert state["ids"].tolist() == sorted(ref)
    for row, pid in enumerate(state["ids"].tolist()):
        kept = sorted(v for v in state["bank"][row].tolist() if not math.isnan(v))
        assert kept == sorted(ref[pid][-m:]), pid  # the newest m samples, wherever the ring put them
        assert int(state["seen"][row]) == len(ref[pid])
    assert state["ref"].tolist() == [pid in (4, 9) for pid in state["ids"].tolist()]
    # the priors the estimator uses are those of the reference lists
    probe = torch.tensor(sorted(ref)[:20])
    mu = est.priors(probe)
    for j, pid in enumerate(probe.tolist()):
        vals = torch.tensor(ref[pid][-m:], dtype=torch.float64)[None]
        expect = torch.stack([soft_value(vals, torch.ones_like(vals, dtype=torch.bool), b) for b in DEFAULT_BETAS])[:, 0]
        assert torch.allclose(mu[:, j], expect, rtol=0, atol=1e-12)


def test_group_by_memo_returns_the_same_groups_and_recomputes_after_an_in_place_change():
    from lab.estimators.base import _group_by

    ids = torch.tensor([11, 4, 11, 2**40, 4])
    with estimators.shared_grouping():
        a = estimators.group_by(ids)
        assert estimators.group_by(ids) is a  # the step's estimators share one grouping
        ids[3] = 4  # in place: the memo must not serve the old grouping
        b = estimators.group_by(ids)
        fresh = _group_by(ids)
        assert b is not a and b.ids.tolist() == fresh.ids.tolist() == [4, 11] and b.counts.tolist() == [3, 2]
        assert b.index.tolist() == fresh.index.tolist()
        assert estimators.group_by(ids.clone()).ids.tolist() == [4, 11]  # another tensor, same values: same answer
    assert estimators.group_by(ids) is not estimators.group_by(ids)  # outside the block nothing is remembered


def test_estimators_inside_shared_grouping_give_the_same_numbers_as_outside():
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(0, 2**40, (6,), generator=g).repeat_interleave(3)
    batches = [RewardBatch((torch.rand(18, generator=g) < 0.5).double(), ids, step=s) for s in range(3)]
    plain = {n: get(n) for n in ALL}
    shared = {n: get(n) for n in ALL}
    for b in batches:
        want = {n: e(b) for n, e in plain.items()}
        with estimators.shared_grouping():
            got = {n: e(b) for n, e in shared.items()}
        for n in ALL:
            assert torch.equal(want[n].advantages, got[n].advantages) and torch.equal(want[n].baselines, got[n].baselines), n
