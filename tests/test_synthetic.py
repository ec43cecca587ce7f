"""The drifting bandit: known values, reproducible streams, and estimator value errors that
match closed forms (an independent check of the harness and of the estimators)."""

import math

import pytest
import torch

from lab import estimators
from lab.estimators import RewardBatch
from lab.synthetic import DriftingBandit, PosteriorBaseline, posterior_mse_run, value_mse_run


def test_values_follow_the_logit_trend_and_walk_and_repeat_per_seed():
    a, b = DriftingBandit(16, seed=3), DriftingBandit(16, seed=3)
    assert torch.equal(a.values(5), b.values(5))
    assert not torch.equal(a.values(5), DriftingBandit(16, seed=4).values(5))
    flat = DriftingBandit(16, seed=3, trend=0.1, drift=0.0)
    logit = lambda v: torch.log(v / (1 - v))  # noqa: E731
    assert torch.allclose(logit(flat.values(7)) - logit(flat.values(0)), torch.full((16,), 0.7, dtype=torch.float64))
    assert bool(((a.values(30) > 0) & (a.values(30) < 1)).all())


def test_side_samples_with_their_own_generator_leave_the_main_stream_unchanged():
    a, b = DriftingBandit(8, seed=1), DriftingBandit(8, seed=1)
    b.sample(torch.arange(8), 5, 0, generator=torch.Generator().manual_seed(9))  # e.g. BASIS reference samples
    x, _ = a.sample(a.draw_prompts(4), 3, 2, interleave=True)
    y, _ = b.sample(b.draw_prompts(4), 3, 2, interleave=True)
    assert torch.equal(x.rewards, y.rewards) and torch.equal(x.prompt_ids, y.prompt_ids)


def test_rewards_are_bernoulli_with_the_true_value():
    sim = DriftingBandit(4, seed=0)
    batch, v = sim.sample(torch.arange(4), 20_000, 0)
    for p in range(4):
        mean = float(batch.rewards[batch.prompt_ids == p].mean())
        vp = float(sim.values(0)[p])
        assert abs(mean - vp) < 5 * math.sqrt(vp * (1 - vp) / 20_000)
    assert torch.equal(v, sim.values(0)[batch.prompt_ids])


def _empirical_and_exact(name, group_size, exact_fn, steps=300):
    """Mean of (b − V)² over many batches, and the mean of its exact expectation given V."""
    sim, est = DriftingBandit(32, seed=11), estimators.get(name)
    errs, exact = [], []
    for t in range(steps):
        batch, v = sim.sample(sim.draw_prompts(16), group_size, t, interleave=True)
        errs.append((est(batch).baselines - v) ** 2)
        exact.append(exact_fn(v, batch.prompt_ids, group_size))
    errs, exact = torch.cat(errs), torch.cat(exact)
    return float(errs.mean()), float(exact.mean()), float(errs.std() / math.sqrt(errs.numel()))


@pytest.mark.parametrize(
    "name, exact_fn",
    [
        ("rloo", lambda v, ids, g: v * (1 - v) / (g - 1)),  # mean of g − 1 other Bernoulli(V)
        ("grpo", lambda v, ids, g: v * (1 - v) / g),  # mean of all g, own reward included
        # batch mean b: Var(b) + (E b − V_i)², with Var(b) = Σ V(1 − V) / N²
        ("reinforce_plus_plus", lambda v, ids, g: (v * (1 - v)).sum() / v.numel() ** 2 + (v.mean() - v) ** 2),
    ],
)
def test_value_mse_matches_the_closed_form_expectation(name, exact_fn):
    emp, exact, se = _empirical_and_exact(name, 4, exact_fn)
    assert abs(emp - exact) < 4 * se, (emp, exact, se)


def test_value_mse_check_would_catch_a_baseline_that_includes_the_own_reward():
    # the failing control: RLOO's closed form does not fit GRPO's numbers
    emp, exact, se = _empirical_and_exact("grpo", 4, lambda v, ids, g: v * (1 - v) / (g - 1))
    assert abs(emp - exact) > 10 * se


def test_value_mse_run_gives_every_estimator_the_same_batches():
    seen = {}

    def recording(name):
        est = estimators.get(name)
        inner = est.compute
        calls = seen.setdefault(name, [])

        def compute(batch):
            calls.append((batch.rewards.clone(), batch.prompt_ids.clone()))
            return inner(batch)

        est.compute = compute
        return est

    for name in ("grpo", "basis", "kae"):
        value_mse_run(name, 2, steps=4, seed=5, make=recording)
    for other in ("basis", "kae"):
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(seen["grpo"], seen[other]))


