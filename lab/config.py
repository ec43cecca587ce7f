"""``TrainConfig``: the one frozen, validated config of a training run, saved as config.json.

Every field is a ``lab train`` flag (``--field-name``), its help the docstring under it.
Invalid values raise ``ConfigError`` (a ``ValueError``) naming the field and the fix.

Every field is checked against its declared type whatever the source (flags, a JSON/YAML
file, ``TrainConfig(...)`` in Python), with the same messages: ``use_ref_model: "no"`` is
refused (a bool must be true/false), integers must fit 64 bits, numbers must be finite.
Two normalisations only: a list becomes a tuple, and a string for ``shadow_estimators`` is
read like the flag, a comma list (``"rloo"`` -> ``("rloo",)``, ``"grpo,rloo"`` -> both).
``clip_delta = None`` resolves, at construction, to the measure's matched budget
(``lab.losses.matched_delta``), so a saved config.json records the number used.

>>> TrainConfig(clip_measure="kl3").clip_delta == __import__("lab").losses.matched_delta("kl3")
True
>>> TrainConfig(shadow_estimators="rloo").shadow_estimators
('rloo',)
>>> TrainConfig(use_ref_model="no")
Traceback (most recent call last):
...
lab.config.ConfigError: use_ref_model: must be true or false, got 'no' (str)
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.errors import UsageError

INT_MAX = 2**63 - 1
"""Largest integer any field takes (64-bit signed: what torch and numpy can hold)."""
RUN_NAME_MAX_BYTES = 255
"""Longest run name (UTF-8 bytes): a folder name on every common filesystem."""
META_KEYS = ("format_version",)
"""Keys a saved config.json may hold besides the fields (the run format's version)."""
MAX_ROLLOUTS = 2**20
"""Most rollouts (or prompts) one stage of a run may ask for at once: a training step (prompts_per_step x
rollouts_per_prompt), an eval (eval_prompts x eval_samples), a probe (probe_prompts x probe_samples), the prompt
pool (train_pool_size) and the reference stage (reference_samples x its prompts). Each sizes lists and tensors
before anything runs; past the cap a typo (10**12 for 16) would fill the memory instead of failing. 2**20 is ~30x
the largest batches of published RLVR runs (2,048 prompts x 16)."""
MAX_REFERENCE_ROLLOUTS = MAX_ROLLOUTS
"""The reference stage's cap (:data:`MAX_ROLLOUTS`; the older name)."""
MIN_REWARD_TIMEOUT_S = 1e-3
"""Shortest reward time limit: below a millisecond no reward function (not even a string compare) finishes."""


class ConfigError(UsageError):
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
    clip_delta: float | None = None
    """Trust-region budget delta of the measure (epsilon for ratio); none = the measure's matched budget (lab.losses.matched_delta: ratio 0.2, kl3 ~0.02, the same interval width as ratio 0.2), resolved when the config is made; an explicit value wins."""
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
    steps: int = 400
    """Number of training steps (400: where default GRPO's held-out accuracy levels off on the shipped model, docs/models.md)."""
    lr: float = 3e-4
    """Learning rate (AdamW); 3e-4 suits the shipped tiny model (6e-4 was unstable in docs/models.md's learning-curve runs)."""
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
    train_pool_size: int = 0
    """Train on a fixed pool of this many training prompts, cycled every epoch in a new order (0 = the task's whole train split)."""
    reference_samples: int = 0
    """Reference-stage samples per prompt (m): before step 0, m completions of every pool and probe prompt from the initial model, scored, for estimators that want a reference (BASIS's prior, BLEND's history); needs --train-pool-size; 0 = no reference stage."""
    temperature: float = 1.0
    """Sampling temperature of rollouts."""
    top_p: float = 1.0
    """Nucleus sampling mass of rollouts."""
    max_new_tokens: int = 8
    """Maximum completion length in tokens."""
    rollout_backend: str = "hf"
    """Generation backend: hf (default) or vllm (GPU, optional install)."""
    rollout_max_batch_bytes: int = 2**30
    """Memory budget (bytes of KV cache and logits) that sizes the rollout backend's generation chunks (hf; 1 GiB); saved with the run because chunking decides which draw goes to which row."""
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
    """Time limit of one reward-function call (at most the platform's timer limit, ~9.2e9 s); a timeout scores 0 and counts in reward/errors."""
    seed: int = 0
    """Seed of every random number generator (prompts, sampling, minibatch order)."""
    device: str = "auto"
    """cpu, cuda, mps or auto (cuda, then mps, then cpu)."""
    dtype: str = "auto"
    """Dtype of the trained weights: auto = float32 master weights everywhere, with the forward/backward under bf16 autocast on CUDA; float32, bfloat16 (bf16 weights: half the memory, coarser updates), float16."""
    gradient_checkpointing: bool = False
    """Recompute layer activations in backward (less memory, ~30% more compute); for large models on GPU."""
    output_dir: str = "runs"
    """Folder under which the run directory is created."""
    run_name: str | None = None
    """Run directory name (default: <estimator>-<loss>-<measure>-s<seed>-<time>)."""
    quiet: bool = False
    """No progress bar or printing (for tests and scripts)."""

    def __post_init__(self):
        _normalize(self)
        validate(self)

    # --- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """A config from a dict (a saved config.json): the run-format keys are ignored, missing
        fields take today's defaults (so older runs still load), unknown fields are refused."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping of field names to values, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in META_KEYS}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown config fields {sorted(map(str, unknown))}; valid fields: {', '.join(sorted(names))}")
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes``; a new ``clip_measure`` without a ``clip_delta`` takes the new
        measure's matched budget when the old delta was the old measure's matched budget."""
        if "clip_measure" in changes and "clip_delta" not in changes and self.clip_delta == _matched(self.clip_measure):
            changes["clip_delta"] = None
        return dataclasses.replace(self, **changes)

    def shadow_names(self) -> list[str]:
        """Estimators to compute in shadow mode (never the training one)."""
        from lab import estimators

        names = estimators.available() if "all" in self.shadow_estimators else list(self.shadow_estimators)
        return [n for n in names if n != self.estimator]


def _matched(measure: str) -> float | None:
    from lab import losses

    return losses.matched_delta(measure) if measure in losses.available_measures() else None


def _normalize(c: TrainConfig) -> None:
    """The two normalisations (list -> tuple; a comma string for tuple fields) and clip_delta=None."""
    hints = field_types()
    for f in dataclasses.fields(c):
        v = getattr(c, f.name)
        if typing.get_origin(hints[f.name]) is tuple:
            if isinstance(v, str):
                object.__setattr__(c, f.name, tuple(s.strip() for s in v.split(",") if s.strip()))
            elif isinstance(v, list):
                object.__setattr__(c, f.name, tuple(v))
    if c.clip_delta is None and isinstance(c.clip_measure, str):
        m = _matched(c.clip_measure)
        if m is not None:
            object.__setattr__(c, "clip_delta", m)


_HINTS: dict[str, Any] = {}


def field_types() -> dict[str, Any]:
    """Each TrainConfig field's declared type (resolved once): the one table the config's and
    the run readers' type checks use."""
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    return _HINTS


def _describe(v: Any) -> str:
    r = repr(v)
    return f"{r[:60]}... ({type(v).__name__})" if len(r) > 60 else f"{r} ({type(v).__name__})"


def type_ok(v: Any, tp: Any) -> bool:
    """Does ``v`` match the declared type ``tp``? (bool is not an int; an int is a float)

    >>> type_ok(3, float), type_ok(True, int), type_ok(None, int | None), type_ok(["a"], tuple[str, ...])
    (True, False, True, True)
    """
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(v, a) for a in typing.get_args(tp))
    if tp is type(None):
        return v is None
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is str:
        return isinstance(v, str)
    if tp is dict or origin is dict:
        return isinstance(v, dict) and all(isinstance(k, str) for k in v)
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return isinstance(v, (tuple, list)) and all(type_ok(x, args[0]) for x in v) if args else isinstance(v, (tuple, list))
    return True  # a type the lab does not check: the consumer decides


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a JSON object"}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list, Sequence):
        return "a list"
    return names.get(tp, names.get(origin, getattr(tp, "__name__", str(tp))))


