"""``TrainConfig``: the one frozen, validated config of a training run, saved as config.json.

Every field is a ``lab train`` flag (``--field-name``), its help the docstring under it.
Invalid values raise ``ConfigError`` (a ``ValueError``) naming the field and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config field has an invalid value; the message names the field and the fix."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run. Defaults train the shipped tiny model on arithmetic."""

    model: str = "data/models/tiny-arith"
    """HF model name or local path (the shipped tiny char-level model by default)."""
    task: str = "arithmetic"
    """Verifiable task: see `lab.tasks.available()`."""
    task_params: dict = field(default_factory=dict)
    """Task parameters as JSON, e.g. '{"max_digits": 2}'."""
    estimator: str = "grpo"
    """Advantage estimator that drives training: see `lab.estimators.available()`."""
    estimator_params: dict = field(default_factory=dict)
    """Estimator parameters as JSON, e.g. '{"h": 0.3}' for kae."""
    shadow_estimators: tuple[str, ...] = ("all",)
    """Estimators computed alongside on the same rollouts for comparison ('all', or names; empty for none)."""
    loss: str = "ppo"
    """Policy-loss rule: ppo (clipped surrogate), dual_clip, vanilla (no clip)."""
    clip_measure: str = "ratio"
    """Divergence measure that sets the clip interval: ratio, kl1, kl2, kl3."""
    clip_delta: float = 0.2
    """Trust-region budget delta of the measure (epsilon for ratio)."""
    clip_delta_low: float | None = None
    """Lower epsilon for asymmetric ratio clipping (clip-higher, DAPO 0.2); none = clip_delta."""
    clip_delta_high: float | None = None
    """Upper epsilon for asymmetric ratio clipping (clip-higher, DAPO 0.28); none = clip_delta."""
    dual_clip_c: float = 3.0
    """Dual-clip constant c (> 1) bounding the loss at -c*A for negative advantages."""
    loss_agg: str = "token-mean"
    """Loss aggregation: token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm."""
    rollouts_per_prompt: int = 4
    """Rollouts per prompt per step (G)."""
    prompts_per_step: int = 16
    """Distinct prompts per training step."""
    steps: int = 40
    """Number of training steps."""
    lr: float = 1e-4
    """Learning rate (AdamW); 1e-4 suits the tiny model (3e-4 and above make its held-out accuracy fall)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0 disables)."""
    ppo_epochs: int = 1
    """Passes over each step's rollouts."""
    minibatches: int = 1
    """Optimizer steps per pass (the step's rollouts are split into this many minibatches)."""
    kl_coef: float = 0.0
    """Coefficient of the KL penalty against the reference model (0 disables)."""
    kl_estimator: str = "k3"
    """KL penalty estimator: k1, k2, k3, low_var_kl."""
    use_ref_model: bool = False
    """Keep a frozen copy of the initial model as reference (needed when kl_coef > 0)."""
    prompt_reuse: int = 1
    """Reuse each prompt for this many consecutive steps (KAE's setting J; 1 = fresh prompts every step)."""
    temperature: float = 1.0
    """Sampling temperature of rollouts."""
    top_p: float = 1.0
    """Nucleus sampling mass of rollouts."""
    max_new_tokens: int = 8
    """Maximum completion length in tokens."""
    rollout_backend: str = "hf"
    """Generation backend: hf (default) or vllm (GPU, optional install)."""
    probe_every: int = 10
    """Measure value probes every this many steps (0 disables); also at the last step."""
    probe_set: str = "fixed"
    """fixed: a fixed set of test-split prompts, each estimator run on them by a separate probe instance; batch: the step's own training prompts, scored against the baselines that training used."""
    probe_prompts: int = 16
    """Probe prompts per probe step whose true value is measured by Monte Carlo."""
    probe_samples: int = 64
    """Monte-Carlo samples per probe prompt (M)."""
    eval_every: int = 10
    """Held-out accuracy every this many steps (0 disables); also at the last step."""
    eval_prompts: int = 64
    """Fixed test-split prompts of the held-out evaluation."""
    eval_samples: int = 4
    """Samples per eval prompt (at the training temperature): eval/accuracy is their mean reward."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many steps (and at the end); resume starts from the newest."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep (0 keeps all)."""
    reward_timeout_s: float = 1.0
    """Time limit of one reward-function call; a timeout scores 0 and counts in reward/errors."""
    seed: int = 0
    """Seed of every random number generator (prompts, sampling, minibatch order)."""
    device: str = "auto"
    """cpu, cuda, mps or auto (cuda, then mps, then cpu)."""
    dtype: str = "auto"
    """Model weights dtype: auto (bf16 on CUDA, fp32 otherwise), float32, bfloat16."""
    output_dir: str = "runs"
    """Folder under which the run directory is created."""
    run_name: str | None = None
    """Run directory name (default: <estimator>-<loss>-<measure>-s<seed>-<time>)."""
    quiet: bool = False
    """No progress bar or printing (for tests and scripts)."""

    def __post_init__(self):
        validate(self)

    # --- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown config fields {sorted(unknown)}; valid fields: {', '.join(sorted(names))}")
        vals = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**vals)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def shadow_names(self) -> list[str]:
        """Estimators to compute in shadow mode (never the training one)."""
        from lab import estimators

        names = estimators.available() if "all" in self.shadow_estimators else list(self.shadow_estimators)
        return [n for n in names if n != self.estimator]


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v


