"""The rollout interface: sampling parameters, the output batch, the backend Protocol.

A backend turns prompts into sampled completions::

    backend.generate(prompts: list[str], params: SamplingParams) -> RolloutOutput
    backend.sync_weights(model) -> None   # after every optimizer step

Layout of a :class:`RolloutOutput` for ``len(prompts) = B`` and ``params.n = G``:
``N = B * G`` rows, and the completions of prompt ``i`` are rows
``i*G .. i*G + G - 1`` (``prompt_index[r] == r // G``).

Conventions every backend follows (pinned by ``tests/test_rollout.py``):

* **padding**: prompts LEFT-padded (``prompt_mask`` marks real tokens),
  completions RIGHT-padded with the tokenizer's pad id (``completion_mask``).
* **end of a sequence**: the first eos token or the first stop string,
  whichever comes first, or ``max_new_tokens``. The eos token, or the token
  that completed a stop string, IS kept as the last masked-in token of
  ``completion_ids`` (the policy chose to stop, so the loss sees that choice),
  but ``texts`` exclude it: the text is cut right before the first stop string
  (anything after it in the same token is dropped too) and special tokens are
  skipped. ``finish_reasons`` is ``"stop"`` for eos/stop string, ``"length"``
  when ``max_new_tokens`` ran out.
* **logprobs**: the log-probability of each sampled token under the
  distribution it was actually sampled from, i.e. after temperature and top-p
  (renormalised over the nucleus). With ``temperature=1, top_p=1`` this is the
  model's own distribution and equals
  ``lab.models.completion_logprobs(model, out)`` (to 1e-4 on CPU fp32).
  Greedy decoding (``temperature=0``) reports the untempered
  (temperature-1) model log-probs of the argmax tokens. 0 at padding.
* **device**: all tensors of a ``RolloutOutput`` are on the CPU (move them with
  ``out.to(device)``); ``completion_logprobs`` moves what it needs to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Protocol, runtime_checkable

import torch

from lab.registry import Registry


@dataclass(frozen=True)
class SamplingParams:
    """How to sample completions.

    >>> SamplingParams(n=4, temperature=1.0, max_new_tokens=8, stop=["\\n"]).stop
    ('\\n',)
    >>> SamplingParams(top_p=0.0)
    Traceback (most recent call last):
    ...
    ValueError: top_p must be in (0, 1], got 0.0
    """

    n: int = 1
    """Completions per prompt (the group size G)."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy (argmax)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    max_new_tokens: int = 32
    """Hard cap on generated tokens per completion (the eos/stop token counts)."""
    stop: tuple[str, ...] = ()
    """Stop strings: a completion ends at the first one; it is removed from ``texts``."""
    seed: int | None = None
    """Seed for the sampler's own generator (same seed + same model -> same samples); None = global RNG."""

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple([self.stop] if isinstance(self.stop, str) else self.stop))
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")


