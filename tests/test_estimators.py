"""Advantage estimators against hand-computed examples and plain-Python loop references,
plus the properties each one promises (permutation equivariance, leave-one-out, ...)."""

import io
import math
from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import estimators
from lab.estimators import RewardBatch, get
from lab.estimators.basis import BASIS, soft_value
from lab.estimators.kernel import KAE, kernel_weights

ALL = estimators.available()
STATEFUL = ["kae", "basis"]


# --- loop references written from the formulas in ../shared/methods.md ------------------------------
def groups_of(ids):
    g = defaultdict(list)
    for i, p in enumerate(ids):
        g[p].append(i)
    return g


def ref_grpo(r, ids, eps=1e-6, norm=True):
    adv, base = [0.0] * len(r), [0.0] * len(r)
    for members in groups_of(ids).values():
        vals = [r[i] for i in members]
        n = len(vals)
        mean = sum(vals) / n if n > 1 else 0.0
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 1.0
        for i in members:
            base[i] = mean
            adv[i] = (r[i] - mean) / (std + eps) if norm else r[i] - mean
    return adv, base


def ref_rloo(r, ids):
    adv, base = [0.0] * len(r), [0.0] * len(r)
    for members in groups_of(ids).values():
        s = sum(r[i] for i in members)
        for i in members:
            base[i] = (s - r[i]) / (len(members) - 1) if len(members) > 1 else 0.0
            adv[i] = r[i] - base[i]
    return adv, base


def ref_whiten(x, eps=1e-8):
    n = len(x)
    if n < 2:
        return [0.0] * n
    m = sum(x) / n
    var = sum((v - m) ** 2 for v in x) / (n - 1)
    return [(v - m) / math.sqrt(var + eps) for v in x]


def ref_krpo(r, ids, q=1e-5, rr=1e-2):
    adv, base = [0.0] * len(r), [0.0] * len(r)
    for members in groups_of(ids).values():
        x, p = 0.0, 1.0
        for i in members:  # rollout order
            pm = p + q
            k = pm / (pm + rr)
            x = x + k * (r[i] - x)
            p = (1 - k) * pm
            base[i] = x
            adv[i] = (r[i] - x) / (math.sqrt(p) + 1e-8)
    return adv, base


def ref_kae_baseline(history, r, ids, step, width, kernel="triangular"):
    """history: list of (prompt, step, reward); full memory, no pruning."""
    K = lambda u: float(kernel_weights(torch.tensor([u], dtype=torch.float64), kernel))
    base = []
    for i, p in enumerate(ids):
        num = den = 0.0
        for (hp, s, z) in history:
            if hp == p and s < step:
                w = K((step - s) / width)
                num += w * z
                den += w
        for j, pj in enumerate(ids):
            if pj == p and j != i:
                num += K(0.0) * r[j]
                den += K(0.0)
        base.append(num / den if den > 0 else 0.0)
    return base


def ref_basis_additive(r, ids, mu, eps=0.03):
    """Leave-one-out BLUE baseline at fixed priors mu (one per rollout), clipped to [0, 1]."""
    active = [eps < m < 1 - eps for m in mu]
    base = []
    for i in range(len(r)):
        if not active[i]:
            base.append(0.0)
            continue
        num = den = 0.0
        for j in range(len(r)):
            if j != i and active[j]:
                w = 1.0 / (mu[j] * (1 - mu[j]))
                num += w * (r[j] - mu[j])
                den += w
        b = mu[i] + (num / den if den > 0 else 0.0)
        base.append(min(max(b, 0.0), 1.0))
    return base


# --- strategies ------------------------------------------------------------------------------------
@st.composite
def batches(draw, min_n=1, max_n=24, binary=False):
    n = draw(st.integers(min_n, max_n))
    ids = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    if binary:
        r = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
    else:
        r = draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n))
    return r, ids


def B(r, ids, step=0, dtype=torch.float64):
    return RewardBatch(torch.tensor(r, dtype=dtype), torch.tensor(ids, dtype=torch.long), step=step)


# --- worked examples (the ones in the docstrings) ------------------------------------------------------
def test_grpo_worked_example():
    out = get("grpo")(B([1.0, 0.0, 1.0, 1.0], [0, 1, 1, 0]))
    assert out.baselines.tolist() == [1.0, 0.5, 0.5, 1.0]
    s = math.sqrt(0.5)  # unbiased std of {0, 1}
    assert torch.allclose(out.advantages, torch.tensor([0.0, -0.5 / (s + 1e-6), 0.5 / (s + 1e-6), 0.0], dtype=torch.float64))


