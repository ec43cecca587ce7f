"""The trainer's one failure type and its threshold."""

from __future__ import annotations


class TrainingFailed(RuntimeError):
    """The run stopped with status ``failed``; the message names the step and what went wrong."""


MAX_FAILED_REWARD_STEPS = 3
"""A run fails after this many consecutive steps in which every reward call failed."""
