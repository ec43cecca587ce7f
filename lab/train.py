"""The RLVR training loop. Read it top to bottom: one step is

    prompts -> rollouts -> rewards -> estimator (+ shadows) -> [probes] -> PPO epochs -> log -> checkpoint

``train(config)`` runs a new run; ``train(resume=run_dir)`` continues one from its newest
usable checkpoint with model, optimizer, estimator memories, prompt schedule and every RNG
restored, so on CPU a resumed run reproduces the uninterrupted one; ``steps=N`` with
``resume`` extends a finished run. ``stop_event`` (a ``threading.Event``) ends a run cleanly
at the next step boundary with status ``interrupted``; ``callback(step, metrics)`` runs after
each step is on disk. Signal handlers belong to the caller (the CLI), never to ``train``.

Every ending leaves ``status.json`` telling the truth: ``step`` is the last step whose
metrics and samples are on disk, whether the run finished, failed (also inside a checkpoint
write), was stopped, or was interrupted by Ctrl-C.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import sys
import threading
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from lab import estimators, losses, models, probes, provenance, rollout, runs, tasks
from lab.config import ConfigError, TrainConfig
from lab.errors import LabError, UsageError
from lab.estimators import RewardBatch
from lab.models.fast import accelerate as _lean_forward
from lab.models import precision
from lab.tasks.base import distinct_examples
from lab.tasks.scoring import score


class TrainingFailed(RuntimeError):
    """The run stopped with status ``failed``; the message names the step and what went wrong."""


MAX_FAILED_REWARD_STEPS = 3
"""A run fails after this many consecutive steps in which every reward call failed."""


# --- prompt schedule -------------------------------------------------------------------------
class PromptSchedule:
    """Which prompts each step trains on: block ``step // reuse`` of a deterministic stream.

    With ``reuse = J`` every prompt is used for J consecutive steps (KAE's setting); with 1,
    every step gets fresh prompts. Finite tasks are cycled (epoch e uses seed + e). The
    schedule is a pure function of (task, seed, step), so resume needs no extra state.
    """

    def __init__(self, task, *, seed: int, per_step: int, reuse: int):
        self.task, self.seed, self.per_step, self.reuse = task, seed, per_step, reuse
        self._epoch, self._it, self._block, self._current = 0, None, -1, []

    def _next_example(self):
        while True:
            if self._it is None:
                self._it = iter(self.task.examples("train", self.seed + self._epoch))
            try:
                return next(self._it)
            except StopIteration:
                if self._epoch > 0 and self._empty_epoch:
                    raise ValueError(f"task {self.task.name!r} has no training examples") from None
                self._empty_epoch = True
                self._epoch += 1
                self._it = None

    def prompts(self, step: int) -> list:
        block = step // self.reuse
        if block < self._block:
            raise ValueError("PromptSchedule only moves forward; make a new one to rewind")
        while self._block < block:
            self._empty_epoch = False
            out = []
            for _ in range(self.per_step):
                out.append(self._next_example())
                self._empty_epoch = False
            self._current, self._block = out, self._block + 1
        return self._current


# --- small helpers -----------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "python": _py_state_to_list(random.getstate())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _py_state_to_list(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    v, internal, gauss = st["python"]
    random.setstate((v, tuple(internal), gauss))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def default_run_name(c: TrainConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{c.estimator}-{c.loss}-{c.clip_measure}-g{c.rollouts_per_prompt}-s{c.seed}-{stamp}"


def _oom_message(c: TrainConfig) -> str:
    return (
        "GPU out of memory. Turn down --prompts-per-step (now {p}), --rollouts-per-prompt (now {g}) or "
        "--max-new-tokens (now {t}), or raise --minibatches (now {m}); a smaller --model also helps."
    ).format(p=c.prompts_per_step, g=c.rollouts_per_prompt, t=c.max_new_tokens, m=c.minibatches)


# --- the trainer -------------------------------------------------------------------------------
class Trainer:
    """Holds the pieces of one run; :meth:`run` executes the loop. Use :func:`train`."""

    def __init__(self, config: TrainConfig, run_dir: Path, *, resume: bool = False):
        self.c = c = config
        self.run_dir = Path(run_dir)
        self.device = models.pick_device(c.device)
        import transformers

        transformers.utils.logging.disable_progress_bar()  # our own bar is the progress bar
        try:
            self.model, self.tok = models.load(c.model, device=c.device, dtype=precision.master_dtype(c.dtype))  # fp32 master weights
        except FileNotFoundError as e:  # resolve_name's "no such path": a user error like the rest
            if isinstance(e, LabError):
                raise
            raise ConfigError(f"model: {e}") from None
        self.model.eval()  # RL without dropout: sampling and training see the same network
        _lean_forward(self.model)  # GPT-2s: same maths, fewer ops (lab/models/fast.py); others unchanged
        precision.set_gradient_checkpointing(self.model, c.gradient_checkpointing)  # on: undoes the lean forward
        self.ref = None
        if c.use_ref_model:
            self.ref, _ = models.load(c.model, device=c.device, dtype=c.dtype)
            self.ref.eval().requires_grad_(False)
            _lean_forward(self.ref)
        try:
            self.task = tasks.get(c.task, **c.task_params)
        except (ValueError, TypeError, OSError) as e:
            if isinstance(e, LabError):
                raise
            raise UsageError(f"task {c.task!r}: {e}") from None
        self.backend = rollout.get(c.rollout_backend, model=self.model, tokenizer=self.tok)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.estimator = estimators.get(c.estimator, **c.estimator_params)
        self.shadows = {n: estimators.get(n) for n in c.shadow_names()}
        self.est_names = [c.estimator, *self.shadows]
        # probe-only instances: the fixed probe prompts build their own history, apart from training
        self.probe_est = {n: estimators.get(n, **(c.estimator_params if n == c.estimator else {})) for n in self.est_names}
        self.schedule = PromptSchedule(self.task, seed=c.seed, per_step=c.prompts_per_step, reuse=c.prompt_reuse)
        self.probe_examples = list(_take(self.task.examples("test", c.seed + 10_000), c.probe_prompts))
        self.eval_examples = distinct_examples(self.task.examples("test", c.seed + 20_000), c.eval_prompts)
        self.stop = list(getattr(self.task, "stop", []) or [])
        self.start_step = 0
        self.elapsed_base = 0.0  # wall seconds of earlier sessions (resume-aware time/elapsed_s)
        self.t_session = time.monotonic()
        self.notes: list[str] = []  # what resume had to work around (a corrupt checkpoint, ...)
        self.last_logged = -1  # last step whose metrics and samples are on disk
        self.stop_event: threading.Event | None = None
        self.callback = None
        self._all_failed = 0  # consecutive steps in which every reward call failed
        self.writer: runs.RunWriter | None = None
        if resume:
            self._restore()

    # ..... checkpointing .........................................................................
    def _estimator_states(self) -> dict[str, Any]:
        return {
            "main": self.estimator.state_dict(),
            "shadows": {n: e.state_dict() for n, e in self.shadows.items()},
            "probe": {n: e.state_dict() for n, e in self.probe_est.items()},
        }

    def save_checkpoint(self, step: int) -> None:
        assert self.writer is not None
        tmp = self.run_dir / "checkpoints" / f".tmp_step_{step:06d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self.model.save_pretrained(tmp, safe_serialization=True)
        self.tok.save_pretrained(tmp)
        state = {"step": step, "optimizer": self.opt.state_dict(), "rng": _rng_state(), "estimators": self._estimator_states()}
        torch.save(state, tmp / "trainer_state.pt")
        self.writer.commit_checkpoint(step, tmp, keep=self.c.keep_checkpoints)

    def _restore(self) -> None:
        """Load the newest usable checkpoint; a corrupt one (or a torn latest.json) is named in
        ``notes`` and the previous kept checkpoint is tried. No checkpoint at all: start at 0."""
        found, problems = runs.checkpoint_candidates(self.run_dir)
        self.notes += problems
        for step, folder in found:
            try:
                self._load_checkpoint(step, folder)
            except _CheckpointUnusable as e:
                self.notes.append(str(e))
                continue
            if problems or self.notes:
                self.notes.append(f"resuming from checkpoints/{folder.name} (step {step})")
            self.start_step = step + 1
            self.elapsed_base = _elapsed_until(self.run_dir, step)
            return
        if found:
            raise UsageError(f"--resume {self.run_dir}: no usable checkpoint: " + "; ".join(self.notes))
        self.notes.append("no checkpoint yet: restarting from step 0 (same seed, same result)")
        self.start_step = 0

    def _load_checkpoint(self, step: int, folder: Path) -> None:
        from safetensors.torch import load_file

        rel = f"checkpoints/{folder.name}"
        try:
            weights = load_file(str(folder / "model.safetensors"), device=str(self.device))
        except Exception as e:  # safetensors raises its own error types for a truncated file
            raise _CheckpointUnusable(f"{rel}/model.safetensors: not readable ({_first_line(e)})") from None
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise _CheckpointUnusable(f"{rel}/model.safetensors: does not match model {self.c.model!r}")
        if hasattr(self.model, "tie_weights"):
            self.model.tie_weights()
        try:
            state = torch.load(folder / "trainer_state.pt", weights_only=True, map_location="cpu")
            if state.get("step", step) != step:
                raise ValueError(f"holds step {state.get('step')}, not {step}")
            self.opt.load_state_dict(state["optimizer"])
            est = state["estimators"]
            self.estimator.load_state_dict(est["main"])
            for n, e in self.shadows.items():
                e.load_state_dict(est["shadows"][n])
            for n, e in self.probe_est.items():
                e.load_state_dict(est["probe"][n])
            _set_rng_state(state["rng"])
        except Exception as e:  # a truncated or foreign file: torch, pickle and KeyError all possible
            raise _CheckpointUnusable(f"{rel}/trainer_state.pt: not usable ({_first_line(e)})") from None

    # ..... one step's pieces ......................................................................
    def sampling(self, n: int, seed: int | None = None) -> "rollout.SamplingParams":
        c = self.c
        return rollout.SamplingParams(n=n, temperature=c.temperature, top_p=c.top_p, max_new_tokens=c.max_new_tokens, stop=self.stop)

    def generate(self, examples: list, n: int):
        prompts = [models.format_prompt(self.tok, ex.prompt) for ex in examples]
        return self.backend.generate(prompts, self.sampling(n))

    def rewards(self, examples: list, out) -> tuple[torch.Tensor, int, list[str]]:
        """Scores (N,) float64, the count of failed reward calls, and their first messages.

        A reward function that returns NaN/inf stops the run (``TrainingFailed`` naming the sample).
        """
        exs = [examples[i] for i in out.prompt_index.tolist()]
        res = score(self.task, out.texts, exs, timeout_s=self.c.reward_timeout_s)
        self._last_all_failed = bool(out.texts) and res.failed == len(out.texts)
        if res.nonfinite:
            i = res.nonfinite[0]
            raise TrainingFailed(
                f"reward of sample {i} (prompt_id {exs[i].prompt_id}, prompt {exs[i].prompt!r}, "
                f"completion {out.texts[i]!r}) is not finite (nan or inf); fix the reward function of task {self.c.task!r}"
            )
        return torch.tensor(res.rewards, dtype=torch.float64), res.failed, list(res.messages)

    def run_probes(self, step: int, train_examples: list, train_out, train_baselines: dict[str, torch.Tensor]) -> pd.DataFrame:
        """Monte-Carlo truth for the probe prompts, and each estimator's baseline error there.

        ``probe_set="fixed"``: each fixed probe prompt gets G rollouts run through every
        estimator's *probe instance* (separate memories, so probing never changes training).
        ``probe_set="batch"``: the step's first ``probe_prompts`` training prompts, scored
        against the baselines training itself used (history and all). Either way the truth
        comes from M separate samples, independent of the baselines, which is what makes
        ``value_mse_corrected`` unbiased. Probes run before the update: same policy as the rollouts.
        """
        c = self.c
        if c.probe_set == "batch":
            exs = train_examples[: c.probe_prompts]
            keep = train_out.prompt_index < len(exs)  # rollouts of the probed prompts
            prompt_index = train_out.prompt_index[keep].cpu()
            baselines = {n: b[keep.to(b.device)] for n, b in train_baselines.items()}
        else:
            exs = self.probe_examples
            group = self.generate(exs, c.rollouts_per_prompt)
            r_group, _, _ = self.rewards(exs, group)
            pids = torch.tensor([exs[i].prompt_id for i in group.prompt_index.tolist()], dtype=torch.long)
            batch = RewardBatch(r_group, pids, step=step)
            baselines = {n: e(batch).baselines for n, e in self.probe_est.items()}
            prompt_index = group.prompt_index.cpu()

        def sample_rewards(examples, m):
            out = self.generate(examples, m)
            r, _, _ = self.rewards(examples, out)
            return r.view(len(examples), m)

        truth = probes.estimate_values(sample_rewards, exs, c.probe_samples)
        return probes.value_errors(truth, prompt_index, baselines, step=step, prompt_ids=[e.prompt_id for e in exs])

    def evaluate(self) -> dict[str, float]:
        """Held-out accuracy: mean reward of ``eval_samples`` samples on each fixed eval prompt."""
        out = self.generate(self.eval_examples, self.c.eval_samples)
        r, n_err, _ = self.rewards(self.eval_examples, out)
        return {"eval/accuracy": float((r >= 1.0 - 1e-6).double().mean()), "eval/reward_mean": float(r.mean())}

    def update(self, out, advantages: torch.Tensor) -> dict[str, float]:
        """PPO epochs over the step's rollouts; returns averaged loss diagnostics."""
        c, dev = self.c, self.device
        n = advantages.shape[0]
        mask = out.completion_mask.to(dev)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()
        # one update per batch: the policy that sampled is the one being updated, so the old
        # log-probs are the detached current ones of the loss's own forward pass (no extra pass)
        single_update = c.ppo_epochs == 1 and c.minibatches == 1
        with torch.no_grad(), autocast:
            old_logp = None if single_update else models.completion_logprobs(self.model, out)[0]
            ref_logp = models.completion_logprobs(self.ref, out)[0] if self.ref is not None else None
        adv = advantages.to(dev, torch.float32)
        sums: dict[str, float] = {}
        count = 0
        for _ in range(c.ppo_epochs):
            perm = torch.randperm(n)
            for mb in torch.chunk(perm, c.minibatches):
                sub = out.select(mb)
                mb_dev = mb.to(dev)
                with autocast, precision.checkpointing_active(self.model):
                    logp, ent = models.completion_logprobs(self.model, sub, with_entropy=True)
                logp = logp.float()
                old = logp.detach() if old_logp is None else old_logp[mb_dev].float()
                m = mask[mb_dev]
                loss, diag = losses.policy_loss(
                    logp, old, adv[mb_dev], m, c.loss, c.loss_agg,
                    measure=c.clip_measure, delta=c.clip_delta, delta_low=c.clip_delta_low,
                    delta_high=c.clip_delta_high, dual_clip_c=c.dual_clip_c,
                )
                if ref_logp is not None:
                    kl = losses.agg_loss(losses.kl_penalty(logp, ref_logp[mb_dev].float(), c.kl_estimator), m, c.loss_agg)
                    loss = loss + c.kl_coef * kl
                    diag["actor/kl_ref"] = float(kl.detach())
                if not torch.isfinite(loss):
                    bad = (~torch.isfinite(logp) & m).any(1).nonzero()
                    where = f"sample {int(mb[int(bad[0, 0])])}" if bad.numel() else "the loss itself"
                    raise TrainingFailed(f"non-finite loss ({float(loss)}) in {where}")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.max_grad_norm if c.max_grad_norm > 0 else float("inf"))
                if not torch.isfinite(gn):
                    raise TrainingFailed(f"non-finite gradient norm ({float(gn)})")
                self.opt.step()
                diag["actor/grad_norm"] = float(gn)
                diag["actor/entropy"] = float((ent.detach().float() * m).sum() / m.sum().clamp(min=1))
                diag["loss/total"] = float(loss.detach())
                for k, v in diag.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
        return {k: v / count for k, v in sums.items()}

    # ..... the loop ...............................................................................
    def run(self) -> Path:
        c = self.c
        from tqdm.auto import tqdm

        bar = tqdm(range(self.start_step, c.steps), initial=self.start_step, total=c.steps, disable=c.quiet,
                   desc=f"{c.estimator}/{c.loss}", unit="step", dynamic_ncols=True)
        step = self.start_step - 1
        self.last_logged = self.start_step - 1
        self._ckpt_step = self.start_step - 1 if self.start_step > 0 else None  # resumed from this checkpoint
        self.current_step = self.start_step  # the step being worked on (for error messages)
        self.writer.start_heartbeat()
        self.writer.start_background()  # files written by a writer thread, in order; flushed at checkpoints and every ending
        try:
            for step in bar:
                if self.stop_event is not None and self.stop_event.is_set():
                    return self._stop()
                self.current_step = step
                t0 = time.perf_counter()
                examples = self.schedule.prompts(step)
                out = self.generate(examples, c.rollouts_per_prompt)  # rollouts of prompt i: rows i*G..
                t_roll = time.perf_counter() - t0
                rewards, n_err, err_msgs = self.rewards(examples, out)
                self._all_failed = self._all_failed + 1 if self._last_all_failed else 0
                if self._all_failed >= MAX_FAILED_REWARD_STEPS:
                    raise TrainingFailed(
                        f"every reward call failed in {self._all_failed} consecutive steps "
                        f"({step - self._all_failed + 1} to {step}), e.g. {err_msgs[0] if err_msgs else '?'}; "
                        f"fix the reward function of task {c.task!r} (or raise --reward-timeout-s if the calls time out)"
                    )
                pids = torch.tensor([examples[i].prompt_id for i in out.prompt_index.tolist()], dtype=torch.long)
                batch = RewardBatch(rewards, pids, step=step)
                with estimators.shared_grouping():  # the step's estimators and metrics group pids once
                    adv = self.estimator(batch)
                    shadow = {n: e(batch) for n, e in self.shadows.items()}
                    zero_std = estimators.zero_std_frac(rewards, estimators.group_by(pids))
                baselines = {c.estimator: adv.baselines, **{n: a.baselines for n, a in shadow.items()}}
                probe_df = None
                if c.probe_every and (step % c.probe_every == 0 or step == c.steps - 1):
                    probe_df = self.run_probes(step, examples, out, baselines)
                evals = self.evaluate() if c.eval_every and (step % c.eval_every == 0 or step == c.steps - 1) else {}
                diag = self.update(out, adv.advantages)
                self.backend.sync_weights(self.model)  # vLLM copies the new weights; hf shares the model (no-op)
                dt = time.perf_counter() - t0
                n_tok = int(out.completion_mask.sum())
                lengths = out.completion_mask.sum(1).float()
                metrics = {
                    "step": step,
                    "reward/mean": float(rewards.mean()),
                    "reward/accuracy": float((rewards >= 1.0 - 1e-6).double().mean()),
                    "reward/errors": n_err,
                    **diag,
                    "adv/mean": float(adv.advantages.mean()),
                    "adv/std": float(adv.advantages.std()) if len(batch) > 1 else 0.0,
                    "adv/min": float(adv.advantages.min()),
                    "adv/max": float(adv.advantages.max()),
                    "adv/baseline_mean": float(adv.baselines.mean()),
                    "batch/zero_std_frac": zero_std,
                    "response/length_mean": float(lengths.mean()),
                    "response/truncated_frac": float(np.mean([f == "length" for f in out.finish_reasons])),
                    "perf/tokens_per_s": n_tok / max(t_roll, 1e-9),
                    "perf/step_time_s": dt,
                    "perf/rollout_time_s": t_roll,
                    "time/elapsed_s": self.elapsed_base + (time.monotonic() - self.t_session),
                    **{f"est/{k}": float(v) for k, v in adv.info.items()},
                    **evals,
                }
                if probe_df is not None:
                    metrics.update(probes.summarize(probe_df))
                samples = self._samples_frame(step, examples, out, rewards, pids, adv, shadow)
                self.writer.log_step(step, metrics, samples, probe_df)  # probes, samples, metrics, status 'running'
                self.last_logged = step
                if err_msgs and not c.quiet:
                    bar.write(f"step {step}: {n_err} reward error(s), e.g. {err_msgs[0]}")
                bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['reward/accuracy']:.3f}")
                last = step == c.steps - 1
                if (c.checkpoint_every and (step + 1) % c.checkpoint_every == 0) or last:
                    self.save_checkpoint(step)
                    self._ckpt_step = step
                if self.callback is not None:
                    self.writer.flush()  # the callback's contract: this step is on disk
                    self.callback(step, metrics)
            self.writer.set_status("finished", step=c.steps - 1)
        except KeyboardInterrupt:
            self._end("interrupted", f"interrupted by the user (Ctrl-C) during step {self.current_step}; "
                                     f"continue with `lab train --resume {self.run_dir}`")
            raise
        except TrainingFailed as e:
            msg = f"step {self.current_step}: {e}"
            self._end("failed", msg)
            raise TrainingFailed(msg) from None
        except torch.cuda.OutOfMemoryError:
            msg = f"step {self.current_step}: {_oom_message(c)}"
            self._end("failed", msg)
            raise TrainingFailed(msg) from None
        except Exception as e:
            self._end("failed", f"step {self.current_step}: {type(e).__name__}: {e}")
            raise
        finally:
            bar.close()
            self.writer.close()
        return self.run_dir

    def _stop(self) -> Path:
        """A requested stop at a step boundary: checkpoint the last step (so nothing is lost), status interrupted."""
        if self.last_logged >= 0 and self._ckpt_step != self.last_logged:
            self.save_checkpoint(self.last_logged)
            self._ckpt_step = self.last_logged
        self.writer.set_status("interrupted", step=self.last_logged,
                               error=f"stopped on request after step {self.last_logged}; "
                                     f"continue with `lab train --resume {self.run_dir}`")
        return self.run_dir

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

    def _samples_frame(self, step, examples, out, rewards, pids, adv, shadow) -> pd.DataFrame:
        """One row per rollout (docs/run-format.md), built in one go from numpy columns.

        Columns: the step, prompt and completion fields, reward, the main estimator's
        ``baseline``/``advantage``, then ``baseline__<name>``/``advantage__<name>`` per shadow.
        """
        g = self.c.rollouts_per_prompt
        idx = out.prompt_index.tolist()
        n = len(idx)
        ests = [adv, *shadow.values()]
        both = torch.stack([t.detach().double().cpu() for a in ests for t in (a.baselines, a.advantages)]).numpy()  # (2E, N)
        cols = {
            "step": np.full(n, step, dtype=np.int64),
            "prompt_id": pids.numpy().copy(),  # copies: the writer thread may write the frame later
            "rollout": np.arange(n, dtype=np.int64) % g,
            "prompt": [examples[i].prompt for i in idx],
            "answer": [examples[i].answer for i in idx],
            "completion": out.texts,
            "reward": rewards.numpy().copy(),
            "baseline": both[0],
            "advantage": both[1],
            "length": out.completion_mask.sum(1).cpu().numpy(),
            "finish_reason": out.finish_reasons,
        }
        for k, name in enumerate(shadow, start=1):
            cols[f"baseline__{name}"] = both[2 * k]
            cols[f"advantage__{name}"] = both[2 * k + 1]
        return pd.DataFrame(cols)


