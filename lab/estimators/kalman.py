"""KRPO: a 1-D Kalman filter per group as the baseline (arXiv 2505.07527), and an order-invariant variant.

Reference code: github.com/billhhh/KRPO_LLMs_RL, ``train.py`` (``KalmanFilter.update`` and
``group_advantages``). Per prompt, the filter is reset (x₀ = 0, P₀ = 1) and fed the group's
rewards *in rollout order*; for reward z:

    P⁻ = P + Q;  K = P⁻ / (P⁻ + R);  x ← x + K (z − x);  P ← (1 − K) P⁻
    A = (z − x) / (√P + 1e-8)          with x, P *after* the update that included z

Two facts the vectorised form below uses (and the docs teach): the variance schedule P_k
depends only on the position k, never on the rewards (so it is not an adaptive
uncertainty), and x_k is linear in z_1..z_k, so equal groups are filtered at once with one
(G × G) lower-triangular coefficient matrix. Groups of mixed or large sizes run the filter one
position at a time, over all groups at once (G_max vector steps, memory O(N)).
"""

from __future__ import annotations

import torch

from lab.estimators.base import Advantages, finite_or_raise, group_by, register, stable_sort_index


def kalman_schedule(n: int, *, q: float = 1e-5, r: float = 1e-2, p0: float = 1.0):
    """Gains K_k and posterior variances P_k for k = 1..n of a scalar random-walk filter.

    Returns two lists of floats (length n). They depend only on (q, r, p0), not on the data.

    >>> gains, variances = kalman_schedule(2)
    >>> [round(v, 6) for v in variances]
    [0.009901, 0.004978]
    """
    p, gains, variances = p0, [], []
    for _ in range(n):
        pm = p + q
        k = pm / (pm + r)
        p = (1.0 - k) * pm
        gains.append(k)
        variances.append(p)
    return gains, variances


MATRIX_MAX_GROUP = 64
"""Equal groups up to this size are filtered with one (G × G) coefficient matmul."""


