"""Finding runs: :func:`list_runs` (one row per run under some roots) and :func:`resolve_run`
(a run name inside a root, refusing names that escape it)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from .checkpoints import checkpoint_candidates
from .files import (
    CHECKPOINTS_DIR, CONFIG_FILE, METRICS_FILE, PROBES_DIR, RUN_MARKERS, SAMPLES_DIR, STATUS_FILE, RunPathError,
    RunRootError, as_int, mtime, read_json, tail_records,
)
from .reader import check_run, config_and_status, is_run_dir, tail_problems

_SKIP_DIRS = {CHECKPOINTS_DIR, SAMPLES_DIR, PROBES_DIR, "__pycache__", "node_modules"}
SUMMARY_COLUMNS = ["root", "path", "name", "status", "step", "problem", "error", "eval_accuracy",
                   "reward_mean", "accuracy", "elapsed_s", "updated"]


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


def _config_fields() -> list[str]:
    from lab.config import TrainConfig

    return [f.name for f in dataclasses.fields(TrainConfig)]


def _find_runs(root: Path) -> list[Path]:
    if root.is_dir() and is_run_dir(root):
        return [root]
    found = []
    for here, dirs, names in os.walk(root):
        d = Path(here)
        # os.walk lists FIFOs, sockets and symlinks among the files: a broken run file still marks a run
        present = set(names) | (set(dirs) & set(RUN_MARKERS))
        if present & set(RUN_MARKERS) and _looks_like_run(d, present):
            found.append(d)
            dirs.clear()  # runs do not nest
            continue
        dirs[:] = sorted(x for x in dirs if x not in _SKIP_DIRS and not x.startswith("."))
    return found


def _looks_like_run(d: Path, present: set[str]) -> bool:
    """A folder with run files; a lone config.json that parses but is no run config (a model) is not."""
    if STATUS_FILE in present or METRICS_FILE in present:
        return True
    cfg, prob = read_json(d / CONFIG_FILE, CONFIG_FILE)
    if prob:
        return True  # unreadable: list it as a broken run rather than hide it
    return not isinstance(cfg, dict) or "estimator" in cfg


def _summary_row(root: Path, run: Path, fields: list[str], full: bool) -> dict:
    config, st, problems = config_and_status(run)
    last = tail_records(run / METRICS_FILE, want=("eval/accuracy",))
    if full:
        problems = check_run(run)
    else:
        problems += checkpoint_candidates(run)[1]
        problems += tail_problems(run, st, last)
    step = st.get("step", -1) if not st.get("problem") else as_int(last.get("step"), -1)
    updated = st.get("updated")
    if not isinstance(updated, (int, float)):
        updated = max((t for t in (mtime(run / n) for n in (STATUS_FILE, METRICS_FILE, CONFIG_FILE)) if t), default=None)
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


def missing_roots(roots: str | Path | Sequence[str | Path]) -> list[str]:
    """The roots among ``roots`` that are not folders, each as ``"ROOT: no such folder"`` /
    ``"ROOT: not a folder"`` ([] when every root is one).

    >>> missing_roots(["/nonexistent-runs-root"])
    ['/nonexistent-runs-root: no such folder']
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    out = []
    for r in roots:
        if not os.path.lexists(r) or (os.path.islink(r) and not os.path.exists(r)):
            out.append(f"{r}: no such folder")
        elif not os.path.isdir(r):
            out.append(f"{r}: not a folder")
    return out


def list_runs(roots: str | Path | Sequence[str | Path] = "runs", *, full: bool = False,
              missing_ok: bool = True) -> pd.DataFrame:
    """One row per run directory under ``roots`` (one path or a list), found recursively; cheap.

    Reads config.json, status.json, checkpoints/latest.json and only the tail of
    metrics.jsonl of each run, so hundreds of runs list quickly. Broken runs are listed
    too, with ``problem`` naming the file and the reason (None for a healthy run); the cheap
    listing also names a metrics.jsonl whose last row is older than status.json's step. With
    ``full=True`` the ``problem`` is the full check (:func:`lab.runs.check_run`: every metrics
    line, every Parquet footer, provenance, lock), which reads each run's metrics once.

    A root that is not a folder is skipped, or with ``missing_ok=False`` refused with
    :class:`RunRootError` naming it (:func:`missing_roots` names them without listing).

    Columns: ``root, path, name, status, step, problem, error, eval_accuracy, reward_mean,
    accuracy, elapsed_s, updated``, then one per TrainConfig field (None where not
    recorded). Rows sorted by root, then name.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    if not missing_ok and (bad := missing_roots(roots)):
        raise RunRootError(f"runs root {'; '.join(bad)}; give a folder that holds runs (e.g. runs/)")
    fields = _config_fields()
    rows = []
    for r in roots:
        root = Path(r)
        if not root.is_dir():
            continue
        rows += [_summary_row(root, run, fields, full) for run in _find_runs(root)]
    rows.sort(key=lambda x: (x["root"], x["name"]))
    df = pd.DataFrame(rows, columns=SUMMARY_COLUMNS + [f for f in fields if f not in SUMMARY_COLUMNS])
    for col in ("problem", "error"):  # None (not NaN) for "no problem", as documented
        df[col] = pd.Series([r[col] for r in rows], index=df.index, dtype=object)
    return df
