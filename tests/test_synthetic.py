"""The drifting bandit: known values, reproducible streams, and estimator value errors that
match closed forms (an independent check of the harness and of the estimators)."""

import math

import pytest
import torch

from lab import estimators
from lab.synthetic import DriftingBandit, value_mse_run


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