@dataclass
class RolloutOutput:
    """A batch of sampled completions (see the module docstring for the conventions).

    Shapes: N = len(prompts) * n, P = longest prompt, T = longest completion.

    Fields:
        prompt_index: (N,) long, index into the ``prompts`` list given to ``generate``.
        prompt_token_ids: (N, P) long, LEFT-padded with the pad id.
        prompt_mask: (N, P) bool, True on real prompt tokens.
        completion_ids: (N, T) long, RIGHT-padded with the pad id.
        completion_mask: (N, T) bool, True on generated tokens (incl. a final eos/stop token).
        logprobs: (N, T) float32, sampling log-prob of each generated token, 0 at padding.
        texts: N decoded completions, stop string and special tokens removed.
        finish_reasons: N strings, "stop" or "length".
    """

    prompt_index: torch.Tensor
    prompt_token_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    logprobs: torch.Tensor
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.prompt_index.shape[0])

    @property
    def completion_lengths(self) -> torch.Tensor:
        """(N,) long: number of generated tokens per row."""
        return self.completion_mask.sum(-1)

    def to(self, device) -> "RolloutOutput":
        """A copy with every tensor moved to ``device``."""
        return replace(
            self,
            **{f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)},
        )

    def select(self, idx: torch.Tensor) -> "RolloutOutput":
        """The rows ``idx`` (a 1-D long tensor) as a new output: tensors indexed, lists picked.

        Used for minibatches; the rows keep their ``prompt_index``.
        """
        vals = {}
        for f in fields(self):
            v = getattr(self, f.name)
            vals[f.name] = v[idx.to(v.device)] if isinstance(v, torch.Tensor) else [v[i] for i in idx.tolist()]
        return RolloutOutput(**vals)

    @classmethod
    def pack(cls, prompt_index: torch.Tensor, prompt_token_ids: torch.Tensor, prompt_mask: torch.Tensor,
             completions: list[list[int]], logprobs: list[list[float]], texts: list[str],
             finish_reasons: list[str], pad_id: int) -> "RolloutOutput":
        """Build an output from per-row completion token and log-prob lists (right-padded here).

        Every backend ends with this, so the padding conventions live in one place.
        """
        completion_ids, completion_mask = right_pad(completions, pad_id, torch.long)  # (N, T)
        lp, _ = right_pad(logprobs, 0.0, torch.float32)  # (N, T)
        return cls(
            prompt_index=prompt_index,
            prompt_token_ids=prompt_token_ids,
            prompt_mask=prompt_mask,
            completion_ids=completion_ids,
            completion_mask=completion_mask,
            logprobs=lp,
            texts=texts,
            finish_reasons=finish_reasons,
        )

    def validate(self) -> "RolloutOutput":
        """Check shapes, dtypes and padding conventions; returns self.

        >>> out = RolloutOutput(
        ...     prompt_index=torch.tensor([0, 0]),
        ...     prompt_token_ids=torch.tensor([[5, 6], [5, 6]]),
        ...     prompt_mask=torch.ones(2, 2, dtype=torch.bool),
        ...     completion_ids=torch.tensor([[7, 1], [8, 0]]),
        ...     completion_mask=torch.tensor([[True, True], [True, False]]),
        ...     logprobs=torch.tensor([[-0.5, -0.1], [-2.0, 0.0]]),
        ...     texts=["a", "b"], finish_reasons=["stop", "length"])
        >>> len(out.validate()), out.completion_lengths.tolist()
        (2, [2, 1])
        """
        N = len(self)
        P = self.prompt_token_ids.shape[1]
        T = self.completion_ids.shape[1]
        assert self.prompt_index.dtype == torch.long and self.prompt_index.shape == (N,)
        assert self.prompt_token_ids.dtype == torch.long and self.prompt_token_ids.shape == (N, P)
        assert self.prompt_mask.dtype == torch.bool and self.prompt_mask.shape == (N, P)
        assert self.completion_ids.dtype == torch.long and self.completion_ids.shape == (N, T)
        assert self.completion_mask.dtype == torch.bool and self.completion_mask.shape == (N, T)
        assert self.logprobs.dtype == torch.float32 and self.logprobs.shape == (N, T)
        assert len(self.texts) == N and len(self.finish_reasons) == N
        assert set(self.finish_reasons) <= {"stop", "length"}, set(self.finish_reasons)
        if P:  # left padding: once a row's prompt starts it does not stop
            assert bool((self.prompt_mask[:, 1:] >= self.prompt_mask[:, :-1]).all()), "prompts must be left-padded"
        if T:  # right padding
            assert bool((self.completion_mask[:, 1:] <= self.completion_mask[:, :-1]).all()), "completions must be right-padded"
        assert bool((self.logprobs[~self.completion_mask] == 0).all()), "logprobs must be 0 at padding"
        return self


@runtime_checkable
class RolloutBackend(Protocol):
    """What the trainer needs from a generation engine."""

    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutOutput:
        """Sample ``params.n`` completions for every prompt."""
        ...

    def sync_weights(self, model) -> None:
        """Make the backend sample from ``model``'s current weights (call after each update)."""
        ...


BACKENDS: Registry = Registry("rollout backend")


def get(name: str, **kwargs) -> RolloutBackend:
    """Build the backend registered as ``name`` with ``kwargs`` (e.g. ``model=``, ``tokenizer=``).

    >>> get("sglang")
    Traceback (most recent call last):
    ...
    ValueError: unknown rollout backend 'sglang'; available: hf, vllm
    """
    return BACKENDS.get(name)(**kwargs)


def available() -> list[str]:
    """Registered backend names."""
    return BACKENDS.available()


# ---------------------------------------------------------------------------
# helpers shared by the backends


