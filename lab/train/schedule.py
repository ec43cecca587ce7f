"""Which prompts each step trains on (a pure function of task, seed and step: resume needs no state)."""

from __future__ import annotations

import random

from lab.tasks.base import distinct_examples


class PromptSchedule:
    """Which prompts each step trains on: block ``step // reuse`` of a deterministic stream.

    With ``reuse = J`` every prompt is used for J consecutive steps (KAE's setting); with 1,
    every step gets fresh prompts. The stream is the task's train split, cycled (epoch e
    uses seed + e), or, with ``pool_size`` > 0, a fixed pool: the first ``pool_size``
    distinct training prompts (seed ``seed``), every epoch in a new order (shuffled with
    seed + e), so a reference stage run on :attr:`pool` covers every prompt trained on.
    The schedule is a pure function of (task, seed, step), so resume needs no extra state.

    >>> from types import SimpleNamespace as NS
    >>> class Five:
    ...     def examples(self, split="train", seed=0):
    ...         return iter([NS(prompt_id=i, prompt=str(i)) for i in range(5)])
    >>> s = PromptSchedule(Five(), seed=0, per_step=2, reuse=1, pool_size=3)
    >>> [e.prompt_id for e in s.pool], sorted(e.prompt_id for t in range(3) for e in s.prompts(t)[:1]) != []
    ([0, 1, 2], True)
    """

    def __init__(self, task, *, seed: int, per_step: int, reuse: int, pool_size: int = 0):
        self.task, self.seed, self.per_step, self.reuse = task, seed, per_step, reuse
        self.pool = distinct_examples(task.examples("train", seed), pool_size) if pool_size else None
        self._epoch, self._it, self._block, self._current = 0, None, -1, []

    def _epoch_examples(self):
        if self.pool is None:
            return iter(self.task.examples("train", self.seed + self._epoch))
        order = list(range(len(self.pool)))
        random.Random(self.seed + self._epoch).shuffle(order)
        return (self.pool[i] for i in order)

    def _next_example(self):
        while True:
            if self._it is None:
                self._it = self._epoch_examples()
            try:
                return next(self._it)
            except StopIteration:
                if self._epoch > 0 and self._empty_epoch:
                    raise ValueError(f"task {getattr(self.task, 'name', '?')!r} has no training examples") from None
                self._empty_epoch = True
                self._epoch += 1
                self._it = None

    def prompts(self, step: int) -> list:
        block = step // self.reuse
        if block < self._block:
            raise ValueError("PromptSchedule only moves forward; make a new one to rewind")
        while self._block < block:
            self._empty_epoch = False
            out = []
            for _ in range(self.per_step):
                out.append(self._next_example())
                self._empty_epoch = False
            self._current, self._block = out, self._block + 1
        return self._current
