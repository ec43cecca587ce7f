"""KAE: Kernelized Advantage Estimation — kernel smoothing over the training-step index (arXiv 2604.28005).

Prompts are reused for several consecutive steps (J = 8–10 in the paper), so a prompt's
rewards from recent steps are extra, slightly stale samples of its value. For rollout g of
prompt x at step t:

    b_g(x, t) = (1/M) [ Σ_{(s, z) ∈ history(x), s < t} K((t − s)/w_t) · z  +  Σ_{k ≠ g} K(0) · r_{x,t,k} ]
    M         = Σ_{(s, z)} K((t − s)/w_t) + (G − 1) · K(0)          (Nadaraya–Watson reading; reconstruction)
    A_g       = r_g − b_g

with window w_t = h·t (the paper's growing bandwidth; floored at ``min_width``) or a fixed
``width`` in steps. The rollout's own reward is left out (k ≠ g), so the baseline never
sees it. The trade-off to teach: a wider window averages more samples (less variance) but
mixes in rewards from older policies (more bias).

Reconstructed parts (the paper's exact equations were not available), each a parameter:
M as above; optional std normalisation (``std_norm``); the baseline when there is nothing
to average (``empty_baseline``, default 0: the advantage is then the reward, as RLOO's
singleton convention); the floor ``min_width`` that keeps step 0 and 1 meaningful.

**The window's default (the paper's h is unknown).** h = 0.2 and ``min_width`` = 3 steps:
window max(0.2 t, 3). The floor is 3, not 2, so that a caller two steps apart still sees its
previous call: the launcher (``lab.widgets.LAUNCHER_DEFAULTS``) probes every 2 steps, and a
probe instance of KAE sees only the probe steps; with a floor of 2 the earlier probe weighed
K(2/2) = 0 until 0.2 t > 2 (step 10), so KAE's probe value error equalled RLOO's exactly.
With 3 it weighs K(2/3) = 1/3 from the second probe on; with ``prompt_reuse`` J ≥ 2 the last
two visits of a prompt weigh 2/3 and 1/3 (before: 1/2 and 0). Sparser callers (probes every
P ≥ 3 steps, ``TrainConfig``'s default P = 10) are still blind until 0.2 t > P: give
``--estimator-params '{"min_width": ...}'`` above P, or probe more often.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lab.estimators.base import Advantages, Estimator, RewardBatch, StepHistory, finite_or_raise, group_by, register

KERNELS = ("triangular", "epanechnikov", "gaussian", "exponential")


def kernel_weights(u: torch.Tensor, kernel: str, *, rho: float = 0.5, cutoff: float = 3.0) -> torch.Tensor:
    """K(u) elementwise. Compact kernels vanish for |u| ≥ 1; infinite ones are cut at |u| > cutoff.

    triangular max(1 − |u|, 0); epanechnikov ¾ max(1 − u², 0); gaussian exp(−u²/2);
    exponential ρ^|u| (the paper's sensitivity study).

    >>> kernel_weights(torch.tensor([0.0, 0.5, 1.0, 2.0]), "triangular").tolist()
    [1.0, 0.5, 0.0, 0.0]
    """
    a = u.abs()
    if kernel == "triangular":
        return torch.clamp(1.0 - a, min=0.0)
    if kernel == "epanechnikov":
        return 0.75 * torch.clamp(1.0 - a * a, min=0.0)
    if kernel == "gaussian":
        return torch.where(a <= cutoff, torch.exp(-0.5 * a * a), torch.zeros_like(a))
    if kernel == "exponential":
        return torch.where(a <= cutoff, rho ** a, torch.zeros_like(a))
    raise ValueError(f"kernel: unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


@register("kae")
class KAE(Estimator):
    """Kernel smoothing of a prompt's rewards over training steps, own reward left out.

    Parameters:
        kernel: ``triangular`` (default, the paper's main choice), ``epanechnikov``, ``gaussian``,
            ``exponential`` (K(u) = rho^|u|).
        h: relative bandwidth; the window at step t is h·t steps (grows with t, as in the paper).
        width: a fixed window in steps instead of h·t (None: use h).
        min_width: floor on the growing window, in steps, so early steps still look back
            (3: a caller two steps apart, the launcher's probes, still sees its last call).
        rho: base of the exponential kernel.
        cutoff: |u| beyond which gaussian/exponential weights count as 0 (keeps memory bounded).
        empty_baseline: the baseline when there is nothing to average (G = 1 and no history).
        std_norm: ``none`` (paper's form), ``group`` or ``batch``: divide advantages by the
            unbiased std of rewards in the group / batch (+1e-6); a reconstruction option.
            Rewards without spread (a singleton, or all equal) are not rescaled (std taken
            as 1, GRPO's singleton convention): unlike GRPO's, KAE's r − b need not be 0
            there, and dividing it by 1e-6 would blow it up a million times.

    Memory: one entry (prompt, step, reward sum, count) per prompt and step; after each step,
    entries whose kernel weight is 0 now are dropped — with h < 1 or a fixed width they stay
    0 at every later step, so memory is bounded by the window. ``state_dict()`` round-trips it.

    Shapes: batch.rewards (N,), batch.prompt_ids (N,) -> advantages (N,), baselines (N,).

    Worked example: prompt 7 got rewards 1 and 0 at step 1 (sum 1, count 2); at step 2 with
    a fixed width of 2 steps, the triangular weight of that history is K(1/2) = 0.5. The two
    current rollouts (1, 0) each see the other with K(0) = 1:
    b_0 = (0.5·1 + 1·0)/(0.5·2 + 1) = 0.25 and b_1 = (0.5·1 + 1·1)/2 = 0.75.

    >>> kae = KAE(width=2.0)
    >>> _ = kae(RewardBatch(torch.tensor([1.0, 0.0]), torch.tensor([7, 7]), step=1))
    >>> out = kae(RewardBatch(torch.tensor([1.0, 0.0]), torch.tensor([7, 7]), step=2))
    >>> out.baselines.tolist(), out.advantages.tolist()
    ([0.25, 0.75], [0.75, -0.75])
    """

    stateful = True

    def __init__(
        self,
        *,
        kernel: str = "triangular",
        h: float = 0.2,
        width: float | None = None,
        min_width: float = 3.0,
        rho: float = 0.5,
        cutoff: float = 3.0,
        empty_baseline: float = 0.0,
        std_norm: str = "none",
    ):
        if kernel not in KERNELS:
            raise ValueError(f"kernel: unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        if not (math.isfinite(h) and h > 0):
            raise ValueError(f"h: the relative bandwidth must be > 0, got {h}")
        if width is not None and not (math.isfinite(width) and width > 0):
            raise ValueError(f"width: a fixed window must be > 0 steps, got {width}")
        if not (math.isfinite(min_width) and min_width > 0):
            raise ValueError(f"min_width: must be > 0 steps, got {min_width}")
        if not (0 < rho < 1):
            raise ValueError(f"rho: the exponential kernel's base must be in (0, 1), got {rho}")
        if not cutoff > 0:
            raise ValueError(f"cutoff: must be > 0, got {cutoff}")
        if std_norm not in ("none", "group", "batch"):
            raise ValueError(f"std_norm: choose 'none', 'group' or 'batch', got {std_norm!r}")
        self.kernel, self.h, self.width, self.min_width = kernel, float(h), width, float(min_width)
        self.rho, self.cutoff, self.empty_baseline, self.std_norm = float(rho), float(cutoff), float(empty_baseline), std_norm
        self.reset()

    # --- memory -------------------------------------------------------------------------
    def reset(self) -> None:
        self._hist = StepHistory()

    def state_dict(self) -> dict[str, Any]:
        return self._hist.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._hist.load_state_dict(state, "kae")

    @property
    def history_size(self) -> int:
        """Number of (prompt, step) entries currently remembered."""
        return len(self._hist)

    def window(self, step: int) -> float:
        """Window in steps at ``step``: the fixed ``width``, else max(h·step, min_width)."""
        if self.width is not None:
            return float(self.width)
        return max(self.h * step, self.min_width)

    def _weights(self, step: int, device) -> torch.Tensor:
        steps = self._hist.step.to(device)
        u = (step - steps).double() / self.window(step)  # (H,)
        w = kernel_weights(u, self.kernel, rho=self.rho, cutoff=self.cutoff)
        return torch.where(steps < step, w, torch.zeros_like(w))

    def observe(self, batch: RewardBatch) -> None:
        self._hist.add(batch)
        # prune: an entry with zero weight now has zero weight at every later step when the
        # window cannot outgrow the distance (h < 1 or fixed width); otherwise keep everything.
        # "Now" is the last observed step: compute() still accepts that step (another batch of
        # the same step), so an entry must be kept while it weighs anything there.
        if self.width is not None or self.h < 1:
            probe = self._hist.last_step
            u = (probe - self._hist.step).double() / self.window(probe)
            self._hist.keep(kernel_weights(u, self.kernel, rho=self.rho, cutoff=self.cutoff) > 0)

    # --- estimate -----------------------------------------------------------------------
    def compute(self, batch: RewardBatch) -> Advantages:
        if batch.step < self._hist.last_step:
            raise ValueError(
                f"step: kae got step {batch.step} after step {self._hist.last_step}; steps must not go "
                "backwards (reset() or load an earlier state_dict to rewind)"
            )
        rew = batch.rewards.double()  # (N,)
        dev = rew.device
        g = group_by(batch.prompt_ids)
        k0 = float(kernel_weights(torch.zeros(1, dtype=torch.float64), self.kernel, rho=self.rho, cutoff=self.cutoff))
        hist_s = torch.zeros(g.num, dtype=torch.float64, device=dev)  # (num,) Σ K·z
        hist_w = torch.zeros(g.num, dtype=torch.float64, device=dev)  # (num,) Σ K·count
        if self.history_size:
            slot, hit = self._hist.slots(g.ids)  # (H,), (H,)
            w = self._weights(batch.step, dev) * hit  # (H,)
            hist_s.index_add_(0, slot, w * self._hist.sum.to(dev))
            hist_w.index_add_(0, slot, w * self._hist.cnt.to(dev))
        others = g.sum(rew)[g.index] - rew  # (N,)
        n_others = (g.counts[g.index] - 1).double()  # (N,)
        num = hist_s[g.index] + k0 * others
        den = hist_w[g.index] + k0 * n_others
        base = torch.where(den > 0, num / den.clamp(min=1e-300), torch.full_like(rew, self.empty_baseline))
        adv = rew - base
        if self.std_norm == "group":
            mean = g.sum(rew) / g.counts.double()
            var = g.sum((rew - mean[g.index]) ** 2) / (g.counts.double() - 1).clamp(min=1)
            std = torch.sqrt(var)  # (num,); 0 for singletons and all-equal groups
            adv = adv / (torch.where(std > 0, std, torch.ones_like(std))[g.index] + 1e-6)
        elif self.std_norm == "batch" and rew.numel() > 1:
            std = rew.std()
            adv = adv / ((std if bool(std > 0) else torch.ones_like(std)) + 1e-6)
        frac = torch.where(den > 0, hist_w[g.index] / den.clamp(min=1e-300), torch.zeros_like(den))
        info = {
            "num_groups": float(g.num),
            "window": self.window(batch.step),
            "history_weight_frac": float(frac.mean()),
            "history_size": float(self.history_size),
        }
        return Advantages(
            finite_or_raise("kae", adv.to(batch.rewards.dtype)), base.to(batch.rewards.dtype), info
        )
