"""Teacher-forced log-probs of sampled completions: the quantity RL losses differentiate.

``completion_logprobs(model, rollout_output)`` runs ONE forward pass over
``prompt + completion`` and reads off, for every completion token, the
log-probability the model assigns to it, and optionally the entropy of the
model's next-token distribution at that position.

Conventions (the same as the rollout backends', which is what makes
``exp(logp - old_logp)`` exactly 1 on-policy):

* prompts are LEFT-padded, completions RIGHT-padded; the attention mask is
  ``cat(prompt_mask, completion_mask)`` and the position ids are
  ``cumsum(mask) - 1`` (clamped at 0), so a prompt's padding changes nothing;
* ``temperature`` divides the logits before the softmax (1.0 = the model's own
  distribution); top-p truncation is NOT applied here;
* entries where ``completion_mask`` is False are exactly 0;
* gradients flow (no ``no_grad`` here): the trainer backprops through it.

With a model switched to the lean forward (:func:`lab.models.fast.accelerate`, as the
trainer does for GPT-2s), rows that repeat a prompt (the G rollouts of one group) have
that prompt's positions computed once (:func:`lab.models.fast.shared_prefix_logits`): the
same numbers to float rounding, fewer positions through the network.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding: ``cumsum(mask) - 1``, clamped at 0.

    Shapes: mask (B, L) bool/int -> (B, L) long.

    >>> position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]]))
    tensor([[0, 0, 0, 1, 2],
            [0, 1, 2, 3, 3]])
    """
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _accepts(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def model_device(model) -> torch.device:
    """The device of the model's first parameter (cpu for a parameter-less module)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _shared_prefix(model, prompt_ids, prompt_mask, comp_ids, comp_mask):
    """Logits (N, T, V) from :func:`lab.models.fast.shared_prefix_logits` when ``model`` runs
    the lean forward and some rows repeat a prompt (the G rollouts of a group); else None."""
    from lab.models import fast

    if not fast.lean_active(model) or prompt_ids.shape[0] < 2 or prompt_ids.shape[1] == 0:
        return None
    key = torch.cat([prompt_ids, prompt_mask.long()], dim=1)  # (N, 2P): a prompt is its ids and its mask
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)  # (U, 2P), (N,)
    if uniq.shape[0] == key.shape[0]:
        return None  # every prompt distinct: nothing to share
    P = prompt_ids.shape[1]
    return fast.shared_prefix_logits(model, uniq[:, :P], uniq[:, P:].bool(), inverse, comp_ids, comp_mask)


def completion_logprobs(model, rollout_output, *, with_entropy: bool = False, temperature: float = 1.0):
    """Per-token log-probs (and optionally entropies) of the completion tokens, teacher-forced.

    Args:
        model: a causal LM (``model(input_ids, attention_mask, position_ids).logits``).
        rollout_output: a :class:`lab.rollout.RolloutOutput` (any object with
            ``prompt_token_ids``, ``prompt_mask``, ``completion_ids``, ``completion_mask``).
        with_entropy: also return the entropy of each position's next-token distribution.
        temperature: logits are divided by it (1.0 = the model's distribution).

    Returns:
        ``(logp, entropy)``: ``logp`` (N, T) float32 on the model's device;
        ``entropy`` (N, T) when ``with_entropy``, else None. Both are 0 where
        ``completion_mask`` is False. Always a pair, so
        ``logp, _ = completion_logprobs(model, out)`` reads the same either way.

    Shapes: prompt_token_ids (N, P), completion_ids (N, T) -> (N, T).

    >>> from types import SimpleNamespace
    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> model = build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0)
    >>> ro = SimpleNamespace(
    ...     prompt_token_ids=torch.tensor([[0, 5, 6], [7, 8, 9]]),
    ...     prompt_mask=torch.tensor([[False, True, True], [True, True, True]]),
    ...     completion_ids=torch.tensor([[10, 1], [11, 0]]),
    ...     completion_mask=torch.tensor([[True, True], [True, False]]))
    >>> logp, ent = completion_logprobs(model, ro, with_entropy=True)
    >>> logp.shape, ent.shape, bool((logp[0] < 0).all()), logp[1, 1].item(), ent[1, 1].item()
    (torch.Size([2, 2]), torch.Size([2, 2]), True, 0.0, 0.0)
    >>> completion_logprobs(model, ro)[1] is None
    True
    """
    dev = model_device(model)
    prompt_ids = rollout_output.prompt_token_ids.to(dev)  # (N, P)
    prompt_mask = rollout_output.prompt_mask.to(dev).bool()  # (N, P)
    comp_ids = rollout_output.completion_ids.to(dev)  # (N, T)
    comp_mask = rollout_output.completion_mask.to(dev).bool()  # (N, T)
    N, T = comp_ids.shape
    if T == 0:
        empty = torch.zeros(N, 0, device=dev)
        return empty, (empty.clone() if with_entropy else None)

    logits = _shared_prefix(model, prompt_ids, prompt_mask, comp_ids, comp_mask)  # (N, T, V) or None
    if logits is None:
        input_ids = torch.cat([prompt_ids, comp_ids], dim=1)  # (N, P+T)
        attn = torch.cat([prompt_mask, comp_mask], dim=1).long()  # (N, P+T)
        kwargs = dict(input_ids=input_ids, attention_mask=attn, position_ids=position_ids_from_mask(attn))
        if _accepts(model, "logits_to_keep"):
            kwargs["logits_to_keep"] = T + 1  # only the positions that predict completion tokens
        if _accepts(model, "use_cache"):
            kwargs["use_cache"] = False
        logits = model(**kwargs).logits  # (N, L, V), L = T+1 or P+T
        logits = logits[:, -(T + 1) : -1]  # (N, T, V): position t predicts completion token t
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = F.log_softmax(logits, dim=-1)  # (N, T, V)
    zero = torch.zeros((), dtype=logp_all.dtype, device=dev)
    logp = torch.where(comp_mask, logp_all.gather(-1, comp_ids.unsqueeze(-1)).squeeze(-1), zero)  # (N, T)
    if not with_entropy:
        return logp, None
    entropy = torch.where(comp_mask, -(logp_all.exp() * logp_all).sum(-1), zero)  # (N, T)
    return logp, entropy