def test_dr_grpo_and_rloo_worked_examples():
    assert torch.allclose(get("dr_grpo")(B([1.0, 0.0, 0.0], [3, 3, 3])).advantages, torch.tensor([2 / 3, -1 / 3, -1 / 3], dtype=torch.float64))
    out = get("rloo")(B([1.0, 0.0, 0.0], [0, 0, 0]))
    assert out.baselines.tolist() == [0.0, 0.5, 0.5] and out.advantages.tolist() == [1.0, -0.5, -0.5]


def test_reinforce_plus_plus_worked_examples():
    out = get("reinforce_plus_plus")(B([1.0, 0.0, 0.0, 1.0], [0, 0, 1, 1]))
    assert torch.allclose(out.advantages, torch.tensor([1, -1, -1, 1], dtype=torch.float64) * 0.5 / math.sqrt(1 / 3 + 1e-8))
    out = get("reinforce_plus_plus_baseline")(B([1.0, 0.0, 1.0, 1.0], [0, 0, 1, 1]))
    assert out.baselines.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert torch.allclose(out.advantages, torch.tensor([1, -1, 0, 0], dtype=torch.float64) * 0.5 / math.sqrt(0.5 / 3 + 1e-8))


def test_krpo_reproduces_the_reference_code_numbers_in_both_orders():
    a = get("krpo")(B([1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0])).advantages.tolist()
    assert [round(x, 3) for x in a] == [0.1, -7.048, -5.751, 10.015]
    assert abs(a[0] - 0.0995) < 5e-5
    b = get("krpo")(B([0.0, 1.0, 1.0, 0.0], [0, 0, 0, 0])).advantages.tolist()
    assert [round(x, 3) for x in b] == [0.0, 7.119, 5.809, -9.965]


def test_krpo_invariant_is_the_shrunk_leave_one_out_mean():
    out = get("krpo_invariant", normalize=False)(B([1.0, 0.0, 1.0], [0, 0, 0]))
    # b_i = (sum of others / R) / (1/P0 + 2/R) with R = 0.01, P0 = 1
    expect = [(s / 0.01) / (1 + 2 / 0.01) for s in (1.0, 2.0, 1.0)]
    assert torch.allclose(out.baselines, torch.tensor(expect, dtype=torch.float64))


def test_kae_worked_example():
    kae = get("kae", width=2.0)
    kae(B([1.0, 0.0], [7, 7], step=1))
    out = kae(B([1.0, 0.0], [7, 7], step=2))
    assert out.baselines.tolist() == [0.25, 0.75] and out.advantages.tolist() == [0.75, -0.75]


def test_basis_worked_example():
    est = BASIS(online_prior=False)
    est.set_reference(torch.tensor([1, 2, 3]), torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64))
    out = est(B([1.0, 0.0, 1.0], [1, 2, 3]))
    expect = ref_basis_additive([1.0, 0.0, 1.0], [1, 2, 3], [0.5, 0.2, 0.8])
    assert torch.allclose(out.baselines, torch.tensor(expect, dtype=torch.float64))
    assert [round(x, 3) for x in expect] == [0.5, 0.517, 0.873]


