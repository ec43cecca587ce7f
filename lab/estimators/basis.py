"""BASIS: batchwise single-rollout information sharing (arXiv 2605.27293).

With one rollout per prompt there is no group to average. BASIS gives each prompt a prior
value μ(x) (offline: from reference-model samples; optionally from the prompt's own past
rollouts) and lets the batch estimate how far the current policy has moved from those
priors. Each rollout's baseline is its prior plus that shared drift, estimated from the
*other* prompts' rewards with best-linear-unbiased (BLUE) weights.

Certain (from a digest of the paper): offline prior from the closed form of the
KL-regularised optimal value; own reward excluded; BLUE weights from estimated values and
variances; a temperature β chosen each step from a grid by squared error against current
rewards; prompts with value near 0 or 1 leave the active set. **Uncertain**: what those
prompts fall back to, and what "online calibration" updates. **Reconstruction** (each
uncertain choice is a parameter):

1. prior μ_β(x) = β · log((1/m) Σ_k exp(r_{x,k}/β)) over the m stored samples of x;
2. active set S = {j : ε < μ_j < 1 − ε};
3. ``drift="additive"``: V(x_j) = μ_j + κ, r_j − μ_j estimates κ with variance μ_j(1 − μ_j),
   weights w_j ∝ 1/(μ_j(1 − μ_j)), b_i = μ_i + Σ_{j∈S, j≠i} w_j (r_j − μ_j) / Σ_{j∈S, j≠i} w_j,
   clipped to [0, 1]; ``drift="multiplicative"``: V = κ·μ, r_j/μ_j estimates κ with
   variance (1 − μ_j)/μ_j, w_j ∝ μ_j/(1 − μ_j), b_i = μ_i · Σ w_j r_j/μ_j / Σ w_j;
4. β = argmin over the grid of Σ_j (r_j − b_j(β))² over the batch, with the baseline each
   rollout would get under β: leave-one-out b_j for j ∈ S_β, the fallback outside S_β (a sum
   over S_β alone would favour the β with the smallest active set);
5. A_i = r_i − b_i for i ∈ S; outside S the baseline is the prompt's prior μ_i
   (``fallback="prior"``, default) or 0 (``fallback="zero"``, A_i = r_i); ``norm_by_std``
   divides by the batch std (unknown in the paper, off by default).

Why these defaults (the best reading of the paper, not a certainty):

* ``fallback="prior"``. A prompt leaves S because its prior says it is almost always solved
  (μ ≥ 1 − ε) or almost never (μ ≤ ε); its prior is then the natural value estimate. The
  zero-baseline reading comes from a secondary summary, not from the paper, and it
  contradicts the paper's own headline: on the lab's exact-value bandit it makes BASIS's value
  error *higher* than REINFORCE++'s at G = 1 (an easy prompt gets baseline 0 against V ≈ 1),
  where the paper reports 69% *lower*; the prior fallback gives the paper's direction.
* ``online_prior="missing"``. The paper's prior is *offline*: reference-model samples, drawn
  once before training (``set_reference``); the "online calibration" of its summary is read
  here as the per-step β and the shared drift κ, which adapt the fixed prior to the moving
  policy. So a prompt with reference samples keeps exactly those (``"never"`` would do the
  same). A prompt with none (a trainer that has no reference stage yet) would otherwise sit
  at ``default_prior`` forever, which silently turns BASIS into a batch mean; for those
  prompts alone the prior is a running one, from their own observed rollouts (the methods
  notes' suggestion for a testbed without reference samples). ``"always"`` adds every
  observed rollout to every prompt's samples (the lab's earlier default, ``True``);
  ``"never"`` (``False``) only ever uses reference samples.

One more choice is the lab's own: ``beta_selection="crossfit"`` (default) splits the
batch into two folds by a hash of the prompt id and picks each fold's β on the *other*
fold. Picking one β on the whole batch (``"batch"``, the literal reading) lets a rollout's
own reward influence its own baseline through β; cross-fitting keeps b_i exactly
independent of r_i, so the policy gradient stays unbiased.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from lab.estimators.base import Advantages, Estimator, RewardBatch, finite_or_raise, group_by, positions_in_group, register

DEFAULT_BETAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 1000.0)


def soft_value(samples: torch.Tensor, valid: torch.Tensor, beta: float) -> torch.Tensor:
    """μ_β = β · log mean exp(r/β) per row over the valid samples (KL-regularised optimal value).

    Shapes: samples (P, m), valid (P, m) bool -> (P,); rows with no valid sample give NaN.
    It lies between the mean (β → ∞) and the max (β → 0) of the samples.

    >>> s = torch.tensor([[0.0, 1.0]], dtype=torch.float64); v = torch.ones(1, 2, dtype=torch.bool)
    >>> round(float(soft_value(s, v, 1000.0)), 3), round(float(soft_value(s, v, 0.01)), 3)
    (0.5, 0.993)
    """
    x = torch.where(valid, samples / beta, torch.full_like(samples, -math.inf))
    n = valid.sum(1).to(samples.dtype)
    return beta * (torch.logsumexp(x, dim=1) - torch.log(n))


def soft_values(samples: torch.Tensor, valid: torch.Tensor, betas: Sequence[float]) -> torch.Tensor:
    """:func:`soft_value` for every β of a grid at once: (B, P) for B = len(betas).

    Shapes: samples (P, m), valid (P, m) bool -> (B, P); the same numbers as B calls of
    :func:`soft_value` (one batched pass instead of a loop; a test pins the equality).

    >>> s = torch.tensor([[0.0, 1.0]], dtype=torch.float64); v = torch.ones(1, 2, dtype=torch.bool)
    >>> [round(x, 3) for x in soft_values(s, v, (1000.0, 0.01))[:, 0].tolist()]
    [0.5, 0.993]
    """
    b = torch.tensor(betas, dtype=samples.dtype)[:, None, None]  # (B, 1, 1)
    x = torch.where(valid[None], samples[None] / b, torch.full_like(samples, -math.inf)[None])  # (B, P, m)
    n = valid.sum(1).to(samples.dtype)  # (P,)
    return b[:, :, 0] * (torch.logsumexp(x, dim=2) - torch.log(n)[None])  # (B, P)


def _fold(ids: torch.Tensor) -> torch.Tensor:
    """Deterministic 0/1 fold of each prompt id (a multiplicative hash, so id parity doesn't decide)."""
    return ((ids * 0x9E3779B1 + 0x7F4A7C15) >> 16) & 1


@register("basis")
class BASIS(Estimator):
    """Batch-shared baseline for single-rollout training; see the module docstring for the method.

    Parameters:
        betas: the grid of prior temperatures β searched every step.
        eps: active-set margin ε: prompts with μ ≤ ε or μ ≥ 1 − ε leave the active set and
            get the ``fallback`` baseline.
        drift: ``additive`` (V = μ + κ) or ``multiplicative`` (V = κ·μ).
        beta_selection: ``crossfit`` (default; b_i never depends on r_i) or ``batch``.
        online_prior: which observed rollouts join their prompt's samples: ``"missing"``
            (default: only for prompts without reference samples, a running prior where the
            offline one is missing), ``"never"`` (offline prior only; also ``False``) or
            ``"always"`` (every rollout, tracking the moving policy; also ``True``).
        default_prior: μ for a prompt with no samples at all.
        max_samples: samples kept per prompt (a ring buffer: the newest replace the oldest).
        clip_baseline: clip baselines to [0, 1] (rewards are in [0, 1]).
        norm_by_std: divide advantages by the batch std of rewards (+1e-6); a batch whose
            rewards are all equal is not rescaled (std taken as 1).
        fallback: baseline of prompts outside the active set: ``prior`` (default: their μ,
            near 0 or 1 there, so A = r − μ) or ``zero`` (A = r, one summary's reading).

    ``set_reference(prompt_ids, rewards)`` loads the offline stage: reference-model samples
    (``wants_reference`` is True: a trainer should call it once before the first step with
    a few samples of each training prompt from the reference policy).

    Shapes: batch.rewards (N,), batch.prompt_ids (N,) -> advantages (N,), baselines (N,).

    Worked example (additive, β irrelevant because each prompt has one sample, so μ is that
    sample): priors μ = 0.5, 0.2, 0.8 for prompts 1, 2, 3 and rewards 1, 0, 1. Weights
    1/(μ(1−μ)) = 4, 6.25, 6.25; residuals r − μ = 0.5, −0.2, 0.2. Prompt 1's baseline is
    0.5 + (6.25·(−0.2) + 6.25·0.2)/12.5 = 0.5; prompt 2: 0.2 + (4·0.5 + 6.25·0.2)/10.25 ≈ 0.517;
    prompt 3: 0.8 + (4·0.5 − 6.25·0.2)/10.25 ≈ 0.873.

    >>> est = BASIS()
    >>> est.set_reference(torch.tensor([1, 2, 3]), torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64))
    >>> out = est(RewardBatch(torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([1, 2, 3])))
    >>> [round(b, 3) for b in out.baselines.tolist()]
    [0.5, 0.517, 0.873]
    """

    stateful = True
    wants_reference = True
    ONLINE_PRIOR = ("missing", "never", "always")

    def __init__(
        self,
        *,
        betas: Sequence[float] = DEFAULT_BETAS,
        eps: float = 0.03,
        drift: str = "additive",
        beta_selection: str = "crossfit",
        online_prior: str | bool = "missing",
        default_prior: float = 0.5,
        max_samples: int = 64,
        clip_baseline: bool = True,
        norm_by_std: bool = False,
        fallback: str = "prior",
    ):
        betas = tuple(float(b) for b in betas)
        if not betas or not all(math.isfinite(b) and b > 0 for b in betas):
            raise ValueError(f"betas: need a non-empty grid of positive temperatures, got {betas}")
        if not (0 <= eps < 0.5):
            raise ValueError(f"eps: the active-set margin must be in [0, 0.5), got {eps}")
        if drift not in ("additive", "multiplicative"):
            raise ValueError(f"drift: choose 'additive' or 'multiplicative', got {drift!r}")
        if beta_selection not in ("crossfit", "batch"):
            raise ValueError(f"beta_selection: choose 'crossfit' or 'batch', got {beta_selection!r}")
        if not (0.0 <= default_prior <= 1.0):
            raise ValueError(f"default_prior: must be in [0, 1], got {default_prior}")
        if fallback not in ("zero", "prior"):
            raise ValueError(f"fallback: choose 'prior' or 'zero', got {fallback!r}")
        if isinstance(online_prior, bool):  # the earlier boolean form (old configs)
            online_prior = "always" if online_prior else "never"
        if online_prior not in self.ONLINE_PRIOR:
            raise ValueError(f"online_prior: choose one of {', '.join(map(repr, self.ONLINE_PRIOR))} (or True/False), got {online_prior!r}")
        self.fallback = fallback
        if int(max_samples) < 1:
            raise ValueError(f"max_samples: must be >= 1, got {max_samples}")
        self.betas, self.eps, self.drift, self.beta_selection = betas, float(eps), drift, beta_selection
        self.online_prior, self.default_prior, self.max_samples = online_prior, float(default_prior), int(max_samples)
        self.clip_baseline, self.norm_by_std = bool(clip_baseline), bool(norm_by_std)
        self.reset()

    # --- memory: per-prompt sample bank -------------------------------------------------------
    def reset(self) -> None:
        self._ids = torch.zeros(0, dtype=torch.long)  # (P,) sorted prompt ids
        self._seen = torch.zeros(0, dtype=torch.long)  # (P,) samples ever added (ring pointer)
        self._ref = torch.zeros(0, dtype=torch.bool)  # (P,) whether the prompt has reference samples
        # the samples themselves: rows in the order prompts arrived, grown by doubling, so a new
        # prompt costs O(1) amortised instead of a copy of the whole bank
        self._store = torch.full((0, self.max_samples), math.nan, dtype=torch.float64)  # (capacity, m), NaN = empty
        self._row = torch.zeros(0, dtype=torch.long)  # (P,) row of _store of each sorted prompt

    @property
    def _bank(self) -> torch.Tensor:
        """(P, m) samples of each prompt in ``_ids`` order (NaN = empty)."""
        return self._store[self._row]

    def state_dict(self) -> dict[str, Any]:
        return {"ids": self._ids.clone(), "bank": self._bank, "seen": self._seen.clone(), "ref": self._ref.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"ids", "bank", "seen"} - set(state)
        if missing:
            raise ValueError(f"basis state is missing keys {sorted(missing)}")
        if state["bank"].shape[1] != self.max_samples:
            raise ValueError(
                f"basis state has {state['bank'].shape[1]} samples per prompt but max_samples={self.max_samples}"
            )
        self._ids, self._seen = state["ids"].clone().long(), state["seen"].clone().long()
        self._store = state["bank"].clone().double()
        self._row = torch.arange(self._ids.shape[0])
        # states saved before "ref" existed come from runs without reference samples
        self._ref = state["ref"].clone().bool() if "ref" in state else torch.zeros_like(self._ids, dtype=torch.bool)

    def _add_samples(self, prompt_ids: torch.Tensor, rewards: torch.Tensor) -> None:
        pid, rew = prompt_ids.cpu().long(), rewards.detach().cpu().double()
        g = group_by(pid)
        if self._ids.numel():  # _ids is sorted: a binary search says which ids are new
            at = torch.searchsorted(self._ids, g.ids).clamp(max=self._ids.numel() - 1)
            new = g.ids[self._ids[at] != g.ids]  # (k,) sorted, not yet in the bank
        else:
            new = g.ids
        if new.numel():
            used = self._ids.shape[0]
            if used + new.numel() > self._store.shape[0]:  # grow by doubling (amortised O(1) per prompt)
                cap = max(2 * self._store.shape[0], used + new.numel(), 64)
                grown = torch.full((cap, self.max_samples), math.nan, dtype=torch.float64)
                grown[: self._store.shape[0]] = self._store
                self._store = grown
            # merge the sorted new ids into the sorted bank ids (no sort): their final places, then the rest
            k = new.numel()
            at_new = torch.searchsorted(self._ids, new) + torch.arange(k)  # (k,)
            is_old = torch.ones(used + k, dtype=torch.bool)
            is_old[at_new] = False
            at_old = is_old.nonzero().squeeze(1)  # (P,)

            def merged(old: torch.Tensor, added: torch.Tensor) -> torch.Tensor:
                out = torch.empty(used + k, dtype=old.dtype)
                out[at_old], out[at_new] = old, added
                return out

            self._ids = merged(self._ids, new)
            self._row = merged(self._row, torch.arange(used, used + k))
            self._seen = merged(self._seen, torch.zeros(k, dtype=torch.long))
            self._ref = merged(self._ref, torch.zeros(k, dtype=torch.bool))
        pos = positions_in_group(g)  # (N,)
        keep = pos >= g.counts[g.index] - self.max_samples  # only the newest m of a large group
        row = torch.searchsorted(self._ids, pid)  # (N,)
        slot = (self._seen[row] + pos) % self.max_samples
        self._store[self._row[row[keep]], slot[keep]] = rew[keep]
        self._seen.index_add_(0, torch.searchsorted(self._ids, g.ids), g.counts)

    def set_reference(self, prompt_ids: torch.Tensor, rewards: torch.Tensor) -> None:
        """Offline stage: add reference-model samples (one reward per entry) to each prompt's prior."""
        rewards = torch.as_tensor(rewards, dtype=torch.float64)
        prompt_ids = torch.as_tensor(prompt_ids)
        RewardBatch(rewards, prompt_ids)  # same validation as any batch
        self._add_samples(prompt_ids, rewards)
        self._ref[torch.searchsorted(self._ids, prompt_ids.cpu().long())] = True

    def observe(self, batch: RewardBatch) -> None:
        if self.online_prior == "always":
            self._add_samples(batch.prompt_ids, batch.rewards)
        elif self.online_prior == "missing":
            pid = batch.prompt_ids.cpu().long()
            if self._ids.numel():
                row = torch.searchsorted(self._ids, pid).clamp(max=self._ids.numel() - 1)
                keep = ~((self._ids[row] == pid) & self._ref[row])  # (N,) prompts without reference samples
            else:
                keep = torch.ones_like(pid, dtype=torch.bool)
            if bool(keep.any()):
                self._add_samples(pid[keep], batch.rewards.detach().cpu()[keep])

    # --- estimate -----------------------------------------------------------------------------
    def priors(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """μ_β for each rollout and each β of the grid: (B, N) float64 (``default_prior`` if unseen)."""
        g = group_by(prompt_ids.cpu().long())  # priors are per prompt: compute once per distinct id
        pid = g.ids
        out = torch.full((len(self.betas), pid.shape[0]), self.default_prior, dtype=torch.float64)
        if self._ids.numel() == 0:
            return out[:, g.index]
        row = torch.searchsorted(self._ids, pid).clamp(max=self._ids.numel() - 1)
        found = self._ids[row] == pid
        samples = self._store[self._row[row]]  # (P, m)
        valid = ~torch.isnan(samples) & found[:, None]
        has = valid.any(1)
        samples = torch.nan_to_num(samples[has], nan=0.0)
        valid = valid[has]
        out[:, has] = soft_values(samples, valid, self.betas)  # (B, P') every β in one pass
        return out[:, g.index]

    def _baselines(self, r: torch.Tensor, mu: torch.Tensor, active: torch.Tensor, pool: torch.Tensor):
        """Leave-one-out BLUE baselines for every β at once.

        r (N,), mu/active (B, N), pool (N,) bool: which rollouts contribute to the sums.
        Returns b (B, N); rows with nothing else to pool fall back to μ. Several pools at once:
        pool (F, 1, N) gives b (F, B, N), the same numbers as F calls.
        """
        mu_c = mu.clamp(1e-12, 1 - 1e-12)
        if self.drift == "additive":
            w = 1.0 / (mu_c * (1 - mu_c))
            e = r[None, :] - mu
        else:
            w = mu_c / (1 - mu_c)
            e = r[None, :] / mu_c
        use = active & (pool[None, :] if pool.dim() == 1 else pool)  # (B, N) or (F, B, N)
        w = torch.where(use, w, torch.zeros_like(w))  # (B, N) or (F, B, N)
        t_all = (w * e).sum(-1, keepdim=True)  # (B, 1) or (F, B, 1)
        w_all = w.sum(-1, keepdim=True)
        t_loo, w_loo = t_all - w * e, w_all - w  # (B, N): own term removed
        has = w_loo > 1e-12 * w_all.clamp(min=1e-300)
        kappa = torch.where(has, t_loo / w_loo.clamp(min=1e-300), torch.zeros_like(t_loo))
        if self.drift == "additive":
            b = torch.where(has, mu + kappa, mu)
        else:
            b = torch.where(has, mu * kappa, mu)
        return b.clamp(0.0, 1.0) if self.clip_baseline else b

    def _select_beta(self, r, mu, active, pool, b: torch.Tensor | None = None) -> int:
        """Index of the β whose baselines best fit the pooled rewards (first on ties).

        The squared error runs over *every* pooled rollout, each with the baseline it would
        get under that β: leave-one-out in the active set, the fallback outside it. Summing
        over the active set alone would reward a β that merely shrinks the set (fewer terms),
        and it did: the smallest β, which pushes confident prompts' μ past 1 − ε, won.
        Losses within 1e-9 (relative) of the minimum count as ties, so rounding that depends
        on the order of the batch cannot change the pick (permutation equivariance).
        ``b``: the baselines ``_baselines(r, mu, active, pool)`` when the caller has them.
        """
        b = self._baselines(r, mu, active, pool) if b is None else b
        use = active & pool[None, :]
        if not bool(use.any()):
            return -1
        fallback = torch.zeros_like(b) if self.fallback == "zero" else mu
        used = torch.where(active, b, fallback)  # (B, N)
        loss = torch.where(pool[None, :], (r[None, :] - used) ** 2, torch.zeros_like(b)).sum(1)  # (B,)
        best = loss.min()
        return int(torch.nonzero(loss <= best + 1e-9 * (1.0 + best))[0, 0])

    def compute(self, batch: RewardBatch) -> Advantages:
        r = batch.rewards.detach().cpu().double()  # (N,)
        mu = self.priors(batch.prompt_ids)  # (B, N)
        active = (mu > self.eps) & (mu < 1 - self.eps)  # (B, N)
        everyone = torch.ones_like(r, dtype=torch.bool)
        default_k = min(range(len(self.betas)), key=lambda k: abs(math.log(self.betas[k])))  # β closest to 1
        if self.beta_selection == "batch":
            b_all = self._baselines(r, mu, active, everyone)  # (B, N)
            k = self._select_beta(r, mu, active, everyone, b_all)
            pick = torch.full_like(r, k if k >= 0 else default_k, dtype=torch.long)
            info_beta = {"beta": self.betas[int(pick[0])]}
        else:
            fold = _fold(batch.prompt_ids.cpu().long())  # (N,)
            pools = torch.stack([everyone, fold != 0, fold != 1])  # (3, N): the batch, then each fold's other fold
            b_all, *b_fold = self._baselines(r, mu, active, pools[:, None, :])  # (B, N) each, in one pass
            pick = torch.empty_like(fold)
            info_beta = {}
            for f in (0, 1):
                k = self._select_beta(r, mu, active, pools[f + 1], b_fold[f])  # chosen on the *other* fold
                k = k if k >= 0 else default_k
                pick[fold == f] = k
                info_beta[f"beta_fold{f}"] = self.betas[k]
        idx = torch.arange(r.shape[0])
        base = b_all[pick, idx]
        act = active[pick, idx]
        fallback = torch.zeros_like(base) if self.fallback == "zero" else mu[pick, idx]
        base = torch.where(act, base, fallback)
        adv = r - base
        if self.norm_by_std and r.numel() > 1:
            std = r.std()  # rewards without spread are not rescaled (r − b need not be 0 there)
            adv = adv / ((std if bool(std > 0) else torch.ones_like(std)) + 1e-6)
        info = {"active_frac": float(act.double().mean()), **info_beta}
        dev, dt = batch.rewards.device, batch.rewards.dtype
        return Advantages(finite_or_raise("basis", adv.to(device=dev, dtype=dt)), base.to(device=dev, dtype=dt), info)
