"""The run directory: the only code that writes or reads it. Format: ``docs/run-format.md``.

A run directory holds plain files anyone can open without ``lab``::

    config.json            the frozen TrainConfig (JSON) + "format_version", written atomically
    status.json            {"status": running|finished|failed|interrupted, "step", "error", ...}
    provenance.json        lab version, git commit, library versions, CPU, device
    writer.lock            locked (flock) by the one process writing the run
    metrics.jsonl          one JSON object per training step (append-only)
    reference.parquet      reference samples of the starting policy (one row per sample)
    samples/step_XXXXXX.parquet   one row per rollout of that step (atomic per file)
    probes/step_XXXXXX.parquet    one row per (probe prompt, estimator) at probe steps
    checkpoints/step_XXXXXX/      model.safetensors + trainer_state.pt (+ tokenizer/config)
    checkpoints/latest.json       {"step": ..., "path": ...} of the newest complete checkpoint

One module per concern: :mod:`~lab.runs.files` (the names above, atomic writes, bounded
non-blocking reads), :mod:`~lab.runs.writer` (:class:`RunWriter`: lock, heartbeat, writer
thread), :mod:`~lab.runs.checkpoints`, :mod:`~lab.runs.reader` (:func:`load_run`,
:func:`read_status`, ...), :mod:`~lab.runs.listing` (:func:`list_runs`, :func:`resolve_run`).
Every name is importable from ``lab.runs``.

Reading never fails on one bad file and never blocks: what is readable loads and every
unreadable file (a FIFO, socket or device in a file's place included) is named in
``Run.problems`` (``load_run``), by ``check_run`` or in the ``problem`` column (``list_runs``).
Liveness (``read_status``): a ``running`` run whose writer is gone reads as ``interrupted``.
"""

from lab.config import META_KEYS

from .checkpoints import checkpoint_candidates, checkpoint_dir, checkpoint_tmp_dir, latest_checkpoint
from .files import (
    CHECKPOINTS_DIR, CONFIG_FILE, FORMAT_VERSION, LATEST_FILE, LOCK_NAME, METRICS_FILE, PROBES_DIR, PROVENANCE_FILE,
    REFERENCE_FILE, RUN_MARKERS, SAMPLES_DIR, STATUS_FILE, TRAIN_CONFIG_FILE, NotARunError, RunExistsError, RunLockedError, RunPathError,
    RunReadError, RunRootError, atomic_write_bytes, atomic_write_json, step_file, step_name, step_of, steps_in,
    write_parquet,
)
from .listing import SUMMARY_COLUMNS, list_runs, missing_roots, resolve_run
from .reader import (
    REFERENCE_COLUMNS, REFERENCE_SPLITS, STALE_AFTER_S, STATUSES, Run, check_run, check_step_files, last_logged_step,
    load_run, lock_held, probe_steps, read_config, read_jsonl, read_metrics, read_probes, read_reference,
    read_samples, read_status, reference_frame_problems, sample_steps, writer_alive,
)
from .writer import HEARTBEAT_S, RunWriter, refuse_if_live

for _cls in (RunReadError, NotARunError, RunRootError, RunPathError, RunLockedError, RunExistsError):
    _cls.__module__ = __name__  # shown (and pickled) as lab.runs.X, where users import them
del _cls

__all__ = [
    "CHECKPOINTS_DIR", "CONFIG_FILE", "FORMAT_VERSION", "HEARTBEAT_S", "LATEST_FILE", "LOCK_NAME", "META_KEYS",
    "METRICS_FILE", "PROBES_DIR", "PROVENANCE_FILE", "REFERENCE_COLUMNS", "REFERENCE_FILE", "REFERENCE_SPLITS",
    "RUN_MARKERS", "SAMPLES_DIR", "STALE_AFTER_S", "STATUSES", "STATUS_FILE", "SUMMARY_COLUMNS", "TRAIN_CONFIG_FILE",
    "NotARunError", "Run", "RunExistsError", "RunLockedError", "RunPathError", "RunReadError", "RunRootError",
    "RunWriter", "atomic_write_bytes", "atomic_write_json", "check_run", "check_step_files", "checkpoint_candidates",
    "checkpoint_dir", "checkpoint_tmp_dir", "last_logged_step", "latest_checkpoint", "list_runs", "load_run",
    "lock_held", "missing_roots", "probe_steps", "read_config", "read_jsonl", "read_metrics", "read_probes",
    "read_reference", "read_samples", "read_status", "reference_frame_problems", "refuse_if_live", "resolve_run",
    "sample_steps", "step_file", "step_name", "step_of", "steps_in", "write_parquet", "writer_alive",
]
