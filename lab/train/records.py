"""A step's record (:class:`StepRecord`) and how the run directory stores it: the metrics
line and the samples table.

Every metric name the trainer writes is built here, in the order docs/metrics.md lists them
(keep the two together; ``tests/train/test_train_metric_names.py`` checks both ways). The
per-step names are :data:`STEP_METRICS`; the update adds :func:`update_metrics`' names and
the policy loss's own ``actor/*`` (``lab.losses.policy_loss``), probe steps add ``probe/*``
(``lab.probes.summarize``), eval steps :data:`EVAL_METRICS`, and the training estimator's
own diagnostics come as ``est/<key>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from lab import probes
from lab.estimators import Advantages


@dataclass(frozen=True)
class Scored:
    """Rewards (N,) float64 of a batch of rollouts, how many reward calls failed (raised or
    timed out: scored 0), their first messages, and whether every call failed."""

    rewards: torch.Tensor
    failed: int
    messages: list[str]

    @property
    def all_failed(self) -> bool:
        return self.rewards.numel() > 0 and self.failed == self.rewards.numel()


@dataclass(frozen=True)
class StepRecord:
    """Everything one step produced (N = prompts × G rollouts, rows i·G.. of prompt i): the
    rollout, rewards, advantages (training estimator and shadows), probes, evals, the update's
    loss diagnostics and the step's timings (seconds)."""

    step: int
    examples: list  # the step's prompts
    rollout: Any  # the backend's RolloutOutput
    scored: Scored
    prompt_ids: torch.Tensor  # (N,) long
    advantages: Advantages  # the training estimator's
    shadows: dict[str, Advantages]
    zero_std_frac: float
    probes: pd.DataFrame | None  # probe rows (probe steps), else None
    evals: dict[str, float]  # EVAL_METRICS (eval steps), else {}
    loss: dict[str, float]  # loss and actor diagnostics, averaged over minibatches
    rollout_time_s: float
    step_time_s: float

STEP_METRICS = (
    "step", "reward/mean", "reward/accuracy", "reward/errors",
    "adv/mean", "adv/std", "adv/min", "adv/max", "adv/baseline_mean", "batch/zero_std_frac",
    "response/length_mean", "response/truncated_frac",
    "perf/tokens_per_s", "perf/step_time_s", "perf/rollout_time_s",
    "time/elapsed_s", "time/warmup_s", "ref/rollouts", "ref/time_s",
)
"""Names on every metrics line (besides the loss's ``loss/*``, ``actor/*`` diagnostics)."""
EVAL_METRICS = ("eval/accuracy", "eval/reward_mean", "eval/errors")
"""Names on eval steps (every ``eval_every`` steps and the last)."""


def update_metrics(*, total: float, grad_norm: float, entropy: float, kl_ref: float | None = None) -> dict[str, float]:
    """The trainer's own names for one optimizer step (beside the policy loss's ``actor/*``).

    >>> update_metrics(total=0.5, grad_norm=1.0, entropy=2.0)
    {'loss/total': 0.5, 'actor/grad_norm': 1.0, 'actor/entropy': 2.0}
    """
    out = {"loss/total": total, "actor/grad_norm": grad_norm, "actor/entropy": entropy}
    if kl_ref is not None:
        out["actor/kl_ref"] = kl_ref
    return out


def eval_metrics(rewards: torch.Tensor, errors: int) -> dict[str, float]:
    """:data:`EVAL_METRICS` of the eval samples' rewards (N,) and the failed eval reward calls.

    >>> eval_metrics(torch.tensor([1.0, 0.0, 0.5, 1.0]), 1)
    {'eval/accuracy': 0.5, 'eval/reward_mean': 0.625, 'eval/errors': 1}
    """
    acc = float((rewards >= 1.0 - 1e-6).double().mean())
    return dict(zip(EVAL_METRICS, (acc, float(rewards.mean()), errors)))


def metrics(rec: StepRecord, *, elapsed_s: float, warmup_s: float, ref_rollouts: int, ref_time_s: float) -> dict:
    """The metrics line of one step (docs/metrics.md). ``elapsed_s``: training-loop seconds of
    the run so far (resume-aware); ``warmup_s``: this session's set-up before its first step;
    ``ref_*``: the reference stage's cost (0 without one)."""
    r, a, out = rec.scored.rewards, rec.advantages, rec.rollout
    n_tok = int(out.completion_mask.sum())
    lengths = out.completion_mask.sum(1).float()
    values = [
        rec.step, float(r.mean()), float((r >= 1.0 - 1e-6).double().mean()), rec.scored.failed,
        float(a.advantages.mean()), float(a.advantages.std()) if a.advantages.numel() > 1 else 0.0,
        float(a.advantages.min()), float(a.advantages.max()), float(a.baselines.mean()), rec.zero_std_frac,
        float(lengths.mean()), float(np.mean([f == "length" for f in out.finish_reasons])),
        n_tok / max(rec.rollout_time_s, 1e-9), rec.step_time_s, rec.rollout_time_s,
        elapsed_s, warmup_s, ref_rollouts, ref_time_s,
    ]
    line = dict(zip(STEP_METRICS, values))
    line.update(rec.loss)
    line.update({f"est/{k}": float(v) for k, v in a.info.items()})
    line.update(rec.evals)
    if rec.probes is not None:
        line.update(probes.summarize(rec.probes))
    return line


def samples_frame(rec: StepRecord, g: int) -> pd.DataFrame:
    """One row per rollout (docs/run-format.md), built in one go from numpy columns.

    Columns: the step, prompt and completion fields, reward, the main estimator's
    ``baseline``/``advantage``, then ``baseline__<name>``/``advantage__<name>`` per shadow.
    """
    return rollout_table(rec.step, rec.examples, rec.rollout, rec.scored.rewards, rec.prompt_ids, rec.advantages, rec.shadows, g)


def rollout_table(step, examples, out, rewards, pids, adv, shadow, g) -> pd.DataFrame:
    idx = out.prompt_index.tolist()
    n = len(idx)
    ests = [adv, *shadow.values()]
    both = torch.stack([t.detach().double().cpu() for a in ests for t in (a.baselines, a.advantages)]).numpy()  # (2E, N)
    cols = {
        "step": np.full(n, step, dtype=np.int64),
        "prompt_id": pids.numpy().copy(),  # copies: the writer thread may write the frame later
        "rollout": np.arange(n, dtype=np.int64) % g,
        "prompt": [examples[i].prompt for i in idx],
        "answer": [examples[i].answer for i in idx],
        "completion": out.texts,
        "reward": rewards.numpy().copy(),
        "baseline": both[0],
        "advantage": both[1],
        "length": out.completion_mask.sum(1).cpu().numpy(),
        "finish_reason": out.finish_reasons,
    }
    for k, name in enumerate(shadow, start=1):
        cols[f"baseline__{name}"] = both[2 * k]
        cols[f"advantage__{name}"] = both[2 * k + 1]
    return pd.DataFrame(cols)
