"""Module-level (so picklable by reference) tasks whose rewards misbehave on purpose, for the
reward sandbox tests: a worker process imports this module to unpickle them."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

from lab.tasks.base import Example


class CustomBase(BaseException):
    """A BaseException that is not an Exception, as a careless library might define."""


class ValueTask:
    """Returns ``example.meta["value"]`` as the reward, whatever it is."""

    name = "value-task"
    stateless_reward = True

    def reward(self, completion, example):
        return example.meta["value"]


class RaiseTask:
    """Raises ``example.meta["raise"]`` (an exception class or instance)."""

    name = "raise-task"
    stateless_reward = True

    def reward(self, completion, example):
        raise example.meta["raise"]


class BehaviourTask:
    """Does what the completion says: ok, spin, regex, block, thread, alloc, exit, segv."""

    name = "behaviour-task"
    stateless_reward = True

    def reward(self, completion, example):
        if completion == "spin":  # a Python-level loop: SIGALRM stops it
            while True:
                pass
        if completion == "regex":  # exponential backtracking (CPython's re checks for signals now and then)
            re.fullmatch(r"(a|aa)+$", "a" * 60 + "b")
        if completion == "block":  # no signal can reach it: only killing the process stops it
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
        if completion == "thread":  # a busy loop left behind off the main thread
            threading.Thread(target=_spin, daemon=True).start()
            return 1.0
        if completion == "alloc":
            return len(bytearray(64 * 2**30))
        if completion == "exit":
            os._exit(3)
        if completion == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
            time.sleep(5)
        if completion == "pid":
            return 1.0 if os.getpid() > 0 else 0.0
        return 1.0


def _spin():
    while True:
        pass


def examples(n: int, **meta) -> list[Example]:
    """``n`` examples with prompt ids 100.. and ``meta`` in each."""
    return [Example(100 + i, f"p{i}", "1", dict(meta)) for i in range(n)]


def score_arithmetic_into(queue) -> None:
    """Score four arithmetic answers and put ``(sandbox, rewards)`` on ``queue`` (run in a daemon process)."""
    from lab import tasks
    from lab.tasks.scoring import score

    t = tasks.get("arithmetic")
    exs = t.sample(4, "train", 0)
    res = score(t, [e.answer for e in exs], exs)
    queue.put((res.sandbox, res.rewards))
