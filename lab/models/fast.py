"""A lean forward pass for GPT-2 models: the same maths as transformers' ``GPT2LMHeadModel``, fewer ops.

On the shipped tiny model (4 layers x 128 wide) a step of the trainer is a few hundred
small matrix products, so the time goes as much to the framework around them (mask
building, cache bookkeeping, per-module Python) as to the arithmetic. :func:`accelerate`
swaps a GPT-2's ``forward`` for :func:`lean_forward`, which computes the same function
with the same parameters (the very same ``Parameter`` objects: optimizer, ``state_dict``,
``save_pretrained`` and checkpoints see no difference) in a handful of fused ops per
layer: ``addmm`` for each projection, one ``scaled_dot_product_attention`` with a boolean
mask built once per call, ``gelu(approximate="tanh")`` (GPT-2's ``gelu_new``), and only the
requested positions through the LM head.

It serves the two calls the lab makes, with exactly their conventions:

* teacher-forced log-probs (:func:`lab.models.completion_logprobs`): the whole sequence
  in one call, ``attention_mask`` 2-D, ``position_ids`` given, ``logits_to_keep``;
* KV-cached sampling (:mod:`lab.rollout.hf`): a transformers ``Cache`` passed as
  ``cache=`` or ``past_key_values=`` (either name, on every transformers version: 5.24
  renamed the argument and the output field from ``past_key_values`` to ``cache``;
  :func:`cache_keyword` says which one this transformers uses), one new token per call; keys and values go through
  in preallocated buffers kept on that cache object (written in place, no concatenation
  per step; a cache that transformers already filled goes through ``cache.update``). The
  prefill (empty cache, several positions) runs each distinct row once: the G samples of
  a prompt share it, and their keys, values and logits are copied to every row. Sampling
  (no autograd) computes the tanh GELU in place.

Anything else (``inputs_embeds``, ``labels``, ``token_type_ids``, a 4-D mask, a tensor
``logits_to_keep``, ``model.generate``'s extra arguments, dropout active in training mode, gradient
checkpointing in training mode, as transformers itself applies it)
falls back to the original transformers forward, so an accelerated model is never wrong,
only sometimes not faster. ``tests/test_speed_paths.py`` pins the agreement with the
transformers code (logits, KV-cached decoding and gradients to 1e-5).

Masking: key ``j`` is visible to query ``i`` when ``attention_mask[j]`` is set and ``j <= i``
(absolute positions, cache included). A query with no visible key (left padding) attends
to itself so that padded rows stay finite; real tokens never see padding.

>>> import torch
>>> from lab.models.tiny import build_tiny_model, tiny_config
>>> m = build_tiny_model(tiny_config(n_layer=2, n_embd=32, n_head=4), seed=0).eval()
>>> ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
>>> mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
>>> pos = (mask.cumsum(-1) - 1).clamp(min=0)
>>> ref = m(input_ids=ids, attention_mask=mask, position_ids=pos).logits   # transformers
>>> accelerate(m) is m, is_lean(m)
(True, True)
>>> lean = m(input_ids=ids, attention_mask=mask, position_ids=pos).logits  # lean_forward
>>> bool(torch.allclose(lean[mask.bool()], ref[mask.bool()], atol=1e-5))
True
>>> is_lean(restore(m))
False
"""

from __future__ import annotations

import functools
import math
from types import MethodType

import torch
import torch.nn.functional as F

_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
"""Activations that are the tanh approximation of GELU (``gelu_fast`` rounds the constant
differently, by < 1e-6)."""
_GELU_EXACT = ("gelu",)
_KNOWN_KWARGS = {"return_dict", "output_attentions", "output_hidden_states"}


