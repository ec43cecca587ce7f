"""Scoring a batch of completions with a per-call time limit that never crashes the batch.

:func:`score` calls ``task.reward(completion, example)`` for each pair. A call that raises,
runs past ``timeout_s``, or returns something that is not a finite number in [0, 1] (NaN,
inf, 1.5, ``None``; any numeric type is read the same way, see :func:`as_number`) gets reward
0.0 and is counted (``errors`` or ``timeouts``); the first
few problems are described in ``messages``, each naming the sample index and the example's
``prompt_id``. The trainer logs ``errors + timeouts`` as ``reward_errors``.

How the time limit is enforced:

* **Main thread on POSIX** (the usual trainer): ``signal.setitimer(ITIMER_REAL)`` arms a
  SIGALRM whose handler raises inside the reward function. The exception derives from
  ``BaseException`` so a reward's own ``except Exception`` cannot swallow it. A previous
  SIGALRM handler and any running real-time timer are restored afterwards. Limitation:
  Python handles signals between bytecodes, so a single long C-level operation (one huge
  integer power, a catastrophic regex) is only interrupted when it returns.
* **Anywhere else** (a worker thread, e.g. Streamlit, or Windows): each call runs in a fresh
  daemon thread and is waited on for ``timeout_s``. A runaway thread **cannot be killed**,
  only abandoned: it keeps running (and using CPU) in the background until it finishes,
  while scoring moves on. Being a daemon, it does not keep the interpreter alive.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

MAX_MESSAGES = 5
MAX_TIMEOUT_S = min(threading.TIMEOUT_MAX, (2**63 - 1) // 10**9)
"""The longest time limit this platform can arm: ``signal.setitimer`` and ``Thread.join``
both hold the deadline in 64-bit nanoseconds (~9.2e9 s, about 292 years)."""


@dataclass(frozen=True)
class ScoreResult:
    """Rewards of one batch and what went wrong while computing them.

    Fields:
        rewards: one float in [0, 1] per completion (0.0 where scoring failed).
        errors: calls that raised or returned a non-finite / out-of-range / non-numeric value.
        timeouts: calls stopped (or abandoned) after ``timeout_s``.
        messages: descriptions of the first few problems (sample index, prompt_id, cause).
        nonfinite: indices whose reward function returned NaN or inf (also counted in
            ``errors`` and scored 0 here). A non-finite reward is a bug in the reward
            function rather than in the completion, so the trainer stops the run on it,
            naming the sample; other callers may just count it.
    """

    rewards: list[float]
    errors: int = 0
    timeouts: int = 0
    messages: list[str] = field(default_factory=list)
    nonfinite: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """``errors + timeouts``: the trainer's ``reward_errors`` metric."""
        return self.errors + self.timeouts


class RewardTimeout(BaseException):
    """Raised inside a reward call by the SIGALRM handler when its time is up."""


def _on_alarm(signum, frame):  # pragma: no cover - exercised through score()
    raise RewardTimeout()


def _can_use_signals() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def as_number(value: Any) -> float:
    """A reward of any numeric type as a Python float: ``float``, ``int``, ``bool``, numpy
    scalars and 0-d arrays, one-element torch tensors, ``Decimal``, ``Fraction``. Anything
    else (``None``, a string, a sequence, a multi-element tensor) raises ``ValueError``.

    >>> import numpy as np, torch
    >>> [as_number(v) for v in (1, True, np.float32(0.5), torch.tensor(0.25))]
    [1.0, 1.0, 0.5, 0.25]
    >>> as_number(np.float32("nan")) != as_number(np.float32("nan"))
    True
    """
    if isinstance(value, (str, bytes, bytearray)) or value is None:
        raise ValueError(f"reward is {value!r} ({type(value).__name__}), not a number")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        raise ValueError(f"reward is {str(value)[:60]!r} ({type(value).__name__}), not a number") from None


def _check(r: float) -> float:
    """``r`` if it is a finite number in [0, 1], else ``ValueError`` saying what it was."""
    if not math.isfinite(r) or not 0.0 <= r <= 1.0:
        raise ValueError(f"reward {r!r} is not a finite number in [0, 1]")
    return r


def call_with_timeout_signal(fn: Callable[[], Any], timeout_s: float) -> Any:
    """Run ``fn()`` with a SIGALRM deadline (main thread, POSIX); raises :class:`RewardTimeout`.

    >>> call_with_timeout_signal(lambda: 3, 1.0)
    3
    """
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    old_delay, old_interval = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # someone else's timer was running: give it back what is left
            left = max(old_delay - (time.monotonic() - start), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def call_with_timeout_thread(fn: Callable[[], Any], timeout_s: float) -> Any:
    """Run ``fn()`` in a daemon thread and wait ``timeout_s``; raises :class:`RewardTimeout`.

    On timeout the thread is abandoned, not killed (Python cannot kill a thread).

    >>> call_with_timeout_thread(lambda: 3, 1.0)
    3
    """
    box: dict[str, Any] = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    t = threading.Thread(target=run, name="reward-call", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise RewardTimeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


def score(
    task,
    completions: Sequence[str],
    examples: Sequence,
    *,
    timeout_s: float = 1.0,
    max_messages: int = MAX_MESSAGES,
    use_signals: bool | None = None,
) -> ScoreResult:
    """Score ``completions[i]`` against ``examples[i]`` with ``task.reward``, never crashing.

    ``timeout_s`` bounds each call; ``use_signals`` forces (True) or forbids (False) the
    SIGALRM mechanism, default: use it when possible (see the module docstring).
    Raises ``ValueError`` only for caller mistakes (lengths differ, ``timeout_s`` not in
    (0, :data:`MAX_TIMEOUT_S`]).

    >>> from lab.tasks.arithmetic import Arithmetic
    >>> task = Arithmetic()
    >>> ex = task.make(12, "+", 7)
    >>> res = score(task, ["19", "18", "19\\n"], [ex, ex, ex])
    >>> res.rewards, res.errors, res.timeouts
    ([1.0, 0.0, 1.0], 0, 0)
    """
    if len(completions) != len(examples):
        raise ValueError(f"got {len(completions)} completions but {len(examples)} examples")
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:.4g}] seconds, got {timeout_s!r}")
    signals = _can_use_signals() if use_signals is None else use_signals
    if signals and not _can_use_signals():
        raise ValueError("use_signals=True needs the main thread on a POSIX system")
    call = call_with_timeout_signal if signals else call_with_timeout_thread
    rewards: list[float] = []
    errors = timeouts = 0
    messages: list[str] = []
    nonfinite: list[int] = []

    def note(i: int, what: str) -> None:
        if len(messages) < max_messages:
            pid = getattr(examples[i], "prompt_id", "?")
            messages.append(f"sample {i} (prompt_id {pid}): {what}")

    for i, (completion, ex) in enumerate(zip(completions, examples)):
        try:
            value = as_number(call(lambda c=completion, e=ex: task.reward(c, e), timeout_s))
            if not math.isfinite(value):
                nonfinite.append(i)
            rewards.append(_check(value))
        except RewardTimeout:
            timeouts += 1
            rewards.append(0.0)
            note(i, f"reward timed out after {timeout_s:g}s")
        except Exception as e:
            errors += 1
            rewards.append(0.0)
            note(i, f"{type(e).__name__}: {e}")
    return ScoreResult(rewards, errors, timeouts, messages, nonfinite)