def model_dims(config, itemsize: int = 4) -> dict[str, int]:
    """Sizes a memory estimate needs, read from a transformers config under any of its usual names.

    Keys: ``hidden``, ``layers``, ``kv_heads``, ``head_dim``, ``vocab``, ``itemsize`` (bytes per
    value) and ``kv_bytes_per_token`` (keys and values of every layer for one token:
    2 x layers x kv-heads x head-dim x itemsize). Missing fields fall back to a 0.5B-class guess.

    >>> from lab.models.tiny import tiny_config
    >>> d = model_dims(tiny_config(n_layer=4, n_embd=128, n_head=4))
    >>> d["layers"], d["kv_heads"], d["head_dim"], d["kv_bytes_per_token"]
    (4, 4, 32, 4096)
    """
    get = lambda *names, default=None: next(  # noqa: E731
        (int(v) for n in names if (v := getattr(config, n, None)) is not None), default
    )
    hidden = get("hidden_size", "n_embd", "d_model", default=1024)
    layers = get("num_hidden_layers", "n_layer", "num_layers", default=24)
    heads = get("num_attention_heads", "n_head", default=max(1, hidden // 64))
    kv_heads = get("num_key_value_heads", default=heads)
    head_dim = get("head_dim", default=max(1, hidden // max(1, heads)))
    vocab = get("vocab_size", default=50_000)
    return {"hidden": hidden, "layers": layers, "kv_heads": kv_heads, "head_dim": head_dim, "vocab": vocab,
            "itemsize": int(itemsize), "kv_bytes_per_token": 2 * layers * kv_heads * head_dim * int(itemsize)}


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(ids, mask)``.

    Shapes: -> (len(seqs), max_len) long, (len(seqs), max_len) bool.

    >>> ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[True, True, True], [False, False, True]])
    """
    lens = [len(s) for s in seqs]
    L = max(lens, default=0)
    # one tensor from padded lists (not one per row: this runs on every rollout)
    ids = torch.tensor([[pad_id] * (L - n) + list(s) for s, n in zip(seqs, lens)], dtype=torch.long).reshape(len(seqs), L)
    mask = torch.arange(L) >= (L - torch.tensor(lens, dtype=torch.long)).reshape(-1, 1)  # (N, L)
    return ids, mask


def right_pad(seqs: list[list], pad_value, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad lists into ``(values, mask)``.

    >>> v, m = right_pad([[1.5], [2.5, 3.5]], 0.0, torch.float32)
    >>> v.tolist(), m.tolist()
    ([[1.5, 0.0], [2.5, 3.5]], [[True, False], [True, True]])
    """
    lens = [len(s) for s in seqs]
    L = max(lens, default=0)
    vals = torch.tensor([list(s) + [pad_value] * (L - n) for s, n in zip(seqs, lens)], dtype=dtype).reshape(len(seqs), L)
    mask = torch.arange(L) < torch.tensor(lens, dtype=torch.long).reshape(-1, 1)  # (N, L)
    return vals, mask


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest occurrence of any stop string.

    >>> cut_at_stop("19\\n3+4=7", ("\\n",))
    ('19', True)
    >>> cut_at_stop("19 ;", ("\\n", " ;"))
    ('19', True)
    >>> cut_at_stop("19", ("\\n",))
    ('19', False)
    """
    best = -1
    for s in stop:
        j = text.find(s)
        if j >= 0 and (best < 0 or j < best):
            best = j
    return (text, False) if best < 0 else (text[:best], True)


def tokenize_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt, adding the tokenizer's special tokens (e.g. a bos) once.

    A prompt that already starts with the bos token text (chat templates write
    it) is tokenized without special tokens, so the bos is not doubled.
    Raises ``ValueError`` for a prompt that tokenizes to nothing.

    >>> from lab.models.tiny import build_char_tokenizer
    >>> tokenize_prompts(build_char_tokenizer(), ["1+2=", "<|endoftext|>3"])
    [[22, 16, 23, 34], [1, 24]]
    """
    bos = getattr(tokenizer, "bos_token", None)
    out = []
    for p in prompts:
        add = not (bos and p.startswith(bos))
        ids = list(tokenizer(p, add_special_tokens=add)["input_ids"])
        if not ids:
            raise ValueError(f"prompt {p!r} tokenizes to no tokens; a causal LM needs at least one")
        out.append(ids)
    return out
