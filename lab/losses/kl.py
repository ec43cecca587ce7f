"""KL penalties against a reference model: Schulman's k1, k2, k3 estimators, per token.

Tokens are sampled from π_θ; with x = π_ref/π_θ at the sampled token (log x = ref_logp − logp):

* ``k1`` = −log x: unbiased for KL(π_θ ‖ π_ref), high variance, can be negative per token;
* ``k2`` = ½ (log x)²: biased (second-order accurate when the policies are close), low variance, ≥ 0;
* ``k3`` = x − 1 − log x: unbiased for KL(π_θ ‖ π_ref) (E[x] = 1 under π_θ), ≥ 0, low variance;
* ``low_var_kl``: k3 with log x clamped to [−20, 20] and the result to [−10, 10] (verl's name), for stability.

All are functions of the log-ratio only, so they are cheap and differentiable in ``logp``.
"""

from __future__ import annotations

import torch

from lab.registry import Registry

KL_ESTIMATORS: Registry = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return logp - ref_logp


@KL_ESTIMATORS.register("k2")
def k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return 0.5 * (ref_logp - logp) ** 2


@KL_ESTIMATORS.register("k3")
def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    log_x = ref_logp - logp
    return torch.exp(log_x) - 1.0 - log_x


@KL_ESTIMATORS.register("low_var_kl")
def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    log_x = torch.clamp(ref_logp - logp, -20.0, 20.0)
    return torch.clamp(torch.exp(log_x) - 1.0 - log_x, -10.0, 10.0)


def available_kl() -> list[str]:
    return KL_ESTIMATORS.available()


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL estimate (B, T) of KL(π_θ ‖ π_ref) from sampled-token log-probs (B, T).

    >>> logp, ref = torch.tensor([[-1.0]]), torch.tensor([[-1.5]])
    >>> [round(float(kl_penalty(logp, ref, k)), 4) for k in ("k1", "k2", "k3")]
    [0.5, 0.125, 0.1065]
    """
    fn = KL_ESTIMATORS.get(kind)
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp and ref_logp have different shapes {tuple(logp.shape)} vs {tuple(ref_logp.shape)}")
    return fn(logp, ref_logp)
