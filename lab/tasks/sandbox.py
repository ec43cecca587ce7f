"""Reward functions in worker processes, where a time limit can always stop them.

:func:`lab.tasks.scoring.score` sends a batch here when the task allows it
(:func:`why_not_sandboxed` is None). One :class:`RewardPool` per process
(:func:`shared_pool`), started on first use and shut down at exit.

**Workers.** Each is a fresh interpreter, ``python -m lab.tasks.sandbox FD PARENT_PID``,
started with ``subprocess`` (fork + exec at once, so it is safe after torch's threads have
started, unlike a bare ``fork``; and unlike multiprocessing's ``spawn``/``forkserver`` it never
re-imports your ``__main__`` script). It talks to the parent over a socket pair with
``multiprocessing.connection``. It runs in its own session (Ctrl-C in the terminal reaches
only the trainer), ignores SIGINT, asks Linux to kill it when its parent dies
(``PR_SET_PDEATHSIG``) and exits when the socket closes. Because these are not
``multiprocessing`` children, a daemonic process, such as the training process the notebook
launcher (``lab.widgets``) starts, can use the pool too: scoring is sandboxed there as well.

**One call per worker per step.** A batch is split into at most ``workers`` contiguous
chunks of at least :data:`MIN_CHUNK` samples; each worker gets its chunk in one message (the
task itself, pickled, only the first time that worker sees it) and streams back one small
result per sample. The cost for the built-in rewards is measured by
``benchmarks/reward_sandbox.py`` (``data/results/reward_sandbox.csv``).

**Limits, per sample.** Inside the worker the usual SIGALRM limit (its main thread) stops
Python-level loops after ``timeout_s`` and the worker carries on. If no result arrives
within ``timeout_s + HARD_GRACE_S`` (a C-level loop, a catastrophic regex, a reward that
blocks signals), the parent kills the worker (SIGKILL), counts that sample as a timeout and
hands the rest of the chunk to a fresh worker. Each chunk also gets a CPU-time cap
(``RLIMIT_CPU``, the chunk's whole time budget plus :data:`CPU_SLACK_S`) so that a worker
orphaned in a C loop cannot spin for ever. The address space is capped at the worker's
size after loading the task plus :data:`MEMORY_HEADROOM_MB` (``RLIMIT_AS``, Linux), so a
huge allocation is a ``MemoryError`` (a failed sample) there, not an out-of-memory kill of
the trainer. A worker whose reward left threads running (a busy loop off the main thread)
reports it and is retired after its chunk, so later scoring never shares its CPU.

**Classification** is :func:`lab.tasks.scoring.call_reward`'s, done in the worker, so a
value is judged the same way in both places. A worker that dies while scoring (a segfault,
``os._exit``) is a :class:`~lab.errors.RewardCrashed` for the sample it was on.

**Copies.** The worker scores with a *copy* of the task, pickled when that worker first
sees the task object: changes made to the task later, and state the reward function keeps
between calls, are not shared. That is the promise ``stateless_reward = True`` makes (every
``TaskBase`` subclass makes it; set it to False to keep a task's reward in-process).
"""

from __future__ import annotations

import atexit
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Sequence

from lab.errors import reason
from lab.tasks.scoring import Outcome, RewardTimeout, call_reward

HARD_GRACE_S = 0.5
"""How long after ``timeout_s`` the parent waits for a sample's result before killing the worker."""
LOAD_TIMEOUT_S = 120.0
"""How long a worker may take to start and unpickle a task (imports included)."""
MIN_CHUNK = 64
"""Fewest samples sent to one worker: a default step (64 rollouts) is one message to one worker."""
MEMORY_HEADROOM_MB = 2048
"""Address space a worker may add to what it holds after loading the task."""
CPU_SLACK_S = 5
"""CPU seconds added to a chunk's time budget for its ``RLIMIT_CPU`` backstop."""
DEFAULT_WORKERS = max(1, min(2, os.cpu_count() or 1))
MAX_WAIT_S = 3600.0


