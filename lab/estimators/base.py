"""Types, validation and the registry shared by every advantage estimator.

An estimator turns one step's rewards into advantages *and the baseline it used*:

    RewardBatch(rewards (N,), prompt_ids (N,), step)  ->  Advantages(advantages (N,), baselines (N,), info)

``prompt_ids`` names the prompt each rollout answers; the members of one prompt
need not be contiguous. Baselines and advantages are kept apart on purpose: the
baseline is the estimator's value estimate V(x) for that rollout's prompt, the
advantage is what the policy gradient multiplies.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from lab.registry import Registry

ESTIMATORS: Registry = Registry("estimator")


@dataclass(frozen=True)
class RewardBatch:
    """One step's rewards, grouped by prompt.

    Shapes:
        rewards:    (N,) float
        prompt_ids: (N,) long, non-negative; rollouts of one prompt share an id
        step:       int, the training step (used by estimators with memory)

    Construction validates (see :func:`validate_batch`); a ``list`` is accepted
    and turned into a tensor (float64 rewards, int64 ids).

    >>> b = RewardBatch([1.0, 0.0], [7, 7], step=3)
    >>> b.rewards.dtype, b.prompt_ids.tolist(), b.step
    (torch.float64, [7, 7], 3)
    """

    rewards: torch.Tensor
    prompt_ids: torch.Tensor
    step: int = 0

    def __post_init__(self):
        rewards = self.rewards
        prompt_ids = self.prompt_ids
        if not isinstance(rewards, torch.Tensor):
            rewards = torch.as_tensor(rewards, dtype=torch.float64)
        if not isinstance(prompt_ids, torch.Tensor):
            try:
                prompt_ids = torch.as_tensor(prompt_ids)
            except (TypeError, ValueError, RuntimeError) as e:
                raise ValueError(f"prompt_ids: could not convert to a tensor ({e})") from None
        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "prompt_ids", prompt_ids)
        validate_batch(rewards, prompt_ids, self.step)

    def __len__(self) -> int:
        return self.rewards.shape[0]


@dataclass(frozen=True)
class Advantages:
    """What an estimator returns.

    Shapes:
        advantages: (N,) same dtype/device as the rewards
        baselines:  (N,) the value estimate used for each rollout
        info:       dict of Python scalars (diagnostics, e.g. ``zero_std_frac``)
    """

    advantages: torch.Tensor
    baselines: torch.Tensor
    info: dict[str, float] = field(default_factory=dict)


def validate_batch(rewards: torch.Tensor, prompt_ids: torch.Tensor, step: int = 0) -> None:
    """Raise ``ValueError`` naming the problem (and the offending index) for bad input.

    Nothing is silently fixed: NaN/inf rewards, mismatched lengths, an empty batch,
    negative or non-integer prompt ids, a non-integer or negative step.

    >>> validate_batch(torch.tensor([1.0, float("nan")]), torch.tensor([0, 0]))
    Traceback (most recent call last):
    ...
    ValueError: rewards: non-finite value nan at index 1; score every rollout with a finite number
    """
    if not isinstance(rewards, torch.Tensor) or not isinstance(prompt_ids, torch.Tensor):
        raise ValueError("rewards and prompt_ids must be torch tensors")
    if rewards.dim() != 1:
        raise ValueError(f"rewards: expected a 1-D tensor (N,), got shape {tuple(rewards.shape)}")
    if prompt_ids.dim() != 1:
        raise ValueError(f"prompt_ids: expected a 1-D tensor (N,), got shape {tuple(prompt_ids.shape)}")
    if rewards.shape[0] != prompt_ids.shape[0]:
        raise ValueError(
            f"rewards and prompt_ids have different lengths ({rewards.shape[0]} vs "
            f"{prompt_ids.shape[0]}); give one prompt id per rollout"
        )
    if rewards.shape[0] == 0:
        raise ValueError("empty batch: rewards and prompt_ids have no elements")
    if not rewards.is_floating_point():
        raise ValueError(f"rewards: expected a floating-point tensor, got {rewards.dtype}")
    bad = ~torch.isfinite(rewards)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"rewards: non-finite value {rewards[i].item()} at index {i}; "
            "score every rollout with a finite number"
        )
    if prompt_ids.is_floating_point():
        frac = prompt_ids != torch.round(prompt_ids)
        if bool(frac.any()):
            i = int(frac.nonzero()[0, 0])
            raise ValueError(
                f"prompt_ids: non-integer value {prompt_ids[i].item()} at index {i}; "
                "prompt ids must be integers (a long tensor)"
            )
        raise ValueError(f"prompt_ids: expected an integer (long) tensor, got {prompt_ids.dtype}")
    if prompt_ids.dtype == torch.bool or prompt_ids.is_complex():
        raise ValueError(f"prompt_ids: expected an integer (long) tensor, got {prompt_ids.dtype}")
    neg = prompt_ids < 0
    if bool(neg.any()):
        i = int(neg.nonzero()[0, 0])
        raise ValueError(
            f"prompt_ids: negative value {prompt_ids[i].item()} at index {i}; prompt ids must be >= 0"
        )
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: expected a non-negative int, got {step!r}")


@dataclass(frozen=True)
class Groups:
    """Dense group indexing of a batch: ``index[i]`` in ``[0, num)`` is rollout i's group.

    Read-only: ``index`` may be the caller's ``prompt_ids`` tensor itself (when the ids are
    already 0..num-1), so never modify it in place.

    ``ids[g]`` is the prompt id of group g (sorted ascending), ``counts[g]`` its size.
    """

    index: torch.Tensor  # (N,) long
    ids: torch.Tensor  # (num,) long
    counts: torch.Tensor  # (num,) long

    @property
    def num(self) -> int:
        return self.ids.shape[0]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Per-group sum of ``values`` (N,) -> (num,)."""
        out = torch.zeros(self.num, dtype=values.dtype, device=values.device)
        return out.index_add_(0, self.index, values)


