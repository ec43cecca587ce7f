"""The RLVR training loop, one module per concern. Read it in this order:

- ``start.py``: :func:`train`, which refuses bad input before writing anything, then makes
  (or reopens, on resume) the run directory and runs a :class:`Trainer`;
- ``setup.py``: everything a run is built from (model, task, backend, estimators, prompts);
- ``reference.py``: the reference stage (samples of the starting policy, ``reference.parquet``);
- ``trainer.py``: the session's lifecycle (reference stage, steps, checkpoints, endings);
- ``step.py``: one step, ``prompts -> rollouts -> rewards -> estimator (+ shadows) -> [probes]
  -> [eval] -> PPO epochs``, returned as a typed :class:`StepRecord`;
- ``records.py``: the typed :class:`StepRecord` and how the run directory stores it (every
  metric name, the samples table);
- ``checkpoint.py``: save and restore (RNG states, estimator memories, the config beside it);
- ``schedule.py``: which prompts each step trains on.

``train(config)`` runs a new run; ``train(resume=run_dir)`` continues one from its newest
usable checkpoint with model, optimizer, estimator memories, prompt schedule and every RNG
restored, so on CPU a resumed run reproduces the uninterrupted one; ``steps=N`` with
``resume`` extends a finished run. ``stop_event`` (a ``threading.Event``) ends a run cleanly
at the next step boundary with status ``interrupted``; ``callback(step, metrics)`` runs after
each step is on disk. Signal handlers belong to the caller (the CLI), never to ``train``.
"""

from .checkpoint import SAFE_EDITS
from .errors import MAX_FAILED_REWARD_STEPS, TrainingFailed
from .records import Scored, StepRecord
from .schedule import PromptSchedule
from .setup import Setup
from .start import default_run_name, train
from .step import Stepper
from .trainer import Trainer

__all__ = ["MAX_FAILED_REWARD_STEPS", "SAFE_EDITS", "PromptSchedule", "Scored", "Setup", "StepRecord", "Trainer",
           "TrainingFailed", "default_run_name", "train"]
