"""The run directory: the only code that writes or reads it. Format: ``docs/run-format.md``.

A run directory holds plain files anyone can open without ``lab``::

    config.json            the frozen TrainConfig (JSON) + "format_version", written atomically
    status.json            {"status": running|finished|failed|interrupted, "step", "error", ...}
    provenance.json        lab version, git commit, library versions, CPU, device
    writer.lock            locked (flock) by the one process writing the run
    metrics.jsonl          one JSON object per training step (append-only)
    samples/step_XXXXXX.parquet   one row per rollout of that step (atomic per file)
    probes/step_XXXXXX.parquet    one row per (probe prompt, estimator) at probe steps
    checkpoints/step_XXXXXX/      model.safetensors + trainer_state.pt (+ tokenizer/config)
    checkpoints/latest.json       {"step": ..., "path": ...} of the newest complete checkpoint

Writing: every whole-file write goes to a temp file and is renamed into place; JSONL files
are append-only; the trainer's per-step records go through a writer thread, in order
(:meth:`RunWriter.start_background`). One writer at a time: :class:`RunWriter` holds ``writer.lock`` and, once
:meth:`RunWriter.start_heartbeat` is called, refreshes ``status.json``'s ``updated``
every :data:`HEARTBEAT_S` seconds.

Reading never fails on one bad file: what is readable loads and every unreadable file is
named in ``Run.problems`` (``load_run``) or the ``problem`` column (``list_runs``). Liveness
(``read_status``): a ``running`` run whose writer is gone reads as ``interrupted``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from lab.errors import UsageError

try:  # POSIX advisory locks; elsewhere liveness falls back to pid + heartbeat
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STATUSES = ("running", "finished", "failed", "interrupted")
FORMAT_VERSION = 1
"""Version of the run-directory format this lab writes (0 = written before versioning)."""
HEARTBEAT_S = 10.0
"""How often a live writer refreshes ``status.json``'s ``updated``."""
STALE_AFTER_S = 120.0
"""A ``running`` run written on another host whose heartbeat is older than this reads as interrupted."""
LOCK_NAME = "writer.lock"
META_KEYS = ("format_version",)
"""Keys of config.json that are not TrainConfig fields."""


class RunReadError(UsageError):
    """Nothing usable could be read from a run directory; the message names the file(s)."""


class NotARunError(RunReadError, FileNotFoundError):
    """The path holds no run files at all (no config.json, status.json or metrics.jsonl)."""


class RunPathError(UsageError):
    """A run name that is absolute, has ``..`` or resolves outside its root."""


class RunLockedError(UsageError):
    """Another live process is writing this run directory."""


class RunExistsError(UsageError, FileExistsError):
    """The run directory already holds a run (``create`` never overwrites one)."""


# --- low-level atomic writes --------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n").encode())


