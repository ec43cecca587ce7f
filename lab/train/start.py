"""``train()``: make or reopen the run directory, then run a :class:`~lab.train.trainer.Trainer`.

Order matters and is the point of this module: every check that can refuse a run (config,
derived values, model folder, positions, task, output folder, a live writer, an edited
config on resume) happens before the first file is written.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from lab import provenance, runs
from lab.config import ConfigError, TrainConfig, config_warnings
from lab.errors import UsageError

from . import checkpoint, reference, setup
from .trainer import Trainer


def default_run_name(c: TrainConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{c.estimator}-{c.loss}-{c.clip_measure}-g{c.rollouts_per_prompt}-s{c.seed}-{stamp}"


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    steps: int | None = None,
    stop_event: threading.Event | None = None,
    callback: Callable[[int, dict], Any] | None = None,
    allow_config_edits: bool = False,
) -> Path:
    """Run training; returns the run directory. Give a config for a new run, or ``resume=run_dir``.

    ``steps``: with ``resume`` only, the new total step count (extends a finished run; at least
    the step after the checkpoint resumed from). ``stop_event``: when set, the run ends at the
    next step boundary with a checkpoint and status ``interrupted`` (resumable); ``train``
    returns normally. ``callback(step, metrics)``: called after each step's metrics and
    samples are on disk (an exception there fails the run). ``allow_config_edits``: on resume,
    accept a ``config.json`` edited in the fields of ``lab.train.checkpoint.SAFE_EDITS``
    (recorded in status.json's notes); any other edit is refused naming the fields.

    Bad input (config values, the model folder, the device, the output folder, a live writer
    on the run) raises a ``lab.errors.LabError`` before anything is written. A failure mid-run
    leaves the run directory readable with status ``failed`` and the error; Ctrl-C leaves
    ``interrupted``. Signal handlers are the caller's (``lab train`` installs them).
    """
    t_start = time.monotonic()
    if (config is None) == (resume is None):
        raise UsageError("give either a config (new run) or resume=RUN_DIR, not both")
    if steps is not None and resume is None:
        raise UsageError("steps= goes with resume= (to extend a run); for a new run set TrainConfig(steps=...)")
    kw = dict(stop_event=stop_event, callback=callback, t_start=t_start)
    if resume is not None:
        return _resume(Path(resume), steps, allow_config_edits, kw)
    return _new(config, kw)


def _new(config: TrainConfig, kw: dict) -> Path:
    run_dir = Path(config.output_dir) / (config.run_name or default_run_name(config))
    _check_output_dir(run_dir)
    if (run_dir / "config.json").exists() or (run_dir / "status.json").exists():
        raise ConfigError(f"run_name: {run_dir} already holds a run; pick another --run-name or --resume {run_dir}")
    checkpoint.seed_everything(config.seed)
    s = setup.load(config)  # model and task first: a bad model path writes nothing
    notes = _warn([*config_warnings(config), *s.warnings])
    prov = provenance.collect(device=_device_name(s.device))
    writer = runs.RunWriter.create(run_dir, config.to_dict())  # the first file written
    _open(writer, prov, notes, step=-1)
    return Trainer(s, run_dir, writer, **kw).run()


def _resume(run_dir: Path, steps: int | None, allow_edits: bool, kw: dict) -> Path:
    config = _saved_config(run_dir, steps)
    runs.refuse_if_live(run_dir)  # before the (slow) model load
    checkpoint.seed_everything(config.seed)
    s = setup.load(config)
    start = checkpoint.restore(s, run_dir, allow_config_edits=allow_edits)
    if steps is not None and steps < start.start_step:
        raise ConfigError(f"steps: the run resumes after its checkpoint of step {start.start_step - 1}; "
                          f"give --steps {start.start_step} or more")
    ref = _saved_reference(run_dir, s, start)
    prov = provenance.collect(device=_device_name(s.device))
    writer = runs.RunWriter.reopen(run_dir, from_step=start.start_step - 1)  # the first file written
    for note in start.notes:  # warnings about damaged files: printed even with quiet
        print(f"lab train: note: {note}", file=sys.stderr)
    _open(writer, prov, start.notes, step=start.start_step - 1, config=config.to_dict())
    if start.start_step >= config.steps:
        writer.set_status("finished", step=config.steps - 1)
        writer.close()
        return run_dir
    return Trainer(s, run_dir, writer, start=start, reference=ref, **kw).run()


def _open(writer: "runs.RunWriter", prov: dict, notes: list[str], *, step: int, config: dict | None = None) -> None:
    """The session's first records: config.json (on resume: the new ``steps``), provenance,
    notes. A failure here (a full disk) still ends the status as ``failed`` (``interrupted``
    for Ctrl-C) and gives the lock back before it goes on."""
    try:
        if config is not None:
            writer.write_config(config)
        writer.write_provenance(prov)
        if notes:
            writer.set_status("running", step=step, notes=notes)
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        with contextlib.suppress(OSError):
            writer.set_status(status, step=step, error=f"opening the run: {type(e).__name__}: {e}")
        writer.close()
        raise


def _saved_config(run_dir: Path, steps: int | None) -> TrainConfig:
    if not (run_dir / "config.json").is_file():
        raise UsageError(f"--resume {run_dir}: not a run directory (no config.json)")
    saved, problems = runs.read_config(run_dir)
    if problems:
        raise UsageError(f"--resume {run_dir}: {problems[0]}")
    try:
        config = TrainConfig.from_dict(saved)
    except ConfigError as e:
        raise UsageError(f"--resume {run_dir}: config.json: {e}") from None
    return config.replace(steps=steps) if steps is not None else config


def _saved_reference(run_dir: Path, s: setup.Setup, start: checkpoint.Restored) -> reference.Reference | None:
    """The run's reference samples, reused (never drawn again) once the run has a checkpoint:
    a missing, damaged or foreign ``reference.parquet`` is then refused, naming it. Before the
    first checkpoint the run restarts at step 0 and so does the stage (same seed, same samples)."""
    if not s.c.reference_samples or start.start_step == 0:
        return None
    try:
        frame = runs.read_reference(run_dir)
    except runs.RunReadError as e:
        raise UsageError(f"--resume {run_dir}: {e}") from None
    mismatch = reference.mismatch(s, frame)
    if mismatch:
        raise UsageError(f"--resume {run_dir}: {run_dir / runs.REFERENCE_FILE}: {mismatch}; it is not this run's file "
                         "(restore it, or start a new run)")
    return reference.Reference(frame, _logged(run_dir, "ref/time_s"))


def _logged(run_dir: Path, key: str) -> float:
    """``key`` of the first metrics line that has it as a finite number (0.0 when none does)."""
    for r in runs.read_metrics(run_dir).to_dict("records"):
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return 0.0


def _warn(lines: list[str]) -> list[str]:
    for line in lines:  # printed even with quiet: a setting that is probably not what was meant
        print(f"lab train: warning: {line}", file=sys.stderr)
    return lines


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _check_output_dir(run_dir: Path) -> None:
    """Fail before anything is written when the run directory cannot be made."""
    for p in (run_dir, *run_dir.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise ConfigError(f"output_dir: {p} is a file, not a folder; give a folder path (or another --run-name)")
            if not os.access(p, os.W_OK | os.X_OK):
                raise ConfigError(f"output_dir: cannot write in {p} (permission denied); give a folder you can write")
            return
