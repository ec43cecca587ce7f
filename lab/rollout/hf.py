"""The default rollout backend: batched sampling with a KV cache on a Hugging Face model.

Its own decoding loop (prefill once, then one token per step through the KV
cache) rather than ``model.generate``: the loop is short, it reports the exact
log-prob of every sampled token under the distribution sampled from, and it
handles left padding with explicit position ids, the same way
:func:`lab.models.completion_logprobs` does, so rollout and training log-probs
agree to float precision.

``sync_weights(model)`` is a no-op when the backend already samples from the
training model itself (the usual case: ``HFBackend(model=policy, ...)``); given
another module it copies that module's weights in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lab.models.fast import cache_keyword
from lab.models.logprobs import _accepts, model_device, position_ids_from_mask
from lab.rollout.base import (
    BACKENDS,
    RolloutOutput,
    SamplingParams,
    cut_at_stop,
    left_pad,
    model_dims,
    tokenize_prompts,
)


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row and return its log-prob under the distribution sampled from.

    ``temperature == 0``: argmax, with the untempered log-prob. Otherwise the
    distribution is ``softmax(logits / temperature)`` restricted to the top-p
    nucleus (smallest set of most likely tokens whose mass reaches ``top_p``;
    at least one token) and renormalised; the returned log-prob is under that
    truncated, renormalised distribution.

    Shapes: logits (B, V) -> tokens (B,) long, logprobs (B,) float32.

    >>> logits = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]])
    >>> tok, lp = sample_next(logits, temperature=0.0, top_p=1.0)
    >>> tok.tolist(), torch.allclose(lp, torch.log_softmax(logits, -1).max(-1).values)
    ([2, 0], True)
    >>> tok, lp = sample_next(logits, temperature=1.0, top_p=0.5)  # nucleus = the argmax alone
    >>> tok.tolist(), lp.tolist()
    ([2, 0], [0.0, 0.0])
    """
    logits = logits.float()
    if temperature == 0:
        logp = F.log_softmax(logits, dim=-1)  # (B, V)
        tok = logp.argmax(-1)  # (B,)
        return tok, logp.gather(-1, tok[:, None]).squeeze(-1)
    logp = F.log_softmax(logits / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)  # (B, V)
        mass_before = sorted_logp.exp().cumsum(-1) - sorted_logp.exp()  # (B, V) mass of strictly better tokens
        drop_sorted = mass_before >= top_p  # (B, V); the first token is always kept (mass_before = 0)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # (B, V)
        logp = F.log_softmax(logp.masked_fill(drop, float("-inf")), dim=-1)  # (B, V) renormalised nucleus
    tok = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)  # (B,)
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


def _new_cache(model):
    """An empty KV cache and the forward() keyword that takes it: ``cache`` from transformers
    5.24 on, ``past_key_values`` before (read from the model class's own ``forward``, which
    an accelerated GPT-2's lean forward does not change: that one accepts both)."""
    from transformers import DynamicCache

    kw = cache_keyword(model)
    try:
        return kw, DynamicCache(config=model.config)
    except TypeError:
        return kw, DynamicCache()