def _jsonable(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (JSON has no NaN), tuples become lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return _jsonable(x.item())
    return x


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and fsync (a crash can tear only this last line)."""
    _append_line(path, _json_line(record))


def _json_line(record: dict) -> str:
    """``record`` as one line of metrics.jsonl (JSON-safe values, sorted keys)."""
    return json.dumps(_jsonable(record), sort_keys=True) + "\n"


def _append_line(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _scan_jsonl(path: Path, label: str | None = None) -> tuple[list[dict], list[str]]:
    """(records, problems) of a JSONL file, never raising for content.

    A torn last line (no final newline: a killed writer) is dropped silently; every other
    line that is not UTF-8, not JSON or not an object is skipped and named in ``problems``.
    """
    path = Path(path)
    label = label or path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], [f"{label}: cannot read ({e.strerror or e})"]
    lines = data.split(b"\n")
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    torn_possible = not data.endswith(b"\n")
    out, problems = [], []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if i == last and torn_possible:
                continue
            problems.append(f"{label}: line {i + 1} is not valid UTF-8")
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:
            if i == last and torn_possible:
                continue  # torn last line from a killed writer
            problems.append(f"{label}: line {i + 1} is not valid JSON")
            continue
        if not isinstance(rec, dict):
            problems.append(f"{label}: line {i + 1} is not a JSON object")
            continue
        out.append(rec)
    return out, problems


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line is dropped, any other bad line raises.

    Strict on purpose (the writer uses it before rewriting a file); readers that must
    tolerate damage use :func:`read_metrics`.
    """
    recs, problems = _scan_jsonl(path, str(path))
    if problems:
        raise RunReadError(problems[0])
    return recs


def _write_parquet(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _step_file(folder: Path, step: int) -> Path:
    return folder / f"step_{step:06d}.parquet"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    # a zombie child still "exists"; treat it as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# --- the writer lock --------------------------------------------------------------------------
def lock_held(path: str | Path) -> bool | None:
    """Whether some process (this one included) holds the run's ``writer.lock``.

    None when this cannot be tested here (no lock file: a run written before locks, or no
    ``fcntl`` on this platform). A lock only proves liveness on the host that took it.
    """
    lock = Path(path) / LOCK_NAME
    if fcntl is None or not lock.exists():
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _take_lock(path: Path) -> int | None:
    """Exclusive ``writer.lock`` of ``path`` (retried for 1 s); raises RunLockedError when held."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + 1.0
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise RunLockedError(_busy_message(path, _raw_status(path)[0])) from None
            time.sleep(0.05)


def refuse_if_live(path: str | Path) -> None:
    """Raise :class:`RunLockedError` when a live writer owns the run (see :func:`writer_alive`)."""
    path = Path(path)
    if read_status(path).get("status") == "running":
        raise RunLockedError(_busy_message(path, _raw_status(path)[0]))


def last_logged_step(path: str | Path) -> int | None:
    """Step of the last complete metrics line of a run (its last step on disk), or None."""
    step = _tail_metrics(Path(path) / "metrics.jsonl").get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _busy_message(path: Path, st: dict) -> str:
    who = f"pid {st.get('pid')} on host {st.get('host')}" if st else "another process"
    age = ""
    if isinstance(st.get("updated"), (int, float)):
        age = f" (last heartbeat {time.time() - st['updated']:.0f} s ago)"
    return f"{path} is being written by {who}{age}; wait for it to end or stop it first (one writer per run)"


# --- writer ------------------------------------------------------------------------------------
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
        if (path / "config.json").exists() or (path / "status.json").exists():
            raise RunExistsError(f"{path} already holds a run; pick another --run-name or use --resume {path}")
        path.mkdir(parents=True, exist_ok=True)
        w = cls(path)
        w._lock_fd = _take_lock(path)
        atomic_write_json(path / "config.json", {**config, "format_version": FORMAT_VERSION})
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
        prev, _ = _raw_status(path)
        w._status = {k: v for k, v in prev.items() if k not in ("status", "step", "error", "notes", "problem")}
        w.truncate_after(from_step)
        w.set_status("running", step=from_step)
        return w

    def set_status(self, status: str, *, step: int, error: str | None = None, **extra: Any) -> None:
        """Rewrite status.json now (after every queued step is on disk, in background mode)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self.flush()
        self._write_status(status, step=step, error=error, **extra)

    def _write_status(self, status: str, *, step: int, error: str | None = None, **extra: Any) -> None:
        with self._lock:
            if not self._status:  # a writer made with RunWriter(path): keep what status.json holds (started, ...)
                self._status = {k: v for k, v in _raw_status(self.path)[0].items() if k not in ("notes", "problem")}
            now = time.time()
            rec = {
                **{k: v for k, v in self._status.items() if k not in ("status", "step", "error")},
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
            atomic_write_json(self.path / "status.json", rec)
            self._status = rec

    # ..... liveness .................................................................................
    def heartbeat(self) -> None:
        """Refresh ``updated`` in status.json (only while the status is ``running``)."""
        with self._lock:
            if self._status.get("status") != "running":
                return
            rec = {**self._status, "updated": time.time()}
            atomic_write_json(self.path / "status.json", rec)
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
        atomic_write_json(self.path / "config.json", {**config, "format_version": FORMAT_VERSION})

    def write_provenance(self, record: dict) -> None:
        """provenance.json: the creating session's record; each resume appends to ``resumes``."""
        f = self.path / "provenance.json"
        prev = _read_json(f)[0] if f.exists() else None
        if isinstance(prev, dict):
            out = {**prev, "resumes": [*prev.get("resumes", []), record]}
        else:
            out = {**record, "resumes": []}
        atomic_write_json(f, out)

    def log_metrics(self, record: dict) -> None:
        line = _json_line(record)  # now: the caller may change the dict
        self._submit(lambda: _append_line(self.path / "metrics.jsonl", line))

    def log_samples(self, step: int, df: pd.DataFrame) -> None:
        self._submit(lambda: _write_parquet(_step_file(self.path / "samples", step), df))

    def log_probes(self, step: int, df: pd.DataFrame) -> None:
        self._submit(lambda: _write_parquet(_step_file(self.path / "probes", step), df))

    def log_step(self, step: int, metrics: dict, samples: pd.DataFrame, probes: pd.DataFrame | None = None) -> None:
        """One training step, in this order: its probes (if any), samples, metrics line, then
        status ``running`` at ``step`` (so status.json never names a step not yet on disk)."""
        if probes is not None:
            self.log_probes(step, probes)
        self.log_samples(step, samples)
        self.log_metrics(metrics)
        self._submit(lambda: self._write_status("running", step=step))

    def checkpoint_dir(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step_{step:06d}"

    def commit_checkpoint(self, step: int, tmp_dir: Path, keep: int = 2) -> Path:
        """Move a fully written ``tmp_dir`` into place and point ``latest.json`` at it.

        Keeps the newest ``keep`` checkpoints (0 keeps all).
        """
        self.flush()  # a checkpoint of step S means steps <= S are on disk
        final = self.checkpoint_dir(step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_dir, final)
        atomic_write_json(self.path / "checkpoints" / "latest.json", {"step": step, "path": final.name})
        if keep > 0:
            for old in sorted(p for p in (self.path / "checkpoints").glob("step_*") if p.is_dir())[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def truncate_after(self, step: int) -> None:
        """Remove metrics, samples and probes of steps > ``step`` (used on resume).

        Unreadable metrics lines are dropped too (they cannot be attributed to a step).
        """
        self.flush()
        mpath = self.path / "metrics.jsonl"
        recs, _ = _scan_jsonl(mpath)
        rows = [r for r in recs if isinstance(r.get("step"), int) and r["step"] <= step]
        atomic_write_bytes(mpath, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
        for folder in ("samples", "probes"):
            for f in (self.path / folder).glob("step_*.parquet"):
                s = _file_step(f)
                if s is None or s > step:
                    f.unlink()
            for f in (self.path / folder).glob(".*.tmp"):
                f.unlink()
        ck = self.path / "checkpoints"
        for f in ck.glob(".tmp_step_*"):
            shutil.rmtree(f, ignore_errors=True)
        for d in ck.glob("step_*"):  # checkpoints of dropped steps are stale (or were unusable)
            s = _file_step(d)
            if d.is_dir() and s is not None and s > step:
                shutil.rmtree(d, ignore_errors=True)
        if step >= 0 and (ck / f"step_{step:06d}").is_dir():
            atomic_write_json(ck / "latest.json", {"step": step, "path": f"step_{step:06d}"})


def _file_step(f: Path) -> int | None:
    try:
        return int(f.stem.split("_", 1)[1])
    except (IndexError, ValueError):
        return None


# --- checkpoints ---------------------------------------------------------------------------
def checkpoint_candidates(path: str | Path) -> tuple[list[tuple[int, Path]], list[str]]:
    """Checkpoints to try on resume, newest first, and problems met while listing them.

    The one ``latest.json`` names comes first; then every other complete ``step_*`` folder
    by step (so a torn ``latest.json`` or a corrupt newest checkpoint falls back to the
    previous kept one).
    """
    ck = Path(path) / "checkpoints"
    problems: list[str] = []
    found: list[tuple[int, Path]] = []
    latest = ck / "latest.json"
    if latest.exists():
        rec, prob = _read_json(latest, "checkpoints/latest.json")
        if prob:
            problems.append(prob)
        elif not (isinstance(rec, dict) and isinstance(rec.get("step"), int) and isinstance(rec.get("path"), str)
                  and "/" not in rec["path"] and rec["path"] not in ("", ".", "..")):
            problems.append("checkpoints/latest.json: not of the form {\"step\": S, \"path\": \"step_S\"}")
        elif not (ck / rec["path"]).is_dir():
            problems.append(f"checkpoints/latest.json: names {rec['path']}, which does not exist")
        else:
            found.append((rec["step"], ck / rec["path"]))
    folders = []
    for d in ck.glob("step_*") if ck.is_dir() else []:
        s = _file_step(d)
        if d.is_dir() and s is not None and all(d != f for _, f in found):
            folders.append((s, d))
    found += sorted(folders, reverse=True)
    return found, problems


def latest_checkpoint(path: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest checkpoint (``latest.json`` first, else the newest folder), or None."""
    found, _ = checkpoint_candidates(path)
    return found[0] if found else None


# --- reader ------------------------------------------------------------------------------------
@dataclass
class Run:
    """A run as DataFrames: what ``load_run`` returns.

    ``problems``: one entry per file (or line) that could not be read, naming it and why;
    everything else loaded. ``format_version``: 0 for runs written before versioning.
    """

    path: Path
    config: dict
    status: dict
    metrics: pd.DataFrame
    samples: pd.DataFrame
    probes: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    format_version: int = 0

    @property
    def name(self) -> str:
        return self.path.name


def _read_json(f: Path, label: str | None = None) -> tuple[Any, str | None]:
    """(value, None) or (None, "label: reason") for a small JSON file."""
    label = label or f.name
    try:
        data = f.read_bytes()
    except FileNotFoundError:
        return None, f"{label}: missing"
    except OSError as e:
        return None, f"{label}: cannot read ({e.strerror or e})"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"{label}: not valid UTF-8"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"{label}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})"


def read_config(path: str | Path) -> tuple[dict, list[str]]:
    """(config dict without meta keys, problems) of a run's config.json; {} when unreadable."""
    cfg, prob = _read_json(Path(path) / "config.json")
    if prob:
        return {}, [prob]
    if not isinstance(cfg, dict):
        return {}, ["config.json: not a JSON object"]
    problems = []
    v = cfg.get("format_version", 0)
    if isinstance(v, int) and v > FORMAT_VERSION:
        problems.append(f"config.json: format_version {v} is newer than this lab reads ({FORMAT_VERSION}); upgrade lab")
    return {k: x for k, x in cfg.items() if k not in META_KEYS}, problems


def _format_version(path: Path) -> int:
    cfg, _ = _read_json(Path(path) / "config.json")
    v = cfg.get("format_version", 0) if isinstance(cfg, dict) else 0
    return v if isinstance(v, int) else 0


def _raw_status(path: Path) -> tuple[dict, str | None]:
    st, prob = _read_json(Path(path) / "status.json")
    if prob:
        return {}, prob
    if not isinstance(st, dict):
        return {}, "status.json: not a JSON object"
    if st.get("status") not in STATUSES:
        return st, f"status.json: unknown status {st.get('status')!r}"
    return st, None


def writer_alive(path: str | Path, status: dict, *, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Is the process that writes this run still there? (one rule for every reader)

    * same host, ``writer.lock`` present: alive iff the lock is held (this process included,
      e.g. a training thread in a live notebook kernel);
    * same host, no lock file (a run written before locks): alive iff its pid runs;
    * another host: alive iff the heartbeat (``updated``) is younger than ``stale_after_s``.
    """
    if status.get("host") == socket.gethostname():
        held = lock_held(path)
        if held is not None:
            return held
        pid = status.get("pid")
        if isinstance(pid, int) and not isinstance(pid, bool):
            return _pid_alive(pid)
    updated = status.get("updated")
    if not isinstance(updated, (int, float)) or isinstance(updated, bool):
        return False
    return time.time() - updated <= stale_after_s


def read_status(path: str | Path, *, stale_after_s: float = STALE_AFTER_S) -> dict:
    """status.json with liveness applied; keys at least ``status, step, error, updated``.

    A ``running`` run whose writer is gone (:func:`writer_alive`) reads as ``interrupted``
    with an ``error`` saying so. An unreadable status.json gives ``problem`` naming it, the
    step from metrics.jsonl, and ``running``/``interrupted`` from the lock.
    """
    path = Path(path)
    st, prob = _raw_status(path)
    if prob:
        held = lock_held(path)
        last = _tail_metrics(path / "metrics.jsonl")
        out = {"status": "running" if held else "interrupted", "step": _int(last.get("step"), -1),
               "error": None, "updated": _mtime(path / "status.json"), "problem": prob}
        return out
    out = {"error": None, "updated": None, **st}
    out["step"] = _int(st.get("step"), -1)
    if out["status"] == "running" and not writer_alive(path, st, stale_after_s=stale_after_s):
        out["status"] = "interrupted"
        if not out.get("error"):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st["updated"])) if isinstance(st.get("updated"), (int, float)) else "?"
            out["error"] = f"the writing process is gone (pid {st.get('pid')} on {st.get('host')}, last heartbeat {when})"
    return out


def _int(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _mtime(f: Path) -> float | None:
    try:
        return f.stat().st_mtime
    except OSError:
        return None


def read_metrics(path: str | Path, since_step: int | None = None) -> pd.DataFrame:
    """metrics.jsonl of a run (``path`` = run dir or the file) as a DataFrame, one row per step.

    Rows with ``step > since_step`` only when given (for polling a live run). A torn last
    line is skipped; other bad lines are skipped too (``load_run`` names them). Raises
    :class:`RunReadError` only when the file has lines but none is readable.
    """
    path = Path(path)
    f = path if path.suffix == ".jsonl" or path.is_file() else path / "metrics.jsonl"
    recs, problems = _scan_jsonl(f)
    if problems and not recs:
        raise RunReadError(f"{f}: no readable line ({problems[0].split(': ', 1)[1]})")
    if since_step is not None:
        recs = [r for r in recs if isinstance(r.get("step"), (int, float)) and r["step"] > since_step]
    return pd.DataFrame(recs)


def _steps_in(folder: Path) -> list[int]:
    return sorted(s for s in (_file_step(f) for f in folder.glob("step_*.parquet")) if s is not None)


def sample_steps(path: str | Path) -> list[int]:
    """Steps that have a samples file (sorted)."""
    return _steps_in(Path(path) / "samples")


def probe_steps(path: str | Path) -> list[int]:
    """Steps that have a probes file (sorted)."""
    return _steps_in(Path(path) / "probes")


def _read_step_files(folder: Path, steps: Sequence[int] | None = None, label: str = "") -> tuple[pd.DataFrame, list[str]]:
    import pyarrow as pa

    wanted = _steps_in(folder) if steps is None else sorted({int(s) for s in steps})
    frames, problems = [], []
    for s in wanted:
        f = _step_file(folder, s)
        if not f.exists():
            continue
        try:
            frames.append(pd.read_parquet(f))
        except (OSError, ValueError, pa.ArrowException) as e:
            reason = (str(e).replace(str(f), f.name).splitlines() or [type(e).__name__])[0][:100]
            problems.append(f"{label}/{f.name}: not a readable Parquet file ({reason})")
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(), problems
    return pd.concat(frames, ignore_index=True), problems


def check_step_files(path: str | Path) -> list[str]:
    """Problems of the samples/probes Parquet files, from their footers only (cheap: no data read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    problems = []
    for label in ("samples", "probes"):
        for s in _steps_in(Path(path) / label):
            f = _step_file(Path(path) / label, s)
            try:
                pq.read_metadata(f)
            except (OSError, ValueError, pa.ArrowException) as e:
                reason = (str(e).replace(str(f), f.name).splitlines() or [type(e).__name__])[0][:100]
                problems.append(f"{label}/{f.name}: not a readable Parquet file ({reason})")
    return problems


def read_samples(path: str | Path, steps: list[int] | None = None) -> pd.DataFrame:
    """Per-rollout samples of the given steps (default all); unreadable files are skipped."""
    return _read_step_files(Path(path) / "samples", steps, "samples")[0]


def read_probes(path: str | Path, steps: list[int] | None = None) -> pd.DataFrame:
    """Probe rows of the given steps (default all); unreadable files are skipped."""
    return _read_step_files(Path(path) / "probes", steps, "probes")[0]


def _is_run_dir(path: Path) -> bool:
    return any((path / n).is_file() for n in ("config.json", "status.json", "metrics.jsonl"))


def load_run(path: str | Path, *, samples: bool = True, probes: bool = True) -> Run:
    """Read a run directory into DataFrames (``samples=False`` skips the biggest table).

    Whatever is readable loads; each unreadable file or line is named in ``Run.problems``.
    Raises :class:`NotARunError` (a ``FileNotFoundError``) when ``path`` holds no run files,
    and :class:`RunReadError` naming the files when none of them is readable.
    """
    path = Path(path)
    if not path.is_dir() or not _is_run_dir(path):
        raise NotARunError(f"{path} is not a run directory (no config.json, status.json or metrics.jsonl)")
    config, status, problems = _config_and_status(path)
    recs, p = _scan_jsonl(path / "metrics.jsonl")
    problems += p
    sdf, p = _read_step_files(path / "samples", None, "samples") if samples else (pd.DataFrame(), [])
    problems += p
    pdf, p = _read_step_files(path / "probes", None, "probes") if probes else (pd.DataFrame(), [])
    problems += p
    _, p = checkpoint_candidates(path)
    problems += p
    if not config and not recs and (status.get("problem") or not (path / "status.json").exists()):
        raise RunReadError(f"{path}: nothing readable: " + "; ".join(problems))
    return Run(path=path, config=config, status=status, metrics=pd.DataFrame(recs), samples=sdf, probes=pdf,
               problems=problems, format_version=_format_version(path))


def resolve_run(root: str | Path, name: str) -> Path:
    """The run directory ``name`` under ``root``, refusing names that could escape it.

    Raises :class:`RunPathError` for an absolute name, a ``..`` component, a NUL byte, or a
    path that (through symlinks) resolves outside ``root``.

    >>> resolve_run("runs", "demo/grpo")
    PosixPath('runs/demo/grpo')
    >>> resolve_run("runs", "../etc")
    Traceback (most recent call last):
    ...
    lab.runs.RunPathError: run name '../etc': '..' is not allowed; give a path inside runs
    """
    if not isinstance(name, str) or name.strip() == "" or "\x00" in name:
        raise RunPathError(f"run name {name!r}: give a non-empty relative path inside {root}")
    p = Path(name)
    if p.is_absolute() or name.startswith("~"):
        raise RunPathError(f"run name {name!r}: must be relative to {root}, not absolute")
    if ".." in p.parts:
        raise RunPathError(f"run name {name!r}: '..' is not allowed; give a path inside {root}")
    root_r = Path(root).resolve()
    target = (Path(root) / p).resolve()
    if target != root_r and root_r not in target.parents:
        raise RunPathError(f"run name {name!r}: resolves outside {root} (through a symlink); not allowed")
    return Path(root) / p


# --- listing -----------------------------------------------------------------------------------
_SKIP_DIRS = {"checkpoints", "samples", "probes", "__pycache__", "node_modules"}
SUMMARY_COLUMNS = ["root", "path", "name", "status", "step", "problem", "error", "eval_accuracy",
                   "reward_mean", "accuracy", "elapsed_s", "updated"]


def _config_fields() -> list[str]:
    from lab.config import TrainConfig

    return [f.name for f in dataclasses.fields(TrainConfig)]


def _find_runs(root: Path) -> list[Path]:
    found = []
    if root.is_dir() and _is_run_dir(root):
        return [root]
    for here, dirs, files in os.walk(root):
        d = Path(here)
        if any(n in files for n in ("config.json", "status.json", "metrics.jsonl")):
            if _looks_like_run(d, files):
                found.append(d)
                dirs.clear()  # runs do not nest
                continue
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("."))
    return found


def _looks_like_run(d: Path, files: list[str]) -> bool:
    """A folder with run files; a lone config.json that parses but is no run config (a model) is not."""
    if "status.json" in files or "metrics.jsonl" in files:
        return True
    cfg, prob = _read_json(d / "config.json")
    if prob:
        return True  # unreadable: list it as a broken run rather than hide it
    return not isinstance(cfg, dict) or "estimator" in cfg


def _tail_metrics(path: Path, want: Sequence[str] = ()) -> dict:
    """The last complete record of a metrics file, plus the last value of each ``want`` key
    found further back (``{"step": ..., ..., "eval/accuracy": ...}``); reads only the tail."""
    out: dict = {}
    try:
        f = open(path, "rb")
    except OSError:
        return out
    with f:
        size = f.seek(0, os.SEEK_END)
        chunk = 1 << 16
        while True:
            start = max(0, size - chunk)
            f.seek(start)
            lines = f.read(size - start).split(b"\n")
            if start > 0:
                lines = lines[1:]  # first piece may be cut
            missing = set(want)
            last = None
            for raw in reversed(lines):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue
                if not isinstance(rec, dict):
                    continue
                if last is None:
                    last = rec
                for k in list(missing):
                    if rec.get(k) is not None:
                        out.setdefault(k, rec[k])
                        missing.discard(k)
                if not missing:
                    break
            if (last is not None and not missing) or start == 0 or chunk >= (8 << 20):
                break
            chunk *= 8
            out = {}
    if last is not None:
        out = {**last, **{k: v for k, v in out.items() if k in want}}
    return out


def _config_and_status(run: Path) -> tuple[dict, dict, list[str]]:
    """(config, status, problems of those two files): the small files every reader starts from."""
    config, problems = read_config(run) if (run / "config.json").exists() else ({}, ["config.json: missing"])
    status = read_status(run)
    if status.get("problem"):
        problems = [*problems, status["problem"]]
    return config, status, list(problems)


def _summary_row(root: Path, run: Path, fields: list[str]) -> dict:
    config, st, problems = _config_and_status(run)
    _, p = checkpoint_candidates(run)
    problems += p
    last = _tail_metrics(run / "metrics.jsonl", want=("eval/accuracy",))
    step = st.get("step", -1) if not st.get("problem") else _int(last.get("step"), -1)
    updated = st.get("updated")
    if not isinstance(updated, (int, float)):
        updated = max((t for t in (_mtime(run / n) for n in ("status.json", "metrics.jsonl", "config.json")) if t), default=None)
    rel = run.relative_to(root).as_posix() if run != root else run.name
    row = {
        "root": str(root),
        "path": str(run),
        "name": rel,
        "status": st.get("status"),
        "step": step,
        "problem": "; ".join(problems) if problems else None,
        "error": st.get("error"),
        "eval_accuracy": last.get("eval/accuracy"),
        "reward_mean": last.get("reward/mean"),
        "accuracy": last.get("reward/accuracy"),
        "elapsed_s": last.get("time/elapsed_s"),
        "updated": updated,
    }
    for k in fields:
        row[k] = config.get(k)
    return row


def list_runs(roots: str | Path | Sequence[str | Path] = "runs") -> pd.DataFrame:
    """One row per run directory under ``roots`` (one path or a list), found recursively; cheap.

    Reads config.json, status.json, checkpoints/latest.json and only the tail of
    metrics.jsonl of each run, so hundreds of runs list quickly. Broken runs are listed
    too, with ``problem`` naming the file and the reason (None for a healthy run); a bad
    line in the middle of metrics.jsonl or a damaged Parquet file shows in ``load_run``.

    Columns: ``root, path, name, status, step, problem, error, eval_accuracy, reward_mean,
    accuracy, elapsed_s, updated``, then one per TrainConfig field (None where not
    recorded). Rows sorted by root, then name.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    fields = _config_fields()
    rows = []
    for r in roots:
        root = Path(r)
        if not root.exists():
            continue
        found = [_summary_row(root, run, fields) for run in _find_runs(root)]
        rows += found
    rows.sort(key=lambda x: (x["root"], x["name"]))
    df = pd.DataFrame(rows, columns=SUMMARY_COLUMNS + [f for f in fields if f not in SUMMARY_COLUMNS])
    for col in ("problem", "error"):  # None (not NaN) for "no problem", as documented
        df[col] = pd.Series([r[col] for r in rows], index=df.index, dtype=object)
    return df


def iter_runs(root: str | Path) -> Iterable[Path]:
    for p in list_runs(root)["path"]:
        yield Path(p)
