"""Scoring a batch of completions so that no reward function can crash, hang or fool the run.

:func:`score` calls ``task.reward(completion, example)`` for each pair and classifies what
happened, the same way whichever of the two places it ran in (see below):

===============================================  ===========================================
what the reward function did                     what ``score`` does
===============================================  ===========================================
returned a real number in [0, 1] (any type:      that reward (as a float)
``float``, ``int``, ``bool``, numpy scalars,
0-d / one-element arrays and tensors,
``Decimal``, ``Fraction``)
returned NaN or ±inf of *any* type (``Decimal``  reward 0, counted in ``errors``, index in
``('sNaN')``, ``np.array([nan])``, a float16      ``nonfinite``: the trainer stops the run
tensor ...)                                      naming the sample (a bug in the reward)
returned a finite number outside [0, 1]          reward 0, counted in ``errors`` (refused:
(``1.5``, ``-1``, ``1e300``, ``10**400``)         the lab's rewards are in [0, 1])
returned something that is not a real number     reward 0, counted in ``errors``
(``None``, a string, a list, a multi-element
array, a ``complex`` even with zero imaginary
part)
raised an ``Exception`` (``MemoryError`` and     reward 0, counted in ``errors``
``RecursionError`` included)
ran past ``timeout_s``                           reward 0, counted in ``timeouts``
raised ``KeyboardInterrupt``                     re-raised (Ctrl-C stops the run)
raised any other ``BaseException``               :class:`~lab.errors.RewardCrashed` naming
(``SystemExit``, ``GeneratorExit``, ...), or     the exception and the sample: the trainer
its worker process died                          fails the run at once
===============================================  ===========================================

The first few problems are described in ``messages``, each naming the sample index and
the example's ``prompt_id``. The trainer logs ``errors + timeouts`` as ``reward_errors``.

**Where the reward function runs** (``ScoreResult.sandbox`` says which):

* **in a worker process** (:mod:`lab.tasks.sandbox`) when the task declares
  ``stateless_reward = True`` (every :class:`~lab.tasks.base.TaskBase` subclass does: the
  built-in tasks) and can be pickled by reference (its class importable by module path):
  the timeout is enforced by killing the worker, so it stops anything, a C-level regex
  included; the worker's address space is capped (``RLIMIT_AS``), so a huge allocation is
  a ``MemoryError`` there; threads a reward leaves behind retire that worker.
* **in this process** otherwise (tasks without the declaration, classes defined in
  ``__main__`` or inside a function, as tests and notebooks register; ``sandbox=False``):
  the weaker guarantee below.

In-process time limits:

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
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, NamedTuple, Sequence

MAX_MESSAGES = 5
MAX_TIMEOUT_S = min(threading.TIMEOUT_MAX, (2**63 - 1) // 10**9)
"""The longest time limit this platform can arm: ``signal.setitimer`` and ``Thread.join``
both hold the deadline in 64-bit nanoseconds (~9.2e9 s, about 292 years)."""
REWARD_RANGE = (0.0, 1.0)
"""Allowed rewards, bounds included; a finite value outside is refused (an error, reward 0)."""
MAX_TEXT = 200
"""Longest exception text kept in a message."""


@dataclass(frozen=True)
class ScoreResult:
    """Rewards of one batch and what went wrong while computing them.

    Fields:
        rewards: one float in [0, 1] per completion (0.0 where scoring failed).
        errors: calls that raised an ``Exception`` or returned a non-finite / out-of-range /
            non-numeric value.
        timeouts: calls stopped (or, in-process off the main thread, abandoned) after ``timeout_s``.
        messages: descriptions of the first few problems (sample index, prompt_id, cause).
        nonfinite: indices whose reward function returned NaN or inf (also counted in
            ``errors`` and scored 0 here). A non-finite reward is a bug in the reward
            function rather than in the completion, so the trainer stops the run on it,
            naming the sample; other callers may just count it.
        sandbox: where the reward function ran: ``"process"`` (a worker process) or
            ``"in-process: <why>"``.
    """

    rewards: list[float]
    errors: int = 0
    timeouts: int = 0
    messages: list[str] = field(default_factory=list)
    nonfinite: list[int] = field(default_factory=list)
    sandbox: str = "in-process"

    @property
    def failed(self) -> int:
        """``errors + timeouts``: the trainer's ``reward_errors`` metric."""
        return self.errors + self.timeouts


