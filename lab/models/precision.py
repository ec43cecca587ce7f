"""Training precision: fp32 master weights, bf16 autocast on CUDA, gradient checkpointing.

The trainer keeps the weights it optimises in float32 on every device (AdamW updates of
bf16 weights lose the small steps RL makes: a bf16 weight near 1 cannot move by less than
2^-8) and runs the forward/backward passes under ``torch.autocast("cuda", torch.bfloat16)``
on CUDA, so the matmuls are bf16 while the master copy and optimizer state stay fp32.

* :func:`master_dtype` maps the config's ``dtype`` to the dtype the policy is loaded in;
* :func:`autocast` gives the context the forward passes run in;
* :func:`set_gradient_checkpointing` trades compute for activation memory (HF models);
  :func:`checkpointing_active` makes it take effect while the model stays in eval mode.

Why the second piece: HF checkpoints a layer only when ``layer.gradient_checkpointing and
layer.training``, but the lab trains in eval mode (dropout off, so the PPO ratio is exactly 1
at the first epoch). ``checkpointing_active`` sets ``training = True`` on the checkpointed
layers *only* (not on their dropout or attention submodules) for the loss forward pass.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch


def master_dtype(dtype: str) -> str:
    """The dtype the trained weights are loaded in: ``"auto"`` -> ``"float32"`` on every device.

    An explicit dtype (``"bfloat16"``, ``"float16"``, ``"float32"``) is kept: bf16 weights
    halve memory at the cost of update precision, a choice the user makes knowingly.

    >>> master_dtype("auto"), master_dtype("bfloat16")
    ('float32', 'bfloat16')
    """
    return "float32" if dtype == "auto" else dtype


def autocast(device: torch.device | str):
    """``torch.autocast("cuda", dtype=torch.bfloat16)`` on CUDA, a no-op context elsewhere.

    >>> with autocast("cpu"):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.float32
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def set_gradient_checkpointing(model, enabled: bool) -> bool:
    """Turn HF gradient checkpointing on (``use_cache`` off while training) or off; True if on.

    Models without ``gradient_checkpointing_enable`` raise ``ValueError`` when asked to enable it.

    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> m = build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0)
    >>> set_gradient_checkpointing(m, True), is_checkpointing(m)
    (True, True)
    >>> set_gradient_checkpointing(m, False), is_checkpointing(m)
    (False, False)
    """
    if not enabled:
        if is_checkpointing(model):
            off = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
            off()
        return False
    if not hasattr(model, "gradient_checkpointing_enable"):
        raise ValueError(f"gradient_checkpointing: {type(model).__name__} does not support it; set it to false")
    from lab.models.fast import restore

    restore(model)  # the lean GPT-2 forward bypasses the HF layers that do the checkpointing
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return True


def is_checkpointing(model) -> bool:
    """Whether gradient checkpointing is on (transformers renamed the property; the old name warns)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


@contextmanager
def checkpointing_active(model):
    """Within the block, layers with gradient checkpointing on recompute their activations in
    backward even though the model is in eval mode; dropout stays off. Restores the flags after.

    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> m = build_tiny_model(tiny_config(n_layer=2, n_embd=16, n_head=2), seed=0).eval()
    >>> _ = set_gradient_checkpointing(m, True)
    >>> with checkpointing_active(m):
    ...     [b.training for b in m.transformer.h], m.transformer.h[0].attn.training
    ([True, True], False)
    >>> [b.training for b in m.transformer.h]
    [False, False]
    """
    layers = [mod for mod in model.modules() if getattr(mod, "gradient_checkpointing", False) is True and mod is not model]
    saved = [mod.training for mod in layers]
    try:
        for mod in layers:
            mod.training = True
        yield model
    finally:
        for mod, flag in zip(layers, saved):
            mod.training = flag
