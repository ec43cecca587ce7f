"""Loss aggregation: reduce a per-token loss matrix to a scalar, with verl's mode names.

Shapes: ``loss_mat`` and ``mask`` are (B, T) — B sequences padded to T tokens; ``mask`` is
True (or 1) on valid response tokens. Padded entries never enter the result, even if they
hold NaN or inf.

* ``token-mean``: Σ valid tokens / #valid tokens in the batch. Every token weighs the same,
  so long answers weigh more in total. **DAPO** = clip-higher (``rule="ppo",
  measure="ratio", delta_low=0.2, delta_high=0.28``) + ``token-mean``.
* ``seq-mean-token-sum``: per-sequence sum, then mean over sequences.
* ``seq-mean-token-mean``: per-sequence mean, then mean over sequences (the original GRPO
  loss; a token of a short answer weighs more than one of a long answer).
* ``seq-mean-token-sum-norm``: Σ over sequences of the per-sequence sums, divided by a
  constant (``norm_const``, default T = ``loss_mat.shape[-1]``, the padded response length),
  as in verl's classic ``agg_loss``. **Dr. GRPO** = the ``dr_grpo`` estimator + this mode: a
  constant divisor removes the length bias of the per-sequence mean. (Newer verl also
  divides by the number of sequences; that is a constant factor, i.e. a learning-rate scale.)

Sequences with no valid token are left out of the seq-mean modes (they are not counted in
the number of sequences, so they cannot make the mean NaN); a mask with no valid token at
all is a ``ValueError``.
"""

from __future__ import annotations

import torch

from lab.registry import Registry

AGG_MODES: Registry = Registry("aggregation mode")


@AGG_MODES.register("token-mean")
def token_mean(masked: torch.Tensor, valid: torch.Tensor, *, norm_const: float | None = None) -> torch.Tensor:
    """Σ valid tokens / #valid tokens. ``masked`` (B, T) is zero off ``valid`` (B, T).

    >>> token_mean(torch.tensor([[4.0, 0.0], [1.0, 3.0]]), torch.tensor([[True, False], [True, True]]))
    tensor(2.6667)
    """
    return masked.sum() / valid.sum()  # count stays integer: exact in any dtype


@AGG_MODES.register("seq-mean-token-sum")
def seq_mean_token_sum(masked: torch.Tensor, valid: torch.Tensor, *, norm_const: float | None = None) -> torch.Tensor:
    """Mean over non-empty sequences of the per-sequence token sum.

    >>> seq_mean_token_sum(torch.tensor([[4.0, 0.0], [1.0, 3.0]]), torch.tensor([[True, False], [True, True]]))
    tensor(4.)
    """
    has = valid.any(-1)  # (B,)
    return masked.sum(-1)[has].mean()


@AGG_MODES.register("seq-mean-token-mean")
def seq_mean_token_mean(masked: torch.Tensor, valid: torch.Tensor, *, norm_const: float | None = None) -> torch.Tensor:
    """Mean over non-empty sequences of the per-sequence token mean.

    >>> seq_mean_token_mean(torch.tensor([[4.0, 0.0], [1.0, 3.0]]), torch.tensor([[True, False], [True, True]]))
    tensor(3.)
    """
    n = valid.sum(-1)  # (B,)
    has = n > 0
    return (masked.sum(-1)[has] / n[has]).mean()


@AGG_MODES.register("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(masked: torch.Tensor, valid: torch.Tensor, *, norm_const: float | None = None) -> torch.Tensor:
    """Σ of per-sequence sums / ``norm_const`` (default T = ``masked.shape[-1]``); Dr. GRPO.

    >>> seq_mean_token_sum_norm(torch.tensor([[4.0, 0.0], [1.0, 3.0]]), torch.tensor([[True, False], [True, True]]))
    tensor(4.)
    """
    const = float(masked.shape[-1]) if norm_const is None else float(norm_const)
    return masked.sum() / const


def agg_loss(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", *,
             norm_const: float | None = None) -> torch.Tensor:
    """Scalar loss (0-dim, dtype of ``loss_mat``) from ``loss_mat`` (B, T) over ``mask`` (B, T).

    ``norm_const`` is used by ``seq-mean-token-sum-norm`` only (default T = loss_mat.shape[-1];
    keep it fixed across training, e.g. the max response length, to follow Dr. GRPO).

    Worked example: lengths 1 and 3 with losses [4] and [1, 2, 3]:
    token-mean = 10/4; seq-mean-token-sum = (4 + 6)/2; seq-mean-token-mean = (4/1 + 6/3)/2;
    seq-mean-token-sum-norm = (4 + 6)/T with T = 3.

    >>> mat = torch.tensor([[4.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    >>> mask = torch.tensor([[True, False, False], [True, True, True]])
    >>> modes = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
    >>> [round(float(agg_loss(mat, mask, m)), 4) for m in modes]
    [2.5, 5.0, 3.0, 3.3333]
    >>> agg_loss(mat, mask, "mean")
    Traceback (most recent call last):
    ...
    ValueError: unknown aggregation mode 'mean'; available: seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm, token-mean
    """
    reduce = AGG_MODES.get(mode)
    if loss_mat.shape != mask.shape:
        raise ValueError(f"loss_mat and mask must have the same shape, got {tuple(loss_mat.shape)} and {tuple(mask.shape)}")
    if loss_mat.dim() != 2:
        raise ValueError(f"loss_mat: expected shape (B, T), got {tuple(loss_mat.shape)}")
    if norm_const is not None and (isinstance(norm_const, bool) or not isinstance(norm_const, (int, float)) or not 0 < norm_const < float("inf")):
        raise ValueError(f"norm_const: must be a finite number > 0, got {norm_const!r}")
    valid = mask.bool()  # (B, T)
    if not bool(valid.any()):
        raise ValueError("mask: no valid tokens (empty mask); nothing to aggregate")
    masked = torch.where(valid, loss_mat, torch.zeros_like(loss_mat))  # (B, T), padding -> 0 (NaN-safe)
    return reduce(masked, valid, norm_const=norm_const)