def why_not_sandboxed(task) -> str | None:
    """None if ``task``'s reward may run in a worker, else why not (one phrase).

    >>> from lab.tasks.arithmetic import Arithmetic
    >>> why_not_sandboxed(Arithmetic()) is None
    True
    >>> def make():
    ...     class Local:
    ...         stateless_reward = True
    ...     return Local()
    >>> why_not_sandboxed(make())
    'its class Local is not importable by a worker (defined in __main__, a notebook or a function)'
    >>> why_not_sandboxed(object())
    'the task does not declare stateless_reward = True'
    """
    if getattr(task, "stateless_reward", False) is not True:
        return "the task does not declare stateless_reward = True"
    cls = type(task)
    found = sys.modules.get(cls.__module__)
    if cls.__module__ in ("__main__", "__mp_main__") or getattr(found, "__spec__", None) is None:
        found = None
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    if found is not cls:
        return f"its class {cls.__name__} is not importable by a worker (defined in __main__, a notebook or a function)"
    return None


class _Worker:
    """One worker process and the parent's end of its socket."""

    def __init__(self, env: dict):
        parent, child = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab.tasks.sandbox", str(child.fileno()), str(os.getpid())],
            pass_fds=(child.fileno(),), env=env, start_new_session=True, stdin=subprocess.DEVNULL,
        )
        child.close()
        self.conn = Connection(parent.detach())
        self.token: int | None = None  # the task this worker holds
        self.queue: deque = deque()  # (index, completion, example) sent and not yet answered
        self.deadline = 0.0
        self.loaded = False  # has it said it holds the task (it started and unpickled it)?

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.conn.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait
            pass

    def close(self) -> None:
        try:
            self.conn.close()  # the worker reads EOF and exits
        except OSError:
            pass
        try:
            self.proc.wait(1)
        except subprocess.TimeoutExpired:
            self.kill()


