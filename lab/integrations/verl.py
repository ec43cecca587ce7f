"""The lab's estimators and clip rules inside verl (tested against verl 0.9.1).

What this module adds to verl (``register()``; run automatically by verl's plug-in loader,
see ``docs/integrations.md``):

* **advantage estimators** ``lab_<name>`` for every ``lab.estimators.available()`` name
  (``lab_grpo``, ``lab_rloo``, ``lab_kae``, ``lab_basis``, ``lab_blend``, ...), in verl's
  ``ADV_ESTIMATOR_REGISTRY``. Set ``algorithm.adv_estimator=lab_kae``.
* **policy losses** in verl's ``POLICY_LOSS_REGISTRY``: ``lab_<rule>`` (rules ``ppo``,
  ``dual_clip``, ``vanilla``) clip in ratio space with verl's ``actor.clip_ratio_low`` /
  ``actor.clip_ratio_high`` (so ``lab_ppo`` with 0.2 / 0.28 is clip-higher), and
  ``lab_<rule>_<measure>`` for the other divergence measures (``lab_ppo_kl3``, ...) take
  the budget δ from ``actor.clip_ratio``. The dual-clip constant is ``actor.clip_ratio_c``.
  Set ``actor_rollout_ref.actor.policy_loss.loss_mode=lab_ppo_kl3``.

Translation (pure functions below, tested without verl):

* verl's ``token_level_rewards`` (B, T) and ``response_mask`` (B, T) give one outcome
  reward per response: the masked sum over tokens (:func:`sequence_rewards`);
* the lab's advantages (B,) go back as ``advantages * response_mask`` (B, T), and
  ``returns`` equal the advantages, as in verl's own outcome estimators (:func:`to_token_level`);
* verl's ``index`` is the ``uid`` array: a fresh random id per prompt *per step*. It groups
  the rollouts of one prompt, which is all that stateless estimators need
  (:func:`dense_ids`). Estimators with memory (``kae``, ``blend``, ``basis``) need an id that
  is stable across steps and the step itself; the trainer hooks
  (:func:`install_trainer_hooks`) record, when verl fetches a batch from its dataloader,
  ``uid -> stable id`` with the id from the dataset's ``extra_info.index``, or a hash of
  the prompt when the dataset has none (:func:`stable_prompt_ids`), and before the
  advantage step they set the step to ``trainer.global_steps - 1`` (0-based, as in the lab).

State: one estimator instance per name lives in :data:`CONTEXT`, in the process that
computes advantages (verl's driver / task runner). The trainer hooks save it as
``lab_estimators.pt`` in every ``global_step_N`` checkpoint folder and load it on resume.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from lab import estimators, losses
from lab.errors import UsageError
from lab.estimators import RewardBatch
from lab.integrations.common import build_estimator, hash_prompt, load_reference  # noqa: F401  (hash_prompt: public here too)

PREFIX = "lab_"
"""Prefix of every name the lab adds to verl's registries."""

PARAMS_ENV = "LAB_VERL_ESTIMATOR_PARAMS"
"""Environment variable: JSON object ``{"kae": {"h": 0.3}, ...}`` of estimator parameters."""

REFERENCE_ENV = "LAB_VERL_REFERENCE"
"""Environment variable: reference samples for every estimator that wants them (``wants_reference``:
BASIS's offline prior, BLEND's step-0 history): a ``lab train`` run folder (``reference.parquet``)
or a ``.parquet``/``.csv``/``.jsonl`` with ``prompt_id`` (or ``prompt``) and ``reward``."""

BASIS_PRIOR_ENV = "LAB_VERL_BASIS_PRIOR"
"""The older name of :data:`REFERENCE_ENV`, still read when that one is unset."""

STATE_FILE = "lab_estimators.pt"
"""File written into each verl ``global_step_N`` checkpoint folder (estimator memories)."""

INSTALL_HINT = (
    "lab.integrations.verl needs verl, which is not installed in this environment; "
    "build the verl environment with `make verl-env` (it creates .venv-verl)"
)


def import_core_algos():
    """``verl.trainer.ppo.core_algos``, or ``ImportError`` with :data:`INSTALL_HINT`."""
    try:
        from verl.trainer.ppo import core_algos
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return core_algos


