"""The trainer: a run's lifecycle around :meth:`~lab.train.step.Stepper.step`.

``Trainer(setup, run_dir, writer, ...)`` is complete when constructed (the writer, where to
start, the reference samples, the stop event and the callback are passed in);
:meth:`Trainer.run` is the whole life of a session:

    reference stage (new runs) -> for each step: [stop?] step -> log -> [checkpoint] -> callback -> finished

Every ending leaves ``status.json`` telling the truth: ``step`` is the last step whose metrics
and samples are on disk, whether the run finished, failed (also inside a checkpoint write),
was stopped, or was interrupted by Ctrl-C.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from lab import runs
from lab.errors import reason

from . import checkpoint, records, reference
from .checkpoint import Restored
from .errors import TrainingFailed
from .records import StepRecord
from .reference import Reference
from .setup import Setup
from .step import Stepper


@dataclass(frozen=True)
class Clock:
    """A session's time keeping. ``time/elapsed_s`` counts the training loop only: the seconds
    the run had spent before this session (``elapsed_base``, from its checkpoint) plus those
    since ``t_loop`` (the session's first step); ``warmup_s`` is the set-up before that step,
    the reference stage's sampling excluded (it is ``ref/time_s``)."""

    t_loop: float
    elapsed_base: float
    warmup_s: float

    @classmethod
    def now(cls, *, t_start: float, elapsed_base: float, sampled_s: float) -> "Clock":
        t = time.monotonic()
        return cls(t_loop=t, elapsed_base=elapsed_base, warmup_s=t - t_start - sampled_s)

    def elapsed(self) -> float:
        return self.elapsed_base + (time.monotonic() - self.t_loop)


class Trainer(Stepper):
    """One session of a run: ``setup`` (loaded pieces), the open ``writer``, where to start
    (``start``, from :func:`lab.train.checkpoint.restore`; None = step 0), ``reference``
    (the run's reference samples read back on resume; None = the stage draws them when the
    config asks for one), an optional ``stop_event`` (ends the run at the next step boundary,
    resumably), ``callback(step, metrics)`` (after each step is on disk) and ``t_start``
    (``time.monotonic()`` when the session began: set-up time is logged as ``time/warmup_s``).
    Nothing is set on it from outside; :meth:`run` is its whole life."""

    def __init__(self, setup: Setup, run_dir: Path, writer: "runs.RunWriter", *, start: Restored | None = None,
                 reference: Reference | None = None, stop_event: threading.Event | None = None,
                 callback: Callable[[int, dict], Any] | None = None, t_start: float | None = None):
        self.s, self.c, self.run_dir, self.writer = setup, setup.c, Path(run_dir), writer
        self.start = start or Restored()
        self.reference, self.stop_event, self.callback = reference, stop_event, callback
        self.t_start = time.monotonic() if t_start is None else t_start
        self.current_step = self.start.start_step  # the step being worked on (for error messages)
        self.last_logged = self.start.start_step - 1  # last step whose metrics and samples are on disk
        self._ckpt_step = self.start.start_step - 1 if self.start.start_step > 0 else None  # newest checkpoint
        self._all_failed = self.start.reward_failure_streak
        self._phase: str | None = None  # what is running outside a step (for error messages)

    @property
    def model(self):
        return self.s.model

    # ..... the session ...............................................................................
    def run(self) -> Path:
        """reference stage -> for each step: [stop?] step -> log -> [checkpoint] -> callback -> finished."""
        bar = self._progress_bar()
        try:
            self.writer.start_heartbeat()
            self.writer.start_background()  # files written by a writer thread, in order; flushed at checkpoints and endings
            ref, sampled_s = self.reference_stage()
            clock = Clock.now(t_start=self.t_start, elapsed_base=self.start.elapsed_base, sampled_s=sampled_s)
            for step in bar:
                if self.stop_event is not None and self.stop_event.is_set():
                    return self._stop()
                self._after(step, self.log(self.step(step), bar, clock, ref))
            self.writer.set_status("finished", step=self.c.steps - 1)
        except KeyboardInterrupt:
            self._end("interrupted", f"interrupted by the user (Ctrl-C) during {self._where()}; "
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

    def reference_stage(self) -> tuple[Reference | None, float]:
        """The run's reference samples (None without a stage) and the seconds this session spent
        drawing them. Drawn, stored and handed out when the run has none yet; reused on resume
        (handed out again only when restarting at step 0: later, the estimator states hold them)."""
        if not self.c.reference_samples:
            return None, 0.0
        if self.reference is not None:
            if self.start.start_step == 0:
                reference.apply(self.s, self.reference.frame)
            return self.reference, 0.0
        self._phase = "the reference stage"
        ref = reference.sample(self)
        self.writer.write_reference(ref.frame)
        reference.apply(self.s, ref.frame)
        self._phase = None
        return ref, ref.time_s

    def log(self, rec: StepRecord, bar, clock: Clock, ref: Reference | None) -> dict:
        """Queue the step's probes, samples and metrics line for the writer; returns the metrics."""
        metrics = records.metrics(rec, elapsed_s=clock.elapsed(), warmup_s=clock.warmup_s,
                                  ref_rollouts=ref.rollouts if ref else 0, ref_time_s=ref.time_s if ref else 0.0)
        self.writer.log_step(rec.step, metrics, records.samples_frame(rec, self.c.rollouts_per_prompt), rec.probes)
        self.last_logged = rec.step
        if rec.scored.messages and not self.c.quiet:
            bar.write(f"step {rec.step}: {rec.scored.failed} reward error(s), e.g. {rec.scored.messages[0]}")
        bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['reward/accuracy']:.3f}")
        return metrics

    def _after(self, step: int, metrics: dict) -> None:
        """A logged step's checkpoint (every ``checkpoint_every`` steps and the last) and callback."""
        c = self.c
        if (c.checkpoint_every and (step + 1) % c.checkpoint_every == 0) or step == c.steps - 1:
            self.save_checkpoint(step)
        if self.callback is not None:
            self.writer.flush()  # the callback's contract: this step is on disk
            self.callback(step, metrics)

    def save_checkpoint(self, step: int) -> None:
        checkpoint.save(self.s, self.writer, self.run_dir, step)
        self._ckpt_step = step

    def _progress_bar(self):
        from tqdm.auto import tqdm

        c = self.c
        return tqdm(range(self.start.start_step, c.steps), initial=self.start.start_step, total=c.steps,
                    disable=c.quiet, desc=f"{c.estimator}/{c.loss}", unit="step", dynamic_ncols=True)

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
        where = self._where()
        if isinstance(e, TrainingFailed):
            msg = f"{where}: {e}"
        elif isinstance(e, torch.cuda.OutOfMemoryError):
            msg = f"{where}: {_oom_message(self.c)}"
        elif isinstance(e, Exception):
            self._end("failed", f"{where}: {type(e).__name__}: {e}")
            return e
        else:  # SystemExit, GeneratorExit, ... raised inside the run
            msg = f"{where}: {type(e).__name__}({reason(e, 80)!r}) raised inside the run"
        self._end("failed", msg)
        return TrainingFailed(msg)

    def _where(self) -> str:
        return self._phase or f"step {self.current_step}"

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