def supports(model) -> str | None:
    """Why ``model`` cannot run :func:`lean_forward`, or None when it can.

    Supported: a transformers ``GPT2LMHeadModel`` without cross-attention, with GELU
    (exact or tanh) and the usual attention scaling.

    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> supports(build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2))) is None
    True
    >>> supports(torch.nn.Linear(2, 2))
    'not a transformers GPT2LMHeadModel (Linear)'
    """
    from transformers import GPT2LMHeadModel

    if not isinstance(model, GPT2LMHeadModel):
        return f"not a transformers GPT2LMHeadModel ({type(model).__name__})"
    c = model.config
    if getattr(c, "add_cross_attention", False):
        return "cross-attention is not supported"
    if c.activation_function not in _GELU_TANH + _GELU_EXACT:
        return f"activation {c.activation_function!r} is not supported"
    if getattr(c, "reorder_and_upcast_attn", False):
        return "reorder_and_upcast_attn is not supported"
    if getattr(model, "lm_head", None) is None or model.lm_head.bias is not None:
        return "an LM head with a bias is not supported"
    return None


def is_lean(model) -> bool:
    """Whether :func:`accelerate` has switched ``model`` to :func:`lean_forward`."""
    return getattr(model, "_lab_lean", False) is True


def accelerate(model):
    """Switch a supported GPT-2 to :func:`lean_forward` in place; return the model.

    A model :func:`supports` rejects is returned unchanged (and still works: it runs
    transformers' own forward). Idempotent; :func:`restore` undoes it.
    """
    if is_lean(model) or supports(model) is not None:
        return model
    model.forward = MethodType(lean_forward, model)
    model._lab_lean = True
    return model


def restore(model):
    """Undo :func:`accelerate`: ``model.forward`` is transformers' own again. Returns the model."""
    if is_lean(model):
        del model.forward
        del model._lab_lean
    return model


def cache_keyword(model=None) -> str:
    """The name transformers' own ``forward`` of ``model`` takes its KV cache under.

    ``"cache"`` from transformers 5.24 on, ``"past_key_values"`` before (5.10 to 5.23). Read
    from the class's ``forward`` (not the instance's: an accelerated model's
    :func:`lean_forward` accepts both). ``model=None`` asks GPT-2's.

    >>> cache_keyword() in ("cache", "past_key_values")
    True
    """
    if model is None:
        from transformers import GPT2LMHeadModel as cls
    else:
        cls = type(model)
    for name in ("cache", "past_key_values"):
        if name in _forward_params(cls.forward):
            return name
    # a wrapper whose class forward names neither: ask the instance's
    return "cache" if model is not None and "cache" in _forward_params(model.forward) else "past_key_values"


def _forward_params(fn) -> frozenset:
    import inspect

    try:
        return frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return frozenset()


@functools.lru_cache(maxsize=1)
def _output_cache_field() -> str:
    """The field of ``CausalLMOutputWithCrossAttentions`` that holds the cache (``cache`` from
    transformers 5.24 on, ``past_key_values`` before).

    >>> _output_cache_field() in ("cache", "past_key_values")
    True
    """
    import dataclasses

    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    names = {f.name for f in dataclasses.fields(CausalLMOutputWithCrossAttentions)}
    return "cache" if "cache" in names else "past_key_values"


def _dropout_active(model) -> bool:
    c = model.config
    return model.training and max(c.resid_pdrop, c.embd_pdrop, c.attn_pdrop) > 0