# --- translation: verl tensors <-> RewardBatch --------------------------------------------------
def sequence_rewards(token_level_rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """One outcome reward per response: Σ_t rewards[b, t] · mask[b, t], as float64.

    Shapes: token_level_rewards (B, T), response_mask (B, T) -> (B,).
    verl puts an outcome reward on the last valid token; the sum recovers it (and sums a
    token-level reward, as verl's own GRPO does).

    >>> r = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.5, 0.0]])
    >>> m = torch.tensor([[1, 1, 1], [1, 1, 0]])
    >>> sequence_rewards(r, m).tolist()
    [1.0, 0.5]
    """
    if token_level_rewards.shape != response_mask.shape or token_level_rewards.dim() != 2:
        raise ValueError(
            f"token_level_rewards {tuple(token_level_rewards.shape)} and response_mask "
            f"{tuple(response_mask.shape)} must both be (B, T)"
        )
    return (token_level_rewards.double() * response_mask.double()).sum(-1)  # (B,)


def to_token_level(values: torch.Tensor, response_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Broadcast per-response values (B,) over the valid tokens, exact zeros elsewhere (B, T).

    >>> to_token_level(torch.tensor([2.0, -1.0]), torch.tensor([[1, 1, 0], [1, 0, 0]])).tolist()
    [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]
    """
    v = values.to(dtype)[:, None].expand(response_mask.shape)  # (B, T)
    return torch.where(response_mask.bool(), v, torch.zeros((), dtype=dtype, device=v.device))  # (B, T)


def dense_ids(index: Sequence[Any]) -> torch.Tensor:
    """Group ids 0..K-1 for verl's ``uid`` array, in order of first appearance (B,) long.

    >>> dense_ids(np.array(["b7", "a1", "b7", "c3"], dtype=object)).tolist()
    [0, 1, 0, 2]
    """
    seen: dict[Any, int] = {}
    return torch.tensor([seen.setdefault(u, len(seen)) for u in list(index)], dtype=torch.long)


def stable_prompt_id(extra_info: Mapping[str, Any] | None, prompt: Any) -> int:
    """The prompt id the lab's stateful estimators see: ``extra_info["index"]`` when the dataset
    gives one (verl's convention for a row's dataset index), else :func:`hash_prompt` of the prompt.

    Indices must be unique across the whole training set (several data sources sharing one
    index range would share ids: give each source its own range, or drop ``index``).

    >>> stable_prompt_id({"index": 42, "split": "train"}, "2+2=")
    42
    >>> stable_prompt_id({}, "2+2=") == hash_prompt("2+2=")
    True
    """
    if isinstance(extra_info, Mapping) and extra_info.get("index") is not None:
        idx = extra_info["index"]
        if isinstance(idx, bool) or not float(idx).is_integer() or int(idx) < 0:
            raise ValueError(f"extra_info.index must be a non-negative integer, got {idx!r}")
        return int(idx)
    if prompt is None:
        raise ValueError("no extra_info.index and no prompt to hash: cannot give this row a stable prompt id")
    return hash_prompt(prompt)


def _as_list(x: Any) -> list:
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.ndarray):
        return list(x)
    tolist = getattr(x, "tolist", None)
    return list(tolist()) if callable(tolist) else list(x)


def stable_prompt_ids(batch: Mapping[str, Any]) -> list[int]:
    """:func:`stable_prompt_id` for every row of a verl dataloader batch (a dict of columns).

    Reads ``extra_info`` (one dict per row) and the prompt from ``raw_prompt``, falling back
    to ``prompt`` or ``raw_prompt_ids``.

    >>> stable_prompt_ids({"extra_info": np.array([{"index": 3}, {"index": 9}]), "raw_prompt": np.array(["a", "b"])})
    [3, 9]
    """
    keys = set(batch.keys())  # a TensorDict rejects `key in td`; its keys() works
    prompts = None
    for key in ("raw_prompt", "prompt", "raw_prompt_ids"):
        if key in keys:
            prompts = _as_list(batch[key])
            break
    infos = _as_list(batch["extra_info"]) if "extra_info" in keys else []
    n = len(prompts) if prompts is not None else len(infos)
    if n == 0:
        raise ValueError("batch has neither extra_info nor a prompt column (raw_prompt / prompt / raw_prompt_ids)")
    infos = infos or [None] * n
    prompts = prompts if prompts is not None else [None] * n
    if len(infos) != n:
        raise ValueError(f"extra_info has {len(infos)} rows but the prompt column has {n}")
    return [stable_prompt_id(info, p) for info, p in zip(infos, prompts)]


# --- state shared by the registered functions ------------------------------------------------------
def estimator_params(name: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parameters of lab estimator ``name`` from :data:`PARAMS_ENV` (JSON, keyed by lab name).

    >>> estimator_params("kae", {PARAMS_ENV: '{"kae": {"h": 0.3}}'})
    {'h': 0.3}
    >>> estimator_params("grpo", {})
    {}
    """
    raw = (os.environ if env is None else env).get(PARAMS_ENV, "")
    if not raw.strip():
        return {}
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{PARAMS_ENV} is not valid JSON ({e}); expected e.g. '{{\"kae\": {{\"h\": 0.3}}}}'") from None
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise ValueError(f"{PARAMS_ENV} must map estimator names to JSON objects, e.g. '{{\"kae\": {{\"h\": 0.3}}}}'")
    unknown = set(table) - set(estimators.available())
    if unknown:
        raise ValueError(f"{PARAMS_ENV} names unknown estimators {sorted(unknown)}; valid: {', '.join(estimators.available())}")
    return dict(table.get(name, {}))


def load_basis_prior(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference-model rewards ``(prompt_ids (M,) long, rewards (M,) float64)`` from a run folder
    (``reference.parquet``) or a ``.jsonl``/``.csv``/``.parquet`` file: :func:`lab.integrations.common.load_reference`
    (ids: ``prompt_id`` = ``extra_info.index``, or ``prompt`` hashed with :func:`hash_prompt`)."""
    return load_reference(path, field=REFERENCE_ENV)


def reference_path(env: Mapping[str, str] | None = None) -> str:
    """The reference samples' path: :data:`REFERENCE_ENV`, else the older :data:`BASIS_PRIOR_ENV`, else ``""``.

    >>> reference_path({BASIS_PRIOR_ENV: "old.jsonl"}), reference_path({REFERENCE_ENV: "run/", BASIS_PRIOR_ENV: "x"})
    ('old.jsonl', 'run/')
    """
    env = os.environ if env is None else env
    return env.get(REFERENCE_ENV, "") or env.get(BASIS_PRIOR_ENV, "")


def check_gamma(name: str, config: Any) -> None:
    """Refuse ``algorithm.gamma`` other than 1: the lab's estimators score whole responses (one
    reward per sequence, the same advantage on every token), so there is no per-token reward-to-go
    to discount; verl's own ``reinforce_plus_plus`` would discount, ``lab_`` ones would silently not.

    >>> check_gamma("grpo", {"gamma": 1.0})
    >>> check_gamma("reinforce_plus_plus", {"gamma": 0.99})
    Traceback (most recent call last):
    ...
    lab.errors.UsageError: algorithm.gamma=0.99: lab_reinforce_plus_plus scores whole responses (one advantage for every token, no discounted reward-to-go); set algorithm.gamma=1.0, or use verl's own estimator
    """
    if config is None:
        return
    get = config.get if hasattr(config, "get") else (lambda k, d=None: getattr(config, k, d))
    gamma = get("gamma", 1.0)
    if gamma is not None and float(gamma) != 1.0:
        raise UsageError(f"algorithm.gamma={gamma}: {PREFIX}{name} scores whole responses (one advantage for every token, "
                         "no discounted reward-to-go); set algorithm.gamma=1.0, or use verl's own estimator")


def dense_reward_frac(token_level_rewards: torch.Tensor, response_mask: torch.Tensor) -> float:
    """Fraction of responses with a non-zero reward on more than one valid token (dense rewards,
    which the lab sums into one reward per response; see docs/integrations.md).

    >>> dense_reward_frac(torch.tensor([[0.0, 1.0], [0.5, 0.5]]), torch.ones(2, 2))
    0.5
    """
    nz = ((token_level_rewards != 0) & response_mask.bool()).sum(-1)  # (B,)
    return float((nz > 1).double().mean()) if nz.numel() else 0.0


class VerlContext:
    """The adapter's process-wide state: estimator instances, ``uid -> stable id``, the step.

    The trainer hooks fill it; tests and custom trainers may call :meth:`record_prompts` and
    :meth:`set_step` themselves.

    >>> ctx = VerlContext()
    >>> ctx.record_prompts(["u1", "u2"], [10, 11]); ctx.set_step(4)
    >>> ctx.prompt_ids(np.array(["u2", "u1", "u2"], dtype=object), need_stable=True, name="kae").tolist(), ctx.step
    ([11, 10, 11], 4)
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.estimators: dict[str, estimators.Estimator] = {}
        self.uid_to_pid: dict[str, int] = {}
        self.step: int | None = None
        self.last_info: dict[str, float] = {}

    def record_prompts(self, uids: Iterable[Any], prompt_ids: Iterable[int]) -> None:
        """Remember the stable id of each fresh ``uid`` (called when verl fetches a batch)."""
        uids, pids = [str(u) for u in uids], [int(p) for p in prompt_ids]
        if len(uids) != len(pids):
            raise ValueError(f"{len(uids)} uids but {len(pids)} prompt ids")
        self.uid_to_pid.update(zip(uids, pids))

    def set_step(self, step: int) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        self.step = step

    def forget(self, uids: Iterable[Any]) -> None:
        for u in uids:
            self.uid_to_pid.pop(str(u), None)

    def prompt_ids(self, index: Sequence[Any] | None, *, need_stable: bool, name: str) -> torch.Tensor:
        """Stable prompt ids (B,) for verl's ``uid`` array, or dense group ids when allowed."""
        if index is None:
            raise ValueError(f"{PREFIX}{name}: verl passed no `index` (uid) array; the lab's estimators group rollouts by it")
        uids = [str(u) for u in list(index)]
        missing = [u for u in uids if u not in self.uid_to_pid]
        if not missing:
            return torch.tensor([self.uid_to_pid[u] for u in uids], dtype=torch.long)
        if need_stable:
            raise RuntimeError(
                f"{PREFIX}{name} keeps memory across steps and needs a prompt id that is stable across steps, "
                f"but {len(missing)} of {len(uids)} uids (e.g. {missing[0]!r}) have none: verl's uid is a fresh "
                "random id each step. Install the trainer hooks (automatic when lab is installed next to verl; "
                "else call lab.integrations.verl.install_trainer_hooks() in the trainer process), or call "
                "CONTEXT.record_prompts(uids, prompt_ids) yourself."
            )
        return dense_ids(uids)

    def current_step(self, name: str) -> int:
        if self.step is None:
            raise RuntimeError(
                f"{PREFIX}{name} needs the training step, which verl's advantage dispatch does not pass; install the "
                "trainer hooks (lab.integrations.verl.install_trainer_hooks) or call CONTEXT.set_step(step)"
            )
        return self.step

    def estimator(self, name: str) -> estimators.Estimator:
        """The one instance of lab estimator ``name`` (built on first use, parameters from the env)."""
        if name not in self.estimators:
            self.estimators[name] = build_estimator(name, estimator_params(name), reference_path() or None, field=REFERENCE_ENV)
        return self.estimators[name]

    # checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"version": 1, "step": self.step, "estimators": {n: e.state_dict() for n, e in self.estimators.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != 1:
            raise ValueError(f"{STATE_FILE}: unknown state version {state.get('version')!r}")
        for name, sd in state["estimators"].items():
            self.estimator(name).load_state_dict(sd)
        self.step = state.get("step")

    def save(self, folder: str | Path) -> Path:
        """Write :data:`STATE_FILE` into ``folder`` atomically (temp file + rename)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{STATE_FILE}.tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, folder / STATE_FILE)
        return folder / STATE_FILE

    def load(self, folder: str | Path) -> bool:
        """Restore from ``folder/`` :data:`STATE_FILE`; False (nothing changed) if it is not there."""
        f = Path(folder) / STATE_FILE
        if not f.is_file():
            return False
        self.load_state_dict(torch.load(f, weights_only=True, map_location="cpu"))
        return True


CONTEXT = VerlContext()
"""The adapter state of this process (see :class:`VerlContext`)."""


# --- what gets registered ----------------------------------------------------------------------------
def advantage_fn(name: str, context: VerlContext | None = None) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """verl advantage function for lab estimator ``name``:
    ``fn(token_level_rewards (B, T), response_mask (B, T), index=uid array, config=None, **_) -> (advantages, returns)``.

    Both outputs are (B, T) float32, zero off the mask. The estimator's info scalars are kept
    in ``context.last_info`` (the trainer hooks add them to verl's metrics as ``lab/<key>``).

    >>> ctx = VerlContext()
    >>> fn = advantage_fn("grpo", ctx)
    >>> adv, ret = fn(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), torch.ones(2, 2), index=np.array(["u", "u"], dtype=object))
    >>> [round(a, 4) for a in adv[:, 0].tolist()], torch.equal(adv, ret)
    ([0.7071, -0.7071], True)
    """
    estimators.ESTIMATORS.get(name)  # fail now, listing valid names
    cls = estimators.ESTIMATORS.get(name)
    stateful = bool(getattr(cls, "stateful", False))

    def compute(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index=None, config=None, **_: Any):
        ctx = CONTEXT if context is None else context
        check_gamma(name, config)
        rewards = sequence_rewards(token_level_rewards, response_mask)  # (B,)
        pids = ctx.prompt_ids(index, need_stable=stateful, name=name)  # (B,)
        step = ctx.current_step(name) if stateful else (ctx.step or 0)
        out = ctx.estimator(name)(RewardBatch(rewards, pids, step=step))
        ctx.last_info = {k: float(v) for k, v in out.info.items()}
        ctx.last_info["baseline_mean"] = float(out.baselines.mean())
        ctx.last_info["dense_reward_frac"] = dense_reward_frac(token_level_rewards, response_mask)
        adv = to_token_level(out.advantages, response_mask, token_level_rewards.dtype if token_level_rewards.is_floating_point() else torch.float32)
        return adv, adv.clone()

    compute.__name__ = f"{PREFIX}{name}"
    compute.__qualname__ = compute.__name__
    compute.__doc__ = f"verl advantage estimator running lab estimator {name!r} (lab.integrations.verl)."
    return compute


def loss_bounds(measure: str, config: Any) -> tuple[float, float]:
    """Clip interval [l, u] from verl's actor config: ratio uses ``clip_ratio_low``/``clip_ratio_high``
    (each defaulting to ``clip_ratio``); any other measure takes δ = ``clip_ratio``.

    >>> loss_bounds("ratio", {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28})
    (0.8, 1.28)
    >>> [round(x, 4) for x in loss_bounds("kl3", {"clip_ratio": 0.03})]
    [0.7746, 1.2653]
    """
    get = config.get if hasattr(config, "get") else (lambda k, d=None: getattr(config, k, d))
    eps = get("clip_ratio", None)
    if measure == "ratio":
        lo, hi = get("clip_ratio_low", None), get("clip_ratio_high", None)
        lo, hi = (eps if lo is None else lo), (eps if hi is None else hi)
        if lo is None or hi is None:
            raise ValueError("actor config: set clip_ratio (or clip_ratio_low and clip_ratio_high)")
        return losses.clip_bounds("ratio", delta_low=float(lo), delta_high=float(hi))
    if eps is None:
        raise ValueError(f"actor config: set clip_ratio, the {measure} budget delta (matched to ratio 0.2: {losses.matched_delta(measure):.4g})")
    return losses.clip_bounds(measure, float(eps))


def policy_loss_matrix(old_log_prob, log_prob, advantages, response_mask, rule: str, low: float, high: float, dual_clip_c: float = 3.0):
    """The lab rule's unreduced loss (B, T) and its clip masks, with the lab's conventions
    (log-ratio clamped to [−20, 20]; padding gets w = 1, A = 0). Shapes: all (B, T).

    >>> lp = torch.log(torch.tensor([[1.5, 0.5]])); m = torch.ones(1, 2, dtype=torch.bool)
    >>> out, ratio = policy_loss_matrix(torch.zeros(1, 2), lp, torch.tensor([[1.0, -1.0]]), m, "ppo", 0.8, 1.2)
    >>> out.loss
    tensor([[-1.2000,  0.8000]])
    """
    m = response_mask.bool()
    zero = torch.zeros((), dtype=log_prob.dtype, device=log_prob.device)
    log_ratio = torch.where(m, torch.clamp(log_prob - old_log_prob, -20.0, 20.0), zero)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    adv = torch.where(m, advantages.to(ratio.dtype), zero.to(ratio.dtype))  # (B, T)
    out = losses.RULES.get(rule)(ratio, adv, low, high, dual_clip_c=float(dual_clip_c))
    return out, ratio


def policy_loss_fn(rule: str, measure: str = "ratio") -> Callable[..., tuple[torch.Tensor, dict[str, Any]]]:
    """verl policy loss for lab rule ``rule`` with clip measure ``measure``: verl's signature
    ``fn(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights)``.

    The per-token matrix comes from the lab's rule; reduction is verl's own ``agg_loss`` with
    ``config.global_batch_info``, so data-parallel scaling is verl's. Metrics: verl's
    ``actor/pg_clipfrac``, ``actor/ppo_kl``, ``actor/pg_clipfrac_lower`` plus the lab's
    ``actor/clip_frac_low``, ``actor/clip_frac_high``, ``actor/dual_clip_frac``, ``actor/approx_kl``.
    """
    rule_obj = losses.RULES.get(rule)
    losses.MEASURES.get(measure)

    def compute(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode: str = "token-mean", config=None, rollout_is_weights=None):
        if config is None:
            raise ValueError(f"{PREFIX}{rule}: verl passes the actor config; it is needed for the clip budget")
        low, high = loss_bounds(measure, config) if rule_obj.uses_bounds else (0.0, math.inf)
        c = config.get("clip_ratio_c", 3.0) if hasattr(config, "get") else getattr(config, "clip_ratio_c", 3.0)
        out, ratio = policy_loss_matrix(old_log_prob, log_prob, advantages, response_mask, rule, low, high, c)
        mat = out.loss
        if rollout_is_weights is not None:
            mat = mat * rollout_is_weights
        info = getattr(config, "global_batch_info", None) or {}
        loss = import_core_algos().agg_loss(loss_mat=mat, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **dict(info))
        with torch.no_grad():
            m = response_mask.bool()
            n = m.sum().clamp(min=1).double()

            def frac(b):
                return float((b & m).sum().double() / n)

            lr = torch.log(ratio.detach().double())[m]
            metrics = {
                "actor/pg_clipfrac": frac(out.clipped_low | out.clipped_high),
                "actor/pg_clipfrac_lower": frac(out.dual_clipped),
                "actor/ppo_kl": float((-lr).sum() / n),
                "actor/clip_frac_low": frac(out.clipped_low),
                "actor/clip_frac_high": frac(out.clipped_high),
                "actor/dual_clip_frac": frac(out.dual_clipped),
                "actor/approx_kl": float((torch.expm1(lr) - lr).sum() / n),
            }
        return loss, metrics

    suffix = "" if measure == "ratio" else f"_{measure}"
    compute.__name__ = f"{PREFIX}{rule}{suffix}"
    compute.__qualname__ = compute.__name__
    return compute


def estimator_names() -> list[str]:
    """verl names of the lab's estimators.

    >>> "lab_kae" in estimator_names() and "lab_grpo" in estimator_names()
    True
    """
    return [PREFIX + n for n in estimators.available()]


def policy_loss_names() -> list[str]:
    """verl names of the lab's policy losses: ``lab_<rule>`` (ratio) and ``lab_<rule>_<measure>``.

    >>> [n for n in policy_loss_names() if n.startswith("lab_ppo")]
    ['lab_ppo', 'lab_ppo_kl1', 'lab_ppo_kl2', 'lab_ppo_kl3']
    """
    out = []
    for rule in losses.available_rules():
        uses = losses.RULES.get(rule).uses_bounds
        out.append(PREFIX + rule)
        if uses:
            out += [f"{PREFIX}{rule}_{m}" for m in losses.available_measures() if m != "ratio"]
    return out


_REGISTERED: dict[str, Callable] = {}


def register(core_algos=None) -> list[str]:
    """Add every lab estimator and clip rule to verl's registries; returns the names added.

    Idempotent (a second call adds nothing). ``core_algos`` defaults to
    ``verl.trainer.ppo.core_algos`` (imported here, lazily).
    """
    ca = core_algos if core_algos is not None else import_core_algos()
    added = []
    for name in estimators.available():
        key = PREFIX + name
        if key not in ca.ADV_ESTIMATOR_REGISTRY:
            fn = _REGISTERED.setdefault(("adv", key), advantage_fn(name))
            ca.register_adv_est(key)(fn)
            added.append(key)
    for rule in losses.available_rules():
        measures = ["ratio"] + ([m for m in losses.available_measures() if m != "ratio"] if losses.RULES.get(rule).uses_bounds else [])
        for m in measures:
            key = PREFIX + rule + ("" if m == "ratio" else f"_{m}")
            if key not in ca.POLICY_LOSS_REGISTRY:
                fn = _REGISTERED.setdefault(("loss", key), policy_loss_fn(rule, m))
                ca.register_policy_loss(key)(fn)
                added.append(key)
    return added


# --- trainer hooks: stable ids, the step, checkpoints ----------------------------------------------
def _uses_lab(trainer) -> bool:
    try:
        return str(trainer.config.algorithm.adv_estimator).startswith(PREFIX)
    except AttributeError:
        return False


def _checkpoint_folder(trainer) -> Path:
    return Path(trainer.config.trainer.default_local_dir) / f"global_step_{trainer.global_steps}"


def install_trainer_hooks(trainer_cls=None, context: VerlContext | None = None) -> type:
    """Wrap four methods of verl's v1 ``PPOTrainer`` (or ``trainer_cls``) so the lab's stateful
    estimators work inside verl. Idempotent; each wrapper passes straight through unless
    ``algorithm.adv_estimator`` starts with ``lab_``:

    * ``_fetch_one_gen_batch``: record ``uid -> stable_prompt_ids(batch)`` for the fetched prompts;
    * ``_compute_advantage``: set the step to ``global_steps - 1``, then run verl's; add the
      estimator's info to the step metrics as ``lab/<key>``; forget that step's uids;
    * ``_save_checkpoint``: also write :data:`STATE_FILE` into ``global_step_N``;
    * ``_load_checkpoint``: after verl resumes, load :data:`STATE_FILE` from that folder.
    """
    if trainer_cls is None:
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer as trainer_cls  # noqa: N813
    if getattr(trainer_cls, "_lab_hooks_installed", False):
        return trainer_cls
    needed = ("_fetch_one_gen_batch", "_compute_advantage", "_save_checkpoint", "_load_checkpoint")
    missing = [m for m in needed if not hasattr(trainer_cls, m)]
    if missing:
        raise RuntimeError(f"{trainer_cls.__name__} has no {missing}: this verl version is not supported by lab's hooks (tested with 0.9.1)")

    def ctx():
        return CONTEXT if context is None else context

    fetch, adv, save, load = (getattr(trainer_cls, m) for m in needed)

    def _fetch_one_gen_batch(self, *args, **kwargs):
        batch = fetch(self, *args, **kwargs)
        if _uses_lab(self):
            ctx().record_prompts(_as_list(batch["uid"]), stable_prompt_ids(batch))
        return batch

    def _compute_advantage(self, batch, metrics, *args, **kwargs):
        if not _uses_lab(self):
            return adv(self, batch, metrics, *args, **kwargs)
        c = ctx()
        c.set_step(max(int(self.global_steps) - 1, 0))
        out = adv(self, batch, metrics, *args, **kwargs)
        if isinstance(metrics, dict):
            metrics.update({f"lab/{k}": v for k, v in c.last_info.items()})
        keys = getattr(batch, "keys", None)
        if isinstance(keys, (list, tuple)):
            c.forget(k.split("_", 1)[0] for k in keys if isinstance(k, str))
        return out

    def _save_checkpoint(self, *args, **kwargs):
        out = save(self, *args, **kwargs)
        if _uses_lab(self):
            ctx().save(_checkpoint_folder(self))
        return out

    def _load_checkpoint(self, *args, **kwargs):
        out = load(self, *args, **kwargs)
        if _uses_lab(self) and int(getattr(self, "global_steps", 0) or 0) > 0:
            ctx().load(_checkpoint_folder(self))
        return out

    for fn, name in zip((_fetch_one_gen_batch, _compute_advantage, _save_checkpoint, _load_checkpoint), needed):
        fn.__wrapped__ = getattr(trainer_cls, name)
        setattr(trainer_cls, name, fn)
    trainer_cls._lab_hooks_installed = True
    return trainer_cls


if __name__ == "__main__":  # python -m lab.integrations.verl --check
    import argparse
    import sys

    from lab.integrations import verl_check

    ap = argparse.ArgumentParser(prog="python -m lab.integrations.verl", description="the lab's verl plug-in")
    ap.add_argument("--check", action="store_true", help="say whether this environment can run verl's training loop")
    if not ap.parse_args().check:
        ap.print_help()
        sys.exit(0)
    sys.exit(verl_check.main())
