"""Verifiable tasks and their rewards, behind one registry.

>>> "arithmetic" in available()
True
>>> task = get("arithmetic", max_digits=1)
>>> ex = task.sample(1, "train", seed=0)[0]
>>> task.reward(ex.answer, ex)
1.0
>>> get("arithmetic", max_digit=1)
Traceback (most recent call last):
...
ValueError: task 'arithmetic' has no parameter 'max_digit'; valid parameters: min_digits, max_digits, ops, test_fraction

Built-in tasks: ``arithmetic`` (``"12+7="`` -> ``"19"``), ``countdown`` (reach a target
with given numbers), ``gsm8k`` (GSM8K-format JSONL, a small fixture shipped) and ``jsonl``
(any JSONL with configurable fields). See ``docs/tasks.md``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from lab.tasks.base import SPLITS, TASKS, Example, Task, TaskBase, stable_prompt_id
from lab.tasks import arithmetic, countdown, jsonl  # noqa: F401  (register the built-in tasks)
from lab.tasks import partial_credit  # noqa: F401,E402  (arithmetic-partial: KRPO's {1, 0.5, 0.01, 0} rewards)

__all__ = ["SPLITS", "TASKS", "Example", "Task", "TaskBase", "available", "get", "register", "stable_prompt_id"]


def available() -> list[str]:
    """Names of the registered tasks, sorted."""
    return TASKS.available()


def register(name: str) -> Callable:
    """Decorator registering a task factory (usually a class) under ``name``; duplicates raise."""
    return TASKS.register(name)


def get(name: str, **params: Any):
    """A task instance: ``TASKS.get(name)(**params)``.

    Unknown task names raise ``ValueError`` listing the available ones; unknown
    parameters raise ``ValueError`` naming the parameter and listing the valid ones.
    """
    factory = TASKS.get(name)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return factory(**params)
    ps = [p for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL,)]
    if not any(p.kind is p.VAR_KEYWORD for p in ps):
        valid = [p.name for p in ps if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for k in params:
            if k not in valid:
                listed = ", ".join(valid) if valid else "(none)"
                raise ValueError(f"task {name!r} has no parameter {k!r}; valid parameters: {listed}")
    return factory(**params)
