"""Models: the shipped tiny char-level model, loading any HF causal LM, teacher-forced log-probs.

* :func:`load` ``(name_or_path, *, device="auto", dtype="auto") -> (model, tokenizer)``
* :func:`pick_device`, :func:`format_prompt`
* :func:`completion_logprobs` ``(model, rollout_output, *, with_entropy=False)``
* :func:`build_char_tokenizer`, :func:`tiny_config`, :func:`build_tiny_model`
* pretraining of the shipped checkpoint: :mod:`lab.models.pretrain`

See ``docs/models.md``.

>>> load("./definitely/not/here")
Traceback (most recent call last):
...
FileNotFoundError: model path './definitely/not/here' does not exist (and is not a Hugging Face hub id such as 'gpt2' or 'Qwen/Qwen2.5-0.5B-Instruct')
"""

from lab.models.loading import TINY_ARITH, format_prompt, load, pick_device, resolve_dtype
from lab.models.logprobs import completion_logprobs, position_ids_from_mask
from lab.models.tiny import build_char_tokenizer, build_tiny_model, char_vocab, tiny_config

__all__ = [
    "TINY_ARITH",
    "build_char_tokenizer",
    "build_tiny_model",
    "char_vocab",
    "completion_logprobs",
    "format_prompt",
    "load",
    "pick_device",
    "position_ids_from_mask",
    "resolve_dtype",
    "tiny_config",
]
