"""Rollout backends behind one interface: ``lab.rollout.get(name, **kwargs)``.

Registered names (``available()``): ``hf`` (default; batched sampling with a KV
cache on any transformers causal LM) and ``vllm`` (optional, GPU; imported
lazily). Both return a :class:`RolloutOutput`; see ``docs/rollout.md`` for the
layout, padding, stop-string and log-prob conventions.

>>> from lab.models.tiny import build_char_tokenizer, build_tiny_model, tiny_config
>>> backend = get("hf", model=build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0),
...               tokenizer=build_char_tokenizer())
>>> out = backend.generate(["3+4="], SamplingParams(n=2, max_new_tokens=3, seed=0))
>>> len(out), out.completion_ids.shape[1] <= 3, isinstance(backend, RolloutBackend)
(2, True, True)
"""

from lab.rollout.base import (
    BACKENDS,
    RolloutBackend,
    RolloutOutput,
    SamplingParams,
    available,
    cut_at_stop,
    get,
)
from lab.rollout.hf import HFBackend, sample_next  # noqa: E402  (registers "hf")
from lab.rollout.vllm_backend import INSTALL_HINT, VLLMBackend  # noqa: E402  (registers "vllm"; vllm itself is lazy)

__all__ = [
    "BACKENDS",
    "HFBackend",
    "INSTALL_HINT",
    "RolloutBackend",
    "RolloutOutput",
    "SamplingParams",
    "VLLMBackend",
    "available",
    "cut_at_stop",
    "get",
    "sample_next",
]
