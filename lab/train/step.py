"""One training step, top to bottom, and the pieces it is made of.

    prompts -> rollouts -> rewards -> estimator (+ shadows) -> [probes] -> [eval] -> PPO epochs

:meth:`Stepper.step` returns a :class:`StepRecord`: what the step drew, scored and
estimated, the loss diagnostics and its timings; logging it is the trainer's job
(``records.py`` turns it into a metrics line and a samples table).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import pandas as pd
import torch

from lab import estimators, losses, models, probes, rollout
from lab.errors import RewardCrashed, reason
from lab.estimators import Advantages, RewardBatch
from lab.models import precision
from lab.tasks.scoring import score

from . import records
from .errors import MAX_FAILED_REWARD_STEPS, TrainingFailed
from .records import Scored, StepRecord
from .setup import Setup


class Stepper:
    """The pieces of a step, over a :class:`~lab.train.setup.Setup` held as ``self.s`` (config ``self.c``)."""

    s: Setup
    c: Any
    current_step: int  # the step being worked on (for error messages)
    _all_failed: int  # consecutive steps in which every reward call failed (restored on resume)

    def __init__(self, setup: Setup):
        """Steps over loaded pieces and nothing else: no run directory, no logging, no checkpoints
        (a lesson opens a step with it; :class:`~lab.train.trainer.Trainer` is the run's own).

        >>> from lab.config import TrainConfig
        >>> from lab.train.setup import load
        >>> rec = Stepper(load(TrainConfig(prompts_per_step=2, rollouts_per_prompt=2, probe_every=0,
        ...                                eval_every=0, shadow_estimators=()))).step(0)
        >>> rec.rollout.completion_ids.shape[0], sorted(rec.loss)[:2]
        (4, ['actor/approx_kl', 'actor/clip_frac_high'])
        """
        self.s, self.c, self.current_step, self._all_failed = setup, setup.c, 0, 0

    def sampling(self, n: int, seed: int | None = None) -> rollout.SamplingParams:
        """The run's sampling settings for ``n`` completions per prompt; ``seed`` gives the
        sampler its own generator (the reference stage), None draws from the global RNG."""
        c = self.c
        return rollout.SamplingParams(n=n, temperature=c.temperature, top_p=c.top_p, max_new_tokens=c.max_new_tokens,
                                      stop=self.s.stop, seed=seed)

    def generate(self, examples: list, n: int, seed: int | None = None):
        prompts = [models.format_prompt(self.s.tok, ex.prompt) for ex in examples]
        try:
            return self.s.backend.generate(prompts, self.sampling(n, seed))
        except RuntimeError as e:  # torch's sampler on NaN/inf probabilities: the weights diverged
            text = str(e).lower()
            if "inf" in text or "nan" in text:
                raise TrainingFailed(f"non-finite weights or logits while sampling ({reason(e, 120)}); "
                                     f"the model diverged: lower --lr (now {self.c.lr:g})") from None
            raise

    def rewards(self, examples: list, out) -> Scored:
        """Score every rollout; a NaN/inf reward, or a reward function raising a
        ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``GeneratorExit``;
        Ctrl-C excepted), stops the run (``TrainingFailed`` naming it)."""
        exs = [examples[i] for i in out.prompt_index.tolist()]
        try:
            res = score(self.s.task, out.texts, exs, timeout_s=self.c.reward_timeout_s)
        except RewardCrashed as e:  # score's own report of a BaseException, naming the sample
            raise TrainingFailed(str(e)) from None
        except (KeyboardInterrupt, Exception):
            raise
        except BaseException as e:  # noqa: BLE001 - SystemExit & co. must not end the process as "running"
            raise TrainingFailed(f"the reward function of task {self.c.task!r} raised {type(e).__name__}"
                                 f"({reason(e, 80)!r}) while scoring {len(exs)} rollouts; fix the reward function") from None
        if res.nonfinite:
            i = res.nonfinite[0]
            raise TrainingFailed(
                f"reward of sample {i} (prompt_id {exs[i].prompt_id}, prompt {exs[i].prompt!r}, "
                f"completion {out.texts[i]!r}) is not finite (nan or inf); fix the reward function of task {self.c.task!r}"
            )
        return Scored(torch.tensor(res.rewards, dtype=torch.float64), res.failed, list(res.messages))

    def advantages(self, batch: RewardBatch) -> tuple[Advantages, dict[str, Advantages], float]:
        """The training estimator's advantages (memory updated), every shadow's, and the zero-std fraction."""
        with estimators.shared_grouping():  # the step's estimators and metrics group pids once
            adv = self.s.estimator(batch)
            shadow = {n: e(batch) for n, e in self.s.shadows.items()}
            zero_std = estimators.zero_std_frac(batch.rewards, estimators.group_by(batch.prompt_ids))
        return adv, shadow, zero_std

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
            exs = self.s.probe_examples
            group = self.generate(exs, c.rollouts_per_prompt)
            pids = torch.tensor([exs[i].prompt_id for i in group.prompt_index.tolist()], dtype=torch.long)
            batch = RewardBatch(self.rewards(exs, group).rewards, pids, step=step)
            baselines = {n: e(batch).baselines for n, e in self.s.probe_est.items()}
            prompt_index = group.prompt_index.cpu()

        def sample_rewards(examples, m):
            return self.rewards(examples, self.generate(examples, m)).rewards.view(len(examples), m)

        truth = probes.estimate_values(sample_rewards, exs, c.probe_samples)
        return probes.value_errors(truth, prompt_index, baselines, step=step, prompt_ids=[e.prompt_id for e in exs])

    def evaluate(self) -> Scored:
        """The rewards of ``eval_samples`` samples on each fixed eval prompt (held-out accuracy)."""
        exs = self.s.eval_examples
        return self.rewards(exs, self.generate(exs, self.c.eval_samples))

    def update(self, out, advantages: torch.Tensor) -> dict[str, float]:
        """PPO epochs over the step's rollouts; returns averaged loss diagnostics.

        One update per batch (``ppo_epochs = minibatches = 1``): the policy that sampled is the
        one being updated, so the old log-probs are the detached current ones of the loss's
        own forward pass (no extra pass)."""
        c, s = self.c, self.s
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if s.device.type == "cuda" else nullcontext()
        with torch.no_grad(), autocast:
            single = c.ppo_epochs == 1 and c.minibatches == 1
            old_logp = None if single else models.completion_logprobs(s.model, out)[0]
            ref_logp = models.completion_logprobs(s.ref, out)[0] if s.ref is not None else None
        adv = advantages.to(s.device, torch.float32)
        sums: dict[str, float] = {}
        count = 0
        for _ in range(c.ppo_epochs):
            for mb in torch.chunk(torch.randperm(adv.shape[0]), c.minibatches):
                diag = self._minibatch(out, mb, adv, old_logp, ref_logp, autocast)
                for k, v in diag.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
        self._check_weights()
        return {k: v / count for k, v in sums.items()}

    def _minibatch(self, out, mb: torch.Tensor, adv, old_logp, ref_logp, autocast) -> dict[str, float]:
        """Loss, backward and one optimizer step on rows ``mb`` of the step's rollouts."""
        c, s = self.c, self.s
        sub, mb_dev = out.select(mb), mb.to(s.device)
        with autocast, precision.checkpointing_active(s.model):
            logp, ent = models.completion_logprobs(s.model, sub, with_entropy=True)
        logp = logp.float()
        old = logp.detach() if old_logp is None else old_logp[mb_dev].float()
        m = out.completion_mask.to(s.device)[mb_dev]
        loss, diag = losses.policy_loss(logp, old, adv[mb_dev], m, c.loss, c.loss_agg, measure=c.clip_measure,
                                        delta=c.clip_delta, delta_low=c.clip_delta_low, delta_high=c.clip_delta_high,
                                        dual_clip_c=c.dual_clip_c)
        kl = None
        if ref_logp is not None:
            kl = losses.agg_loss(losses.kl_penalty(logp, ref_logp[mb_dev].float(), c.kl_estimator), m, c.loss_agg)
            loss = loss + c.kl_coef * kl
        if not torch.isfinite(loss):
            bad = (~torch.isfinite(logp) & m).any(1).nonzero()
            where = f"sample {int(mb[int(bad[0, 0])])}" if bad.numel() else "the loss itself"
            raise TrainingFailed(f"non-finite loss ({float(loss)}) in {where}; the model diverged: lower --lr (now {c.lr:g})")
        s.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(s.model.parameters(), c.max_grad_norm if c.max_grad_norm > 0 else float("inf"))
        if not torch.isfinite(gn):
            raise TrainingFailed(f"non-finite gradient norm ({float(gn)}); lower --lr (now {c.lr:g})")
        s.opt.step()
        entropy = float((ent.detach().float() * m).sum() / m.sum().clamp(min=1))
        return {**diag, **records.update_metrics(total=float(loss.detach()), grad_norm=float(gn), entropy=entropy,
                                                 kl_ref=None if kl is None else float(kl.detach()))}

    def _check_weights(self) -> None:
        """Non-finite weights after the update end the run here, not as a sampling error next step."""
        for name, p in self.s.model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise TrainingFailed(f"non-finite weights after the update (parameter {name}); the model diverged: "
                                     f"lower --lr (now {self.c.lr:g})")

    # ..... the step ..................................................................................
    def step(self, step: int) -> StepRecord:
        """One training step; the estimators' memories and the weights are updated."""
        c = self.c
        self.current_step = step
        t0 = time.perf_counter()
        examples = self.s.schedule.prompts(step)
        out = self.generate(examples, c.rollouts_per_prompt)  # rollouts of prompt i: rows i*G..
        t_roll = time.perf_counter() - t0
        scored = self.rewards(examples, out)
        self.note_reward_failures(step, scored)
        pids = torch.tensor([examples[i].prompt_id for i in out.prompt_index.tolist()], dtype=torch.long)
        adv, shadow, zero_std = self.advantages(RewardBatch(scored.rewards, pids, step=step))
        probe_df = None
        if c.probe_every and (step % c.probe_every == 0 or step == c.steps - 1):
            baselines = {c.estimator: adv.baselines, **{n: a.baselines for n, a in shadow.items()}}
            probe_df = self.run_probes(step, examples, out, baselines)
        evals: dict[str, float] = {}
        if c.eval_every and (step % c.eval_every == 0 or step == c.steps - 1):
            ev = self.evaluate()
            evals = records.eval_metrics(ev.rewards, ev.failed)
        diag = self.update(out, adv.advantages)
        self.s.backend.sync_weights(self.s.model)  # vLLM copies the new weights; hf shares the model (no-op)
        return StepRecord(step=step, examples=examples, rollout=out, scored=scored, prompt_ids=pids, advantages=adv,
                          shadows=shadow, zero_std_frac=zero_std, probes=probe_df, evals=evals, loss=diag,
                          rollout_time_s=t_roll, step_time_s=time.perf_counter() - t0)

    def note_reward_failures(self, step: int, scored: Scored) -> None:
        """Count consecutive steps in which every reward call failed; fail the run at the limit."""
        self._all_failed = self._all_failed + 1 if scored.all_failed else 0
        if self._all_failed >= MAX_FAILED_REWARD_STEPS:
            first = scored.messages[0] if scored.messages else "?"
            raise TrainingFailed(
                f"every reward call failed in {self._all_failed} consecutive steps ({step - self._all_failed + 1} to "
                f"{step}), e.g. {first}; fix the reward function of task {self.c.task!r} (or raise --reward-timeout-s "
                "if the calls time out)")