def rows_per_chunk(model, seq_len: int, budget_bytes: int) -> int:
    """How many rows of ``seq_len`` tokens (prompt + new) one decoding chunk may hold.

    Per row: the KV cache (2 x layers x kv-heads x head-dim x ``seq_len`` values) plus one
    row of logits (vocab), both at the model's parameter dtype, plus the prefill's widest
    activation (4 x hidden x ``seq_len``, the MLP). At least 1 row.

    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> m = build_tiny_model(tiny_config(n_layer=4, n_embd=128, n_head=4))  # the shipped size
    >>> rows_per_chunk(m, seq_len=40, budget_bytes=2**30)  # 4 B x (2*4*128*40 + V + 4*128*40)
    4361
    >>> rows_per_chunk(m, seq_len=40, budget_bytes=1)
    1
    """
    try:
        itemsize = next(model.parameters()).element_size()
    except (AttributeError, StopIteration):
        itemsize = 4
    d = model_dims(getattr(model, "config", None), itemsize)
    per_row = d["kv_bytes_per_token"] * seq_len + itemsize * (d["vocab"] + 4 * d["hidden"] * seq_len)
    return max(1, int(budget_bytes) // max(1, per_row))


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a sequence: the tokenizer's eos plus the generation config's eos id(s).

    >>> from lab.models.tiny import build_char_tokenizer, build_tiny_model, tiny_config
    >>> eos_token_ids(build_tiny_model(tiny_config(n_layer=1, n_embd=8, n_head=1)), build_char_tokenizer())
    [1]
    """
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gc = getattr(model, "generation_config", None)
    extra = getattr(gc, "eos_token_id", None) if gc is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(int(i) for i in extra)
    return sorted(ids)


@BACKENDS.register("hf")
class HFBackend:
    """Sample with a transformers causal LM on its own device (see the module docstring).

    Args:
        model: the policy (a ``PreTrainedModel`` for causal LM).
        tokenizer: its tokenizer (``pad_token`` set; ``lab.models.load`` does that).
        max_batch_size: rows (prompt x sample) per forward pass; larger batches are chunked.
            Default (None): as many rows as fit ``max_batch_bytes`` of KV cache and logits
            (:func:`rows_per_chunk`); the shipped tiny model fits thousands, so a step's 64 or
            128 rows and a probe round's 1,024 go in one chunk (on 2 CPU cores one chunk of 128
            rows is ~25% faster than two of 64).
        max_batch_bytes: the memory budget behind the default ``max_batch_size`` (1 GiB).
        eos_token_ids: ids that end a completion; default (None) = the tokenizer's eos plus
            the model's ``generation_config.eos_token_id``; ``[]`` never stops on eos
            (fixed-length rollouts, as the speed benchmark uses).

    >>> from lab.models.tiny import build_char_tokenizer, build_tiny_model, tiny_config
    >>> backend = HFBackend(build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0),
    ...                     build_char_tokenizer())
    >>> out = backend.generate(["1+2=", "10+20="], SamplingParams(n=3, max_new_tokens=4, seed=0))
    >>> out.completion_ids.shape[0], out.prompt_index.tolist()
    (6, [0, 0, 0, 1, 1, 1])
    >>> out.prompt_token_ids.shape, out.prompt_mask[0].tolist()
    (torch.Size([6, 6]), [False, False, True, True, True, True])
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_batch_size: int | None = None,
        max_batch_bytes: int = 2**30,
        eos_token_ids: list[int] | None = None,
    ):
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 (or None: sized by max_batch_bytes), got {max_batch_size}")
        if max_batch_bytes < 1:
            raise ValueError(f"max_batch_bytes must be >= 1, got {max_batch_bytes}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_batch_bytes = int(max_batch_bytes)
        self.eos_token_ids = None if eos_token_ids is None else [int(i) for i in eos_token_ids]
        self._stop_vocab_cache: dict[tuple[str, ...], torch.Tensor] = {}

    # -- weights -------------------------------------------------------------
    def sync_weights(self, model) -> None:
        """No-op when ``model`` is the module this backend samples from; else copy its weights."""
        if model is self.model:
            return
        self.model.load_state_dict(model.state_dict())

    # -- generation ----------------------------------------------------------
    @property
    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        if pid is None:
            pid = self.tokenizer.eos_token_id
        if pid is None:
            raise ValueError("tokenizer has neither pad nor eos token; use lab.models.load or set tokenizer.pad_token")
        return int(pid)

    def _stop_candidates(self, stop: tuple[str, ...]) -> torch.Tensor:
        """(V,) bool: tokens whose text could complete a stop string (contains a stop's last
        character, or decodes to nothing / a partial byte). Only rows whose newest token is a
        candidate are decoded and searched, which keeps the stop check cheap."""
        if stop not in self._stop_vocab_cache:
            V = max(len(self.tokenizer), int(getattr(self.model.config, "vocab_size", 0) or 0))
            texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            lasts = {s[-1] for s in stop}
            cand = torch.ones(V, dtype=torch.bool)  # ids beyond the tokenizer: always check
            cand[: len(texts)] = torch.tensor(
                [(t == "") or ("\ufffd" in t) or any(c in t for c in lasts) for t in texts], dtype=torch.bool
            )
            self._stop_vocab_cache[stop] = cand
        return self._stop_vocab_cache[stop]

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutOutput:
        """Sample ``params.n`` completions per prompt; rows ``i*n .. i*n+n-1`` answer prompt ``i``."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not one string")
        n = params.n
        prompt_seqs = tokenize_prompts(self.tokenizer, list(prompts))
        prompt_index = torch.arange(len(prompts)).repeat_interleave(n)  # (N,), N = len(prompts) * n
        ids_p, mask_p = left_pad(prompt_seqs, self.pad_id)  # (len(prompts), P): each prompt padded once
        ids_all, mask_all = ids_p.repeat_interleave(n, 0), mask_p.repeat_interleave(n, 0)  # (N, P)

        n_pos = getattr(self.model.config, "n_positions", None)  # learned absolute positions (GPT-2)
        if n_pos is not None and ids_all.shape[1] + params.max_new_tokens > n_pos:
            raise ValueError(
                f"longest prompt ({ids_all.shape[1]} tokens) + max_new_tokens ({params.max_new_tokens}) "
                f"exceeds the model's {n_pos} positions"
            )

        dev = model_device(self.model)
        generator = None
        if params.seed is not None and params.temperature > 0:
            generator = torch.Generator(device=dev).manual_seed(params.seed)

        was_training = self.model.training
        self.model.eval()
        try:
            toks, lps, reasons = [], [], []
            chunk = self.max_batch_size or rows_per_chunk(
                self.model, ids_all.shape[1] + params.max_new_tokens, self.max_batch_bytes
            )
            for start in range(0, ids_all.shape[0], chunk):
                sl = slice(start, start + chunk)
                t, lp, r = self._generate_chunk(ids_all[sl], mask_all[sl], params, generator, dev)
                toks += t
                lps += lp
                reasons += r
        finally:
            self.model.train(was_training)

        texts = [
            cut_at_stop(t, params.stop)[0]
            for t in self.tokenizer.batch_decode(toks, skip_special_tokens=True)
        ]
        return RolloutOutput.pack(prompt_index, ids_all, mask_all, toks, lps, texts, reasons, self.pad_id)

    def _generate_chunk(self, ids, mask, params: SamplingParams, generator, dev):
        """Decode one chunk. Shapes: ids, mask (B, P). Returns per-row token lists, logprob lists, reasons."""
        keep = mask.any(0)  # drop columns that are padding in every row of this chunk
        first = int(keep.nonzero()[0]) if keep.any() else 0
        ids, mask = ids[:, first:].to(dev), mask[:, first:].to(dev)  # (B, P')
        B = ids.shape[0]
        attn = mask.long()  # (B, P')
        pos = position_ids_from_mask(attn)  # (B, P')
        eos_ids = self.eos_token_ids if self.eos_token_ids is not None else eos_token_ids(self.model, self.tokenizer)
        eos = torch.tensor(eos_ids, dtype=torch.long, device=dev)
        stop = params.stop
        stop_cand = self._stop_candidates(stop).to(dev) if stop else None
        window = (max(len(s) for s in stop) + 2) if stop else 0
        cache_kw, cache = _new_cache(self.model)
        extra = {"logits_to_keep": 1} if _accepts(self.model, "logits_to_keep") else {}

        out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **{cache_kw: cache}, **extra)
        logits = out.logits[:, -1]  # (B, V)
        next_pos = pos[:, -1] + 1  # (B,) left padding: the last column is real for every row

        tokens = torch.full((B, params.max_new_tokens), self.pad_id, dtype=torch.long, device=dev)  # (B, T)
        logps = torch.zeros((B, params.max_new_tokens), dtype=torch.float32, device=dev)  # (B, T)
        done = torch.zeros(B, dtype=torch.bool, device=dev)  # (B,)
        stopped = torch.zeros(B, dtype=torch.bool, device=dev)  # (B,) ended by eos / stop string
        lengths = torch.zeros(B, dtype=torch.long, device=dev)  # (B,)
        for t in range(params.max_new_tokens):
            tok, lp = sample_next(logits, temperature=params.temperature, top_p=params.top_p, generator=generator)
            active = ~done  # (B,)
            tok = torch.where(active, tok, torch.full_like(tok, self.pad_id))  # (B,)
            tokens[:, t] = tok
            logps[:, t] = torch.where(active, lp, torch.zeros_like(lp))
            lengths += active.long()
            ended = active & torch.isin(tok, eos)  # (B,)
            if stop:
                check = active & ~ended & stop_cand[tok]  # (B,) rows whose new token may finish a stop string
                rows = check.nonzero().flatten().tolist()
                if rows:
                    lo = max(0, t + 1 - window)
                    tails = self.tokenizer.batch_decode(tokens[rows, lo : t + 1].tolist(), skip_special_tokens=True)
                    for r, text in zip(rows, tails):
                        if cut_at_stop(text, stop)[1]:
                            ended[r] = True
            stopped |= ended
            done |= ended
            if bool(done.all()) or t == params.max_new_tokens - 1:
                break
            attn = torch.cat([attn, torch.ones((B, 1), dtype=attn.dtype, device=dev)], dim=1)  # (B, P'+t+1)
            out = self.model(
                input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None], use_cache=True,
                **{cache_kw: cache}, **extra,
            )
            logits = out.logits[:, -1]  # (B, V)
            next_pos = next_pos + 1

        tokens, logps, lengths, stopped = tokens.cpu(), logps.cpu(), lengths.cpu(), stopped.cpu()
        lens = lengths.tolist()
        tok_lists = [row[:n] for row, n in zip(tokens.tolist(), lens)]
        lp_lists = [row[:n] for row, n in zip(logps.tolist(), lens)]
        reasons = ["stop" if s else "length" for s in stopped.tolist()]
        return tok_lists, lp_lists, reasons
