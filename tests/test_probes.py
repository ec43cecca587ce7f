"""Value probes: Monte-Carlo truth against exactly known values, and the error bookkeeping."""

import torch

from lab import probes


def test_mc_value_matches_the_exact_success_probability_of_a_stub_policy():
    # a stub "policy" whose success probability on prompt j is known exactly
    p_true = torch.tensor([0.05, 0.3, 0.5, 0.9])
    gen = torch.Generator().manual_seed(0)

    def sample_rewards(examples, m):
        return (torch.rand(len(examples), m, generator=gen) < p_true[:, None]).double()

    truth = probes.estimate_values(sample_rewards, list(range(4)), 4000)
    z = (truth.values - p_true.double()) / truth.se.clamp(min=1e-9)
    assert bool((z.abs() < 4).all()), z
    # the standard error is the binomial one, sqrt(p(1-p)/M), up to sampling noise
    assert torch.allclose(truth.se, (p_true * (1 - p_true) / 4000).sqrt().double(), rtol=0.1)


def test_value_errors_are_per_prompt_means_of_squared_baseline_error():
    truth = probes.ProbeTruth(values=torch.tensor([0.25, 0.75], dtype=torch.float64), se=torch.tensor([0.0, 0.1], dtype=torch.float64), m=8)
    idx = torch.tensor([1, 0, 1, 0])
    b = {"a": torch.tensor([0.5, 0.25, 1.0, 0.75]), "b": torch.zeros(4)}
    df = probes.value_errors(truth, idx, b, step=7, prompt_ids=[100, 200]).set_index(["estimator", "prompt_id"])
    # prompt 100 (index 0): baselines 0.25, 0.75 vs 0.25 -> (0 + 0.25)/2
    assert abs(df.loc[("a", 100), "sq_err"] - 0.125) < 1e-12
    # prompt 200 (index 1): baselines 0.5, 1.0 vs 0.75 -> (0.0625 + 0.0625)/2
    assert abs(df.loc[("a", 200), "sq_err"] - 0.0625) < 1e-12
    assert abs(df.loc[("b", 200), "sq_err"] - 0.5625) < 1e-12
    s = probes.summarize(df.reset_index())
    assert abs(s["probe/value_mse/a"] - (0.125 + 0.0625) / 2) < 1e-12
    assert abs(s["probe/value_mse_corrected/a"] - ((0.125 + 0.0625) / 2 - 0.01 / 2)) < 1e-12
    assert abs(s["probe/accuracy"] - 0.5) < 1e-12


def test_corrected_value_mse_is_unbiased_for_a_known_baseline():
    # baseline error is exactly 0.1 in every prompt; truth is noisy with M samples
    gen = torch.Generator().manual_seed(1)
    p = torch.full((2000,), 0.4, dtype=torch.float64)
    rewards = (torch.rand(2000, 16, generator=gen, dtype=torch.float64) < p[:, None]).double()
    truth = probes.mc_value(rewards)
    df = probes.value_errors(truth, torch.arange(2000), {"x": (p + 0.1)}, step=0, prompt_ids=list(range(2000)))
    s = probes.summarize(df)
    assert abs(s["probe/value_mse_corrected/x"] - 0.01) < 0.003
    assert s["probe/value_mse/x"] > 0.01 + 0.01  # raw MSE carries the truth's noise 0.24/16
