"""The task interface every verifiable task implements, and the task registry.

A task yields :class:`Example` objects (prompt, reference answer, a stable
integer ``prompt_id``) and scores a completion with ``reward(completion, example)``
returning a float in [0, 1]. ``prompt_id`` is what estimators group rollouts by,
so it must be a non-negative int that is the same across runs and processes
(derive it from the content, never from Python's salted ``hash``).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

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


def hash_fraction(*parts: object) -> float:
    """A deterministic number in [0, 1) from the content (uniform over contents).

    Used to split a problem into train or test by what it *is*, so the same problem can
    never land in both splits, whatever seed or order produced it.

    >>> hash_fraction("12+7=") == hash_fraction("12+7=")
    True
    >>> 0.0 <= hash_fraction("12+7=") < 1.0
    True
    """
    return stable_prompt_id("split", *parts) / 2**62


def hash_split(key: str, test_fraction: float) -> str:
    """``"test"`` for a fixed ``test_fraction`` of keys (by :func:`hash_fraction`), else ``"train"``.

    >>> hash_split("12+7=", 0.1) == hash_split("12+7=", 0.1)
    True
    >>> hash_split("12+7=", 1.0), hash_split("12+7=", 0.0)
    ('test', 'train')
    """
    return "test" if hash_fraction(key) < test_fraction else "train"


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise a ``ValueError`` listing them.

    >>> check_split("train")
    'train'
    >>> check_split("val")
    Traceback (most recent call last):
    ...
    ValueError: unknown split 'val'; use one of: train, test
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    return split


def distinct_examples(examples: Iterable[Example], n: int, *, max_draws: int | None = None) -> list[Example]:
    """The first ``n`` examples with distinct prompts from a stream (fewer if it ends first).

    Gives up after ``max_draws`` draws (default ``100 * n + 1000``), for problem spaces
    smaller than ``n``.

    >>> exs = [Example(1, "a", "1"), Example(1, "a", "1"), Example(2, "b", "2")]
    >>> [e.prompt for e in distinct_examples(exs, 5)]
    ['a', 'b']
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    limit = 100 * n + 1000 if max_draws is None else max_draws
    seen: set[str] = set()
    out: list[Example] = []
    for i, ex in enumerate(examples):
        if len(out) >= n or i >= limit:
            break
        if ex.prompt not in seen:
            seen.add(ex.prompt)
            out.append(ex)
    return out


class TaskBase:
    """Conveniences shared by the built-in tasks, all built on ``examples(split, seed)``.

    Subclasses set ``name``, ``stop`` (strings at which generation may stop) and
    ``params`` (the constructor arguments, JSON-serialisable) and implement
    ``examples`` and ``reward``.

    ``stateless_reward = True`` promises that ``reward`` is a function of the completion,
    the example and the task's state after construction only (it keeps nothing between
    calls), so :func:`~lab.tasks.scoring.score` may run it on a copy of the task in a worker
    process (:mod:`lab.tasks.sandbox`). A subclass that keeps state sets it to False.
    """

    name: str = ""
    stop: tuple[str, ...] = ()
    params: dict[str, Any] = {}
    stateless_reward: bool = True

    def examples(self, split: str = "train", seed: int = 0) -> Iterator[Example]:  # pragma: no cover
        raise NotImplementedError

    def reward(self, completion: str, example: Example) -> float:  # pragma: no cover
        raise NotImplementedError

    def sample(self, n: int, split: str = "train", seed: int = 0) -> list[Example]:
        """The first ``n`` examples of ``examples(split, seed)`` (repeats possible; fewer if finite)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return list(itertools.islice(self.examples(split, seed), n))

    def dataset(self, split: str = "test", n: int = 500, seed: int = 0, *, max_draws: int | None = None) -> list[Example]:
        """A fixed list of ``n`` *distinct* prompts: the first ones of ``examples(split, seed)``.

        Stops early (returning fewer) when the stream ends, or after ``max_draws`` draws
        (default ``100 * n + 1000``) when the problem space has fewer than ``n`` prompts.
        """
        return distinct_examples(self.examples(split, seed), n, max_draws=max_draws)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"