def _need(cond: bool, field_name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{field_name}: {msg}")


def validate(c: TrainConfig) -> None:
    """Check every field; raise ConfigError naming the first bad field and how to fix it."""
    from lab import estimators, losses, tasks

    def pos_int(name: str, minimum: int = 1):
        v = getattr(c, name)
        _need(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, name, f"must be an integer >= {minimum}, got {v!r}")

    def num(name: str, lo: float | None = None, hi: float | None = None, lo_open=False, hi_open=False):
        v = getattr(c, name)
        _need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), name, f"must be a finite number, got {v!r}")
        if lo is not None:
            _need(v > lo if lo_open else v >= lo, name, f"must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None:
            _need(v < hi if hi_open else v <= hi, name, f"must be {'<' if hi_open else '<='} {hi}, got {v}")

    _need(isinstance(c.model, str) and c.model.strip() != "", "model", "give an HF model name or a local path")
    _need(c.task in tasks.available(), "task", f"unknown task {c.task!r}; choose one of {', '.join(tasks.available())}")
    _need(isinstance(c.task_params, dict), "task_params", "must be a JSON object")
    _need(c.estimator in estimators.available(), "estimator", f"unknown estimator {c.estimator!r}; choose one of {', '.join(estimators.available())}")
    _need(isinstance(c.estimator_params, dict), "estimator_params", "must be a JSON object")
    try:
        estimators.get(c.estimator, **c.estimator_params)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"estimator_params: {e}") from None
    for n in c.shadow_estimators:
        _need(n == "all" or n in estimators.available(), "shadow_estimators", f"unknown estimator {n!r}; use 'all' or names from {', '.join(estimators.available())}")
    _need(c.loss in losses.available_rules(), "loss", f"unknown rule {c.loss!r}; choose one of {', '.join(losses.available_rules())}")
    _need(c.clip_measure in losses.available_measures(), "clip_measure", f"unknown measure {c.clip_measure!r}; choose one of {', '.join(losses.available_measures())}")
    num("clip_delta", 0, lo_open=True)
    for name in ("clip_delta_low", "clip_delta_high"):
        if getattr(c, name) is not None:
            _need(c.clip_measure == "ratio", name, "asymmetric deltas apply to clip_measure=ratio only; unset it or use --clip-measure ratio")
            num(name, 0, lo_open=True)
    if c.clip_delta_low is not None:
        _need(c.clip_delta_low < 1, "clip_delta_low", f"must be < 1 so the lower bound 1 - delta stays positive, got {c.clip_delta_low}")
    if c.clip_measure == "ratio" and c.clip_delta_low is None:
        _need(c.clip_delta < 1, "clip_delta", f"a ratio epsilon must be < 1 (lower bound 1 - eps > 0), got {c.clip_delta}")
    num("dual_clip_c", 1, lo_open=True)
    _need(c.loss_agg in losses.AGG_MODES, "loss_agg", f"unknown mode {c.loss_agg!r}; choose one of {', '.join(losses.AGG_MODES)}")
    pos_int("rollouts_per_prompt")
    pos_int("prompts_per_step")
    pos_int("steps")
    num("lr", 0, lo_open=True)
    num("weight_decay", 0)
    num("max_grad_norm", 0)
    pos_int("ppo_epochs")
    pos_int("minibatches")
    _need(c.minibatches <= c.rollouts_per_prompt * c.prompts_per_step, "minibatches",
          f"{c.minibatches} minibatches but only {c.rollouts_per_prompt * c.prompts_per_step} rollouts per step; lower --minibatches")
    num("kl_coef", 0)
    _need(c.kl_estimator in losses.available_kl(), "kl_estimator", f"unknown KL estimator {c.kl_estimator!r}; choose one of {', '.join(losses.available_kl())}")
    _need(c.kl_coef == 0 or c.use_ref_model, "kl_coef", "a KL penalty needs a reference model: add --use-ref-model or set --kl-coef 0")
    pos_int("prompt_reuse")
    num("temperature", 0, lo_open=True)
    num("top_p", 0, 1, lo_open=True)
    pos_int("max_new_tokens")
    from lab import rollout

    _need(c.rollout_backend in rollout.available(), "rollout_backend", f"unknown backend {c.rollout_backend!r}; choose one of {', '.join(rollout.available())}")
    pos_int("probe_every", 0)
    _need(c.probe_set in ("fixed", "batch"), "probe_set", f"choose fixed or batch, got {c.probe_set!r}")
    pos_int("probe_prompts")
    pos_int("probe_samples", 2)
    pos_int("eval_every", 0)
    pos_int("eval_prompts")
    pos_int("eval_samples")
    pos_int("checkpoint_every", 0)
    pos_int("keep_checkpoints", 0)
    num("reward_timeout_s", 0, lo_open=True)
    pos_int("seed", 0)
    _need(c.device in ("auto", "cpu", "cuda", "mps") or c.device.startswith("cuda:"), "device", f"choose auto, cpu, cuda, cuda:N or mps, got {c.device!r}")
    _need(c.dtype in ("auto", "float32", "bfloat16", "float16"), "dtype", f"choose auto, float32, bfloat16 or float16, got {c.dtype!r}")
    _need(isinstance(c.output_dir, str) and c.output_dir != "", "output_dir", "give a folder path")
    if c.run_name is not None:
        _need(c.run_name != "" and "/" not in c.run_name and c.run_name not in (".", ".."), "run_name", f"must be a plain folder name, got {c.run_name!r}")