def _attention_mask(attention_mask, past: int, L: int, device) -> torch.Tensor | None:
    """Boolean (B, 1, L, S) mask for queries past..past+L-1 over keys 0..S-1, or None when
    the mask hides nothing (no padding: plain causal attention, or one query over the cache).

    ``S = past + L``. Visible: key set in ``attention_mask`` and not in the future; each
    query always sees itself (so a row of padding never has an empty softmax).

    >>> _attention_mask(torch.tensor([[0, 1, 1]]), 0, 3, "cpu")[0, 0].int()
    tensor([[1, 0, 0],
            [0, 1, 0],
            [0, 1, 1]], dtype=torch.int32)
    >>> _attention_mask(torch.tensor([[1, 1, 1]]), 2, 1, "cpu") is None
    True
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None if (L == 1 or past == 0) else _causal_mask(past, L, device)
    keys = attention_mask.to(device=device, dtype=torch.bool)  # (B, S)
    S = keys.shape[1]
    q_pos = torch.arange(past, past + L, device=device)[:, None]  # (L, 1)
    k_pos = torch.arange(S, device=device)[None, :]  # (1, S)
    causal = k_pos <= q_pos  # (L, S)
    allowed = keys[:, None, :] & causal[None]  # (B, L, S)
    allowed |= (k_pos == q_pos)[None]  # own position always visible
    return allowed[:, None]  # (B, 1, L, S)


class _KV:
    """Keys and values of every layer in preallocated buffers, grown geometrically.

    Kept on the transformers cache object the sampler passes (``cache._lab_kv``), so each
    decoding step writes one position instead of concatenating the whole cache again.

    >>> kv = _KV(1)
    >>> k, v = kv.write(0, torch.ones(2, 1, 3, 4), torch.ones(2, 1, 3, 4), 0)
    >>> k, v = kv.write(0, torch.zeros(2, 1, 1, 4), torch.zeros(2, 1, 1, 4), 3)
    >>> k.shape, k[0, 0, :, 0].tolist()
    (torch.Size([2, 1, 4, 4]), [1.0, 1.0, 1.0, 0.0])
    """

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.length = 0

    def write(self, i: int, k: torch.Tensor, v: torch.Tensor, start: int):
        """Store k, v (B, H, L, hd) at positions start..start+L-1 of layer i; return all so far (B, H, start+L, hd)."""
        end = start + k.shape[2]
        buf = self.k[i]
        if buf is None or end > buf.shape[2]:
            cap = max(2 * end, 16)
            nk = k.new_empty(k.shape[0], k.shape[1], cap, k.shape[3])
            nv = v.new_empty(v.shape[0], v.shape[1], cap, v.shape[3])
            if buf is not None:
                nk[:, :, :start] = buf[:, :, :start]
                nv[:, :, :start] = self.v[i][:, :, :start]
            self.k[i], self.v[i] = nk, nv
        self.k[i][:, :, start:end] = k
        self.v[i][:, :, start:end] = v
        return self.k[i][:, :, :end], self.v[i][:, :, :end]


_GELU_A = 2 * math.sqrt(2 / math.pi)
_GELU_B = _GELU_A * 0.044715


def _gelu_tanh_inplace(u: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh GELU, ``0.5 u (1 + tanh(c (u + 0.044715 u^3))) = u * sigmoid(2c (u + 0.044715 u^3))``,
    overwriting ``u`` (no autograd: sampling only). Agrees with ``F.gelu(u, approximate="tanh")``
    to float rounding, in fewer passes over memory than aten's kernel on CPU.

    >>> u = torch.linspace(-6, 6, 101)
    >>> bool(torch.allclose(_gelu_tanh_inplace(u.clone()), F.gelu(u, approximate="tanh"), atol=1e-6))
    True
    """
    t = u * u
    t.mul_(_GELU_B).add_(_GELU_A).mul_(u).sigmoid_()
    return u.mul_(t)


def _attend_one(q, k, v, hide, scale: float) -> torch.Tensor:
    """Attention of one new query per row over the cache: q (B, H, 1, hd), k, v (B, H, S, hd),
    ``hide`` (B, 1, 1, S) bool or None -> (B, H, 1, hd). Cheaper than SDPA's kernel at this size."""
    s = torch.matmul(q, k.transpose(-1, -2)).mul_(scale)  # (B, H, 1, S)
    if hide is not None:
        s = s.masked_fill_(hide, float("-inf"))
    return torch.matmul(torch.softmax(s, -1), v)