class RewardTimeout(BaseException):
    """Raised inside a reward call by the SIGALRM handler when its time is up."""


class NotANumber(ValueError):
    """A reward that is not a real number (``None``, a string, a complex, a sequence)."""


class NonFiniteReward(ValueError):
    """A reward that is NaN or ±inf, of any numeric type."""


class OutOfRange(ValueError):
    """A finite reward outside :data:`REWARD_RANGE`."""


class Outcome(NamedTuple):
    """What one reward call gave: ``kind`` is ``ok``, ``error``, ``nonfinite``, ``timeout``,
    ``crash`` or ``interrupt``; ``value`` the reward (0.0 unless ok); ``text`` the cause."""

    kind: str
    value: float = 0.0
    text: str = ""


def _on_alarm(signum, frame):  # pragma: no cover - exercised through score()
    raise RewardTimeout()


def _can_use_signals() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def safe_text(e: BaseException, limit: int = MAX_TEXT) -> str:
    """``"Type: message"`` of an exception, cut to ``limit`` characters; never raises.

    >>> safe_text(ValueError("x" * 500), 20)
    'ValueError: xxxxx...'
    """
    try:
        msg = str(e)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        msg = "<unprintable>"
    text = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any) -> str:
    try:
        shown = repr(value)
    except BaseException:  # noqa: BLE001
        shown = "<unprintable>"
    return f"{shown[:60]} ({type(value).__name__})"


def real_value(value: Any) -> int | float | Fraction | Decimal:
    """A reward as a Python real number, exact where the type is (int, Fraction, Decimal).

    ``bool`` and numpy bools are 0/1; numpy scalars, 0-d and one-element arrays and tensors
    give their single element; ``complex`` (Python or numpy, whatever its imaginary part),
    strings, bytes, ``None``, sequences and multi-element arrays raise :class:`NotANumber`.

    >>> import numpy as np
    >>> [real_value(v) for v in (True, np.float32(0.5), np.array([0.25]), 3)]
    [1, 0.5, 0.25, 3]
    >>> real_value(1 + 0j)
    Traceback (most recent call last):
    ...
    lab.tasks.scoring.NotANumber: reward is (1+0j) (complex), not a number
    """
    for _ in range(3):  # an array's element may itself be a numpy scalar
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float, Fraction, Decimal)):
            return value
        if value is None or isinstance(value, (str, bytes, bytearray, complex)):
            break
        item = getattr(value, "item", None)
        if not callable(item):
            break
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else getattr(value, "size", 1)
        if size != 1:
            raise NotANumber(f"reward is {_describe(value)} with {size} elements, not a number")
        value = item()
    if value is None or isinstance(value, (str, bytes, bytearray, complex)):
        raise NotANumber(f"reward is {_describe(value)}, not a number")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError, ArithmeticError):
        raise NotANumber(f"reward is {_describe(value)}, not a number") from None


def is_finite(r: int | float | Fraction | Decimal) -> bool:
    """Whether a real number from :func:`real_value` is finite (``Decimal('sNaN')`` is not).

    >>> is_finite(10**400), is_finite(Decimal("sNaN")), is_finite(float("-inf"))
    (True, False, False)
    """
    if isinstance(r, Decimal):
        return r.is_finite()
    if isinstance(r, float):
        return math.isfinite(r)
    return True


