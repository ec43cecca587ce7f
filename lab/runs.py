"""The run directory: the only code that writes or reads it. Format: ``docs/run-format.md``.

A run directory holds plain files anyone can open without ``lab``::

    config.json            the frozen TrainConfig (JSON), written once, atomically
    status.json            {"status": running|finished|failed|interrupted, "step", "error", ...}
    metrics.jsonl          one JSON object per training step (append-only)
    samples/step_XXXXXX.parquet   one row per rollout of that step (atomic per file)
    probes/step_XXXXXX.parquet    one row per (probe prompt, estimator) at probe steps
    checkpoints/step_XXXXXX/      model.safetensors + trainer_state.pt (+ tokenizer/config)
    checkpoints/latest.json       {"step": ..., "path": ...} of the newest complete checkpoint

Every whole-file write goes to a temp file and is renamed into place; JSONL files are
append-only and a torn last line (a killed process) is skipped on read. A run whose
status says "running" but whose process is gone is reported as "interrupted".
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

STATUSES = ("running", "finished", "failed", "interrupted")


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
    line = json.dumps(_jsonable(record), sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn (unparseable) *last* line is dropped, any other bad line raises."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # torn last line from a killed writer
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
    return out


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
    # a zombie child still "exists"; treat it as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# --- writer ------------------------------------------------------------------------------------
class RunWriter:
    """Writes one run directory. Create with :meth:`create` (new run) or :meth:`reopen` (resume)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path, config: dict) -> "RunWriter":
        """Make a new run directory with its config and a ``running`` status.

        Fails if ``path`` already holds a run (never overwrites one).
        """
        path = Path(path)
        if (path / "config.json").exists():
            raise FileExistsError(f"{path} already holds a run; pick another --run-name or use --resume {path}")
        path.mkdir(parents=True, exist_ok=True)
        w = cls(path)
        atomic_write_json(path / "config.json", config)
        w.set_status("running", step=-1)
        return w

    @classmethod
    def reopen(cls, path: Path, from_step: int) -> "RunWriter":
        """Reopen for resume from checkpoint ``from_step``: drop everything logged after it."""
        w = cls(path)
        w.truncate_after(from_step)
        w.set_status("running", step=from_step)
        return w

    def set_status(self, status: str, *, step: int, error: str | None = None, **extra: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        prev = {}
        if (self.path / "status.json").exists():
            prev = json.loads((self.path / "status.json").read_text())
        rec = {
            "status": status,
            "step": step,
            "error": error,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": prev.get("started", time.time()),
            "updated": time.time(),
            **{k: v for k, v in prev.items() if k not in ("status", "step", "error", "pid", "host", "started", "updated")},
            **extra,
        }
        atomic_write_json(self.path / "status.json", rec)

    def log_metrics(self, record: dict) -> None:
        append_jsonl(self.path / "metrics.jsonl", record)

    def log_samples(self, step: int, df: pd.DataFrame) -> None:
        _write_parquet(_step_file(self.path / "samples", step), df)

    def log_probes(self, step: int, df: pd.DataFrame) -> None:
        _write_parquet(_step_file(self.path / "probes", step), df)

    def checkpoint_dir(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step_{step:06d}"

    def commit_checkpoint(self, step: int, tmp_dir: Path, keep: int = 2) -> Path:
        """Move a fully written ``tmp_dir`` into place and point ``latest.json`` at it.

        Keeps the newest ``keep`` checkpoints (0 keeps all).
        """
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
        """Remove metrics, samples and probes of steps > ``step`` (used on resume)."""
        mpath = self.path / "metrics.jsonl"
        rows = [r for r in read_jsonl(mpath) if r.get("step", -1) <= step]
        atomic_write_bytes(mpath, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
        for folder in ("samples", "probes"):
            for f in (self.path / folder).glob("step_*.parquet"):
                if int(f.stem.split("_")[1]) > step:
                    f.unlink()
            for f in (self.path / folder).glob(".*.tmp"):
                f.unlink()


def latest_checkpoint(path: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest complete checkpoint, or None."""
    latest = Path(path) / "checkpoints" / "latest.json"
    if not latest.exists():
        return None
    rec = json.loads(latest.read_text())
    folder = Path(path) / "checkpoints" / rec["path"]
    if not folder.is_dir():
        return None
    return int(rec["step"]), folder


# --- reader ------------------------------------------------------------------------------------
@dataclass
class Run:
    """A run as DataFrames: what ``load_run`` returns."""

    path: Path
    config: dict
    status: dict
    metrics: pd.DataFrame
    samples: pd.DataFrame
    probes: pd.DataFrame

    @property
    def name(self) -> str:
        return self.path.name


def read_status(path: Path) -> dict:
    """status.json, with ``running`` turned into ``interrupted`` when its process is gone."""
    path = Path(path)
    f = path / "status.json"
    if not f.exists():
        return {"status": "interrupted", "step": -1, "error": "no status.json"}
    st = json.loads(f.read_text())
    if st.get("status") == "running" and st.get("host") == socket.gethostname():
        pid = st.get("pid")
        if isinstance(pid, int) and not _pid_alive(pid):
            st = {**st, "status": "interrupted"}
    return st


def _read_step_files(folder: Path, columns: list[str] | None = None) -> pd.DataFrame:
    files = sorted(folder.glob("step_*.parquet"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)


def load_run(path: str | Path, *, samples: bool = True, probes: bool = True) -> Run:
    """Read a run directory into DataFrames (``samples=False`` skips the biggest table).

    Raises ``FileNotFoundError`` naming the path when it is not a run directory.
    """
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a run directory (no config.json)")
    config = json.loads((path / "config.json").read_text())
    metrics = pd.DataFrame(read_jsonl(path / "metrics.jsonl"))
    return Run(
        path=path,
        config=config,
        status=read_status(path),
        metrics=metrics,
        samples=_read_step_files(path / "samples") if samples else pd.DataFrame(),
        probes=_read_step_files(path / "probes") if probes else pd.DataFrame(),
    )


def list_runs(root: str | Path = "runs") -> pd.DataFrame:
    """One row per run directory under ``root`` (recursively), cheap: reads only small JSON files.

    Columns: path, name, status, step, estimator, loss, task, model, seed, plus the last
    logged reward/accuracy when present.
    """
    root = Path(root)
    rows = []
    if root.exists():
        for cfg in sorted(root.rglob("config.json")):
            run = cfg.parent
            if run.parent.name == "checkpoints" or "checkpoints" in run.parts:
                continue
            try:
                config = json.loads(cfg.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if "estimator" not in config:
                continue
            st = read_status(run)
            last = _last_metrics(run / "metrics.jsonl")
            rows.append(
                {
                    "path": str(run),
                    "name": run.name,
                    "status": st.get("status"),
                    "step": st.get("step"),
                    "estimator": config.get("estimator"),
                    "loss": config.get("loss"),
                    "task": config.get("task"),
                    "model": config.get("model"),
                    "seed": config.get("seed"),
                    "reward_mean": last.get("reward/mean"),
                    "accuracy": last.get("reward/accuracy"),
                }
            )
    return pd.DataFrame(rows, columns=["path", "name", "status", "step", "estimator", "loss", "task", "model", "seed", "reward_mean", "accuracy"])


def _last_metrics(path: Path) -> dict:
    """The last complete record of a metrics file, reading only its tail."""
    if not path.exists():
        return {}
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 65536))
        tail = f.read().decode("utf-8", errors="replace").splitlines()
    for line in reversed(tail):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {}


def iter_runs(root: str | Path) -> Iterable[Path]:
    for p in list_runs(root)["path"]:
        yield Path(p)
