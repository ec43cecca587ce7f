"""Reading one run directory: config, status (with liveness), metrics, Parquet tables, problems.

Reading never fails on one bad file: what is readable loads and every unreadable file is named
in ``Run.problems`` (:func:`load_run`) or by :func:`check_run`. Every file is opened through
:mod:`lab.runs.files` (regular files only, bounded reads), so no reader blocks on a FIFO or
reads a device. Liveness (:func:`read_status`): a ``running`` run whose writer is gone reads as
``interrupted``.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from lab.config import META_KEYS, field_types, type_ok
from lab.errors import reason

from .checkpoints import checkpoint_candidates
from .files import (
    CONFIG_FILE, FORMAT_VERSION, LOCK_NAME, METRICS_FILE, PROBES_DIR, PROVENANCE_FILE, REFERENCE_FILE, RUN_MARKERS,
    SAMPLES_DIR, STATUS_FILE, JsonlScan, RunReadError, as_int, mtime, not_regular, open_regular, read_json,
    scan_jsonl, step_file, steps_in, tail_records,
)

try:  # POSIX advisory locks; elsewhere liveness falls back to pid + heartbeat
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STATUSES = ("running", "finished", "failed", "interrupted")
STALE_AFTER_S = 120.0
"""A ``running`` run written on another host whose heartbeat is older than this reads as interrupted."""
REFERENCE_COLUMNS = {"prompt_id": "int64", "split": "str", "sample": "int64", "prompt": "str",
                     "completion": "str", "reward": "float64"}
"""Columns of ``reference.parquet`` and their dtypes (more columns may follow)."""
REFERENCE_SPLITS = ("train", "probe")


@dataclass
class Run:
    """A run as DataFrames: what ``load_run`` returns.

    ``problems``: one entry per file (or line) that could not be read, naming it and why;
    everything else loaded. ``format_version``: 0 for runs written before versioning.
    ``reference``: the reference samples (``reference.parquet``), empty when the run has none.
    """

    path: Path
    config: dict
    status: dict
    metrics: pd.DataFrame
    samples: pd.DataFrame
    probes: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    format_version: int = 0
    reference: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def name(self) -> str:
        return self.path.name


def is_run_dir(path: Path) -> bool:
    """Does ``path`` hold any run file (in any form: a broken one still makes it a run)?"""
    return any(os.path.lexists(Path(path) / n) for n in RUN_MARKERS)


# --- config ----------------------------------------------------------------------------------------
def _shown(v: Any) -> str:
    r = repr(v)
    return (r[:40] + "...") if len(r) > 40 else r


def config_problems(cfg: dict) -> list[str]:
    """Fields of a saved config whose value has the wrong type (``config.json: lr is 'x' (str), not float``).

    >>> config_problems({"lr": "fast", "seed": 3, "format_version": 1})
    ["config.json: field lr is 'fast' (str), not float"]
    """
    types = field_types()
    out = []
    for k, v in cfg.items():
        if k in types and not type_ok(v, types[k]):
            want = getattr(types[k], "__name__", None) or str(types[k]).replace("typing.", "")
            out.append(f"config.json: field {k} is {_shown(v)} ({type(v).__name__}), not {want}")
    return out


def read_config(path: str | Path, name: str = CONFIG_FILE) -> tuple[dict, list[str]]:
    """(config dict without meta keys, problems) of a run's config.json (or of ``name`` in
    folder ``path``, e.g. a checkpoint's :data:`TRAIN_CONFIG_FILE`); {} when unreadable.

    Problems: the file missing, not a regular file, too big, not UTF-8 / JSON / an object, a
    field of the wrong type, a newer format version.
    """
    cfg, prob = read_json(Path(path) / name, name)
    if prob:
        return {}, [prob]
    if not isinstance(cfg, dict):
        return {}, [f"{name}: not a JSON object"]
    problems = config_problems(cfg)
    v = cfg.get("format_version", 0)
    if isinstance(v, int) and v > FORMAT_VERSION:
        problems.append(f"{CONFIG_FILE}: format_version {v} is newer than this lab reads ({FORMAT_VERSION}); upgrade lab")
    return {k: x for k, x in cfg.items() if k not in META_KEYS}, problems


def format_version(path: Path) -> int:
    """The run's format version from config.json (0 when absent or unreadable)."""
    cfg, _ = read_json(Path(path) / CONFIG_FILE, CONFIG_FILE)
    v = cfg.get("format_version", 0) if isinstance(cfg, dict) else 0
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


