"""The task interface every verifiable task implements, and the task registry.

A task yields :class:`Example` objects (prompt, reference answer, a stable
integer ``prompt_id``) and scores a completion with ``reward(completion, example)``
returning a float in [0, 1]. ``prompt_id`` is what estimators group rollouts by,
so it must be a non-negative int that is the same across runs and processes
(derive it from the content, never from Python's salted ``hash``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, runtime_checkable

from lab.registry import Registry

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Example:
    """One prompt with a verifiable answer.

    Fields:
        prompt_id: stable non-negative int identifying the prompt (same across runs).
        prompt: the text given to the model.
        answer: the reference answer as a string (a number, an expression target, ...).
        meta: small JSON-serialisable extras (difficulty, source line, numbers, ...).
    """

    prompt_id: int
    prompt: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@runtime_checkable
class Task(Protocol):
    """What the trainer needs from a task."""

    name: str

    def examples(self, split: str = "train", seed: int = 0) -> Iterator[Example]:
        """Yield examples of ``split`` ("train" or "test"), deterministically for ``seed``."""
        ...

    def reward(self, completion: str, example: Example) -> float:
        """Score ``completion`` against ``example``: a float in [0, 1]."""
        ...


def stable_prompt_id(*parts: object) -> int:
    """A 62-bit non-negative id from the content, stable across processes.

    >>> stable_prompt_id("train", "12+7=") == stable_prompt_id("train", "12+7=")
    True
    >>> 0 <= stable_prompt_id("x") < 2**62
    True
    """
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 2


TASKS: Registry = Registry("task")
