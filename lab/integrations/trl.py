"""The lab's estimators and clip rules inside TRL's ``GRPOTrainer`` (tested with TRL 1.16).

:class:`LabGRPOTrainer` is ``trl.GRPOTrainer`` with three narrow overrides, configured by one
frozen :class:`LabTRLConfig` (``docs/integrations.md``):

* **advantages** (``_calculate_rewards`` + ``_generate_and_score_completions``): TRL gathers
  every process's rewards before it normalises them; the subclass keeps that gathered
  ``(N, F)`` tensor and the gathered ``prompt_id`` column of the dataset, runs the lab
  estimator on the whole batch (the same computation on every rank, so stateful estimators
  keep identical memories everywhere), and puts this process's slice in the batch's
  ``advantages`` in place of TRL's. The step is ``state.global_step`` (0-based optimizer
  steps done, as in ``lab train``). The estimator's info goes to TRL's metrics as
  ``lab/<key>`` (``lab/baseline_mean``, ``lab/adv_mean``, ...). In evaluation the estimator
  computes without remembering.
* **loss** (``_compute_loss``, only when ``LabTRLConfig.loss`` names a lab rule): the lab's
  ``policy_loss`` (rule, clip measure, aggregation) on TRL's per-token log-probs, plus TRL's
  ``beta`` KL term; metrics ``lab/clip_frac_low``, ``lab/clip_frac_high``, ... With
  ``loss=None`` TRL's own loss runs on the lab's advantages.
* **checkpoints** (``_save_checkpoint`` / ``_load_optimizer_and_scheduler``, the hooks TRL
  uses for its own extra state): :data:`STATE_FILE` in every ``checkpoint-N`` folder, loaded
  on ``trainer.train(resume_from_checkpoint=...)``.

TRL is imported only when :class:`LabGRPOTrainer` is first used (``lab.integrations.trl``
itself imports, and its doctests run, without TRL). :func:`check_trl_internals` fails loudly,
naming what moved, when a TRL version lacks one of the methods (or arguments) overridden.

>>> cfg = LabTRLConfig(estimator="kae", estimator_params={"h": 0.3})
>>> cfg.estimator, cfg.loss
('kae', None)
>>> LabTRLConfig(estimator="kea")
Traceback (most recent call last):
...
lab.errors.UsageError: LabTRLConfig.estimator: unknown estimator 'kea'; available: basis, blend, dr_grpo, grpo, kae, krpo, krpo_invariant, reinforce_plus_plus, reinforce_plus_plus_baseline, rloo
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from lab import estimators, losses
from lab.errors import UsageError
from lab.estimators import RewardBatch
from lab.integrations.common import build_estimator, hash_prompt

TESTED_TRL = ("1.16", "1.17")
"""TRL versions the overrides are written against: ``>= 1.16, < 1.17`` (pyproject's ``trl`` extra)."""

STATE_FILE = "lab_estimator.pt"
"""Written into each TRL ``checkpoint-N`` folder: the estimator's memory and the step."""

INSTALL_HINT = ("lab.integrations.trl needs TRL, which is not installed here: `pip install -e .[trl]` "
                "(or `make trl-env`, which adds it to .venv-verl)")

INTERNALS = {
    "_calculate_rewards": ("inputs", "prompts", "completions", "completion_ids_list"),
    "_generate_and_score_completions": ("inputs",),
    "_compute_loss": ("model", "inputs"),
    "_get_per_token_logps_and_entropies": ("model", "input_ids", "attention_mask", "logits_to_keep"),
    "_save_checkpoint": ("model", "trial"),
    "_load_optimizer_and_scheduler": ("checkpoint",),
}
"""The ``GRPOTrainer`` methods :class:`LabGRPOTrainer` overrides or calls, and the arguments it relies on."""


@dataclass(frozen=True)
class LabTRLConfig:
    """What the lab changes in TRL's GRPO (everything else is TRL's ``GRPOConfig``).

    Fields:
        estimator: a ``lab.estimators.available()`` name.
        estimator_params: its parameters (``{"h": 0.3}``).
        reference: reference samples for an estimator with ``wants_reference`` (BASIS, BLEND):
            a ``lab train`` run folder (``reference.parquet``) or a ``.parquet``/``.csv``/``.jsonl``
            with ``prompt_id`` and ``reward``; ignored by the others.
        prompt_id_column: the dataset column with each prompt's stable id (a row without one,
            or a dataset without the column, gets the BLAKE2b hash of its prompt).
        loss: a lab rule (``ppo``, ``dual_clip``, ``vanilla``) to replace TRL's loss, or None
            to keep TRL's (``GRPOConfig.loss_type``) on the lab's advantages.
        clip_measure, clip_delta, clip_delta_low, clip_delta_high, dual_clip_c, loss_agg: as in
            ``lab train``. With ``clip_measure="ratio"`` and no delta, TRL's ``epsilon`` /
            ``epsilon_high`` give the interval; another measure without a delta takes the budget
            matched to ratio clipping with ε = 0.2 (``lab.losses.matched_delta``).
    """

    estimator: str = "grpo"
    estimator_params: Mapping[str, Any] = field(default_factory=dict)
    reference: str | None = None
    prompt_id_column: str = "prompt_id"
    loss: str | None = None
    clip_measure: str = "ratio"
    clip_delta: float | None = None
    clip_delta_low: float | None = None
    clip_delta_high: float | None = None
    dual_clip_c: float = 3.0
    loss_agg: str = "token-mean"

    def __post_init__(self):
        if self.estimator not in estimators.available():
            raise UsageError(f"LabTRLConfig.estimator: unknown estimator {self.estimator!r}; available: {', '.join(estimators.available())}")
        object.__setattr__(self, "estimator_params", dict(self.estimator_params or {}))
        if self.loss is not None and self.loss not in losses.available_rules():
            raise UsageError(f"LabTRLConfig.loss: unknown rule {self.loss!r}; available: {', '.join(losses.available_rules())} (or None: TRL's loss)")
        if self.clip_measure not in losses.available_measures():
            raise UsageError(f"LabTRLConfig.clip_measure: unknown measure {self.clip_measure!r}; available: {', '.join(losses.available_measures())}")
        if self.loss_agg not in losses.AGG_MODES.available():
            raise UsageError(f"LabTRLConfig.loss_agg: unknown mode {self.loss_agg!r}; available: {', '.join(losses.AGG_MODES.available())}")

    def clip_kwargs(self, epsilon_low: float, epsilon_high: float) -> dict[str, Any]:
        """``lab.losses.policy_loss`` keywords for the clip interval (TRL's ε's when none is set).

        >>> LabTRLConfig(loss="ppo").clip_kwargs(0.2, 0.28)
        {'measure': 'ratio', 'delta_low': 0.2, 'delta_high': 0.28, 'dual_clip_c': 3.0}
        >>> round(LabTRLConfig(loss="ppo", clip_measure="kl3").clip_kwargs(0.2, 0.2)["delta"], 5)
        0.01996
        """
        kw: dict[str, Any] = {"measure": self.clip_measure}
        if self.clip_delta is None and self.clip_delta_low is None and self.clip_delta_high is None:
            if self.clip_measure == "ratio":
                kw.update(delta_low=float(epsilon_low), delta_high=float(epsilon_high))
            else:
                kw["delta"] = losses.matched_delta(self.clip_measure)
        else:
            if self.clip_delta is not None:
                kw["delta"] = float(self.clip_delta)
            if self.clip_delta_low is not None:
                kw["delta_low"] = float(self.clip_delta_low)
            if self.clip_delta_high is not None:
                kw["delta_high"] = float(self.clip_delta_high)
        kw["dual_clip_c"] = float(self.dual_clip_c)
        return kw


def prompt_ids_of(rows: Sequence[Mapping[str, Any]], column: str = "prompt_id") -> list[int]:
    """The stable id of each dataset row TRL hands its reward step: ``row[column]`` when present
    (a non-negative integer), else :func:`hash_prompt` of ``row["prompt"]``.

    >>> prompt_ids_of([{"prompt": "1+1=", "prompt_id": 4}, {"prompt": "2+2="}])[0]
    4
    >>> prompt_ids_of([{"prompt": "2+2="}]) == [hash_prompt("2+2=")]
    True
    """
    out = []
    for row in rows:
        pid = row.get(column)
        if pid is None:
            out.append(hash_prompt(row.get("prompt")))
            continue
        if isinstance(pid, bool) or not float(pid).is_integer() or int(pid) < 0:
            raise UsageError(f"dataset column {column!r}: prompt ids must be non-negative integers, got {pid!r}")
        out.append(int(pid))
    return out


def lab_advantages(estimator: estimators.Estimator, rewards: torch.Tensor, prompt_ids: Sequence[int], step: int,
                   *, update: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """The lab estimator on one gathered batch: ``(advantages (N,) float32, metrics)``.

    ``rewards`` (N,) are TRL's weighted sum over reward functions; a NaN (every reward
    function returned None for that completion) is refused: the lab's estimators need a reward
    for every rollout. Metrics: the estimator's info plus ``baseline_mean``, ``adv_mean``,
    ``adv_std`` and ``adv_abs_max``, each under ``lab/``.

    >>> adv, m = lab_advantages(estimators.get("grpo"), torch.tensor([1.0, 0.0, 1.0, 1.0]), [5, 5, 6, 6], 0)
    >>> [round(a, 4) for a in adv.tolist()], m["lab/baseline_mean"]
    ([0.7071, -0.7071, 0.0, 0.0], 0.75)
    """
    r = torch.as_tensor(rewards).detach().double().cpu()  # (N,)
    if not bool(torch.isfinite(r).all()):
        bad = int((~torch.isfinite(r)).nonzero()[0])
        raise UsageError(f"reward_funcs: completion {bad} of the batch has no reward (every reward function returned None, "
                         "or a non-finite value); the lab's estimators need one for every rollout")
    out = estimator(RewardBatch(r, torch.as_tensor(list(prompt_ids), dtype=torch.long), step=int(step)), update=update)
    adv = out.advantages.to(torch.float32)
    metrics = {f"lab/{k}": float(v) for k, v in out.info.items()}
    metrics.update({"lab/baseline_mean": float(out.baselines.mean()), "lab/adv_mean": float(adv.double().mean()),
                    "lab/adv_std": float(adv.double().std(correction=0)), "lab/adv_abs_max": float(adv.abs().max())})
    return adv, metrics


def trl_version_ok(version: str) -> bool:
    """Whether ``version`` is in :data:`TESTED_TRL`.

    >>> trl_version_ok("1.16.0"), trl_version_ok("1.17.0"), trl_version_ok("0.19.1")
    (True, False, False)
    """
    def key(v):
        return tuple(int(x) for x in v.split("+")[0].split(".")[:2] if x.isdigit())

    return key(TESTED_TRL[0]) <= key(version) < key(TESTED_TRL[1])


def check_trl_internals(trainer_cls=None) -> None:
    """Raise ``RuntimeError`` naming every overridden ``GRPOTrainer`` method (or argument) this
    TRL lacks: the overrides lean on TRL internals, which move between releases."""
    if trainer_cls is None:
        from trl import GRPOTrainer as trainer_cls  # noqa: N813
    problems = []
    for name, args in INTERNALS.items():
        fn = getattr(trainer_cls, name, None)
        if fn is None:
            problems.append(f"{name} is gone")
            continue
        params = list(inspect.signature(fn).parameters)[1:]
        if list(params[: len(args)]) != list(args):
            problems.append(f"{name}{tuple(params)} no longer starts with {args}")
    if problems:
        import trl

        raise RuntimeError(f"TRL {trl.__version__}'s GRPOTrainer moved: {'; '.join(problems)}. lab.integrations.trl is "
                           f"written for TRL >={TESTED_TRL[0]},<{TESTED_TRL[1]}; install that (pip install -e .[trl])")


def _build_trainer_class():
    try:
        import trl
        from trl import GRPOTrainer
        from accelerate.utils import gather_object
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    if not trl_version_ok(trl.__version__) and not os.environ.get("LAB_TRL_ANY_VERSION"):
        raise ImportError(f"lab.integrations.trl is tested with TRL >={TESTED_TRL[0]},<{TESTED_TRL[1]}, found {trl.__version__}: "
                          "pip install -e .[trl] (or set LAB_TRL_ANY_VERSION=1 to try anyway)")
    check_trl_internals(GRPOTrainer)

    class LabGRPOTrainer(GRPOTrainer):
        """``trl.GRPOTrainer`` with the lab's advantages (and optionally its clip rule): see the module docstring.

        ``LabGRPOTrainer(model, reward_funcs, args=GRPOConfig(...), train_dataset=..., lab=LabTRLConfig(...))``;
        every other argument is TRL's.
        """

        def __init__(self, *args, lab: LabTRLConfig | None = None, **kwargs):
            self.lab = lab if lab is not None else LabTRLConfig()
            if not isinstance(self.lab, LabTRLConfig):
                raise UsageError(f"lab: expected a LabTRLConfig, got {type(self.lab).__name__}")
            super().__init__(*args, **kwargs)
            if self.lab.loss is not None:
                self._refuse_loss_options()
            self.lab_estimator = build_estimator(self.lab.estimator, self.lab.estimator_params, self.lab.reference,
                                                 field="LabTRLConfig.reference")
            self.lab_last: dict[str, Any] = {}
            """The last batch the estimator saw: step, prompt_ids, rewards, advantages (all ranks' rows)."""
            self._lab_gathered: tuple[torch.Tensor, list[int]] | None = None

        def _refuse_loss_options(self):
            a = self.args
            for name, bad in (("importance_sampling_level", a.importance_sampling_level != "token"),
                              ("top_entropy_quantile", a.top_entropy_quantile < 1.0),
                              ("off_policy_mask_threshold", getattr(a, "off_policy_mask_threshold", None) is not None),
                              ("vllm_importance_sampling_correction", bool(self.use_vllm and a.vllm_importance_sampling_correction))):
                if bad:
                    raise UsageError(f"GRPOConfig.{name}: not supported with LabTRLConfig.loss={self.lab.loss!r} "
                                     "(the lab rule replaces TRL's token loss); use its default, or loss=None")
            if getattr(self, "_entropy_bonus_enabled", False):
                raise UsageError(f"GRPOConfig.entropy_coef: not supported with LabTRLConfig.loss={self.lab.loss!r}; set it to 0, or loss=None")

        # -- advantages --------------------------------------------------------------------------
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # (N, F), every rank's rows
            pids = gather_object(prompt_ids_of(inputs, self.lab.prompt_id_column))  # (N,) in the same rank order
            self._lab_gathered = (rewards_per_func, [int(p) for p in pids])
            return rewards_per_func

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if self._lab_gathered is None:
                raise RuntimeError("LabGRPOTrainer: TRL scored completions without _calculate_rewards; this TRL is not supported")
            rewards_per_func, pids = self._lab_gathered
            self._lab_gathered = None
            weights = self.reward_weights.to(rewards_per_func.device)
            unscorable = torch.isnan(rewards_per_func).all(1)
            rewards = (rewards_per_func * weights[None]).nansum(1)  # (N,) TRL's weighted sum
            rewards[unscorable] = float("nan")
            mode = "train" if self.model.training else "eval"
            step = int(self.state.global_step)
            adv, metrics = lab_advantages(self.lab_estimator, rewards, pids, step, update=mode == "train")
            local = out["advantages"].shape[0]
            start = self.accelerator.process_index * local
            out["advantages"] = adv[start : start + local].to(out["advantages"].device, out["advantages"].dtype)
            for _ in range(min(adv.shape[0], len(self._logs["advantages"]))):  # TRL logged its own: log the lab's
                self._logs["advantages"].pop()
            self._logs["advantages"].extend(adv.tolist())
            for k, v in metrics.items():
                self._metrics[mode][k].append(v)
            self.lab_last = {"step": step, "prompt_ids": list(pids), "rewards": rewards.detach().double().cpu().tolist(),
                             "advantages": adv.tolist(), "mode": mode}
            return out

        # -- loss ----------------------------------------------------------------------------------
        def _compute_loss(self, model, inputs):
            if self.lab.loss is None:
                return super()._compute_loss(model, inputs)
            prompt_ids, prompt_mask = inputs["prompt_ids"], inputs["prompt_mask"]
            completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
            mask = completion_mask if "tool_mask" not in inputs else completion_mask * inputs["tool_mask"]  # (B, T)
            logp, _, _ = self._get_per_token_logps_and_entropies(
                model, torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1),
                completion_ids.size(1))  # (B, T)
            old = inputs.get("old_per_token_logps")
            old = logp.detach() if old is None else old
            adv = inputs["advantages"]
            adv = adv if adv.dim() == 1 else adv[:, 0]
            loss, diag = losses.policy_loss(logp, old, adv, mask.bool(), self.lab.loss, self.lab.loss_agg,
                                            **self.lab.clip_kwargs(self.epsilon_low, self.epsilon_high))
            mode = "train" if self.model.training else "eval"
            if self.beta != 0.0:
                ref = inputs["ref_per_token_logps"]
                kl = losses.kl_penalty(logp, ref, "k3")  # (B, T), TRL's estimator of KL(π_θ ‖ π_ref)
                loss = loss + self.beta * losses.agg_loss(kl, mask.bool(), self.lab.loss_agg)
                diag["actor/kl"] = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
            if mode == "train":
                loss = loss / self.current_gradient_accumulation_steps
            keys = sorted(diag)
            vals = self.accelerator.gather(torch.tensor([diag[k] for k in keys], device=logp.device, dtype=torch.float64)[None])
            for k, v in zip(keys, vals.view(-1, len(keys)).mean(0).tolist()):
                if math.isfinite(v):
                    self._metrics[mode][f"lab/{k.split('/', 1)[-1]}"].append(v)
            return loss

        # -- checkpoints ---------------------------------------------------------------------------
        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
                save_state(folder, self.lab_estimator, self.lab.estimator, int(self.state.global_step))

        def _load_optimizer_and_scheduler(self, checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)
            if checkpoint is not None:
                load_state(checkpoint, self.lab_estimator, self.lab.estimator)

    LabGRPOTrainer.__module__ = __name__
    return LabGRPOTrainer


def save_state(folder: str | Path, estimator: estimators.Estimator, name: str, step: int) -> Path:
    """Write :data:`STATE_FILE` (the estimator's memory, its name and the step) into ``folder``, atomically.

    >>> import tempfile
    >>> est = estimators.get("kae"); _ = est(RewardBatch(torch.tensor([1.0, 0.0]), torch.tensor([3, 3])))
    >>> d = tempfile.mkdtemp(); _ = save_state(d, est, "kae", 1)
    >>> again = estimators.get("kae"); load_state(d, again, "kae")
    True
    >>> torch.equal(again.state_dict()["sum"], est.state_dict()["sum"])
    True
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{STATE_FILE}.tmp"
    torch.save({"version": 1, "estimator": name, "step": int(step), "state": estimator.state_dict()}, tmp)
    os.replace(tmp, folder / STATE_FILE)
    return folder / STATE_FILE


def load_state(folder: str | Path, estimator: estimators.Estimator, name: str) -> bool:
    """Restore ``estimator`` from ``folder/`` :data:`STATE_FILE`; False (nothing changed) when absent.
    A file written for another estimator is refused."""
    f = Path(folder) / STATE_FILE
    if not f.is_file():
        return False
    state = torch.load(f, weights_only=True, map_location="cpu")
    if state.get("version") != 1 or state.get("estimator") != name:
        raise UsageError(f"{f}: written for estimator {state.get('estimator')!r} (version {state.get('version')!r}), "
                         f"not {name!r}; resume with the run's own LabTRLConfig.estimator")
    estimator.load_state_dict(state["state"])
    return True


_CLASS = None


def __getattr__(name: str):
    if name == "LabGRPOTrainer":
        global _CLASS
        if _CLASS is None:
            _CLASS = _build_trainer_class()
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