def test_value_mse_run_reports_the_mean_squared_error_of_the_baselines():
    run = value_mse_run("rloo", 3, steps=5, seed=2)
    sim, est = DriftingBandit(64, seed=2), estimators.get("rloo")
    for t in range(5):
        batch, v = sim.sample(sim.draw_prompts(16), 3, t, interleave=True)
        assert float(run.mse[t]) == pytest.approx(float(((est(batch).baselines - v) ** 2).mean()), abs=1e-15)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: DriftingBandit(0), "n_prompts"),
        (lambda: DriftingBandit(4, drift=-1.0), "drift"),
        (lambda: DriftingBandit(4).draw_prompts(5), "k: expected 1..4"),
        (lambda: DriftingBandit(4).sample(torch.arange(2), 0, 0), "group_size"),
        (lambda: DriftingBandit(4).values(-1), "step"),
    ],
)
def test_bad_bandit_settings_raise_naming_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- prompt reuse -----------------------------------------------------------------------------------
def test_prompt_reuse_keeps_each_block_of_prompts_for_j_consecutive_steps():
    seen = []

    def recording(name):
        est = estimators.get(name)
        inner = est.compute
        est.compute = lambda batch: (seen.append(sorted(set(batch.prompt_ids.tolist()))), inner(batch))[1]
        return est

    value_mse_run("rloo", 2, steps=9, reuse=4, seed=3, make=recording)
    blocks = [seen[0:4], seen[4:8], seen[8:9]]
    assert all(all(s == b[0] for s in b) for b in blocks)  # the same 16 prompts within a block
    assert blocks[0][0] != blocks[1][0] != blocks[2][0]  # fresh draws between blocks
    # reuse = 1 is the earlier benchmark exactly: a fresh draw every step
    assert torch.equal(value_mse_run("kae", 2, steps=6, seed=1).mse, value_mse_run("kae", 2, steps=6, reuse=1, seed=1).mse)
    with pytest.raises(ValueError, match="reuse: expected an int >= 1"):
        value_mse_run("rloo", 2, steps=2, reuse=0)


# --- the floor: the exact posterior mean of V --------------------------------------------------------
def _beta_prior(a, b):
    return lambda phi: a * torch.nn.functional.logsigmoid(phi) + b * torch.nn.functional.logsigmoid(-phi)


def test_posterior_floor_matches_the_beta_binomial_closed_form_without_drift():
    # V ~ Beta(a, b) (density σ^a (1 − σ)^b in logit space), no trend, no drift: after k successes in
    # n earlier rollouts, rollout g's baseline is (a + k + its others' successes) / (a + b + n + G − 1)
    a, b = 2.0, 3.0
    est = PosteriorBaseline(spread=1.0, trend=0.0, drift=0.0, log_prior=_beta_prior(a, b))
    history = [([1.0, 0.0, 1.0], [5, 5, 5]), ([0.0, 0.0, 1.0, 1.0], [5, 9, 9, 9])]
    k = {5: 0.0, 9: 0.0}
    n = {5: 0, 9: 0}
    for step, (r, ids) in enumerate(history):
        est(RewardBatch(torch.tensor(r, dtype=torch.float64), torch.tensor(ids), step=step))
        for x, p in zip(r, ids):
            k[p] += x
            n[p] += 1
    r, ids = [1.0, 0.0, 0.0, 1.0, 1.0], [5, 5, 9, 9, 7]
    out = est(RewardBatch(torch.tensor(r, dtype=torch.float64), torch.tensor(ids), step=2), update=False)
    expect = []
    for i, (x, p) in enumerate(zip(r, ids)):
        others = [r[j] for j in range(len(r)) if ids[j] == p and j != i]
        expect.append((a + k.get(p, 0.0) + sum(others)) / (a + b + n.get(p, 0) + len(others)))
    assert out.baselines.tolist() == pytest.approx(expect, abs=1e-9)


def test_posterior_floor_with_drift_matches_importance_sampling_of_the_generative_model():
    spread, trend, drift = 1.5, 0.1, 0.3
    est = PosteriorBaseline(spread=spread, trend=trend, drift=drift)
    est(RewardBatch(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([0, 0, 0]), step=0))
    out = est(RewardBatch(torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0, 0]), step=3), update=False)
    # Monte Carlo: φ_0 ~ N(0, spread²), φ_3 = φ_0 + drift·√3·z; weight = likelihood of what the baseline saw
    gen = torch.Generator().manual_seed(0)
    n = 400_000
    phi0 = spread * torch.randn(n, generator=gen, dtype=torch.float64)
    phi3 = phi0 + drift * math.sqrt(3) * torch.randn(n, generator=gen, dtype=torch.float64)
    v0, v3 = torch.sigmoid(phi0), torch.sigmoid(phi3 + 3 * trend)
    for i, other in enumerate([0.0, 1.0]):  # rollout 0 sees the other's 0; rollout 1 sees 1
        w = v0 * v0 * (1 - v0) * (v3 if other else 1 - v3)
        mean = float((w * v3).sum() / w.sum())
        se = float(torch.sqrt(((w / w.sum()) ** 2 * (v3 - mean) ** 2).sum()))
        assert abs(float(out.baselines[i]) - mean) < 4 * se + 1e-4, (i, float(out.baselines[i]), mean, se)


