"""Checkpoints: save one (model, optimizer, RNG states, estimator memories, the config), and
restore the newest usable one on resume, refusing an edited config.

A checkpoint folder holds ``model.safetensors`` with the model's own ``config.json`` (+ tokenizer
files), so it loads as a Hugging Face model, ``trainer_state.pt`` and ``train_config.json``
(``runs.TRAIN_CONFIG_FILE``): the config the run had when the checkpoint was written. On resume the
run's ``config.json`` is compared with it field by field (:func:`config_changes`): ``steps``
may differ (``--steps`` sets it), the fields of :data:`SAFE_EDITS` may differ only with
``allow_config_edits`` (recorded in ``status.json``'s notes), any other difference is refused
naming the fields, since the resumed steps would no longer belong to one config.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lab import runs
from lab.config import TrainConfig
from lab.errors import UsageError, reason

from .setup import Setup

SAFE_EDITS = ("checkpoint_every", "keep_checkpoints", "quiet")
"""Config fields a resume may change with ``allow_config_edits`` (they change no number the run
computes); ``steps`` is always allowed (``--steps`` extends a run)."""
ALWAYS_ALLOWED = ("steps", "output_dir", "run_name")
"""Fields that may always differ (``steps``: ``--steps``; a run folder that was moved or renamed)."""


# --- RNG states ---------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    st = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    v, internal, gauss = st["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# --- save -------------------------------------------------------------------------------------------
def estimator_states(s: Setup) -> dict[str, Any]:
    return {"main": s.estimator.state_dict(), "shadows": {n: e.state_dict() for n, e in s.shadows.items()},
            "probe": {n: e.state_dict() for n, e in s.probe_est.items()}}


def save(s: Setup, writer: "runs.RunWriter", run_dir: Path, step: int) -> None:
    """Write the checkpoint of ``step`` into a temporary folder and commit it; on any failure
    (a full disk) the temporary folder is removed before the error goes on."""
    tmp = runs.checkpoint_tmp_dir(run_dir, step)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        s.model.save_pretrained(tmp, safe_serialization=True)
        s.tok.save_pretrained(tmp)
        state = {"step": step, "optimizer": s.opt.state_dict(), "rng": rng_state(), "estimators": estimator_states(s)}
        torch.save(state, tmp / "trainer_state.pt")
        (tmp / runs.TRAIN_CONFIG_FILE).write_text(json.dumps(s.c.to_dict(), indent=2, sort_keys=True))
        writer.commit_checkpoint(step, tmp, keep=s.c.keep_checkpoints)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- restore ---------------------------------------------------------------------------------------
class CheckpointUnusable(Exception):
    """One checkpoint folder cannot be loaded (resume tries the previous one)."""


@dataclass
class Restored:
    """Where a resume starts: ``start_step`` (0 without a usable checkpoint), the wall seconds
    the run had spent by then, how many steps just before it had every reward call fail (so
    the failure limit counts across a restart), and notes on what had to be worked around or
    was changed."""

    start_step: int = 0
    elapsed_base: float = 0.0
    reward_failure_streak: int = 0
    notes: list[str] = field(default_factory=list)


def restore(s: Setup, run_dir: Path, *, allow_config_edits: bool = False) -> Restored:
    """Load the newest usable checkpoint into ``s``; a corrupt one (or a torn latest.json) is
    named in ``notes`` and the previous kept checkpoint is tried. None at all: start at 0.
    A checkpoint whose saved config differs from ``s.c`` is refused (:func:`check_config`)."""
    found, problems = runs.checkpoint_candidates(run_dir)
    out = Restored(notes=list(problems))
    for step, folder in found:
        changes = check_config(s.c, folder, allow_config_edits)
        try:
            load(s, step, folder)
        except CheckpointUnusable as e:
            out.notes.append(str(e))
            continue
        out.notes += changes
        if problems or out.notes:
            out.notes.append(f"resuming from checkpoints/{folder.name} (step {step})")
        history = metrics_until(run_dir, step)
        out.start_step, out.elapsed_base = step + 1, elapsed_until(history)
        out.reward_failure_streak = failure_streak(history, s.c.prompts_per_step * s.c.rollouts_per_prompt)
        return out
    if found:
        raise UsageError(f"--resume {run_dir}: no usable checkpoint: " + "; ".join(out.notes))
    out.notes.append("no checkpoint yet: restarting from step 0 (same seed, same result)")
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two config dicts: name -> (old, new).

    >>> config_changes({"lr": 0.1, "steps": 4}, {"lr": 0.2, "steps": 4})
    {'lr': (0.1, 0.2)}
    """
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def check_config(c: TrainConfig, folder: Path, allow_edits: bool) -> list[str]:
    """Compare ``c`` with the config saved in checkpoint ``folder``; notes of allowed changes.

    Raises ``UsageError`` naming every differing field that is not allowed. A checkpoint
    written before checkpoints held their config is not checked."""
    if not (folder / runs.TRAIN_CONFIG_FILE).is_file():
        return []
    saved, problems = runs.read_config(folder, runs.TRAIN_CONFIG_FILE)
    if problems:
        return []
    try:
        old = TrainConfig.from_dict(saved).to_dict()
    except ValueError:
        return []
    diff = {k: v for k, v in config_changes(old, c.to_dict()).items() if k not in ALWAYS_ALLOWED}
    refused = {k: v for k, v in diff.items() if not (allow_edits and k in SAFE_EDITS)}
    rel = f"checkpoints/{folder.name}"
    if refused:
        what = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        safe = [k for k in refused if k in SAFE_EDITS]
        hint = (f"; {', '.join(safe)} may change with --allow-config-edits" if safe else
                f"; only steps (and with --allow-config-edits {', '.join(SAFE_EDITS)}) may change on resume")
        raise UsageError(f"--resume: config.json differs from the config of {rel} in {what}: undo the edit or start a "
                         f"new run{hint}")
    return [f"config.json edited since {rel}, allowed: {k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()]


def load(s: Setup, step: int, folder: Path) -> None:
    from safetensors.torch import load_file

    rel = f"checkpoints/{folder.name}"
    try:
        weights = load_file(str(folder / "model.safetensors"), device=str(s.device))
    except Exception as e:  # safetensors raises its own error types for a truncated file
        raise CheckpointUnusable(f"{rel}/model.safetensors: not readable ({first_line(e)})") from None
    missing, unexpected = s.model.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise CheckpointUnusable(f"{rel}/model.safetensors: does not match model {s.c.model!r}")
    if hasattr(s.model, "tie_weights"):
        s.model.tie_weights()
    try:
        state = torch.load(folder / "trainer_state.pt", weights_only=True, map_location="cpu")
        if state.get("step", step) != step:
            raise ValueError(f"holds step {state.get('step')}, not {step}")
        s.opt.load_state_dict(state["optimizer"])
        est = state["estimators"]
        s.estimator.load_state_dict(est["main"])
        for n, e in s.shadows.items():
            e.load_state_dict(est["shadows"][n])
        for n, e in s.probe_est.items():
            e.load_state_dict(est["probe"][n])
        set_rng_state(state["rng"])
    except Exception as e:  # a truncated or foreign file: torch, pickle and KeyError all possible
        raise CheckpointUnusable(f"{rel}/trainer_state.pt: not usable ({first_line(e)})") from None


def first_line(e: BaseException) -> str:
    return reason(e, 160)


def metrics_until(run_dir: Path, step: int) -> list[dict]:
    """The run's metrics lines of steps <= ``step``, in order."""
    return [r for r in runs.read_metrics(run_dir).to_dict("records") if isinstance(r.get("step"), (int, float)) and r["step"] <= step]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def failure_streak(recs: list[dict], rollouts_per_step: int) -> int:
    """How many of the last metrics lines had every reward call fail (``reward/errors`` = rollouts).

    >>> failure_streak([{"reward/errors": 8}, {"reward/errors": 2}, {"reward/errors": 8}, {"reward/errors": 8}], 8)
    2
    """
    n = 0
    for r in reversed(recs):
        if not (_number(r.get("reward/errors")) and r["reward/errors"] >= rollouts_per_step):
            break
        n += 1
    return n


def elapsed_until(recs: list[dict]) -> float:
    """Wall seconds the run had spent by the last of ``recs`` (metrics lines): its logged
    ``time/elapsed_s``, or (runs written before that metric) the sum of ``perf/step_time_s``."""
    for r in reversed(recs):
        if _number(r.get("time/elapsed_s")):
            return float(r["time/elapsed_s"])
    return float(sum(r["perf/step_time_s"] for r in recs if _number(r.get("perf/step_time_s"))))