def group_by(prompt_ids: torch.Tensor) -> Groups:
    """Group rollouts by prompt id (no Python loop; works for interleaved members).

    Shapes: prompt_ids (N,) integer -> Groups with index (N,), ids (num,), counts (num,).
    Dense ids (max id below ``DENSE_ID_FACTOR`` x N, e.g. dataset row numbers) are grouped by
    counting, O(N + max id) with no sort; other ids (hashes) go through ``torch.unique``. The
    two paths give identical results; a test pins that.

    Inside :func:`shared_grouping` (the trainer wraps one step's estimators in it) the last
    result is remembered for the same tensor object, unchanged since (its in-place version
    counter is checked), so the main estimator, the shadows and the step's metrics, which all
    group the same ``prompt_ids``, share one computation. Outside it nothing is remembered.

    >>> g = group_by(torch.tensor([5, 2, 5, 9]))
    >>> g.index.tolist(), g.ids.tolist(), g.counts.tolist()
    ([1, 0, 1, 2], [2, 5, 9], [1, 2, 1])
    """
    hit = _LAST_GROUPS.get(prompt_ids)
    if hit is not None:
        return hit
    out = _group_by(prompt_ids)
    _LAST_GROUPS.put(prompt_ids, out)
    return out


class _LastGroups(threading.local):
    """A one-entry memo of ``group_by`` per thread: (weak reference to the tensor, its version,
    result), used only while :func:`shared_grouping` is active in that thread."""

    def __init__(self):
        self.depth = 0
        self.entry: tuple | None = None

    def get(self, t: torch.Tensor) -> "Groups | None":
        entry = self.entry if self.depth else None
        if entry is not None and entry[0]() is t and t._version == entry[1]:
            return entry[2]
        return None

    def put(self, t: torch.Tensor, groups: "Groups") -> None:
        if not self.depth:
            return
        try:
            self.entry = (weakref.ref(t), t._version, groups)
        except TypeError:  # a tensor subclass without weak references: no memo
            self.entry = None


