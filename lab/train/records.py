"""A step's record as the run directory stores it: the metrics line and the samples table.

Every metric name the trainer writes is built here, in the order docs/metrics.md lists them
(keep the two together). The per-step names are :data:`STEP_METRICS`; probe steps add
``probe/*`` (``lab.probes.summarize``), eval steps ``eval/*``, and the training estimator's
own diagnostics come as ``est/<key>``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lab import probes

from .step import StepRecord

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
