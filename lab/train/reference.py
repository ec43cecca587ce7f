"""The reference stage: samples of the starting policy for estimators with an offline stage.

Before step 0, ``reference_samples`` (m) completions of every prompt of the fixed training
pool (``train_pool_size``) and of every fixed probe prompt are drawn from the initial model
through the run's rollout backend, at the training temperature, ``top_p`` and
``max_new_tokens``, scored with the task's reward, and stored as ``reference.parquet``
(docs/run-format.md). Every estimator instance whose class says ``wants_reference`` then gets
``set_reference(prompt_ids, rewards)``: the training estimator and the shadows the pool's
samples, the probe instances the probe prompts' (``probe_set="batch"``: the pool's). The
flag is read from the instance, never a name.

The sampler draws from its own generator (seed ``seed + REFERENCE_SEED_OFFSET``), not the
global RNG, so a resume that reuses the file (it never samples again) continues the exact
random stream of the uninterrupted run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

REFERENCE_SEED_OFFSET = 30_000
"""The reference sampler's seed is the run's seed plus this (apart from the probes' and evals' prompt seeds)."""


@dataclass(frozen=True)
class Reference:
    """The stage's samples (one row per sample, ``lab.runs.REFERENCE_COLUMNS``) and its cost."""

    frame: pd.DataFrame
    time_s: float

    @property
    def rollouts(self) -> int:
        return len(self.frame)


def wanted(trainer) -> bool:
    """Does any estimator instance of the run want reference samples?"""
    return any(getattr(e, "wants_reference", False) for _, _, e in trainer.s.estimator_instances())


def sample(trainer) -> Reference:
    """Draw and score m samples of each pool prompt and probe prompt (one backend call per split)."""
    c, s = trainer.c, trainer.s
    t0 = time.perf_counter()
    parts = []
    splits = [("train", s.schedule.pool or [])]
    if c.probe_every and c.probe_set == "fixed":
        splits.append(("probe", s.probe_examples))
    for split, exs in splits:
        if not exs:
            continue
        out = trainer.generate(exs, c.reference_samples, seed=c.seed + REFERENCE_SEED_OFFSET + len(parts))
        scored = trainer.rewards(exs, out)
        idx = out.prompt_index.tolist()
        parts.append(pd.DataFrame({
            "prompt_id": np.array([exs[i].prompt_id for i in idx], dtype=np.int64),
            "split": split,
            "sample": np.arange(len(idx), dtype=np.int64) % c.reference_samples,
            "prompt": [exs[i].prompt for i in idx],
            "completion": list(out.texts),
            "reward": scored.rewards.numpy().astype(np.float64),
        }))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"prompt_id": np.zeros(0, np.int64), "split": [], "sample": np.zeros(0, np.int64), "prompt": [],
         "completion": [], "reward": np.zeros(0, np.float64)})
    return Reference(frame, time.perf_counter() - t0)


def apply(trainer, frame: pd.DataFrame) -> list[str]:
    """``set_reference`` on every instance that wants it; returns "role/name" of each one fed."""
    c = trainer.c
    fed = []
    for role, name, est in trainer.s.estimator_instances():
        if not getattr(est, "wants_reference", False):
            continue
        split = "probe" if role == "probe" and c.probe_set == "fixed" else "train"
        rows = frame[frame["split"] == split]
        if len(rows):
            est.set_reference(torch.tensor(rows["prompt_id"].to_numpy(), dtype=torch.long),
                              torch.tensor(rows["reward"].to_numpy(), dtype=torch.float64))
            fed.append(f"{role}/{name}")
    return fed