def reward_value(value: Any) -> float:
    """A reward function's return value as a float in [0, 1], or the reason it is refused.

    Raises :class:`NonFiniteReward` (NaN/inf), :class:`OutOfRange` (finite, outside
    :data:`REWARD_RANGE`; compared exactly, so ``Decimal("1e400")`` is out of range, not
    infinite) or :class:`NotANumber`.

    >>> import numpy as np, torch
    >>> [reward_value(v) for v in (1, True, np.float32(0.5), torch.tensor(0.25), Fraction(3, 4))]
    [1.0, 1.0, 0.5, 0.25, 0.75]
    >>> reward_value(Decimal("sNaN"))
    Traceback (most recent call last):
    ...
    lab.tasks.scoring.NonFiniteReward: reward is Decimal('sNaN') (Decimal): not finite
    >>> reward_value(1e300)
    Traceback (most recent call last):
    ...
    lab.tasks.scoring.OutOfRange: reward 1e+300 is outside [0, 1]
    """
    r = real_value(value)
    if not is_finite(r):
        raise NonFiniteReward(f"reward is {_describe(value)}: not finite")
    lo, hi = REWARD_RANGE
    if not lo <= r <= hi:
        shown = f"{r:.6g}" if isinstance(r, float) else _describe(value)
        raise OutOfRange(f"reward {shown} is outside [{lo:g}, {hi:g}]")
    return float(r)


def as_number(value: Any) -> float:
    """A reward of any real numeric type as a Python float (NaN and inf kept); anything else
    raises ``ValueError`` (:class:`NotANumber`). See :func:`reward_value` for the full check.

    >>> import numpy as np, torch
    >>> [as_number(v) for v in (1, True, np.float32(0.5), torch.tensor(0.25))]
    [1.0, 1.0, 0.5, 0.25]
    >>> as_number(np.float32("nan")) != as_number(np.float32("nan"))
    True
    """
    r = real_value(value)
    if isinstance(r, Decimal) and r.is_nan():
        return math.nan
    try:
        return float(r)
    except OverflowError:
        return math.inf if r > 0 else -math.inf


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


def call_reward(task, completion: str, example, timeout_s: float, call: Callable = call_with_timeout_signal) -> Outcome:
    """One reward call under ``call``'s time limit, classified (see the module docstring); never raises.

    The return value is checked inside the time limit (a slow ``__float__`` is bounded too).

    >>> from lab.tasks.arithmetic import Arithmetic
    >>> t = Arithmetic(); ex = t.make(1, "+", 1)
    >>> call_reward(t, "2", ex, 1.0), call_reward(t, "3", ex, 1.0).value
    (Outcome(kind='ok', value=1.0, text=''), 0.0)
    """
    try:
        return Outcome("ok", call(lambda: reward_value(task.reward(completion, example)), timeout_s))
    except RewardTimeout:
        return Outcome("timeout", 0.0, f"reward timed out after {timeout_s:g}s")
    except NonFiniteReward as e:
        return Outcome("nonfinite", 0.0, str(e))
    except KeyboardInterrupt:
        return Outcome("interrupt", 0.0, "KeyboardInterrupt")
    except Exception as e:  # noqa: BLE001 - a failed sample
        return Outcome("error", 0.0, safe_text(e))
    except BaseException as e:  # noqa: BLE001 - SystemExit, GeneratorExit, ...: reported, never escapes as such
        return Outcome("crash", 0.0, safe_text(e))


