"""Writing one run directory: :class:`RunWriter` (one writer per run: ``writer.lock``), its
writer thread (per-step records written in order off the training thread) and its heartbeat.

Every whole-file write goes to a temp file and is renamed into place; metrics.jsonl is
append-only. ``status.json``'s ``step`` never names a step not yet on disk.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from . import files
from .checkpoints import TMP_PREFIX, checkpoint_dir
from .files import (
    CHECKPOINTS_DIR, CONFIG_FILE, FORMAT_VERSION, LATEST_FILE, LOCK_NAME, METRICS_FILE, PROBES_DIR, PROVENANCE_FILE,
    REFERENCE_FILE, SAMPLES_DIR, STATUS_FILE, RunExistsError, RunLockedError, append_line, atomic_write_bytes,
    atomic_write_json, json_line, read_json, scan_jsonl, step_file, step_name, step_of,
)
from .reader import STATUSES, raw_status, read_status, reference_frame_problems

try:  # POSIX advisory locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

HEARTBEAT_S = 10.0
"""How often a live writer refreshes ``status.json``'s ``updated``."""
_PER_STATUS = ("status", "step", "error", "message")
"""status.json keys that belong to one status: never carried into the next one (``notes`` is
kept for the session, ``started`` for the run)."""


def _busy_message(path: Path, st: dict) -> str:
    who = f"pid {st.get('pid')} on host {st.get('host')}" if st else "another process"
    age = ""
    if isinstance(st.get("updated"), (int, float)):
        age = f" (last heartbeat {time.time() - st['updated']:.0f} s ago)"
    return f"{path} is being written by {who}{age}; wait for it to end or stop it first (one writer per run)"


