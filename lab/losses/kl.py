"""KL penalties against a reference model: Schulman's k1, k2, k3 estimators, per token.

Tokens are sampled from π_θ; with x = π_ref/π_θ at the sampled token (log x = ref_logp − logp),
each kind is a per-token estimate whose mean over samples targets KL(π_θ ‖ π_ref) (the
"reverse" KL of the policy from the reference):

=============  ===================  ==========================================================
kind           value                properties (tokens sampled from π_θ)
=============  ===================  ==========================================================
``k1``         −log x               unbiased; high variance; negative on tokens π_ref prefers
``k2``         ½ (log x)²           biased (= KL to second order when π_θ ≈ π_ref); low
                                    variance; ≥ 0
``k3``         x − 1 − log x        unbiased (E[x] = 1 under π_θ); ≥ 0; low variance when
                                    π_θ ≈ π_ref (heavy tail when π_ref ≫ π_θ on a token)
``low_var_kl`` k3, clamped          verl's name: log x clamped to [−20, 20], result to [−10, 10]
=============  ===================  ==========================================================

Values are not gradients. Used as a loss term on on-policy samples (differentiated through
``logp`` only, no score-function term), the *expected gradient* is: k1 → 0 (E[∇log π_θ] = 0),
k2 → ∇KL(π_θ ‖ π_ref), k3 → ∇KL(π_ref ‖ π_θ) (the forward KL). The tests check these exactly
on a small categorical distribution.
"""

from __future__ import annotations

import torch

from lab.registry import Registry

KL_ESTIMATORS: Registry = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """−log x = logp − ref_logp, shape of ``logp``; unbiased, may be negative.

    >>> k1(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]))
    tensor([ 1., -1.])
    """
    return logp - ref_logp


@KL_ESTIMATORS.register("k2")
def k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """½ (log x)², shape of ``logp``; biased, ≥ 0.

    >>> k2(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]))
    tensor([0.5000, 0.5000])
    """
    return 0.5 * (ref_logp - logp) ** 2


@KL_ESTIMATORS.register("k3")
def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """x − 1 − log x with x = exp(ref_logp − logp), shape of ``logp``; unbiased, ≥ 0.

    >>> k3(torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]))
    tensor([0.3679, 0.7183])
    """
    log_x = ref_logp - logp
    return torch.expm1(log_x) - log_x  # = x − 1 − log x; expm1 keeps it ≥ 0 and exact near x = 1


@KL_ESTIMATORS.register("low_var_kl")
def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 with log x clamped to [−20, 20] and the result clamped to [−10, 10] (verl).

    >>> low_var_kl(torch.tensor([-30.0, -2.0]), torch.tensor([-1.0, -1.0]))
    tensor([10.0000,  0.7183])
    """
    log_x = torch.clamp(ref_logp - logp, -20.0, 20.0)
    return torch.clamp(torch.expm1(log_x) - log_x, -10.0, 10.0)


def available_kl() -> list[str]:
    """Names of the KL estimators.

    >>> available_kl()
    ['k1', 'k2', 'k3', 'low_var_kl']
    """
    return KL_ESTIMATORS.available()


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token estimate (B, T) of KL(π_θ ‖ π_ref) from log-probs (B, T) of tokens sampled from π_θ.

    ``logp`` = log π_θ(token), ``ref_logp`` = log π_ref(token); x = π_ref/π_θ. ``kind`` is one
    of :func:`available_kl` (see the module docstring for bias, variance and sign). The
    result is unreduced: pass it to :func:`lab.losses.agg_loss` with the response mask.

    >>> logp, ref = torch.tensor([[-1.0]]), torch.tensor([[-1.5]])
    >>> [round(float(kl_penalty(logp, ref, k)), 4) for k in ("k1", "k2", "k3")]
    [0.5, 0.125, 0.1065]
    >>> kl_penalty(logp, ref, "k4")
    Traceback (most recent call last):
    ...
    ValueError: unknown KL estimator 'k4'; available: k1, k2, k3, low_var_kl
    """
    fn = KL_ESTIMATORS.get(kind)
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp and ref_logp must have the same shape, got {tuple(logp.shape)} and {tuple(ref_logp.shape)}")
    return fn(logp, ref_logp)