def collect(outcomes: Sequence[Outcome | None], examples: Sequence, *, task=None, max_messages: int = MAX_MESSAGES,
            sandbox: str = "in-process") -> ScoreResult:
    """The :class:`ScoreResult` of a batch's outcomes (``None``: not scored, after a crash).

    Raises ``KeyboardInterrupt`` for an interrupt and :class:`~lab.errors.RewardCrashed` for
    a crash, at the first one in sample order.
    """
    from lab.errors import RewardCrashed

    rewards: list[float] = []
    errors = timeouts = 0
    messages: list[str] = []
    nonfinite: list[int] = []
    for i, out in enumerate(outcomes):
        pid = getattr(examples[i], "prompt_id", "?")
        if out is None:
            continue
        if out.kind == "interrupt":
            raise KeyboardInterrupt
        if out.kind == "crash":
            name = getattr(task, "name", None) or type(task).__name__
            raise RewardCrashed(f"the reward function of task {name!r} raised {out.text} on sample {i} (prompt_id {pid}); "
                                "a reward function must return a number or raise an Exception")
        rewards.append(out.value if out.kind == "ok" else 0.0)
        if out.kind == "ok":
            continue
        if out.kind == "timeout":
            timeouts += 1
        else:
            errors += 1
            if out.kind == "nonfinite":
                nonfinite.append(i)
        if len(messages) < max_messages:
            messages.append(f"sample {i} (prompt_id {pid}): {out.text}")
    return ScoreResult(rewards, errors, timeouts, messages, nonfinite, sandbox)


def score(
    task,
    completions: Sequence[str],
    examples: Sequence,
    *,
    timeout_s: float = 1.0,
    max_messages: int = MAX_MESSAGES,
    use_signals: bool | None = None,
    sandbox: bool | None = None,
) -> ScoreResult:
    """Score ``completions[i]`` against ``examples[i]`` with ``task.reward``, never crashing.

    ``timeout_s`` bounds each call. ``sandbox``: None (default) runs the reward functions in
    the shared worker pool when the task allows it (see the module docstring), True requires
    it (``ValueError`` saying why not), False keeps them in this process. ``use_signals``
    forces (True) or forbids (False) the in-process SIGALRM mechanism, default: use it when
    possible. Raises ``ValueError`` for caller mistakes (lengths differ, ``timeout_s`` not in
    (0, :data:`MAX_TIMEOUT_S`]), :class:`~lab.errors.RewardCrashed` when a reward function
    raises a ``BaseException`` that is not an ``Exception``, and ``KeyboardInterrupt``.

    >>> from lab.tasks.arithmetic import Arithmetic
    >>> task = Arithmetic()
    >>> ex = task.make(12, "+", 7)
    >>> res = score(task, ["19", "18", "19\\n"], [ex, ex, ex])
    >>> res.rewards, res.errors, res.timeouts, res.sandbox
    ([1.0, 0.0, 1.0], 0, 0, 'process')
    """
    if len(completions) != len(examples):
        raise ValueError(f"got {len(completions)} completions but {len(examples)} examples")
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:.4g}] seconds, got {timeout_s!r}")
    signals = _can_use_signals() if use_signals is None else use_signals
    if signals and not _can_use_signals():
        raise ValueError("use_signals=True needs the main thread on a POSIX system")
    why_not = "sandbox=False"
    if sandbox is not False and completions:
        from lab.tasks import sandbox as sb

        why_not = sb.why_not_sandboxed(task)
        if why_not is None:
            outcomes = sb.shared_pool().outcomes(task, completions, examples, timeout_s)
            if outcomes is not None:
                return collect(outcomes, examples, task=task, max_messages=max_messages, sandbox="process")
            why_not = sb.shared_pool().last_fallback or "the worker pool is unavailable"
        if sandbox:
            raise ValueError(f"sandbox=True but the reward of {type(task).__name__} cannot run in a worker: {why_not}")
    call = call_with_timeout_signal if signals else call_with_timeout_thread
    outcomes: list[Outcome | None] = []
    for completion, ex in zip(completions, examples):
        out = call_reward(task, completion, ex, timeout_s, call)
        outcomes.append(out)
        if out.kind in ("crash", "interrupt"):
            outcomes += [None] * (len(completions) - len(outcomes))
            break
    return collect(outcomes, examples, task=task, max_messages=max_messages, sandbox=f"in-process: {why_not}")
