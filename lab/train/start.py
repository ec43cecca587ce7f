"""``train()``: make or reopen the run directory, then run a :class:`~lab.train.trainer.Trainer`.

Order matters and is the point of this module: every check that can refuse a run (config,
derived values, model folder, positions, task, output folder, a live writer, an edited
config on resume) happens before the first file is written.
"""

from __future__ import annotations

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

from . import checkpoint, setup
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
    writer = runs.RunWriter.create(run_dir, config.to_dict())
    writer.write_provenance(provenance.collect(device=_device_name(s.device)))
    if notes:
        writer.set_status("running", step=-1, notes=notes)
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
    ref = _saved_reference(run_dir, config, start)
    writer = runs.RunWriter.reopen(run_dir, from_step=start.start_step - 1)
    writer.write_config(config.to_dict())
    writer.write_provenance(provenance.collect(device=_device_name(s.device)))
    for note in start.notes:  # warnings about damaged files: printed even with quiet
        print(f"lab train: note: {note}", file=sys.stderr)
    if start.notes:
        writer.set_status("running", step=start.start_step - 1, notes=start.notes)
    if start.start_step >= config.steps:
        writer.set_status("finished", step=config.steps - 1)
        writer.close()
        return run_dir
    return Trainer(s, run_dir, writer, start=start, reference_frame=ref, **kw).run()


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


def _saved_reference(run_dir: Path, config: TrainConfig, start: checkpoint.Restored):
    """The run's reference samples (reused, never drawn again). Missing or corrupt: refused once
    the run has a checkpoint; before its first checkpoint the stage simply runs again (same
    seed, same samples)."""
    if not config.reference_samples:
        return None
    try:
        return runs.read_reference(run_dir)
    except runs.RunReadError as e:
        if start.start_step > 0:
            raise UsageError(f"--resume {run_dir}: {e}") from None
        start.notes.append(f"{runs.REFERENCE_FILE}: not usable ({str(e).split(': ', 1)[-1][:80]}); the reference stage runs again")
        return None


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