# --- vectorised == loop reference ------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(batches())
def test_group_family_matches_loop_references(b):
    r, ids = b
    for name, ref in [("grpo", lambda: ref_grpo(r, ids)), ("dr_grpo", lambda: ref_grpo(r, ids, norm=False)), ("rloo", lambda: ref_rloo(r, ids))]:
        out = get(name)(B(r, ids))
        adv, base = ref()
        assert torch.allclose(out.advantages, torch.tensor(adv, dtype=torch.float64), atol=1e-9), name
        assert torch.allclose(out.baselines, torch.tensor(base, dtype=torch.float64), atol=1e-12), name
    out = get("reinforce_plus_plus")(B(r, ids))
    assert torch.allclose(out.advantages, torch.tensor(ref_whiten(r), dtype=torch.float64), atol=1e-6)
    _, gbase = ref_grpo(r, ids)
    out = get("reinforce_plus_plus_baseline")(B(r, ids))
    assert torch.allclose(out.advantages, torch.tensor(ref_whiten([x - m for x, m in zip(r, gbase)]), dtype=torch.float64), atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(batches())
def test_krpo_matches_a_loop_kalman_filter_in_rollout_order(b):
    r, ids = b
    out = get("krpo")(B(r, ids))
    adv, base = ref_krpo(r, ids)
    assert torch.allclose(out.baselines, torch.tensor(base, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(out.advantages, torch.tensor(adv, dtype=torch.float64), rtol=1e-7, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.lists(batches(min_n=2, max_n=10, binary=True), min_size=1, max_size=4), st.sampled_from(["triangular", "epanechnikov", "gaussian", "exponential"]))
def test_kae_matches_a_full_memory_loop_reference_over_several_steps(steps, kernel):
    kae = KAE(width=3.0, kernel=kernel)
    history = []
    for t, (r, ids) in enumerate(steps):
        out = kae(B(r, ids, step=t))
        expect = ref_kae_baseline(history, r, ids, t, 3.0, kernel)
        assert torch.allclose(out.baselines, torch.tensor(expect, dtype=torch.float64), atol=1e-12)
        history += [(p, t, z) for p, z in zip(ids, r)]


# --- properties -------------------------------------------------------------------------------------------
def _run(name, r, ids, history=()):
    est = get(name)
    for t, (hr, hids) in enumerate(history):
        est(B(hr, hids, step=t))
    return est(B(r, ids, step=len(history)))


@settings(max_examples=40, deadline=None)
@given(batches(min_n=2), st.randoms(use_true_random=False), st.lists(batches(min_n=1, max_n=8), max_size=2))
def test_every_estimator_but_krpo_is_permutation_equivariant(b, rnd, history):
    r, ids = b
    perm = list(range(len(r)))
    rnd.shuffle(perm)
    for name in ALL:
        if name == "krpo":
            continue
        a = _run(name, r, ids, history)
        p = _run(name, [r[i] for i in perm], [ids[i] for i in perm], history)
        assert torch.allclose(p.advantages, a.advantages[perm], atol=1e-9), name
        assert torch.allclose(p.baselines, a.baselines[perm], atol=1e-12), name


def test_krpo_depends_on_rollout_order_but_krpo_invariant_does_not():
    a = get("krpo")(B([1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0]))
    p = get("krpo")(B([0.0, 1.0, 1.0, 0.0], [0, 0, 0, 0]))  # same multiset, another order
    assert not torch.allclose(p.advantages.sort().values, a.advantages.sort().values, atol=1e-3)
    a = get("krpo_invariant")(B([1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0]))
    p = get("krpo_invariant")(B([0.0, 1.0, 1.0, 0.0], [0, 0, 0, 0]))
    assert torch.allclose(p.advantages.sort().values, a.advantages.sort().values)


@settings(max_examples=40, deadline=None)
@given(batches(min_n=2, binary=True), st.data())
def test_own_reward_never_changes_own_baseline_for_leave_one_out_estimators(b, data):
    r, ids = b
    i = data.draw(st.integers(0, len(r) - 1))
    flipped = list(r)
    flipped[i] = 1.0 - r[i]
    history = [([0.0, 1.0, 1.0], [ids[0], ids[-1], ids[i]])]
    for name in ("rloo", "kae", "krpo_invariant", "basis"):
        for hist in ((), history):
            a = _run(name, r, ids, hist)
            f = _run(name, flipped, ids, hist)
            assert float(a.baselines[i]) == pytest.approx(float(f.baselines[i]), abs=1e-12), (name, hist)


def test_basis_own_reward_independence_with_distinct_priors_and_an_active_set():
    gen = torch.Generator().manual_seed(3)
    ids = torch.arange(40)
    ref_ids = ids.repeat_interleave(8)
    ref_r = (torch.rand(320, generator=gen) < torch.linspace(0.05, 0.95, 40).repeat_interleave(8)).double()
    r = (torch.rand(40, generator=gen) < 0.5).double()
    for i in range(0, 40, 7):
        outs = []
        for v in (0.0, 1.0):
            est = BASIS(online_prior=False)
            est.set_reference(ref_ids, ref_r)
            rr = r.clone()
            rr[i] = v
            outs.append(est(RewardBatch(rr, ids)))
        assert 0.2 < outs[0].info["active_frac"] < 1.0
        assert float(outs[0].baselines[i]) == pytest.approx(float(outs[1].baselines[i]), abs=1e-12)


def test_basis_batch_selection_lets_own_reward_reach_its_baseline_through_beta():
    # documented leak of beta_selection="batch": find a flip that changes beta and thus b_i
    gen = torch.Generator().manual_seed(0)
    ids = torch.arange(30)
    ref_r = (torch.rand(240, generator=gen) < torch.linspace(0.1, 0.9, 30).repeat_interleave(8)).double()
    changed = False
    for seed in range(20):
        g2 = torch.Generator().manual_seed(seed)
        r = (torch.rand(30, generator=g2) < 0.6).double()
        for i in range(30):
            b = []
            for v in (0.0, 1.0):
                est = BASIS(online_prior=False, beta_selection="batch")
                est.set_reference(ids.repeat_interleave(8), ref_r)
                rr = r.clone()
                rr[i] = v
                b.append(float(est(RewardBatch(rr, ids)).baselines[i]))
            changed |= b[0] != b[1]
        if changed:
            break
    assert changed


@settings(max_examples=40, deadline=None)
@given(batches(min_n=2), st.randoms(use_true_random=False))
def test_interleaved_group_members_give_the_same_result_as_contiguous_ones(b, rnd):
    r, ids = b
    order = sorted(range(len(r)), key=lambda i: (ids[i], i))  # contiguous, stable within a group
    for name in ALL:
        inter = _run(name, r, ids)
        contig = _run(name, [r[i] for i in order], [ids[i] for i in order])
        assert torch.allclose(contig.advantages, inter.advantages[order], atol=1e-9), name


@pytest.mark.parametrize("name", ALL)
def test_singletons_and_all_equal_groups_give_finite_advantages(name):
    for r, ids in (([1.0], [0]), ([0.0, 1.0, 0.5], [0, 1, 2]), ([1.0, 1.0, 1.0], [4, 4, 4]), ([0.0, 0.0, 1.0, 1.0], [1, 1, 2, 2])):
        out = _run(name, r, ids)
        assert bool(torch.isfinite(out.advantages).all()) and bool(torch.isfinite(out.baselines).all())


def test_group_advantages_sum_to_zero_and_all_equal_groups_get_exactly_zero():
    r, ids = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.3], [0, 0, 0, 0, 1, 1, 2]
    for name in ("grpo", "rloo", "dr_grpo"):
        adv = _run(name, r, ids).advantages
        assert abs(float(adv[:4].sum())) < 1e-12 and abs(float(adv[4:6].sum())) < 1e-12
    assert _run("grpo", r, ids).advantages[4:6].tolist() == [0.0, 0.0]
    # singleton: verl's convention, advantage = reward (mean 0, std 1)
    assert float(_run("grpo", r, ids).advantages[6]) == pytest.approx(0.3 / (1 + 1e-6))
    assert float(_run("rloo", r, ids).advantages[6]) == pytest.approx(0.3)


def test_krpo_all_equal_group_still_gets_nonzero_advantages_at_about_ten_times_grpo_scale():
    out = get("krpo")(B([1.0, 1.0, 1.0, 1.0], [0, 0, 0, 0]))
    assert bool((out.advantages != 0).any())
    r = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    ratio = get("krpo")(B(r, [0] * 8)).advantages.abs().mean() / get("grpo")(B(r, [0] * 8)).advantages.abs().mean()
    assert 4 < float(ratio) < 25


@settings(max_examples=40, deadline=None)
@given(batches(min_n=1))
def test_kae_with_empty_history_equals_its_current_step_leave_one_out_baseline(b):
    r, ids = b
    out = get("kae")(B(r, ids, step=5))
    _, base = ref_rloo(r, ids)  # rloo's leave-one-out mean; singletons -> empty_baseline 0
    assert torch.allclose(out.baselines, torch.tensor(base, dtype=torch.float64), atol=1e-12)


def test_kae_window_grows_with_step_or_stays_fixed():
    assert KAE(h=0.2).window(100) == 20.0 and KAE(h=0.2).window(1) == 2.0  # floor min_width
    assert KAE(width=3.0).window(100) == 3.0
    for k in ("triangular", "epanechnikov"):
        assert float(kernel_weights(torch.tensor(1.0), k)) == 0.0
    assert float(kernel_weights(torch.tensor(0.0), "epanechnikov")) == 0.75
    assert float(kernel_weights(torch.tensor(2.0), "exponential", rho=0.5)) == 0.25
    assert float(kernel_weights(torch.tensor(1.0), "gaussian")) == pytest.approx(math.exp(-0.5))


def test_kae_memory_holds_only_entries_inside_the_kernel_window():
    gen = torch.Generator().manual_seed(0)
    for kae in (KAE(h=0.1), KAE(width=4.0)):
        for t in range(200):
            ids = torch.arange(8) + 8 * (t // 5)  # 8 prompts per step, each reused 5 steps
            kae(RewardBatch((torch.rand(16, generator=gen) < 0.5).double(), ids.repeat(2), step=t))
            # one (prompt, step) entry per prompt and step still inside the window of step t+1
            assert kae.history_size <= 8 * math.ceil(kae.window(t + 1)), (t, kae.history_size)
        if kae.width is not None:
            assert kae.history_size <= 8 * 4  # fixed width: constant memory, not growing with t


def test_basis_soft_value_lies_between_mean_and_max():
    s = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    v = torch.ones_like(s, dtype=torch.bool)
    vals = [float(soft_value(s, v, beta)) for beta in (0.01, 0.1, 1.0, 10.0, 1000.0)]
    assert all(0.6 - 1e-3 <= x <= 1.0 + 1e-12 for x in vals)
    assert vals == sorted(vals, reverse=True)  # lower temperature -> closer to the max


def test_basis_inactive_prompts_fall_back_to_a_zero_baseline():
    est = BASIS(online_prior=False)
    est.set_reference(torch.tensor([1, 1, 2, 2, 3, 3]), torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    out = est(B([1.0, 1.0, 0.0], [1, 2, 3]))
    assert out.baselines[:2].tolist() == [0.0, 0.0] and out.advantages[:2].tolist() == [1.0, 1.0]
    est = BASIS(online_prior=False, fallback="prior")
    est.set_reference(torch.tensor([1, 1]), torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert float(est(B([1.0], [1])).baselines[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("name", STATEFUL)
def test_state_dict_round_trip_reproduces_the_next_step_exactly(name):
    gen = torch.Generator().manual_seed(1)
    est = get(name)
    for t in range(4):
        ids = torch.arange(6).repeat(2)
        est(RewardBatch((torch.rand(12, generator=gen) < 0.5).double(), ids, step=t))
    buf = io.BytesIO()
    torch.save(est.state_dict(), buf)
    buf.seek(0)
    fresh = get(name)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    nxt = RewardBatch((torch.rand(12, generator=gen) < 0.5).double(), torch.arange(6).repeat(2), step=4)
    a, b = est(nxt), fresh(nxt)
    assert torch.equal(a.advantages, b.advantages) and torch.equal(a.baselines, b.baselines)


def test_update_false_computes_without_remembering():
    kae = get("kae")
    kae(B([1.0, 0.0], [1, 1], step=0), update=False)
    assert kae.history_size == 0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(name, dtype):
    out = _run(name, [1.0, 0.0, 1.0], [0, 0, 1]) if dtype == torch.float64 else get(name)(B([1.0, 0.0, 1.0], [0, 0, 1], dtype=dtype))
    assert out.advantages.dtype == dtype and out.baselines.dtype == dtype


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name):
    r, ids = [1.0, 0.0, 1.0, 1.0, 0.0], [0, 0, 1, 1, 2]
    cpu = get(name)(B(r, ids))
    gpu = get(name)(RewardBatch(torch.tensor(r, dtype=torch.float64, device="cuda"), torch.tensor(ids, device="cuda")))
    assert gpu.advantages.device.type == "cuda"
    assert torch.allclose(gpu.advantages.cpu(), cpu.advantages, atol=1e-9)


# --- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rewards, ids, match",
    [
        ([1.0, float("nan")], [0, 0], "rewards: non-finite value nan at index 1"),
        ([float("inf"), 0.0], [0, 0], "rewards: non-finite value inf at index 0"),
        ([1.0, 0.0], [0], "different lengths"),
        ([], [], "empty batch"),
        ([1.0, 0.0, 1.0], [0, -3, 1], "prompt_ids: negative value -3 at index 1"),
        ([1.0, 0.0], [0.0, 1.5], "prompt_ids: non-integer value 1.5 at index 1"),
    ],
)
def test_bad_input_raises_value_error_naming_problem_and_index(rewards, ids, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        RewardBatch(torch.tensor(rewards, dtype=torch.float64), torch.tensor(ids))


def test_registry_errors_list_names_and_reject_duplicates():
    with pytest.raises(ValueError, match="unknown estimator 'grpox'; available: basis, dr_grpo, grpo"):
        get("grpox")
    with pytest.raises(ValueError, match="estimator 'kae' has no parameter 'bandwith'"):
        get("kae", bandwith=3)
    with pytest.raises(ValueError, match="already registered"):
        estimators.register("grpo")(lambda rewards, prompt_ids: None)