class RewardPool:
    """Up to ``workers`` worker processes scoring reward calls; see the module docstring.

    Thread-safe (one batch at a time). :meth:`outcomes` returns None when the batch cannot
    be sent (the task or an example does not pickle, a worker cannot load the task): the
    caller then scores in-process; :attr:`last_fallback` says why.
    """

    def __init__(self, workers: int = DEFAULT_WORKERS, *, memory_headroom_mb: int = MEMORY_HEADROOM_MB,
                 hard_grace_s: float = HARD_GRACE_S, min_chunk: int = MIN_CHUNK):
        self.n_workers, self.memory_headroom_mb = max(1, int(workers)), memory_headroom_mb
        self.hard_grace_s, self.min_chunk = hard_grace_s, max(1, int(min_chunk))
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._tasks: dict[int, tuple[object, int, bytes | None]] = {}  # id(task) -> (task, token, blob)
        self._next_token = 0
        self.last_fallback: str | None = None
        self.broken: str | None = None  # set when workers cannot start here: later batches go in-process at once
        self.stats = {"started": 0, "killed": 0, "retired": 0}
        root = str(Path(__file__).resolve().parents[2])
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]),
                     "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

    # -- the task, pickled once per task object -----------------------------------------------------
    def _task_entry(self, task) -> tuple[int, bytes] | None:
        entry = self._tasks.get(id(task))
        if entry is None or entry[0] is not task:
            try:
                blob = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # noqa: BLE001 - any pickling failure means: in-process
                blob = None
                self.last_fallback = f"the task does not pickle ({type(e).__name__}: {reason(e, 80)})"
            if len(self._tasks) >= 8:
                self._tasks.pop(next(iter(self._tasks)))
            self._next_token += 1
            entry = (task, self._next_token, blob)
            self._tasks[id(task)] = entry
        if entry[2] is None:
            return None
        return entry[1], entry[2]

    def _fresh(self) -> _Worker:
        w = _Worker(self._env)
        self.stats["started"] += 1
        return w

    def _send(self, w: _Worker, token: int, blob: bytes, items: list, timeout_s: float) -> None:
        send_blob = w.token != token
        w.conn.send(("score", token, (list(sys.path), blob) if send_blob else None, items, timeout_s,
                     self.memory_headroom_mb, CPU_SLACK_S))
        w.token = token
        w.queue = deque(items)
        w.deadline = time.monotonic() + (LOAD_TIMEOUT_S if send_blob else 0.0) + timeout_s + self.hard_grace_s

    # -- one batch ----------------------------------------------------------------------------------
    def outcomes(self, task, completions: Sequence[str], examples: Sequence, timeout_s: float) -> list[Outcome | None] | None:
        """One :class:`~lab.tasks.scoring.Outcome` per sample (None after a crash), or None
        when the batch cannot run in workers (see :attr:`last_fallback`)."""
        with self._lock:
            if self.broken:
                self.last_fallback = self.broken
                return None
            entry = self._task_entry(task)
            if entry is None:
                return None
            token, blob = entry
            items = list(zip(range(len(completions)), completions, examples))
            try:
                pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # noqa: BLE001
                self.last_fallback = f"an example or completion does not pickle ({type(e).__name__})"
                return None
            try:
                return self._run(token, blob, items, timeout_s)
            except _Broken as e:  # workers cannot start here (a missing interpreter, lab not importable)
                self.broken = self.last_fallback = str(e)
                self._abort({w.conn: w for w in self._workers})
                return None
            except (_Fallback, OSError) as e:
                self.last_fallback = str(e) if isinstance(e, _Fallback) else f"a reward worker could not be reached ({e})"
                self._abort({w.conn: w for w in self._workers})
                return None

    def _run(self, token: int, blob: bytes, items: list, timeout_s: float) -> list[Outcome | None]:
        n = len(items)
        k = max(1, min(self.n_workers, n // self.min_chunk))
        for w in [w for w in self._workers if not w.alive()]:  # e.g. killed from outside while idle
            self._drop(w, kill=True)
        bounds = [round(j * n / k) for j in range(k + 1)]
        active: dict[Connection, _Worker] = {}
        try:
            while len(self._workers) < k:
                self._workers.append(self._fresh())
            for j in range(k):
                w = self._workers[j]
                self._send(w, token, blob, items[bounds[j]:bounds[j + 1]], timeout_s)
                active[w.conn] = w
        except OSError as e:
            time.sleep(0.05)  # let a worker that is exiting finish, so its exit code is known
            dead = [w for w in self._workers if not w.loaded and not w.alive()]
            self._abort({w.conn: w for w in self._workers})
            if dead:
                raise _Broken(f"a reward worker exited while starting (exit code {dead[0].proc.returncode})") from None
            raise _Fallback(f"could not reach a reward worker ({e})") from None
        out: list[Outcome | None] = [None] * n
        while active:
            now = time.monotonic()
            wait_s = min(MAX_WAIT_S, max(0.0, min(w.deadline for w in active.values()) - now))
            for conn in wait(list(active), wait_s):
                w = active[conn]
                try:
                    while True:
                        msg = conn.recv()
                        if msg[0] == "loaded":
                            w.loaded = True
                            w.deadline = time.monotonic() + timeout_s + self.hard_grace_s
                        elif msg[0] == "load_error":
                            self._abort(active)
                            raise _Fallback(f"a worker could not load the task ({msg[1]})")
                        elif msg[0] == "done":
                            del active[conn]
                            if msg[1]:  # the reward left threads running: retire this worker
                                self.stats["retired"] += 1
                                self._drop(w, kill=False)
                            break
                        else:
                            i, kind, value, text = msg
                            out[i] = Outcome(kind, value, text)
                            w.queue.popleft()
                            w.deadline = time.monotonic() + timeout_s + self.hard_grace_s
                            if kind in ("crash", "interrupt"):
                                self._abort(active)
                                return out
                        if not conn.poll():
                            break
                except (EOFError, OSError):  # the worker died
                    del active[conn]
                    code = w.proc.wait()
                    self._drop(w, kill=True)
                    if not w.loaded:
                        self._abort(active)
                        raise _Broken(f"a reward worker exited while starting (exit code {code})") from None
                    if w.queue:
                        i = w.queue[0][0]
                        how = f"signal {-code}" if code < 0 else f"exit code {code}"
                        out[i] = Outcome("crash", 0.0, f"the reward worker process died ({how})")
                        self._abort(active)
                        return out
            now = time.monotonic()
            for conn, w in list(active.items()):
                if now < w.deadline:
                    continue
                del active[conn]
                self.stats["killed"] += 1
                self._drop(w, kill=True)
                if not w.loaded:
                    self._abort(active)
                    raise _Fallback(f"a reward worker did not load the task within {LOAD_TIMEOUT_S:g} s")
                if not w.queue:  # pragma: no cover - a result and the deadline crossed
                    continue
                first = w.queue.popleft()
                out[first[0]] = Outcome("timeout", 0.0, f"reward timed out after {timeout_s:g}s (worker killed)")
                rest = list(w.queue)
                if rest:
                    nw = self._fresh()
                    self._workers.append(nw)
                    self._send(nw, token, blob, rest, timeout_s)
                    active[nw.conn] = nw
        return out

    def _drop(self, w: _Worker, *, kill: bool) -> None:
        if w in self._workers:
            self._workers.remove(w)
        w.kill() if kill else w.close()

    def _abort(self, active: dict) -> None:
        """Kill the workers still busy with this batch (their results are not wanted)."""
        for w in list(active.values()):
            self._drop(w, kill=True)
        active.clear()

    def close(self) -> None:
        """Stop every worker (they exit on the closed socket; killed if they do not)."""
        with self._lock:
            for w in self._workers:
                w.close()
            self._workers = []

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        return [w.proc.pid for w in self._workers if w.alive()]


class _Fallback(Exception):
    """The batch cannot run in workers; the message says why (the caller scores in-process)."""


class _Broken(_Fallback):
    """Workers cannot start in this process at all; the pool stops trying."""


_POOL: RewardPool | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> RewardPool:
    """This process's pool, created on first use (no process starts until a batch is scored)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = RewardPool()
            atexit.register(_POOL.close)
        return _POOL


# -- the worker side ------------------------------------------------------------------------------
def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _limit(kind: int, soft: int) -> None:
    import resource

    try:
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):  # pragma: no cover - a platform without the limit
        pass


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(0)


def _raise_timeout(signum, frame):  # pragma: no cover - runs in the worker
    raise RewardTimeout()


def call_with_owned_alarm(fn, timeout_s: float):
    """``fn()`` under a SIGALRM deadline, for a process that owns SIGALRM (the worker: its
    handler is installed once, so each call costs two ``setitimer`` calls)."""
    import signal

    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def worker_main(fd: int, parent_pid: int) -> None:
    """Serve ``score`` requests on socket ``fd`` until it closes (see the module docstring)."""
    import resource
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _raise_timeout)
    _die_with_parent(parent_pid)
    _limit(resource.RLIMIT_CORE, 0)  # a reward that crashes the worker leaves no core file
    conn = Connection(fd)
    tasks: dict[int, object] = {}
    base_threads = threading.active_count()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        _, token, carried, items, timeout_s, headroom_mb, cpu_slack = msg
        if carried is not None:
            sys.path[:], blob = carried
            _limit(resource.RLIMIT_AS, resource.getrlimit(resource.RLIMIT_AS)[1])  # the new task may be bigger
            try:
                tasks = {token: pickle.loads(blob)}
            except BaseException as e:  # noqa: BLE001 - reported; the parent scores in-process
                conn.send(("load_error", f"{type(e).__name__}: {reason(e, 120)}"))
                continue
            conn.send(("loaded",))
        task = tasks.get(token)
        if task is None:  # pragma: no cover - the parent always sends a task a worker lacks
            conn.send(("load_error", "the worker does not hold this task"))
            continue
        vm = _vm_bytes()
        if vm is not None and headroom_mb:
            _limit(resource.RLIMIT_AS, vm + int(headroom_mb) * 2**20)
        used = resource.getrusage(resource.RUSAGE_SELF)
        budget = len(items) * timeout_s + cpu_slack
        if budget < 10**9:
            _limit(resource.RLIMIT_CPU, int(used.ru_utime + used.ru_stime + budget) + 1)
        stop = False
        for i, completion, example in items:
            out = call_reward(task, completion, example, timeout_s, call_with_owned_alarm)
            conn.send((i, out.kind, out.value, out.text))
            if out.kind in ("crash", "interrupt"):
                stop = True
                break
        retire = threading.active_count() > base_threads
        conn.send(("done", retire))
        if stop or retire:
            conn.close()
            os._exit(0)  # do not wait for the threads the reward left behind


if __name__ == "__main__":
    worker_main(int(sys.argv[1]), int(sys.argv[2]))