# --- status and liveness -----------------------------------------------------------------------------
_STATUS_TYPES = {"step": (int,), "error": (str, type(None)), "pid": (int, type(None)), "host": (str, type(None)),
                 "started": (int, float, type(None)), "updated": (int, float, type(None))}


def raw_status(path: Path) -> tuple[dict, str | None]:
    """(status.json as written, problem or None); a wrong-typed key is a problem naming it."""
    st, prob = read_json(Path(path) / STATUS_FILE, STATUS_FILE)
    if prob:
        return {}, prob
    if not isinstance(st, dict):
        return {}, f"{STATUS_FILE}: not a JSON object"
    if st.get("status") not in STATUSES:
        return st, f"{STATUS_FILE}: unknown status {_shown(st.get('status'))} (one of {', '.join(STATUSES)})"
    for k, types in _STATUS_TYPES.items():
        v = st.get(k)
        if (k in st or k == "step") and (isinstance(v, bool) or not isinstance(v, types)):
            return st, f"{STATUS_FILE}: {k} is {_shown(v)} ({type(v).__name__}), not {' or '.join(t.__name__ for t in types)}"
    return st, None


def pid_alive(pid: int) -> bool:
    """Does process ``pid`` run here (a zombie does not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def lock_held(path: str | Path) -> bool | None:
    """Whether some process (this one included) holds the run's ``writer.lock``.

    None when this cannot be tested here (no lock file, a lock "file" that is not a regular file,
    or no ``fcntl`` on this platform). A lock only proves liveness on the host that took it.
    """
    lock = Path(path) / LOCK_NAME
    if fcntl is None:
        return None
    f, _ = open_regular(lock, LOCK_NAME)
    if f is None:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


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
            return pid_alive(pid)
    updated = status.get("updated")
    if not isinstance(updated, (int, float)) or isinstance(updated, bool):
        return False
    return time.time() - updated <= stale_after_s


def last_logged_step(path: str | Path) -> int | None:
    """Step of the last complete metrics line of a run (its last step on disk), or None."""
    step = tail_records(Path(path) / METRICS_FILE).get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def read_status(path: str | Path, *, stale_after_s: float = STALE_AFTER_S) -> dict:
    """status.json with liveness applied; keys at least ``status, step, error, updated``.

    A ``running`` run whose writer is gone (:func:`writer_alive`) reads as ``interrupted``
    with an ``error`` saying so. An unreadable or wrong-typed status.json gives ``problem``
    naming it, the step from metrics.jsonl, and ``running``/``interrupted`` from the lock.
    """
    path = Path(path)
    st, prob = raw_status(path)
    if prob:
        last = as_int(tail_records(path / METRICS_FILE).get("step"), -1)
        return {"status": "running" if lock_held(path) else "interrupted", "step": last,
                "error": None, "updated": mtime(path / STATUS_FILE), "problem": prob}
    out = {"error": None, "updated": None, **st}
    if out["status"] == "running" and not writer_alive(path, st, stale_after_s=stale_after_s):
        out["status"] = "interrupted"
        if not out.get("error"):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st["updated"])) if isinstance(st.get("updated"), (int, float)) else "?"
            out["error"] = f"the writing process is gone (pid {st.get('pid')} on {st.get('host')}, last heartbeat {when})"
    return out


# --- metrics ---------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line is dropped, any other bad line raises.

    Strict on purpose: :class:`RunReadError` names the first bad line (or the file, when it is
    not a regular file or is too big). Readers that must tolerate damage use :func:`read_metrics`.
    """
    scan = scan_jsonl(path, str(path))
    if scan.problems:
        raise RunReadError(scan.problems[0])
    return scan.records


def read_metrics(path: str | Path, since_step: int | None = None) -> pd.DataFrame:
    """metrics.jsonl of a run (``path`` = run dir or the file) as a DataFrame, one row per step.

    Rows with ``step > since_step`` only when given (for polling a live run). A torn last
    line is skipped; other bad lines are skipped too (``load_run`` names them). Raises
    :class:`RunReadError` only when the file has lines but none is readable, or is no
    regular file.
    """
    path = Path(path)
    f = path if path.suffix == ".jsonl" or path.is_file() else path / METRICS_FILE
    scan = scan_jsonl(f)
    if scan.problems and not scan.records:
        raise RunReadError(f"{f}: no readable line ({scan.problems[0].split(': ', 1)[1]})")
    recs = scan.records
    if since_step is not None:
        recs = [r for r in recs if isinstance(r.get("step"), (int, float)) and r["step"] > since_step]
    return pd.DataFrame(recs)