def _kalman_coefficients(gmax: int, gains: list[float], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(C (gmax, gmax), c0 (gmax,)) with x_k = c0_k x0 + sum_{j<=k} C[k, j] z_j (0-based positions)."""
    c = torch.zeros(gmax, gmax, dtype=torch.float64)
    c0 = torch.zeros(gmax, dtype=torch.float64)
    keep = 1.0
    for k in range(gmax):  # C[k, j] = K_j prod_{l=j+1..k} (1 - K_l)
        if k > 0:
            c[k, :k] = c[k - 1, :k] * (1.0 - gains[k])
        c[k, k] = gains[k]
        keep *= 1.0 - gains[k]
        c0[k] = keep
    return c.to(device), c0.to(device)


@register("krpo")
def krpo(
    rewards: torch.Tensor,
    prompt_ids: torch.Tensor,
    *,
    q: float = 1e-5,
    r: float = 1e-2,
    x0: float = 0.0,
    p0: float = 1.0,
    eps: float = 1e-8,
) -> Advantages:
    """KRPO advantages, exactly as the reference code computes them (order-dependent).

    Shapes: rewards (N,), prompt_ids (N,) -> advantages (N,), baselines (N,).
    The baseline of a rollout is the filter state x *after* it absorbed that rollout's own
    reward, so a rollout's reward does move its own baseline (unlike RLOO). Rollouts of a
    prompt are taken in batch order. Advantages are about 10x GRPO's scale (division by
    √P, the uncertainty of the mean, ≈ √(R/k)), and an all-equal group still gets non-zero
    advantages because the filter starts at x₀ = 0. A singleton group works like any other.

    >>> out = krpo(torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([0, 0, 0, 0]))
    >>> [round(a, 3) for a in out.advantages.tolist()]
    [0.1, -7.048, -5.751, 10.015]
    >>> [round(a, 3) for a in krpo(torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor([0, 0, 0, 0])).advantages.tolist()]
    [0.0, 7.119, 5.809, -9.965]
    """
    g = group_by(prompt_ids)
    sorted_group, order = stable_sort_index(g.index, g.num)  # (N,): rollouts by group, batch order kept
    gmax = int(g.counts.max())
    gains, variances = kalman_schedule(gmax, q=q, r=r, p0=p0)
    sd = torch.tensor(variances, dtype=torch.float64, device=rewards.device).sqrt_()  # (Gmax,)
    z = rewards.take(order).to(torch.float64)  # (N,) in group order
    if int(g.counts.min()) == gmax and gmax <= MATRIX_MAX_GROUP:  # equal groups: z is already (num, G)
        c, c0 = _kalman_coefficients(gmax, gains, rewards.device)
        post = (z.view(g.num, gmax) @ c.T + x0 * c0).view(-1)  # (N,) state after each rollout
        sd = sd.repeat(g.num)
    else:  # any sizes: run the filter one position at a time, over every group that long at once
        starts = torch.cumsum(g.counts, 0) - g.counts  # (num,) first slot of each group in group order
        pos = torch.arange(z.shape[0], device=z.device) - starts.take(sorted_group.long())  # (N,)
        post = torch.empty_like(z)
        first = starts.take(torch.argsort(g.counts, descending=True))  # (num,) groups, longest first
        longer = torch.bincount(g.counts, minlength=gmax + 1).flip(0).cumsum(0).flip(0)  # [k]: groups of size >= k
        x = torch.full((g.num,), float(x0), dtype=torch.float64, device=z.device)  # (num,) state, same order
        for k in range(gmax):  # a loop over positions (G_max of them), never over prompts
            m = int(longer[k + 1])  # the m longest groups have a k-th member
            slot = first[:m] + k  # (m,) where those members sit in group order
            x[:m] += gains[k] * (z.take(slot) - x[:m])
            post.scatter_(0, slot, x[:m])
        sd = sd.take(pos)
    adv = ((z - post) / (sd + eps)).to(rewards.dtype)  # (N,) group order
    post = post.to(rewards.dtype)
    adv = torch.empty_like(adv).scatter_(0, order, adv)  # back to batch order
    post = torch.empty_like(post).scatter_(0, order, post)
    info = {"num_groups": float(g.num), "kalman_p_last": variances[-1]}
    return Advantages(finite_or_raise("krpo", adv), post, info)


@register("krpo_invariant")
def krpo_invariant(
    rewards: torch.Tensor,
    prompt_ids: torch.Tensor,
    *,
    r: float = 1e-2,
    x0: float = 0.0,
    p0: float = 1.0,
    eps: float = 1e-8,
    normalize: bool = True,
) -> Advantages:
    """Order-invariant KRPO: the Kalman posterior of the group's value given all *other* rollouts.

    Derivation. With no process noise (Q = 0) the latent value is constant, the filter is
    exact Bayesian updating of a N(x₀, P₀) prior by observations with noise R, and its
    posterior no longer depends on the order of the observations. Conditioning on the n − 1
    other rollouts of the group (never on the rollout's own reward) gives

        b_i = (x₀/P₀ + Σ_{j≠i} r_j / R) / (1/P₀ + (n − 1)/R),    P₋ᵢ = 1 / (1/P₀ + (n − 1)/R)

    a leave-one-out mean shrunk toward x₀ (weight (n−1)/(n−1+R/P₀), 0.99 at n = 2 with the
    default constants). It estimates V(x) and, since b_i ignores r_i, keeps the policy
    gradient unbiased. ``normalize=True`` divides by (√P₋ᵢ + eps) to stay on KRPO's scale;
    ``False`` returns r_i − b_i. A singleton group gets the prior: b = x₀, P = P₀.

    >>> out = krpo_invariant(torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([0, 0, 0]), normalize=False)
    >>> [round(b, 4) for b in out.baselines.tolist()]
    [0.4975, 0.995, 0.4975]
    """
    rew = rewards.to(torch.float64)
    g = group_by(prompt_ids)
    others = (g.sum(rew)[g.index] - rew)  # (N,) sum of the other rewards
    m = (g.counts[g.index] - 1).to(torch.float64)  # (N,) number of others
    prec = 1.0 / p0 + m / r  # (N,) posterior precision
    base = (x0 / p0 + others / r) / prec
    adv = rew - base
    if normalize:
        adv = adv / (torch.sqrt(1.0 / prec) + eps)
    return Advantages(
        finite_or_raise("krpo_invariant", adv.to(rewards.dtype)), base.to(rewards.dtype), {"num_groups": float(g.num)}
    )