def _floor_calibration(world_drift, model_drift, steps=120, learn=0.0, told=True):
    """Mean (b − V)² of the posterior baseline and the mean posterior variance it reports, with an SE.
    ``learn``: trained prompts gain that logit per step; ``told``: the floor knows the schedule."""
    sim = DriftingBandit(32, drift=world_drift, seed=4, learn=learn)
    est = PosteriorBaseline(spread=sim.spread, trend=sim.trend, drift=model_drift, offset=sim.offset if told and learn else None)
    errs, claimed = [], []
    for t in range(steps):
        prompts = sim.draw_prompts(8) if t % 4 == 0 else prompts  # noqa: F821 (bound at t = 0)
        batch, v = sim.sample(prompts, 2, t, interleave=True)
        out = est(batch)
        errs.append((out.baselines - v) ** 2)
        claimed.append(out.info["posterior_var"])
        sim.train(prompts, t)
    errs = torch.cat(errs)
    return float(errs.mean()), sum(claimed) / len(claimed), float(errs.std() / math.sqrt(errs.numel()))


def test_posterior_floor_error_equals_the_posterior_variance_it_reports():
    mse, claimed, se = _floor_calibration(0.05, 0.05)
    assert abs(mse - claimed) < 4 * se, (mse, claimed, se)
    # the failing control: a model that ignores a strong drift claims far less error than it makes
    mse, claimed, se = _floor_calibration(0.4, 0.0)
    assert mse - claimed > 6 * se, (mse, claimed, se)


def test_no_estimator_beats_the_posterior_floor_on_the_same_batches():
    for g, j in ((1, 1), (2, 10), (4, 4)):
        floor = [float(posterior_mse_run(g, steps=20, reuse=j, seed=s).mse[5:].mean()) for s in range(3)]
        floor0 = [float(posterior_mse_run(g, steps=20, reuse=j, seed=s, reference_samples=0).mse[5:].mean()) for s in range(3)]
        assert all(a <= b for a, b in zip(floor, floor0))  # more information, lower floor
        for name in ("rloo", "kae", "basis", "blend", "reinforce_plus_plus"):
            est = [float(value_mse_run(name, g, steps=20, reuse=j, seed=s).mse[5:].mean()) for s in range(3)]
            assert all(f < e for f, e in zip(floor, est)), (name, g, j, floor, est)
            if not getattr(estimators.get(name), "wants_reference", False):
                assert all(f < e for f, e in zip(floor0, est)), (name, g, j, floor0, est)


def test_posterior_floor_rejects_non_binary_rewards_and_steps_that_go_backwards():
    est = PosteriorBaseline(spread=1.0, trend=0.0, drift=0.1)
    with pytest.raises(ValueError, match="binary rewards"):
        est(RewardBatch(torch.tensor([0.5]), torch.tensor([0])))
    est(RewardBatch(torch.tensor([1.0]), torch.tensor([0]), step=3))
    with pytest.raises(ValueError, match="steps must not go backwards"):
        est(RewardBatch(torch.tensor([1.0]), torch.tensor([0]), step=2))


def test_trained_prompts_gain_learn_per_trained_step_and_a_read_step_cannot_be_retrained():
    b = DriftingBandit(5, spread=1.0, trend=0.1, drift=0.2, learn=0.3, seed=2)
    plain = DriftingBandit(5, spread=1.0, trend=0.1, drift=0.2, seed=2)  # the same θ_0 and walk, no training gain
    for t, ids in enumerate([[0, 1], [0], [0, 3], []]):
        b.train(torch.tensor(ids, dtype=torch.long), t)
    n = torch.tensor([3.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # steps before 4 each prompt was trained
    assert torch.equal(b.trained_steps(4), n)
    assert torch.allclose(torch.logit(b.values(4)) - torch.logit(plain.values(4)), 0.3 * n)
    assert torch.allclose(torch.logit(b.values(1)) - torch.logit(plain.values(1)), torch.tensor([0.3, 0.3, 0, 0, 0], dtype=torch.float64))
    with pytest.raises(ValueError, match="already read"):
        b.train(torch.tensor([2]), 2)  # step 4's values are out: step 2's training can no longer land
    with pytest.raises(ValueError, match="learn"):
        DriftingBandit(4, learn=float("nan"))


def test_posterior_floor_told_the_training_schedule_stays_calibrated_and_below_every_estimator():
    mse, claimed, se = _floor_calibration(0.05, 0.05, learn=0.4)
    assert abs(mse - claimed) < 4 * se, (mse, claimed, se)
    # the failing control: a floor that does not know trained prompts climb claims less error than it makes
    mse, claimed, se = _floor_calibration(0.05, 0.05, learn=0.4, told=False)
    assert mse - claimed > 6 * se, (mse, claimed, se)
    world = dict(learn=0.3, trend=0.0, drift=0.05)
    floor = [float(posterior_mse_run(2, steps=20, reuse=4, seed=s, **world).mse[5:].mean()) for s in range(3)]
    for name in ("rloo", "kae", "basis"):
        est = [float(value_mse_run(name, 2, steps=20, reuse=4, seed=s, **world).mse[5:].mean()) for s in range(3)]
        assert all(f < e for f, e in zip(floor, est)), (name, floor, est)