def _truth(status: dict) -> int | None:
    """The step status.json vouches for (None when status.json itself is unreadable)."""
    return None if status.get("problem") else as_int(status.get("step"), -1)


def metrics_problems(scan: JsonlScan, status: dict) -> list[str]:
    """What is wrong with metrics.jsonl as a whole, given the run's status: rows missing for
    steps status.json says are done (a truncated file), a torn last line in a run whose writer
    ended, an empty file, plus every bad line (``scan.problems``)."""
    out = list(scan.problems)
    step = _truth(status)
    done = status.get("status") not in ("running", "interrupted")  # a live or killed writer may tear the last line
    if scan.torn and done:
        out.append(f"{METRICS_FILE}: the last line is cut off (no newline, not JSON) though the run {status.get('status')}; "
                   "the file was truncated")
    if step is None or (scan.problems and not scan.records):
        return out
    logged = {r["step"] for r in scan.records if as_int(r.get("step"), -1) >= 0}
    if not scan.exists and step >= 0:
        out.append(f"{METRICS_FILE}: missing, but status.json says step {step} is done")
    elif scan.exists and not scan.records and not scan.problems and not scan.torn and (step >= 0 or done):
        out.append(f"{METRICS_FILE}: empty" + (f", but status.json says step {step} is done" if step >= 0 else ""))
    elif step >= 0 and scan.records and (have := sum(1 for s in logged if s <= step)) < step + 1:
        # counted, never range(step + 1): status.json's step can be any integer (10**12 would fill the memory)
        last = max(logged, default=None)
        out.append(f"{METRICS_FILE}: rows for {have} of steps 0..{step} (status.json's step), "
                   f"last row step {last}; rows were lost (a truncated or edited file)")
    return out


def tail_problems(path: Path, status: dict, tail: dict | None = None) -> list[str]:
    """The cheap form of :func:`metrics_problems`: from the file's kind and its last row only
    (``tail``: :func:`lab.runs.files.tail_records` of the file, when the caller has it)."""
    f = Path(path) / METRICS_FILE
    if os.path.lexists(f) and (prob := not_regular(f, METRICS_FILE)):
        return [prob]
    step = _truth(status)
    if step is None or step < 0:
        return []
    last = as_int((tail_records(f) if tail is None else tail).get("step"), -1)
    if last >= step:
        return []
    if not os.path.lexists(f):
        return [f"{METRICS_FILE}: missing, but status.json says step {step} is done"]
    if last < 0:
        return [f"{METRICS_FILE}: no readable row at its end, but status.json says step {step} is done"]
    return [f"{METRICS_FILE}: last row is step {last}, but status.json says step {step} is done; rows were lost (truncated?)"]


# --- Parquet tables ------------------------------------------------------------------------------------
def sample_steps(path: str | Path) -> list[int]:
    """Steps that have a samples file (sorted)."""
    return steps_in(Path(path) / SAMPLES_DIR)


def probe_steps(path: str | Path) -> list[int]:
    """Steps that have a probes file (sorted)."""
    return steps_in(Path(path) / PROBES_DIR)


def _parquet_problem(f: Path, label: str, e: BaseException) -> str:
    why = reason(str(e).replace(str(f), f.name) or type(e).__name__, 160)
    return f"{label}: not a readable Parquet file ({why})"


