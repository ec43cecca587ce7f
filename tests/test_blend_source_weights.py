"""blend's per-rollout source shares (``Blend.source_weights``): what lesson 05 plots over steps."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import estimators
from lab.estimators import RewardBatch


def _steps(seed: int, steps: int, prompts: int, g: int):
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        ids = (torch.arange(prompts) + (t // 2) * prompts // 2).repeat_interleave(g)  # half the prompts come back
        yield RewardBatch(torch.bernoulli(torch.full((prompts * g,), 0.4, dtype=torch.float64), generator=gen), ids, step=t)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), prompts=st.integers(2, 6), g=st.integers(1, 4))
def test_shares_sum_to_one_and_average_to_the_logged_weights(seed, prompts, g):
    est = estimators.get("blend")
    for batch in _steps(seed, 5, prompts, g):
        w = est.source_weights(batch)
        out = est(batch)
        assert w.shape == (batch.rewards.shape[0], 3)
        assert bool(((w >= 0) & (w <= 1)).all())
        total = w.sum(1)
        assert bool(((total - 1).abs() < 1e-9).all() | (total == 0).all())
        means = [out.info["weight_group"], out.info["weight_history"], out.info["weight_batch"]]
        assert torch.allclose(w.mean(0), torch.tensor(means, dtype=torch.float64), atol=1e-12)


def test_asking_for_the_shares_does_not_change_the_baselines():
    a, b = estimators.get("blend"), estimators.get("blend")
    for batch in _steps(3, 6, 4, 2):
        b.source_weights(batch)
        b.source_weights(batch)
        assert torch.equal(a(batch).baselines, b(batch).baselines)


def test_no_group_source_at_one_rollout_and_no_history_at_the_first_step():
    est = estimators.get("blend")
    first = RewardBatch(torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([0, 0, 1, 1]), step=0)
    assert float(est.source_weights(first)[:, 1].abs().max()) == 0.0  # nothing remembered yet
    est(first)
    lone = RewardBatch(torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0, 1]), step=1)
    w = est.source_weights(lone)
    assert float(w[:, 0].abs().max()) == 0.0 and float(w[:, 1].min()) > 0  # G = 1: history and batch only