def _take(it, n):
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


class _CheckpointUnusable(Exception):
    """One checkpoint folder cannot be loaded (resume tries the previous one)."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:160] if text else type(e).__name__)


def _elapsed_until(run_dir: Path, step: int) -> float:
    """Wall seconds the run had spent up to ``step``: its logged ``time/elapsed_s``, or (runs
    written before that metric) the sum of ``perf/step_time_s``."""
    recs = [r for r in runs.read_metrics(run_dir).to_dict("records") if isinstance(r.get("step"), (int, float)) and r["step"] <= step]
    for r in reversed(recs):
        v = r.get("time/elapsed_s")
        if isinstance(v, (int, float)) and math.isfinite(v):
            return float(v)
    return float(sum(r.get("perf/step_time_s") or 0.0 for r in recs if isinstance(r.get("perf/step_time_s"), (int, float))))


def _device_name(device: torch.device) -> str:
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


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    steps: int | None = None,
    stop_event: threading.Event | None = None,
    callback: Callable[[int, dict], Any] | None = None,
) -> Path:
    """Run training; returns the run directory. Give a config for a new run, or ``resume=run_dir``.

    ``steps``: with ``resume`` only, the new total step count (extends a finished run; at least
    the step after the checkpoint resumed from). ``stop_event``: when set, the run ends at the
    next step boundary with a checkpoint and status ``interrupted`` (resumable); ``train``
    returns normally. ``callback(step, metrics)``: called after each step's metrics and
    samples are on disk (an exception there fails the run).

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
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.json").is_file():
            raise UsageError(f"--resume {run_dir}: not a run directory (no config.json)")
        saved, problems = runs.read_config(run_dir)
        if problems:
            raise UsageError(f"--resume {run_dir}: {problems[0]}")
        try:
            config = TrainConfig.from_dict(saved)
        except ConfigError as e:
            raise UsageError(f"--resume {run_dir}: config.json: {e}") from None
        if steps is not None:
            config = config.replace(steps=steps)
        runs.refuse_if_live(run_dir)  # before the (slow) model load
        _seed_everything(config.seed)
        trainer = Trainer(config, run_dir, resume=True)
        if steps is not None and steps < trainer.start_step:
            raise ConfigError(f"steps: the run resumes after its checkpoint of step {trainer.start_step - 1}; "
                              f"give --steps {trainer.start_step} or more")
        trainer.writer = runs.RunWriter.reopen(run_dir, from_step=trainer.start_step - 1)
        trainer.writer.write_config(config.to_dict())
        trainer.writer.write_provenance(provenance.collect(device=_device_name(trainer.device)))
        for note in trainer.notes:  # warnings about damaged files: printed even with quiet
            print(f"lab train: note: {note}", file=sys.stderr)
        if trainer.notes:
            trainer.writer.set_status("running", step=trainer.start_step - 1, notes=trainer.notes)
        if trainer.start_step >= config.steps:
            trainer.writer.set_status("finished", step=config.steps - 1)
            trainer.writer.close()
            return run_dir
    else:
        assert config is not None
        run_dir = Path(config.output_dir) / (config.run_name or default_run_name(config))
        _check_output_dir(run_dir)
        if (run_dir / "config.json").exists() or (run_dir / "status.json").exists():
            raise ConfigError(f"run_name: {run_dir} already holds a run; pick another --run-name or --resume {run_dir}")
        _seed_everything(config.seed)
        trainer = Trainer(config, run_dir)  # loads model and task first: a bad model path writes nothing
        trainer.writer = runs.RunWriter.create(run_dir, config.to_dict())
        trainer.writer.write_provenance(provenance.collect(device=_device_name(trainer.device)))
    trainer.t_session = t_start
    trainer.stop_event, trainer.callback = stop_event, callback
    return trainer.run()