def _read_parquet(f: Path, label: str, *, footer_only: bool = False) -> tuple[pd.DataFrame | None, str | None]:
    """(frame, None), (None, None) when absent, or (None, problem); only a regular file is opened."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fh, prob = open_regular(f, label)
    if fh is None:
        return None, prob
    with fh:
        try:
            if footer_only:
                pq.read_metadata(fh)
                return pd.DataFrame(), None
            return pd.read_parquet(fh), None
        except (OSError, ValueError, pa.ArrowException) as e:
            return None, _parquet_problem(f, label, e)


def _read_step_files(folder: Path, steps: Sequence[int] | None = None, label: str = "") -> tuple[pd.DataFrame, list[str]]:
    wanted = steps_in(folder) if steps is None else sorted({int(s) for s in steps})
    frames, problems = [], []
    for s in wanted:
        f = step_file(folder, s)
        df, prob = _read_parquet(f, f"{label}/{f.name}")
        if prob:
            problems.append(prob)
        elif df is not None and not df.empty:
            frames.append(df)
    if not frames:
        return pd.DataFrame(), problems
    return pd.concat(frames, ignore_index=True), problems


def check_step_files(path: str | Path) -> list[str]:
    """Problems of the samples/probes Parquet files, from their footers only (cheap: no data read)."""
    problems = []
    for label in (SAMPLES_DIR, PROBES_DIR):
        for s in steps_in(Path(path) / label):
            f = step_file(Path(path) / label, s)
            _, prob = _read_parquet(f, f"{label}/{f.name}", footer_only=True)
            problems += [prob] if prob else []
    return problems


def read_samples(path: str | Path, steps: list[int] | None = None) -> pd.DataFrame:
    """Per-rollout samples of the given steps (default all); unreadable files are skipped."""
    return _read_step_files(Path(path) / SAMPLES_DIR, steps, SAMPLES_DIR)[0]


def read_probes(path: str | Path, steps: list[int] | None = None) -> pd.DataFrame:
    """Probe rows of the given steps (default all); unreadable files are skipped."""
    return _read_step_files(Path(path) / PROBES_DIR, steps, PROBES_DIR)[0]


# --- reference samples ----------------------------------------------------------------------------------
def _dtype_ok(col: pd.Series, want: str) -> bool:
    if want == "str":
        return pd.api.types.is_string_dtype(col.dtype) and bool(col.map(lambda v: isinstance(v, str)).all())
    return str(col.dtype) == want


def reference_frame_problems(df: pd.DataFrame) -> list[str]:
    """Why ``df`` is not a valid reference-samples table ([] when it is one).

    >>> good = pd.DataFrame({"prompt_id": [3], "split": ["train"], "sample": [0], "prompt": ["1+1="],
    ...                      "completion": ["2"], "reward": [1.0]})
    >>> reference_frame_problems(good)
    []
    >>> reference_frame_problems(good.assign(sample=[0.0], split=["test"]))
    ['column sample has dtype float64, expected int64', "column split holds 'test'; values are train or probe"]
    """
    if not isinstance(df, pd.DataFrame):
        return [f"not a DataFrame but {type(df).__name__}"]
    out = [f"column {c} is missing" for c in REFERENCE_COLUMNS if c not in df.columns]
    for c, want in REFERENCE_COLUMNS.items():
        if c in df.columns and not _dtype_ok(df[c], want):
            out.append(f"column {c} has dtype {df[c].dtype}, expected {want}")
    if "split" in df.columns and _dtype_ok(df["split"], "str"):
        bad = sorted(set(df["split"]) - set(REFERENCE_SPLITS))
        if bad:
            out.append(f"column split holds {bad[0]!r}; values are {' or '.join(REFERENCE_SPLITS)}")
    if "sample" in df.columns and str(df["sample"].dtype) == "int64" and (df["sample"] < 0).any():
        out.append("column sample holds a negative index; samples are numbered 0..m-1")
    return out


def _reference(path: Path, label: str) -> tuple[pd.DataFrame | None, str | None]:
    """(frame, None), (None, None) when the run has no reference file, or (None, problem)."""
    f = Path(path) / REFERENCE_FILE
    if not os.path.lexists(f):
        return None, None
    df, prob = _read_parquet(f, label)
    if prob:
        return None, prob
    problems = reference_frame_problems(df)
    if problems:
        cols = ", ".join(f"{c} {t}" for c, t in REFERENCE_COLUMNS.items())
        return None, f"{label}: {problems[0]} (a reference table has columns {cols})"
    return df, None


def read_reference(path: str | Path) -> pd.DataFrame:
    """The run's reference samples (``reference.parquet``): one row per sample of the starting
    policy, columns :data:`REFERENCE_COLUMNS`.

    Raises :class:`RunReadError` naming the file and the fix when it is missing, not a regular
    file, not readable Parquet, or lacks a column / has one of the wrong dtype.
    """
    f = Path(path) / REFERENCE_FILE
    fix = "train the run again with this lab to record them"
    df, prob = _reference(Path(path), str(f))
    if prob:
        raise RunReadError(f"{prob}; {fix}")
    if df is None:
        config, _ = read_config(Path(path)) if os.path.lexists(Path(path) / CONFIG_FILE) else ({}, [])
        if (config or {}).get("reference_samples") == 0:
            raise RunReadError(f"{f}: missing: this run was trained without a reference stage (reference_samples=0); "
                               "train with --reference-samples M (and --train-pool-size N) to draw them")
        raise RunReadError(f"{f}: missing: this run has no reference samples (written before they existed, "
                           f"or stopped before the reference stage); {fix}")
    return df


# --- the whole run ------------------------------------------------------------------------------------
def config_and_status(run: Path) -> tuple[dict, dict, list[str]]:
    """(config, status, problems of those two files): the small files every reader starts from."""
    run = Path(run)
    if os.path.lexists(run / CONFIG_FILE):
        config, problems = read_config(run)
    else:
        config, problems = {}, [f"{CONFIG_FILE}: missing"]
    status = read_status(run)
    if status.get("problem"):
        problems = [*problems, status["problem"]]
    return config, status, list(problems)


def side_file_problems(run: Path) -> list[str]:
    """Problems of provenance.json and writer.lock (read only by the full check)."""
    out = []
    f = Path(run) / PROVENANCE_FILE
    if os.path.lexists(f):
        rec, prob = read_json(f, PROVENANCE_FILE)
        out += [prob] if prob else ([] if isinstance(rec, dict) else [f"{PROVENANCE_FILE}: not a JSON object"])
    lock = Path(run) / LOCK_NAME
    if os.path.lexists(lock) and (prob := not_regular(lock, LOCK_NAME)):
        out.append(prob)
    return out


def _require_run(path: Path) -> None:
    if not path.is_dir() or not is_run_dir(path):
        from .files import NotARunError

        raise NotARunError(f"{path} is not a run directory (no {', '.join(RUN_MARKERS)})")


def check_run(path: str | Path) -> list[str]:
    """Every problem of a run's files: config, status, every metrics line (and rows lost against
    status.json's step), checkpoints, provenance, the lock, the reference samples and the step
    Parquet files' footers (their data is not read). The "full check" of ``list_runs(..., full=True)`` and ``lab runs show``."""
    path = Path(path)
    _require_run(path)
    _, status, problems = config_and_status(path)
    problems += metrics_problems(scan_jsonl(path / METRICS_FILE), status)
    problems += checkpoint_candidates(path)[1]
    problems += check_step_files(path)
    problems += [p] if (p := _reference(path, REFERENCE_FILE)[1]) else []
    problems += side_file_problems(path)
    return problems