def check_params(kind: str, name: str, factory: Any, params: dict, *, skip: int = 0) -> None:
    """Check ``params`` against ``factory``'s signature: names exist, values match the annotations.

    Raises ``ConfigError`` naming the parameter (``estimator_params: parameter 'h' of kae ...``).
    """
    field_name = f"{kind}_params"
    target = factory.__init__ if isinstance(factory, type) else factory
    skip += 1 if isinstance(factory, type) else 0  # self
    try:
        sig = inspect.signature(target)
        hints = typing.get_type_hints(target)
    except (TypeError, ValueError, NameError):
        return
    ps = list(sig.parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in ps):
        return
    valid = {p.name: p for p in ps if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for k, v in params.items():
        if k not in valid:
            raise ConfigError(f"{field_name}: {kind} {name!r} has no parameter {k!r}; valid parameters: {', '.join(valid) or '(none)'}")
        tp = hints.get(k, Any)
        if not type_ok(v, tp):
            raise ConfigError(f"{field_name}: parameter {k!r} of {kind} {name!r} must be {_type_name(tp)}, got {_describe(v)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{field_name}: parameter {k!r} of {kind} {name!r} must be finite, got {v!r}")


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

    hints = field_types()
    for f in dataclasses.fields(c):  # declared types first, so every later check sees the right type
        v, tp = getattr(c, f.name), hints[f.name]
        if f.name in ("clip_delta",) and v is None:
            continue  # an unknown clip_measure left it unresolved: that field's message comes first
        _need(type_ok(v, tp), f.name, f"must be {_type_name(tp)}, got {_describe(v)}")
        if isinstance(v, int) and not isinstance(v, bool):
            _need(-INT_MAX - 1 <= v <= INT_MAX, f.name, f"{v} does not fit 64 bits; give at most {INT_MAX}")
        if isinstance(v, float):
            _need(math.isfinite(v), f.name, f"must be a finite number, got {v!r}")
        if isinstance(v, str):
            _need("\x00" not in v, f.name, "must not contain a NUL character")

    def pos_int(name: str, minimum: int = 1):
        v = getattr(c, name)
        _need(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, name, f"must be an integer >= {minimum}, got {v!r}")

    def num(name: str, lo: float | None = None, hi: float | None = None, lo_open=False, hi_open=False):
        v = getattr(c, name)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        try:
            ok = ok and math.isfinite(v)
        except OverflowError:  # an int too big for a float
            ok = False
        _need(ok, name, f"must be a finite number, got {_describe(v) if not isinstance(v, (int, float)) else v!r}")
        if lo is not None:
            _need(v > lo if lo_open else v >= lo, name, f"must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None:
            _need(v < hi if hi_open else v <= hi, name, f"must be {'<' if hi_open else '<='} {hi}, got {v}")

    _need(isinstance(c.model, str) and c.model.strip() != "", "model", "give an HF model name or a local path")
    _need(c.task in tasks.available(), "task", f"unknown task {c.task!r}; choose one of {', '.join(tasks.available())}")
    _need(isinstance(c.task_params, dict), "task_params", "must be a JSON object")
    _need(c.estimator in estimators.available(), "estimator", f"unknown estimator {c.estimator!r}; choose one of {', '.join(estimators.available())}")
    if c.task in tasks.available():
        check_params("task", c.task, tasks.TASKS.get(c.task), c.task_params)
    _need(isinstance(c.estimator_params, dict), "estimator_params", "must be a JSON object")
    factory = estimators.ESTIMATORS.get(c.estimator)
    check_params("estimator", c.estimator, factory, c.estimator_params, skip=0 if isinstance(factory, type) else 2)
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
    _check_clip_bounds(c)
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
    pos_int("train_pool_size", 0)
    pos_int("reference_samples", 0)
    if c.reference_samples:
        _need(c.train_pool_size > 0, "reference_samples",
              "a reference stage samples a fixed prompt pool; add --train-pool-size N (or set --reference-samples 0)")
        total = c.reference_samples * (c.train_pool_size + (c.probe_prompts if c.probe_every and c.probe_set == "fixed" else 0))
        _need(total <= MAX_ROLLOUTS, "reference_samples",
              f"{c.reference_samples} samples x {total // c.reference_samples} prompts = {total} reference rollouts, more than "
              f"the cap of {MAX_ROLLOUTS}; lower --reference-samples or --train-pool-size")
    num("temperature", 0, lo_open=True)
    num("top_p", 0, 1, lo_open=True)
    pos_int("max_new_tokens")
    pos_int("rollout_max_batch_bytes")
    from lab import rollout

    _need(c.rollout_backend in rollout.available(), "rollout_backend", f"unknown backend {c.rollout_backend!r}; choose one of {', '.join(rollout.available())}")
    pos_int("probe_every", 0)
    _need(c.probe_set in ("fixed", "batch"), "probe_set", f"choose fixed or batch, got {c.probe_set!r}")
    pos_int("probe_prompts")
    pos_int("probe_samples", 2)
    pos_int("eval_every", 0)
    pos_int("eval_prompts")
    pos_int("eval_samples")
    for first, second, what in (("prompts_per_step", "rollouts_per_prompt", "rollouts a step"),
                                ("eval_prompts", "eval_samples", "rollouts an eval"),
                                ("probe_prompts", "probe_samples", "rollouts a probe")):
        a, b = getattr(c, first), getattr(c, second)
        _need(a * b <= MAX_ROLLOUTS, first if a >= b else second,
              f"{a} x {b} = {a * b} {what}, more than the cap of {MAX_ROLLOUTS} (lab.config.MAX_ROLLOUTS); "
              f"lower --{first.replace('_', '-')} or --{second.replace('_', '-')}")
    _need(c.train_pool_size <= MAX_ROLLOUTS, "train_pool_size",
          f"{c.train_pool_size} prompts, more than the cap of {MAX_ROLLOUTS} (lab.config.MAX_ROLLOUTS); lower --train-pool-size")
    pos_int("checkpoint_every", 0)
    pos_int("keep_checkpoints", 0)
    from lab.tasks.scoring import MAX_TIMEOUT_S

    num("reward_timeout_s", 0, lo_open=True)
    _need(c.reward_timeout_s >= MIN_REWARD_TIMEOUT_S, "reward_timeout_s",
          f"{c.reward_timeout_s:g} s is too short to score anything; give at least {MIN_REWARD_TIMEOUT_S:g} s (1 s is the default)")
    _need(c.reward_timeout_s <= MAX_TIMEOUT_S, "reward_timeout_s",
          f"must be at most {MAX_TIMEOUT_S:.4g} s (the platform's timer limit), got {c.reward_timeout_s:g}")
    pos_int("seed", 0)
    _need(c.device in ("auto", "cpu", "cuda", "mps") or (c.device.startswith("cuda:") and c.device[5:].isdigit()),
          "device", f"choose auto, cpu, cuda, cuda:N or mps, got {c.device!r}")
    _need(c.dtype in ("auto", "float32", "bfloat16", "float16"), "dtype", f"choose auto, float32, bfloat16 or float16, got {c.dtype!r}")
    _need(isinstance(c.gradient_checkpointing, bool), "gradient_checkpointing", f"must be true or false, got {c.gradient_checkpointing!r}")
    _need(isinstance(c.output_dir, str) and c.output_dir != "", "output_dir", "give a folder path")
    if c.run_name is not None:
        _need(c.run_name.strip() != "" and not any(ch in c.run_name for ch in "/\\") and c.run_name not in (".", ".."),
              "run_name", f"must be a plain folder name, got {c.run_name!r}")
        _need(not any(ord(ch) < 32 or ord(ch) == 127 for ch in c.run_name), "run_name",
              f"must not contain newlines or other control characters, got {c.run_name!r}")
        n = len(c.run_name.encode("utf-8", "surrogatepass"))
        _need(n <= RUN_NAME_MAX_BYTES, "run_name", f"is {n} bytes long; a folder name takes at most {RUN_NAME_MAX_BYTES}")


def _check_clip_bounds(c: TrainConfig) -> None:
    """The clip interval the loss will use must be finite and hold 1 strictly inside it:
    ``--clip-measure kl3 --clip-delta 1e-17`` rounds to NaN bounds, kl1 at 1e-17 to [1, 1]."""
    from lab import losses

    try:
        low, high = losses.clip_bounds(c.clip_measure, c.clip_delta, delta_low=c.clip_delta_low, delta_high=c.clip_delta_high)
    except (ValueError, ArithmeticError) as e:
        raise ConfigError(f"clip_delta: {e}") from None
    ok = math.isfinite(low) and math.isfinite(high) and 0 <= low < 1 < high
    _need(ok, "clip_delta", f"{c.clip_measure} at delta {c.clip_delta:g} gives the clip interval [{low!r}, {high!r}], "
                            "not a finite interval around 1; give a larger --clip-delta")


def config_warnings(c: TrainConfig) -> list[str]:
    """Settings that are valid but probably not what was meant, one line each (``lab train``
    prints them on stderr before the run starts and keeps them in status.json's ``notes``).

    Behaviour is read from the registered estimators, never from their names: the class flag
    ``wants_reference``, and whether an estimator has any baseline with one rollout per prompt
    (probed on a tiny stream by ``_no_baseline_at_g1``).

    >>> config_warnings(TrainConfig(reference_samples=4, train_pool_size=8, estimator="grpo", shadow_estimators=()))
    ['reference_samples: 4 samples per prompt, but no estimator of this run (grpo) wants a reference; set --reference-samples 0 or add basis or blend']
    """
    from lab import estimators

    out = []
    names = [c.estimator, *c.shadow_names()]
    wanting = [n for n in estimators.available() if getattr(estimators.ESTIMATORS.get(n), "wants_reference", False)]
    if c.reference_samples and not any(n in wanting for n in names):
        out.append(f"reference_samples: {c.reference_samples} samples per prompt, but no estimator of this run "
                   f"({', '.join(names)}) wants a reference; set --reference-samples 0 or add {' or '.join(wanting)}")
    if c.rollouts_per_prompt == 1:
        ref = c.reference_samples
        blind = [n for n in names
                 if _no_baseline_at_g1(n, c.estimator_params if n == c.estimator else {}, c.prompt_reuse, ref)]
        if blind:
            fit = [n for n in estimators.available() if not _no_baseline_at_g1(n, {}, c.prompt_reuse, ref)]
            out.append(f"rollouts_per_prompt: with 1 rollout per prompt {', '.join(blind)} have no baseline (every baseline 0, "
                       f"the advantage is the bare reward or 0); estimators that fit G = 1: {', '.join(fit)}")
    return out


def _no_baseline_at_g1(name: str, params: dict, reuse: int, reference_samples: int = 0) -> bool:
    """Does estimator ``name`` give all-zero baselines with one rollout per prompt? Probed on
    two steps of a tiny stream (the same prompts again when ``reuse`` > 1), so an estimator
    with memory or a batch-wide baseline counts as fitting. With ``reference_samples`` > 0 an
    estimator that ``wants_reference`` first gets that many rewards per prompt of the stream, as
    the trainer's reference stage gives it (BASIS with ``fallback=zero`` has a baseline then)."""
    import torch

    from lab import estimators

    est = estimators.get(name, **params)
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    ids = torch.arange(6)
    if reference_samples > 0 and getattr(est, "wants_reference", False):
        m = min(int(reference_samples), 4)  # a few per prompt show whether it has a baseline; the count does not matter
        ref_ids = torch.arange(12).repeat_interleave(m)  # every prompt either step can show
        est.set_reference(ref_ids, (torch.arange(ref_ids.numel()) % 2).to(torch.float64))
    est(estimators.RewardBatch(r, ids, step=0))
    out = est(estimators.RewardBatch(r.flip(0), ids if reuse > 1 else ids + 6, step=1))
    return bool((out.baselines == 0).all())
