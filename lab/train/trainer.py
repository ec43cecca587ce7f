"""The trainer: a run's lifecycle around :meth:`~lab.train.step.Stepper.step`.

``Trainer(setup, run_dir, writer, ...)`` is complete when constructed (the writer, the stop
event and the callback are passed in); :meth:`Trainer.run` is the whole life of a session:

    reference stage (new runs) -> for each step: [stop?] step -> log -> [checkpoint] -> callback -> finished

Every ending leaves ``status.json`` telling the truth: ``step`` is the last step whose metrics
and samples are on disk, whether the run finished, failed (also inside a checkpoint write),
was stopped, or was interrupted by Ctrl-C.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from lab import runs

from . import checkpoint, records, reference
from .checkpoint import Restored
from .errors import TrainingFailed
from .setup import Setup
from .step import StepRecord, Stepper


class Trainer(Stepper):
    """One session of a run: ``setup`` (loaded pieces), the open ``writer``, where to start
    (``start``, from :func:`lab.train.checkpoint.restore`; None = step 0), an optional
    ``stop_event`` (ends the run at the next step boundary, resumably), ``callback(step,
    metrics)`` (after each step is on disk), ``reference_frame`` (reference samples read back
    on resume) and ``t_start`` (``time.monotonic()`` when the session began: set-up time is
    logged as ``time/warmup_s``)."""

    def __init__(self, setup: Setup, run_dir: Path, writer: "runs.RunWriter", *, start: Restored | None = None,
                 stop_event: threading.Event | None = None, callback: Callable[[int, dict], Any] | None = None,
                 reference_frame: pd.DataFrame | None = None, t_start: float | None = None):
        self.s, self.c, self.run_dir, self.writer = setup, setup.c, Path(run_dir), writer
        start = start or Restored()
        self.start_step, self.elapsed_base = start.start_step, start.elapsed_base
        self.stop_event, self.callback = stop_event, callback
        self.reference_frame = reference_frame
        self.t_start = time.monotonic() if t_start is None else t_start
        self.current_step = self.start_step  # the step being worked on (for error messages)
        self.last_logged = self.start_step - 1  # last step whose metrics and samples are on disk
        self._ckpt_step = self.start_step - 1 if self.start_step > 0 else None  # resumed from this checkpoint
        self._all_failed = 0
        self.ref_rollouts, self.ref_time_s, self.warmup_s, self.t_loop = 0, 0.0, 0.0, self.t_start
        self._ref_time_now = 0.0  # reference-stage seconds spent in this session
        self._phase: str | None = None  # what is running outside a step (for error messages)

    @property
    def model(self):
        return self.s.model

    # ..... the session ...............................................................................
    def run(self) -> Path:
        from tqdm.auto import tqdm

        c = self.c
        bar = tqdm(range(self.start_step, c.steps), initial=self.start_step, total=c.steps, disable=c.quiet,
                   desc=f"{c.estimator}/{c.loss}", unit="step", dynamic_ncols=True)
        self.writer.start_heartbeat()
        self.writer.start_background()  # files written by a writer thread, in order; flushed at checkpoints and every ending
        try:
            self.reference_stage()
            self.t_loop = time.monotonic()
            self.warmup_s = self.t_loop - self.t_start - self._ref_time_now
            for step in bar:
                if self.stop_event is not None and self.stop_event.is_set():
                    return self._stop()
                metrics = self.log(self.step(step), bar)
                if (c.checkpoint_every and (step + 1) % c.checkpoint_every == 0) or step == c.steps - 1:
                    self.save_checkpoint(step)
                if self.callback is not None:
                    self.writer.flush()  # the callback's contract: this step is on disk
                    self.callback(step, metrics)
            self.writer.set_status("finished", step=c.steps - 1)
        except KeyboardInterrupt:
            self._end("interrupted", f"interrupted by the user (Ctrl-C) during step {self.current_step}; "
                                     f"continue with `lab train --resume {self.run_dir}`")
            raise
        except BaseException as e:  # noqa: BLE001 - every other ending is a failure, recorded as one
            err = self._failed(e)
            if err is e:
                raise
            raise err from None
        finally:
            bar.close()
            self.writer.close()
        return self.run_dir

    def reference_stage(self) -> None:
        """New run: sample, store and hand out the reference samples. Resume: reuse the file
        (restarting at step 0: hand them out again; later: the estimator states hold them)."""
        c = self.c
        if not c.reference_samples:
            return
        if self.reference_frame is None:
            self._phase = "the reference stage"
            ref = reference.sample(self)
            self.writer.write_reference(ref.frame)
            self.reference_frame, self._ref_time_now, self.ref_time_s = ref.frame, ref.time_s, ref.time_s
            reference.apply(self, ref.frame)
        else:
            self.ref_time_s = _earlier_metric(self.run_dir, self.start_step - 1, "ref/time_s")
            if self.start_step == 0:
                reference.apply(self, self.reference_frame)
        self.ref_rollouts, self._phase = len(self.reference_frame), None

    def log(self, rec: StepRecord, bar) -> dict:
        """Queue the step's probes, samples and metrics line for the writer; returns the metrics."""
        elapsed = self.elapsed_base + (time.monotonic() - self.t_loop)
        metrics = records.metrics(rec, elapsed_s=elapsed, warmup_s=self.warmup_s, ref_rollouts=self.ref_rollouts,
                                  ref_time_s=self.ref_time_s)
        self.writer.log_step(rec.step, metrics, self._samples_frame(rec), rec.probes)  # status 'running'
        self.last_logged = rec.step
        if rec.scored.messages and not self.c.quiet:
            bar.write(f"step {rec.step}: {rec.scored.failed} reward error(s), e.g. {rec.scored.messages[0]}")
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['reward/accuracy']:.3f}")
        return metrics

    def _samples_frame(self, rec: StepRecord) -> pd.DataFrame:
        return records.samples_frame(rec, self.c.rollouts_per_prompt)

    def save_checkpoint(self, step: int) -> None:
        checkpoint.save(self.s, self.writer, self.run_dir, step)
        self._ckpt_step = step

    # ..... endings .....................................................................................
    def _stop(self) -> Path:
        """A requested stop at a step boundary: checkpoint the last step (so nothing is lost), status
        ``interrupted``; the message goes to status.json's ``message`` (``error`` stays empty)."""
        if self.last_logged >= 0 and self._ckpt_step != self.last_logged:
            self.save_checkpoint(self.last_logged)
        self.writer.set_status("interrupted", step=self.last_logged,
                               message=f"stopped on request after step {self.last_logged}; "
                                       f"continue with `lab train --resume {self.run_dir}`")
        return self.run_dir

    def _failed(self, e: BaseException) -> BaseException:
        """Record a failure; returns what to raise (a ``TrainingFailed`` naming the step, or
        ``e`` itself for an unexpected ``Exception``, whose traceback is the bug report)."""
        where = self._phase or f"step {self.current_step}"
        if isinstance(e, TrainingFailed):
            msg = f"{where}: {e}"
        elif isinstance(e, torch.cuda.OutOfMemoryError):
            msg = f"{where}: {_oom_message(self.c)}"
        elif isinstance(e, Exception):
            self._end("failed", f"{where}: {type(e).__name__}: {e}")
            return e
        else:  # SystemExit, GeneratorExit, ... raised inside the run
            msg = f"{where}: {type(e).__name__}({str(e)[:80]!r}) raised inside the run"
        self._end("failed", msg)
        return TrainingFailed(msg)

    def _end(self, status: str, error: str) -> None:
        """Record an abnormal ending; ``step`` is read back from disk (the last metrics line), so it
        is the truth even when the interruption came between writing a step and noting it."""
        self.writer.drain()  # queued steps land first (a writer failure is already the error being recorded)
        step = runs.last_logged_step(self.run_dir)
        step = self.last_logged if step is None else step
        try:
            self.writer.set_status(status, step=step, error=error)
        except OSError:  # a full disk must not hide the original error
            pass


def _oom_message(c) -> str:
    return (
        "GPU out of memory. Turn down --prompts-per-step (now {p}), --rollouts-per-prompt (now {g}) or "
        "--max-new-tokens (now {t}), or raise --minibatches (now {m}); a smaller --model also helps."
    ).format(p=c.prompts_per_step, g=c.rollouts_per_prompt, t=c.max_new_tokens, m=c.minibatches)


def _earlier_metric(run_dir: Path, step: int, key: str) -> float:
    """``key`` of the last metrics line at or before ``step`` (0.0 when there is none)."""
    for r in reversed(runs.read_metrics(run_dir).to_dict("records")):
        v = r.get(key)
        if isinstance(r.get("step"), (int, float)) and r["step"] <= step and isinstance(v, (int, float)) and v == v:
            return float(v)
    return 0.0