_LAST_GROUPS = _LastGroups()


@contextmanager
def shared_grouping():
    """Within this block, :func:`group_by` of the same unchanged ids tensor is computed once.

    >>> ids = torch.tensor([3, 1, 3])
    >>> with shared_grouping():
    ...     group_by(ids) is group_by(ids)
    True
    >>> group_by(ids) is group_by(ids)  # outside: computed every time
    False
    """
    _LAST_GROUPS.depth += 1
    try:
        yield
    finally:
        _LAST_GROUPS.depth -= 1
        if not _LAST_GROUPS.depth:
            _LAST_GROUPS.entry = None


def _group_by(prompt_ids: torch.Tensor) -> Groups:
    ids = prompt_ids if prompt_ids.dtype == torch.long else prompt_ids.long()
    n = ids.shape[0]
    if n and int(ids.min()) >= 0:
        top = int(ids.max())
        if top < DENSE_ID_FACTOR * n + 1024:
            return _group_dense(ids, top)
    uniq, index, counts = torch.unique(ids, sorted=True, return_inverse=True, return_counts=True)
    return Groups(index=index, ids=uniq, counts=counts)


DENSE_ID_FACTOR = 4
"""Ids up to this many times the batch size are grouped by counting (memory O(max id))."""


def _group_dense(ids: torch.Tensor, top: int) -> Groups:
    """``group_by`` for ids in [0, top] by ``bincount``: sorted ids and counts without a sort."""
    per_id = torch.bincount(ids, minlength=top + 1)  # (top+1,) rollouts per possible id
    present = per_id > 0
    if bool(present.all()):  # ids are exactly 0..top: the id is the group index
        return Groups(index=ids, ids=torch.arange(top + 1, device=ids.device), counts=per_id)
    slot = torch.cumsum(present, 0) - 1  # (top+1,) group index of each present id
    return Groups(index=slot.take(ids), ids=present.nonzero().squeeze(1), counts=per_id[present])


def zero_std_frac(rewards: torch.Tensor, groups: Groups) -> float:
    """Fraction of groups with >= 2 rollouts whose rewards are all equal (no signal for GRPO).

    >>> zero_std_frac(torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5]), group_by(torch.tensor([0, 0, 1, 1, 2])))
    0.5
    """
    multi = groups.counts >= 2
    if not bool(multi.any()):
        return 0.0
    lo = torch.full((groups.num,), float("inf"), dtype=rewards.dtype, device=rewards.device)
    hi = torch.full((groups.num,), float("-inf"), dtype=rewards.dtype, device=rewards.device)
    lo = lo.scatter_reduce(0, groups.index, rewards, "amin")
    hi = hi.scatter_reduce(0, groups.index, rewards, "amax")
    return float((hi == lo)[multi].float().mean())


def positions_in_group(groups: Groups) -> torch.Tensor:
    """0-based position of each rollout within its group, in batch order.

    One stable sort of the group index (as int32 when it fits: about twice as fast on CPU).

    >>> positions_in_group(group_by(torch.tensor([5, 2, 5, 5, 2]))).tolist()
    [0, 0, 1, 2, 1]
    """
    sorted_index, order = stable_sort_index(groups.index, groups.num)  # (N,), (N,)
    starts = torch.cumsum(groups.counts, 0) - groups.counts  # (num,) first sorted slot of each group
    pos_sorted = torch.arange(order.shape[0], device=order.device) - starts.take(sorted_index.long())
    return torch.empty_like(pos_sorted).scatter_(0, order, pos_sorted)