def _take_lock(path: Path) -> int | None:
    """Exclusive ``writer.lock`` of ``path`` (retried for 1 s); raises RunLockedError when held."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    lock = path / LOCK_NAME
    if os.path.lexists(lock) and (prob := files.not_regular(lock, f"{path}/{LOCK_NAME}")):
        raise RunLockedError(prob)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in between
        os.close(fd)
        raise RunLockedError(f"{path}/{LOCK_NAME}: not a regular file; remove it")
    deadline = time.monotonic() + 1.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise RunLockedError(_busy_message(path, raw_status(path)[0])) from None
            time.sleep(0.05)


def refuse_if_live(path: str | Path) -> None:
    """Raise :class:`RunLockedError` when a live writer owns the run (see :func:`lab.runs.writer_alive`)."""
    path = Path(path)
    if read_status(path).get("status") == "running":
        raise RunLockedError(_busy_message(path, raw_status(path)[0]))


class RunWriter:
    """Writes one run directory. Create with :meth:`create` (new run) or :meth:`reopen` (resume).

    Holds ``writer.lock`` until :meth:`close` (or the process ends): a second writer on the
    same run is refused with :class:`RunLockedError`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._status: dict[str, Any] = {}
        self._lock_fd: int | None = None
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()
        self._queue: queue.Queue | None = None  # background mode (start_background): pending writes
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None  # the writer thread's first failure, raised by flush

    @classmethod
    def create(cls, path: Path, config: dict) -> "RunWriter":
        """Make a new run directory with its config and a ``running`` status.

        Fails with :class:`RunExistsError` if ``path`` already holds a run (never overwrites one).
        """
        path = Path(path)
        if os.path.lexists(path / CONFIG_FILE) or os.path.lexists(path / STATUS_FILE):
            raise RunExistsError(f"{path} already holds a run; pick another --run-name or use --resume {path}")
        path.mkdir(parents=True, exist_ok=True)
        w = cls(path)
        w._lock_fd = _take_lock(path)
        atomic_write_json(path / CONFIG_FILE, {**config, "format_version": FORMAT_VERSION})
        w.set_status("running", step=-1)
        return w

    @classmethod
    def reopen(cls, path: Path, from_step: int) -> "RunWriter":
        """Reopen for resume from checkpoint ``from_step``: drop everything logged after it.

        Refused (:class:`RunLockedError`) while another process writes the run, here or on
        another host (a fresh heartbeat).
        """
        path = Path(path)
        refuse_if_live(path)  # liveness applied: lock, pid or fresh heartbeat
        w = cls(path)
        w._lock_fd = _take_lock(path)
        prev, _ = raw_status(path)
        w._status = {k: v for k, v in prev.items() if k not in (*_PER_STATUS, "notes", "problem")}
        w.truncate_after(from_step)
        w.set_status("running", step=from_step)
        return w

    def set_status(self, status: str, *, step: int, error: str | None = None, **extra: Any) -> None:
        """Rewrite status.json now (after every queued step is on disk, in background mode).

        ``extra`` keys are written too: ``message`` (a normal ending's words, this status only),
        ``notes`` (kept on every later status of the session)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.flush()
        self._write_status(status, step=step, error=error, **extra)

    def _write_status(self, status: str, *, step: int, error: str | None = None, **extra: Any) -> None:
        with self._lock:
            if not self._status:  # a writer made with RunWriter(path): keep what status.json holds (started, ...)
                self._status = {k: v for k, v in raw_status(self.path)[0].items() if k not in ("notes", "problem")}
            now = time.time()
            rec = {
                **{k: v for k, v in self._status.items() if k not in _PER_STATUS},
                "status": status,
                "step": step,
                "error": error,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": self._status.get("started", now),
                "updated": now,
                "format_version": FORMAT_VERSION,
                **extra,
            }
            atomic_write_json(self.path / STATUS_FILE, rec)
            self._status = rec

    # ..... liveness .................................................................................
    def heartbeat(self) -> None:
        """Refresh ``updated`` in status.json (only while the status is ``running``)."""
        with self._lock:
            if self._status.get("status") != "running":
                return
            rec = {**self._status, "updated": time.time()}
            atomic_write_json(self.path / STATUS_FILE, rec)
            self._status = rec

    def start_heartbeat(self, interval_s: float = HEARTBEAT_S) -> None:
        """Call :meth:`heartbeat` every ``interval_s`` seconds from a daemon thread until :meth:`close`."""
        if self._beat is not None:
            return

        def beat():
            while not self._beat_stop.wait(interval_s):
                try:
                    self.heartbeat()
                except OSError:  # a full disk or a vanished folder: try again next time
                    pass

        self._beat = threading.Thread(target=beat, name=f"heartbeat:{self.path.name}", daemon=True)
        self._beat.start()

    def close(self) -> None:
        """Write what is queued, stop the writer thread and the heartbeat, release ``writer.lock``
        (safe to call twice). A failure of the writer thread not yet raised is raised here,
        after the lock is released."""
        error = self._stop_background()
        self._beat_stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)
        self._beat = None
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
            except OSError:
                pass
            self._lock_fd = None
        if error is not None:
            raise error

    # ..... background writing ...........................................................................
    def start_background(self, max_pending: int = 2) -> None:
        """From now on, write records from one writer thread, in the order they were logged.

        ``log_step`` / ``log_samples`` / ``log_probes`` / ``log_metrics`` return once their record
        is queued (the DataFrame and the JSON line are ready: the caller may change its objects);
        a caller more than ``max_pending`` records ahead waits (bounded memory). Everything else
        (``set_status``, ``commit_checkpoint``, ``truncate_after``, ``close``) first waits until
        the queue is on disk (:meth:`flush`), so the files keep their order and meaning: status.json's
        ``step`` is written by the same thread, after that step's files. A write that fails
        stops the thread's writing (later records are dropped, so no step lands after a missing
        one) and is raised by the next ``log_*`` call, :meth:`flush` or :meth:`close`.
        """
        if self._worker is not None:
            return
        if max_pending < 1:
            raise ValueError(f"max_pending: must be >= 1, got {max_pending}")
        self._queue = queue.Queue(maxsize=max_pending)
        self._worker = threading.Thread(target=self._work, args=(self._queue,), name=f"writer:{self.path.name}", daemon=True)
        self._worker.start()

    def _work(self, q: "queue.Queue") -> None:
        while True:
            job = q.get()
            try:
                if job is None:
                    return
                if self._error is None:
                    try:
                        job()
                    except Exception as e:  # noqa: BLE001 - handed to the training thread by flush
                        self._error = e
            finally:
                q.task_done()

    def _submit(self, job) -> None:
        """Run ``job()`` now, or queue it for the writer thread in background mode."""
        self._raise_error()
        if self._queue is None:
            job()
        else:
            self._queue.put(job)

    def _raise_error(self) -> None:
        if self._error is not None:
            e, self._error = self._error, None
            raise e

    def flush(self) -> None:
        """Wait until every queued record is on disk; raise the writer thread's failure (once).

        A no-op without :meth:`start_background`.
        """
        if self._queue is not None and self._worker is not None and self._worker.is_alive():
            self._queue.join()
        self._raise_error()

    def drain(self) -> BaseException | None:
        """Like :meth:`flush` but returns the writer thread's failure instead of raising it."""
        try:
            self.flush()
        except Exception as e:  # noqa: BLE001 - the caller decides
            return e
        return None

    def _stop_background(self) -> BaseException | None:
        if self._worker is None:
            return None
        worker, self._worker = self._worker, None
        if worker is not threading.current_thread() and worker.is_alive():
            self._queue.put(None)
            worker.join()
        self._queue = None
        e, self._error = self._error, None
        return e

    def __del__(self):  # an abandoned writer still gives its lock back
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ..... records ..................................................................................
    def write_config(self, config: dict) -> None:
        """Rewrite config.json (``--resume RUN --steps N`` records the new step count)."""
        atomic_write_json(self.path / CONFIG_FILE, {**config, "format_version": FORMAT_VERSION})

    def write_provenance(self, record: dict) -> None:
        """provenance.json: the creating session's record; each resume appends to ``resumes``."""
        f = self.path / PROVENANCE_FILE
        prev = read_json(f, PROVENANCE_FILE)[0] if os.path.lexists(f) else None
        if isinstance(prev, dict):
            out = {**prev, "resumes": [*prev.get("resumes", []), record]}
        else:
            out = {**record, "resumes": []}
        atomic_write_json(f, out)

    def write_reference(self, df: pd.DataFrame) -> None:
        """reference.parquet: the reference samples of the starting policy, written atomically.

        ``df``: one row per reference sample, columns ``prompt_id`` int64, ``split`` str
        (``train`` or ``probe``), ``sample`` int64 (0..m-1), ``prompt`` str, ``completion`` str,
        ``reward`` float64 (more columns are kept). Raises ``ValueError`` naming the column when
        ``df`` is not of that form. Waits for queued records first (like every whole-file write).
        """
        problems = reference_frame_problems(df)
        if problems:
            raise ValueError(f"reference samples: {'; '.join(problems)}")
        self.flush()
        files.write_parquet(self.path / REFERENCE_FILE, df)

    def log_metrics(self, record: dict) -> None:
        line = json_line(record)  # now: the caller may change the dict
        self._submit(lambda: append_line(self.path / METRICS_FILE, line))

    def log_samples(self, step: int, df: pd.DataFrame) -> None:
        self._submit(lambda: files.write_parquet(step_file(self.path / SAMPLES_DIR, step), df))

    def log_probes(self, step: int, df: pd.DataFrame) -> None:
        self._submit(lambda: files.write_parquet(step_file(self.path / PROBES_DIR, step), df))

    def log_step(self, step: int, metrics: dict, samples: pd.DataFrame, probes: pd.DataFrame | None = None) -> None:
        """One training step, in this order: its probes (if any), samples, metrics line, then
        status ``running`` at ``step`` (so status.json never names a step not yet on disk)."""
        if probes is not None:
            self.log_probes(step, probes)
        self.log_samples(step, samples)
        self.log_metrics(metrics)
        self._submit(lambda: self._write_status("running", step=step))

    def checkpoint_dir(self, step: int) -> Path:
        return checkpoint_dir(self.path, step)

    def commit_checkpoint(self, step: int, tmp_dir: Path, keep: int = 2) -> Path:
        """Move a fully written ``tmp_dir`` into place and point ``latest.json`` at it.

        Keeps the newest ``keep`` checkpoints (0 keeps all).
        """
        self.flush()  # a checkpoint of step S means steps <= S are on disk
        final = self.checkpoint_dir(step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_dir, final)
        ck = self.path / CHECKPOINTS_DIR
        atomic_write_json(ck / LATEST_FILE, {"step": step, "path": final.name})
        if keep > 0:
            for old in sorted(p for p in ck.glob("step_*") if p.is_dir())[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def truncate_after(self, step: int) -> None:
        """Remove metrics, samples and probes of steps > ``step`` (used on resume).

        Unreadable metrics lines are dropped too (they cannot be attributed to a step).
        """
        self.flush()
        mpath = self.path / METRICS_FILE
        rows = [r for r in scan_jsonl(mpath).records if isinstance(r.get("step"), int) and r["step"] <= step]
        atomic_write_bytes(mpath, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
        for folder in (SAMPLES_DIR, PROBES_DIR):
            for f in (self.path / folder).glob("step_*.parquet"):
                s = step_of(f)
                if s is None or s > step:
                    f.unlink()
            for f in (self.path / folder).glob(".*.tmp"):
                f.unlink()
        ck = self.path / CHECKPOINTS_DIR
        for f in ck.glob(f"{TMP_PREFIX}step_*"):
            shutil.rmtree(f, ignore_errors=True)
        for d in ck.glob("step_*"):  # checkpoints of dropped steps are stale (or were unusable)
            s = step_of(d)
            if d.is_dir() and s is not None and s > step:
                shutil.rmtree(d, ignore_errors=True)
        if step >= 0 and (ck / step_name(step)).is_dir():
            atomic_write_json(ck / LATEST_FILE, {"step": step, "path": step_name(step)})
