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
global RNG, so the training stream does not depend on the stage: a resume from a checkpoint
reuses the file (never samples again; one that is missing, damaged or not of this run is
refused, :func:`mismatch`), and a restart at step 0 draws the same samples again.
"""

from __future__ import annotations

import time
from collections import Counter
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


def sample(trainer) -> Reference:
    """Draw and score m samples of each pool prompt and probe prompt (one backend call per
    split) with ``trainer``'s ``generate`` and ``rewards`` (a :class:`~lab.train.step.Stepper`)."""
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


def mismatch(s, frame: pd.DataFrame) -> str | None:
    """Why ``frame`` is not what the reference stage of setup ``s`` draws (other prompts, another
    ``reference_samples``), or None when it is.

    >>> from types import SimpleNamespace as NS
    >>> c = NS(reference_samples=2, probe_every=0, probe_set="fixed")
    >>> s = NS(c=c, schedule=NS(pool=[NS(prompt_id=7), NS(prompt_id=9)]), probe_examples=[])
    >>> f = pd.DataFrame({"split": ["train"] * 4, "prompt_id": [7, 7, 9, 9]})
    >>> mismatch(s, f) is None
    True
    >>> print(mismatch(s, f.iloc[:3]))
    its train samples (3 for 2 prompts) are not 2 samples of each of the run's 2 train prompts
    """
    c = s.c
    want = {"train": [e.prompt_id for e in s.schedule.pool or []]}
    if c.probe_every and c.probe_set == "fixed":
        want["probe"] = [e.prompt_id for e in s.probe_examples]
    for split in sorted(set(want) | set(frame["split"])):
        ids = want.get(split, [])
        got = Counter(frame.loc[frame["split"] == split, "prompt_id"].tolist())
        if got != Counter({i: k * c.reference_samples for i, k in Counter(ids).items()}):
            return (f"its {split} samples ({sum(got.values())} for {len(got)} prompts) are not {c.reference_samples} "
                    f"samples of each of the run's {len(set(ids))} {split} prompts")
    return None


def apply(s, frame: pd.DataFrame) -> list[str]:
    """``set_reference`` on every estimator instance of setup ``s`` whose class says
    ``wants_reference`` (the flag, never a name); returns "role/name" of each one fed."""
    c = s.c
    fed = []
    for role, name, est in s.estimator_instances():
        if not getattr(est, "wants_reference", False):
            continue
        split = "probe" if role == "probe" and c.probe_set == "fixed" else "train"
        rows = frame[frame["split"] == split]
        if len(rows):
            est.set_reference(torch.tensor(rows["prompt_id"].to_numpy(), dtype=torch.long),
                              torch.tensor(rows["reward"].to_numpy(), dtype=torch.float64))
            fed.append(f"{role}/{name}")
    return fed


def estimator_as_run(run_dir, name: str | None = None, **params):
    """A fresh estimator built as the run's trainer built it, to replay the run's rollouts through.

    ``name`` None: the run's training estimator with the ``estimator_params`` its ``config.json``
    saved (``params`` override them); another name: that estimator with ``params`` (a shadow
    runs with its registered defaults, so no params replays a shadow). An estimator whose class
    says ``wants_reference`` gets the run's reference samples of the training pool
    (``reference.parquet``, the ``train`` split), as :func:`apply` gave them before step 0; a
    run without a reference stage gives it none, as it had none. Feed it the run's batches in
    step order (``RewardBatch(rewards, prompt_ids, step=...)``) and its baselines are the run's
    (tests/train/test_train_reference.py replays a run's trained and shadow estimators this way
    and matches the baselines it logged). Usage::

        est = estimator_as_run(run_dir)            # the trained one, its saved parameters, its reference
        kae = estimator_as_run(run_dir, "kae", h=0.2, min_width=4.0)   # any other, on the same rollouts
    """
    from pathlib import Path

    from lab import estimators
    from lab.config import TrainConfig
    from lab.runs import read_config, read_reference

    config, _ = read_config(Path(run_dir))
    saved = TrainConfig.from_dict(config)
    if name is None or (name == saved.estimator and not params):
        est = estimators.get(saved.estimator, **{**saved.estimator_params, **params})
    else:
        est = estimators.get(name, **params)
    if getattr(est, "wants_reference", False) and saved.reference_samples:
        rows = read_reference(run_dir)
        rows = rows[rows["split"] == "train"]
        est.set_reference(torch.tensor(rows["prompt_id"].to_numpy(), dtype=torch.long),
                          torch.tensor(rows["reward"].to_numpy(), dtype=torch.float64))
    return est
