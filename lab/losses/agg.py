"""Loss aggregation: reduce a per-token loss matrix to a scalar, with verl's mode names.

* ``token-mean``: Σ valid tokens / #valid tokens in the batch (every token weighs the same; DAPO).
* ``seq-mean-token-sum``: per-sequence sum, then mean over sequences (long answers weigh more).
* ``seq-mean-token-mean``: per-sequence mean, then mean over sequences (original GRPO).
* ``seq-mean-token-sum-norm``: Σ over sequences of per-sequence sums, divided by a constant
  (``norm_const``, default T = the mask's last dimension), as verl does it: Dr. GRPO's fix
  for the length bias of the per-sequence mean (pair it with the ``dr_grpo`` estimator).

Sequences with no valid token are left out of the seq-mean modes (no NaN).
"""

from __future__ import annotations

import torch

AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def agg_loss(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", *, norm_const: float | None = None) -> torch.Tensor:
    """Scalar loss from ``loss_mat`` (B, T) over valid tokens ``mask`` (B, T).

    Worked example: lengths 1 and 3 with losses [4] and [1, 2, 3]:
    token-mean = 10/4; seq-mean-token-sum = (4 + 6)/2; seq-mean-token-mean = (4 + 2)/2;
    seq-mean-token-sum-norm = (4 + 6)/T with T = 3.

    >>> mat = torch.tensor([[4.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    >>> mask = torch.tensor([[True, False, False], [True, True, True]])
    >>> [round(float(agg_loss(mat, mask, m)), 4) for m in AGG_MODES]
    [2.5, 5.0, 3.0, 3.3333]
    """
    if mode not in AGG_MODES:
        raise ValueError(f"agg: unknown aggregation mode {mode!r}; choose one of {', '.join(AGG_MODES)}")
    if loss_mat.shape != mask.shape:
        raise ValueError(f"loss_mat and mask have different shapes {tuple(loss_mat.shape)} vs {tuple(mask.shape)}")
    m = mask.to(loss_mat.dtype)
    n_tok = m.sum()
    if float(n_tok) == 0:
        raise ValueError("mask: no valid tokens (empty mask); nothing to aggregate")
    masked = torch.where(mask.bool(), loss_mat, torch.zeros_like(loss_mat))
    if mode == "token-mean":
        return masked.sum() / n_tok
    seq_sum = masked.sum(-1)  # (B,)
    seq_len = m.sum(-1)  # (B,)
    has = seq_len > 0
    if mode == "seq-mean-token-sum":
        return seq_sum[has].mean()
    if mode == "seq-mean-token-mean":
        return (seq_sum[has] / seq_len[has]).mean()
    const = float(loss_mat.shape[-1]) if norm_const is None else float(norm_const)
    if not const > 0:
        raise ValueError(f"norm_const: must be > 0, got {norm_const}")
    return seq_sum.sum() / const