def _causal_mask(past: int, L: int, device) -> torch.Tensor:
    """(1, 1, L, past + L) bool: queries past..past+L-1 see every key up to their own position."""
    q_pos = torch.arange(past, past + L, device=device)[:, None]  # (L, 1)
    return (torch.arange(past + L, device=device)[None, :] <= q_pos)[None, None]


def lean_forward(
    self,
    input_ids: torch.Tensor | None = None,
    cache=None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    use_cache: bool | None = None,
    logits_to_keep: int = 0,
    past_key_values=None,
    **kwargs,
):
    """``GPT2LMHeadModel.forward`` for the lab's two calls (see the module docstring).

    Shapes: input_ids (B, L); attention_mask (B, past + L) 0/1; position_ids (B, L) or None
    (then ``past .. past + L - 1``, as in transformers) -> ``.logits`` (B, K, V) float, with
    K = ``logits_to_keep`` (0 = all L positions). ``cache`` (or ``past_key_values``: the same
    argument under its pre-5.24 name) is updated in place and returned in the output's cache
    field (``.cache`` on transformers >= 5.24, ``.past_key_values`` before) when ``use_cache``.
    """
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    cache = cache if cache is not None else past_key_values
    extra = {k: v for k, v in kwargs.items() if v is not None and k not in _KNOWN_KWARGS}
    if (
        input_ids is None
        or extra
        or kwargs.get("output_attentions")
        or kwargs.get("output_hidden_states")
        or kwargs.get("return_dict") is False
        or not isinstance(logits_to_keep, int)
        or (attention_mask is not None and attention_mask.ndim != 2)
        or _dropout_active(self)
        or (getattr(self.transformer, "gradient_checkpointing", False) and self.training)
    ):
        kw = dict(kwargs, input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                  use_cache=use_cache, logits_to_keep=logits_to_keep)
        if cache is not None:
            kw[cache_keyword(self)] = cache
        return type(self).forward(self, **kw)

    c = self.config
    tr = self.transformer
    B, L = input_ids.shape
    dev = input_ids.device
    if use_cache and cache is None:
        from transformers import DynamicCache

        cache = DynamicCache(config=c)
    kv = getattr(cache, "_lab_kv", None) if cache is not None else None
    past = kv.length if kv is not None else (cache.get_seq_length() if cache is not None else 0)
    if cache is not None and kv is None and past == 0:  # a fresh cache: keep our own buffers on it
        kv = cache._lab_kv = _KV(c.n_layer)
    if position_ids is None:
        position_ids = torch.arange(past, past + L, device=dev)[None]  # (1, L)
    rows = None  # prefill of repeated prompts (G samples each): run each distinct row once
    if cache is not None and past == 0 and L > 1 and B > 1:
        am = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        key = torch.cat([input_ids, am.long(), position_ids.expand(B, L)], 1)  # (B, 3L)
        uniq, inverse = torch.unique(key, dim=0, return_inverse=True)  # (U, 3L), (B,)
        if uniq.shape[0] < B:
            rows, B = inverse, uniq.shape[0]
            input_ids, position_ids = uniq[:, :L], uniq[:, 2 * L :]
            attention_mask = uniq[:, L : 2 * L] if attention_mask is not None else None
    h = F.embedding(input_ids, tr.wte.weight) + F.embedding(position_ids, tr.wpe.weight)  # (B, L, D)
    D = h.shape[-1]
    n_head = c.n_head
    mask = _attention_mask(attention_mask, past, L, dev)  # (B, 1, L, S) bool or None
    causal = mask is None and L > 1  # no padding, no cache offset: SDPA's own causal path
    hide = ~mask if (mask is not None and L == 1) else None  # (B, 1, 1, S) for the one-query path
    act_tanh = c.activation_function in _GELU_TANH
    sampling = not torch.is_grad_enabled()
    for i, blk in enumerate(tr.h):
        at, mlp = blk.attn, blk.mlp
        x = F.layer_norm(h, (D,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)  # (B, L, D)
        qkv = torch.addmm(at.c_attn.bias, x.view(-1, D), at.c_attn.weight)  # (B*L, 3D)
        q, k, v = qkv.view(B, L, 3, n_head, D // n_head).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, L, hd) each
        if rows is not None:  # the cache holds every row; attention below needs only the distinct ones
            kv.write(i, k[rows], v[rows], 0)
        elif kv is not None:
            k, v = kv.write(i, k, v, past)  # (B, H, S, hd)
        elif cache is not None:
            k, v = cache.update(k, v, i)  # (B, H, S, hd)
        if L == 1 and past:
            a = _attend_one(q, k, v, hide, at.scaling)  # (B, H, 1, hd)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=at.scaling)  # (B, H, L, hd)
        a = torch.addmm(at.c_proj.bias, a.transpose(1, 2).reshape(B * L, D), at.c_proj.weight)  # (B*L, D)
        h = h + a.view(B, L, D)
        x = F.layer_norm(h, (D,), blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
        u = torch.addmm(mlp.c_fc.bias, x.view(-1, D), mlp.c_fc.weight)  # (B*L, 4D)
        u = _gelu_tanh_inplace(u) if (sampling and act_tanh) else F.gelu(u, approximate="tanh" if act_tanh else "none")
        h = h + torch.addmm(mlp.c_proj.bias, u, mlp.c_proj.weight).view(B, L, D)
    if logits_to_keep:
        h = h[:, -logits_to_keep:]  # (B, K, D): only the positions whose logits are asked for
    h = F.layer_norm(h, (D,), tr.ln_f.weight, tr.ln_f.bias, tr.ln_f.eps)
    logits = F.linear(h, self.lm_head.weight)  # (B, K, V)
    if rows is not None:
        logits = logits[rows]  # back to one row per input row
    if kv is not None:
        kv.length = past + L
    return CausalLMOutputWithCrossAttentions(logits=logits, **{_output_cache_field(): cache if use_cache else None})


def lean_active(model) -> bool:
    """Whether a call to ``model`` now would take the lean path (accelerated, no dropout or
    gradient checkpointing in effect)."""
    return (
        is_lean(model)
        and not _dropout_active(model)
        and not (getattr(model.transformer, "gradient_checkpointing", False) and model.training)
    )


def shared_prefix_logits(model, prompt_ids, prompt_mask, inverse, completion_ids, completion_mask) -> torch.Tensor:
    """Logits that predict every completion token, with each distinct prompt computed once.

    The G completions of one prompt share its tokens, so their keys and values at the
    prompt positions are the same: this runs the prompt positions once per *distinct*
    prompt and lets every completion attend to its prompt's keys and values (gathered by
    ``inverse``), then to its own earlier tokens. The function is that of one forward pass
    over the ``N`` full sequences ``prompt_ids[inverse] + completion_ids`` (gradients
    included: a shared prompt's gradient is the sum over its completions), with
    ``P * (N - U)`` fewer positions through every layer. Conventions as in
    :func:`lab.models.completion_logprobs` (left-padded prompts, right-padded completions,
    position ids skipping padding).

    Shapes: prompt_ids, prompt_mask (U, P); inverse (N,) long in [0, U);
    completion_ids, completion_mask (N, T) -> (N, T, V) float, row n position t predicting
    ``completion_ids[n, t]``.

    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> m = accelerate(build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0).eval())
    >>> prompt, comp = torch.tensor([[0, 5, 6]]), torch.tensor([[7, 8], [9, 1]])
    >>> shared = shared_prefix_logits(m, prompt, prompt > 0, torch.tensor([0, 0]), comp, torch.ones(2, 2, dtype=torch.bool))
    >>> full = torch.cat([prompt.expand(2, 3), comp], 1)
    >>> mask = torch.cat([prompt.expand(2, 3) > 0, torch.ones(2, 2, dtype=torch.bool)], 1).long()
    >>> pos = (mask.cumsum(-1) - 1).clamp(min=0)
    >>> plain = m(input_ids=full, attention_mask=mask, position_ids=pos).logits[:, 2:4]
    >>> shared.shape, bool(torch.allclose(shared, plain, atol=1e-5))
    (torch.Size([2, 2, 100]), True)
    """
    c = model.config
    tr = model.transformer
    dev = completion_ids.device
    U, P = prompt_ids.shape
    N, T = completion_ids.shape
    pm, cm = prompt_mask.bool(), completion_mask.bool()
    ppos = (pm.long().cumsum(1) - 1).clamp(min=0)  # (U, P)
    cpos = (pm.sum(1)[inverse][:, None] + cm.long().cumsum(1) - 1).clamp(min=0)  # (N, T)
    wte, wpe = tr.wte.weight, tr.wpe.weight
    hp = F.embedding(prompt_ids, wte) + F.embedding(ppos, wpe)  # (U, P, D)
    hc = F.embedding(completion_ids, wte) + F.embedding(cpos, wpe)  # (N, T, D)
    D = hp.shape[-1]
    H, hd = c.n_head, D // c.n_head
    h = torch.cat([hp.reshape(U * P, D), hc.reshape(N * T, D)])  # (M, D), M = U*P + N*T
    p_mask = _attention_mask(pm, 0, P, dev)  # (U, 1, P, P) or None (no padding: causal)
    own = torch.ones(T, T, dtype=torch.bool, device=dev).tril()  # (T, T)
    c_keys = (own[None] & cm[:, None, :]) | torch.eye(T, dtype=torch.bool, device=dev)[None]  # (N, T, T)
    c_mask = torch.cat([pm[inverse][:, None, :].expand(N, T, P), c_keys], 2)[:, None]  # (N, 1, T, P+T)
    act_tanh = c.activation_function in _GELU_TANH
    for blk in tr.h:
        at, mlp = blk.attn, blk.mlp
        x = F.layer_norm(h, (D,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        qkv = torch.addmm(at.c_attn.bias, x, at.c_attn.weight)  # (M, 3D)
        qp, kp, vp = qkv[: U * P].view(U, P, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)  # (U, H, P, hd)
        qc, kc, vc = qkv[U * P :].view(N, T, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)  # (N, H, T, hd)
        ap = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=p_mask, is_causal=p_mask is None, scale=at.scaling)
        k_all = torch.cat([kp[inverse], kc], 2)  # (N, H, P+T, hd)
        v_all = torch.cat([vp[inverse], vc], 2)
        ac = F.scaled_dot_product_attention(qc, k_all, v_all, attn_mask=c_mask, scale=at.scaling)  # (N, H, T, hd)
        a = torch.cat([ap.transpose(1, 2).reshape(U * P, D), ac.transpose(1, 2).reshape(N * T, D)])  # (M, D)
        h = h + torch.addmm(at.c_proj.bias, a, at.c_proj.weight)
        x = F.layer_norm(h, (D,), blk.ln_2.weight, blk.ln_2.bias, blk.ln_2.eps)
        u = F.gelu(torch.addmm(mlp.c_fc.bias, x, mlp.c_fc.weight), approximate="tanh" if act_tanh else "none")
        h = h + torch.addmm(mlp.c_proj.bias, u, mlp.c_proj.weight)
    last_prompt = h[: U * P].view(U, P, D)[:, -1]  # (U, D): predicts completion token 0
    hs = torch.cat([last_prompt[inverse][:, None], h[U * P :].view(N, T, D)[:, :-1]], 1)  # (N, T, D)
    hs = F.layer_norm(hs, (D,), tr.ln_f.weight, tr.ln_f.bias, tr.ln_f.eps)
    return F.linear(hs, model.lm_head.weight)  # (N, T, V)