def load_run(path: str | Path, *, samples: bool = True, probes: bool = True) -> Run:
    """Read a run directory into DataFrames (``samples=False`` skips the biggest table).

    Whatever is readable loads; each unreadable file or line is named in ``Run.problems``, and so
    is a metrics.jsonl that lost rows status.json says are done. Raises :class:`NotARunError` (a
    ``FileNotFoundError``) when ``path`` holds no run files, and :class:`RunReadError` naming
    the files when none of them is readable.
    """
    path = Path(path)
    _require_run(path)
    config, status, problems = config_and_status(path)
    scan = scan_jsonl(path / METRICS_FILE)
    problems += metrics_problems(scan, status)
    sdf, p = _read_step_files(path / SAMPLES_DIR, None, SAMPLES_DIR) if samples else (pd.DataFrame(), [])
    problems += p
    pdf, p = _read_step_files(path / PROBES_DIR, None, PROBES_DIR) if probes else (pd.DataFrame(), [])
    problems += p
    ref, p = _reference(path, REFERENCE_FILE)
    problems += [p] if p else []
    problems += checkpoint_candidates(path)[1]
    problems += side_file_problems(path)
    if not config and not scan.records and (status.get("problem") or not os.path.lexists(path / STATUS_FILE)):
        raise RunReadError(f"{path}: nothing readable: " + "; ".join(problems))
    return Run(path=path, config=config, status=status, metrics=pd.DataFrame(scan.records), samples=sdf, probes=pdf,
               problems=problems, format_version=format_version(path),
               reference=ref if ref is not None else pd.DataFrame())