def stable_sort_index(index: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stable sort of a group index in [0, num): (sorted index, order) with ``index[order]`` sorted.

    The sorted index comes back as int32 when ``num`` fits (half the memory traffic); ``order`` is long.

    >>> [t.tolist() for t in stable_sort_index(torch.tensor([1, 0, 1, 0]), 2)]
    [[0, 0, 1, 1], [1, 3, 0, 2]]
    """
    key = index.int() if num < 2**31 else index
    sorted_key, order = torch.sort(key, stable=True)
    return sorted_key, order


def whiten(values: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / sqrt(var + eps) over the whole tensor, unbiased var (verl's ``masked_whiten``).

    A single element gives 0 (its variance is undefined; we take 0 rather than NaN). The mean
    is taken relative to the minimum, so equal values give exactly 0 (not ~1e-12).

    >>> whiten(torch.tensor([0.0, 2.0])).tolist()
    [-0.7071067690849304, 0.7071067690849304]
    >>> whiten(torch.full((5,), 0.9)).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0]
    """
    n = values.shape[0]
    if n < 2:
        return torch.zeros_like(values)
    low = values.min()
    centred = values - (low + (values - low).mean())
    var = (centred * centred).sum() / (n - 1)
    return centred * torch.rsqrt(var + eps)


class StepHistory:
    """Rewards remembered per (prompt, step), for estimators with memory across steps (KAE, BLEND).

    Entries, kept on the CPU: ``pid`` (H,) long, ``step`` (H,) long, ``sum`` (H,) float64 (the
    rewards of that prompt at that step) and ``cnt`` (H,) float64 (how many); ``last_step`` is
    the newest step added (-1 when empty). Owners decide what to forget with :meth:`keep`.

    >>> h = StepHistory()
    >>> h.add(RewardBatch(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([4, 4, 7]), step=2))
    >>> h.pid.tolist(), h.sum.tolist(), h.cnt.tolist(), h.last_step
    ([4, 7], [1.0, 1.0], [2.0, 1.0], 2)
    """

    KEYS = ("pid", "step", "sum", "cnt", "last_step")

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.pid = torch.zeros(0, dtype=torch.long)
        self.step = torch.zeros(0, dtype=torch.long)
        self.sum = torch.zeros(0, dtype=torch.float64)
        self.cnt = torch.zeros(0, dtype=torch.float64)
        self.last_step = -1

    def __len__(self) -> int:
        return int(self.pid.shape[0])

    def add(self, batch: RewardBatch) -> None:
        """One entry per prompt of ``batch``, at ``batch.step``."""
        g = group_by(batch.prompt_ids.cpu())
        self.pid = torch.cat([self.pid, g.ids])
        self.step = torch.cat([self.step, torch.full((g.num,), batch.step, dtype=torch.long)])
        self.sum = torch.cat([self.sum, g.sum(batch.rewards.detach().cpu().double())])
        self.cnt = torch.cat([self.cnt, g.counts.double()])
        self.last_step = max(self.last_step, batch.step)

    def keep(self, mask: torch.Tensor) -> None:
        """Forget the entries where ``mask`` (H,) is False."""
        self.pid, self.step, self.sum, self.cnt = self.pid[mask], self.step[mask], self.sum[mask], self.cnt[mask]

    def slots(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each entry, its group in the sorted ``ids`` (num,) and whether that prompt is there: (H,), (H,) bool."""
        pid = self.pid.to(ids.device)
        slot = torch.searchsorted(ids, pid).clamp(max=ids.shape[0] - 1)
        return slot, ids[slot] == pid

    def state_dict(self) -> dict[str, Any]:
        return {"pid": self.pid.clone(), "step": self.step.clone(), "sum": self.sum.clone(),
                "cnt": self.cnt.clone(), "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any], owner: str) -> None:
        missing = set(self.KEYS) - set(state)
        if missing:
            raise ValueError(f"{owner} state is missing keys {sorted(missing)}")
        self.pid, self.step = state["pid"].clone().long().cpu(), state["step"].clone().long().cpu()
        self.sum, self.cnt = state["sum"].clone().double().cpu(), state["cnt"].clone().double().cpu()
        self.last_step = int(state["last_step"])


class Estimator:
    """Base class: ``estimator(batch) -> Advantages``.

    Stateless estimators need only :meth:`compute`. Stateful ones (memory across
    steps) override :meth:`state_dict`/:meth:`load_state_dict` and update their
    memory in :meth:`observe`; ``estimator(batch, update=False)`` computes
    without remembering (used for shadow estimates and value probes).
    """

    name: str = "?"
    stateful: bool = False
    wants_reference: bool = False
    """True when the estimator uses an offline stage: ``set_reference(prompt_ids, rewards)``,
    called once before the first step with rewards of reference-policy samples of the prompts
    it will see (BASIS's prior, BLEND's step-0 history). Without it they still work (BASIS
    then keeps a running prior per prompt); the trainer checks this flag, never a name."""

    def __call__(self, batch: RewardBatch, *, update: bool = True) -> Advantages:
        if not isinstance(batch, RewardBatch):
            raise ValueError(f"expected a RewardBatch, got {type(batch).__name__}")
        out = self.compute(batch)
        if update:
            self.observe(batch)
        return out

    def compute(self, batch: RewardBatch) -> Advantages:
        raise NotImplementedError

    def observe(self, batch: RewardBatch) -> None:
        """Add ``batch`` to the estimator's memory (no-op when stateless)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"estimator {self.name!r} is stateless but got state keys {sorted(state)}")

    def reset(self) -> None:
        """Forget all memory."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FunctionEstimator(Estimator):
    """Wraps a pure function ``fn(rewards, prompt_ids, **params) -> Advantages``."""

    def __init__(self, name: str, fn: Callable[..., Advantages], params: dict[str, Any]):
        self.name = name
        self.fn = fn
        self.params = dict(params)

    def compute(self, batch: RewardBatch) -> Advantages:
        return self.fn(batch.rewards, batch.prompt_ids, **self.params)


def register(name: str):
    """Register an estimator under ``name``.

    Decorates either a pure function ``fn(rewards, prompt_ids, *, ...) -> Advantages``
    (stateless) or an :class:`Estimator` subclass whose ``__init__`` takes keyword
    parameters (stateful). Duplicate names are rejected.
    """

    def deco(obj):
        ESTIMATORS.register(name, obj)
        if isinstance(obj, type) and issubclass(obj, Estimator):
            obj.name = name
        return obj

    return deco


def _check_params(name: str, target: Callable, params: dict[str, Any], skip: int) -> None:
    sig = inspect.signature(target)
    allowed = [p for p in list(sig.parameters.values())[skip:] if p.kind != p.VAR_KEYWORD]
    names = [p.name for p in allowed]
    for k in params:
        if k not in names:
            raise ValueError(
                f"estimator {name!r} has no parameter {k!r}; valid parameters: {', '.join(names) or '(none)'}"
            )


def get(name: str, **params: Any) -> Estimator:
    """A ready-to-call estimator by registry name, with its parameters bound.

    >>> est = get("grpo")
    >>> est(RewardBatch(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]))).advantages
    tensor([ 0.7071, -0.7071])
    >>> get("grpo", epsilon=0.1)
    Traceback (most recent call last):
    ...
    ValueError: estimator 'grpo' has no parameter 'epsilon'; valid parameters: eps, norm_by_std
    """
    obj = ESTIMATORS.get(name)
    if isinstance(obj, type) and issubclass(obj, Estimator):
        _check_params(name, obj.__init__, params, skip=1)
        return obj(**params)
    _check_params(name, obj, params, skip=2)
    return FunctionEstimator(name, obj, params)


def available() -> list[str]:
    """Names of all registered estimators."""
    return ESTIMATORS.available()


def finite_or_raise(name: str, t: torch.Tensor) -> torch.Tensor:
    """Guard used at the end of each estimator: an estimator never returns NaN silently.

    A finite sum proves every element finite (NaN or inf would propagate), so the element-wise
    check runs only when the sum is not finite (a bad value, or an overflowing sum).
    """
    if bool(torch.isfinite(t.sum())):
        return t
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise FloatingPointError(f"{name}: non-finite output at index {i}; please report this with the batch")
    return t
