"""Value probes: Monte-Carlo ground truth for a fixed probe set, and each estimator's error against it.

The true value of prompt x under the current policy is V(x) = E_y[r(x, y)]. A probe draws
M fresh rollouts per probe prompt and reports the sample mean V̂ with its standard error
SE = s/√M (s the unbiased sample std). An estimator's value error on that prompt is
the mean over its G rollouts of (b_i − V̂)². Because V̂ is itself noisy and independent of
the baselines (separate samples), E[(b − V̂)²] = E[(b − V)²] + SE², so
``value_mse_corrected = value_mse − mean(SE²)`` is an unbiased estimate of the estimator's
true value MSE (it can dip below 0 by noise when the estimator is very good).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch


@dataclass(frozen=True)
class ProbeTruth:
    """Monte-Carlo values. Shapes: values (P,), se (P,); ``m`` samples per prompt."""

    values: torch.Tensor
    se: torch.Tensor
    m: int


def mc_value(rewards: torch.Tensor) -> ProbeTruth:
    """Per-row mean and standard error of Monte-Carlo rewards.

    Shapes: rewards (P, M) with M >= 2 -> ProbeTruth(values (P,), se (P,)).

    >>> t = mc_value(torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    >>> float(t.values[0]), round(float(t.se[0]), 4)
    (0.5, 0.2887)
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards: expected shape (P, M) with M >= 2 samples, got {tuple(rewards.shape)}")
    m = rewards.shape[1]
    r = rewards.double()
    return ProbeTruth(values=r.mean(1), se=r.std(1, unbiased=True) / m**0.5, m=m)


def estimate_values(sample_rewards: Callable[[Sequence, int], torch.Tensor], examples: Sequence, m: int) -> ProbeTruth:
    """Ground truth by sampling: ``sample_rewards(examples, m)`` must return rewards (P, m).

    Any policy works, from the real model to a stub with known success probabilities.
    """
    rewards = sample_rewards(examples, m)
    if tuple(rewards.shape) != (len(examples), m):
        raise ValueError(f"sample_rewards returned shape {tuple(rewards.shape)}, expected {(len(examples), m)}")
    return mc_value(rewards)


def value_errors(
    truth: ProbeTruth,
    prompt_index: torch.Tensor,
    baselines: dict[str, torch.Tensor],
    *,
    step: int,
    prompt_ids: Sequence[int],
) -> pd.DataFrame:
    """One row per (probe prompt, estimator): its mean baseline and squared error against the truth.

    Shapes: prompt_index (N,) in [0, P) says which probe prompt each rollout answers;
    each ``baselines[name]`` is (N,). Columns: step, prompt_id, estimator, baseline_mean,
    sq_err (mean over the prompt's rollouts of (b − V̂)²), truth, truth_se, n_rollouts.

    >>> tr = ProbeTruth(values=torch.tensor([0.5, 1.0]), se=torch.tensor([0.1, 0.0]), m=4)
    >>> df = value_errors(tr, torch.tensor([0, 0, 1]), {"x": torch.tensor([0.4, 0.6, 1.0])}, step=3, prompt_ids=[11, 12])
    >>> df[["prompt_id", "sq_err"]].round(4).values.tolist()
    [[11.0, 0.01], [12.0, 0.0]]
    """
    p = truth.values.shape[0]
    idx = prompt_index.cpu().long()
    counts = torch.zeros(p, dtype=torch.float64).index_add_(0, idx, torch.ones(idx.shape[0], dtype=torch.float64))
    rows = []
    v = truth.values.double().cpu()
    for name, b in baselines.items():
        b = b.detach().double().cpu()
        sum_b = torch.zeros(p, dtype=torch.float64).index_add_(0, idx, b)
        sq = torch.zeros(p, dtype=torch.float64).index_add_(0, idx, (b - v[idx]) ** 2)
        have = counts > 0
        mean_b = torch.where(have, sum_b / counts.clamp(min=1), torch.full_like(sum_b, float("nan")))
        sq_err = torch.where(have, sq / counts.clamp(min=1), torch.full_like(sq, float("nan")))
        for j in range(p):
            rows.append(
                {
                    "step": step,
                    "prompt_id": int(prompt_ids[j]),
                    "estimator": name,
                    "baseline_mean": float(mean_b[j]),
                    "sq_err": float(sq_err[j]),
                    "truth": float(v[j]),
                    "truth_se": float(truth.se[j]),
                    "n_rollouts": int(counts[j]),
                }
            )
    return pd.DataFrame(rows)


def summarize(errors: pd.DataFrame) -> dict[str, float]:
    """Per-estimator value MSE (raw and SE²-corrected) as metric names ``probe/value_mse/<est>``.

    >>> df = pd.DataFrame({"estimator": ["a", "a"], "sq_err": [0.02, 0.04], "truth_se": [0.1, 0.1], "truth": [0.5, 0.7]})
    >>> {k: round(v, 4) for k, v in summarize(df).items()}
    {'probe/value_mse/a': 0.03, 'probe/value_mse_corrected/a': 0.02, 'probe/accuracy': 0.6}
    """
    out: dict[str, float] = {}
    for name, g in errors.groupby("estimator", sort=True):
        out[f"probe/value_mse/{name}"] = float(g["sq_err"].mean())
        out[f"probe/value_mse_corrected/{name}"] = float(g["sq_err"].mean() - (g["truth_se"] ** 2).mean())
    first = errors.drop_duplicates("estimator").iloc[0]["estimator"] if len(errors) else None
    if first is not None:
        out["probe/accuracy"] = float(errors[errors["estimator"] == first]["truth"].mean())
    return out


def run_value_mse(metrics: pd.DataFrame, names: list[str], warmup: int) -> dict[str, tuple[float, float, int]]:
    """Per estimator of a run: (mean corrected value MSE, mean raw value MSE, probe steps) over probe steps >= warmup.

    Shapes: ``metrics`` is ``lab.runs.read_metrics`` (one row per step; probe columns NaN off probe steps).

    >>> m = pd.DataFrame({"step": [0, 1, 3], "probe/value_mse_corrected/a": [0.5, float("nan"), 0.1],
    ...                   "probe/value_mse/a": [0.6, float("nan"), 0.2]})
    >>> run_value_mse(m, ["a"], warmup=0)["a"], run_value_mse(m, ["a"], warmup=1)["a"]
    ((0.3, 0.4, 2), (0.1, 0.2, 1))
    """
    out = {}
    late = metrics[metrics["step"] >= warmup]
    for n in names:
        col = f"probe/value_mse_corrected/{n}"
        if col not in late:
            raise KeyError(f"run has no {col}: was {n!r} a shadow estimator with probes on?")
        c = late[col].dropna()
        r = late.loc[c.index, f"probe/value_mse/{n}"]
        out[n] = (round(float(c.mean()), 10), round(float(r.mean()), 10), int(len(c)))
    return out
