"""The lab's own tiny model: a character-level tokenizer and a small GPT-2.

Nothing can be downloaded in the lab's default environment, so the lab ships
its own checkpoint (``data/models/tiny-arith``, written by
:mod:`lab.models.pretrain`). Both halves are plain Hugging Face objects, so the
checkpoint loads with ``AutoTokenizer`` / ``AutoModelForCausalLM`` like any
other model and every code path of the lab (loading, rollout, log-probs) is the
same for it and for a real hub model.

Tokenizer: one token per character over printable ASCII plus ``\\n`` and
``\\t``, and three special tokens::

    <|pad|>        id 0   padding (never attended, never trained on)
    <|endoftext|>  id 1   bos = eos: the model ends an answer with it
    <|unk|>        id 2   any character outside the vocabulary

Encoding adds no special tokens, and ``decode(encode(s)) == s`` for every
string made of vocabulary characters (spaces and newlines included).

>>> tok = build_char_tokenizer()
>>> ids = tok("12+7=19\\n")["input_ids"]
>>> len(ids)
8
>>> tok.decode(ids)
'12+7=19\\n'
>>> tok.decode(tok("a b")["input_ids"] + [tok.eos_token_id], skip_special_tokens=True)
'a b'
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<|unk|>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)

# printable ASCII without the vertical whitespace string.printable also holds (\r \x0b \x0c)
CHARS = tuple(sorted(set(string.printable) - set("\r\x0b\x0c")))


def char_vocab() -> dict[str, int]:
    """Token -> id: the three special tokens first (ids 0, 1, 2), then one id per character.

    >>> v = char_vocab()
    >>> v["<|pad|>"], v["<|endoftext|>"], v["<|unk|>"]
    (0, 1, 2)
    >>> len(v)
    100
    """
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARS:
        vocab[ch] = len(vocab)
    return vocab


def build_char_tokenizer(model_max_length: int = 128) -> PreTrainedTokenizerFast:
    """A character-level ``PreTrainedTokenizerFast`` (see the module docstring).

    Built with the ``tokenizers`` library: a WordLevel model over single
    characters, a pre-tokenizer that isolates every character (newlines
    included), and a ``Fuse`` decoder so decoding concatenates without spaces.
    Padding side is left (generation); ``save_pretrained`` writes the usual
    ``tokenizer.json`` / ``tokenizer_config.json`` so ``AutoTokenizer`` loads it.

    >>> tok = build_char_tokenizer()
    >>> tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.padding_side
    (0, 1, 1, 'left')
    >>> tok.decode(tok("é")["input_ids"])
    '<|unk|>'
    """
    core = Tokenizer(models.WordLevel(vocab=char_vocab(), unk_token=UNK_TOKEN))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD_TOKEN,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )


def tiny_config(
    vocab_size: int = 100,
    *,
    n_layer: int = 4,
    n_embd: int = 128,
    n_head: int = 4,
    n_positions: int = 128,
    pad_token_id: int = 0,
    eos_token_id: int = 1,
) -> GPT2Config:
    """A small GPT-2 config with dropout off.

    Dropout is 0 so that the training forward pass (``model.train()``) gives
    the same log-probs as the rollout pass: on-policy importance ratios are
    exactly 1, as RL losses assume.

    >>> cfg = tiny_config()
    >>> cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions, cfg.resid_pdrop
    (4, 128, 4, 128, 0.0)
    """
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )


def build_tiny_model(config: GPT2Config | None = None, *, seed: int | None = None) -> GPT2LMHeadModel:
    """A randomly initialised ``GPT2LMHeadModel`` (deterministic when ``seed`` is given).

    >>> m = build_tiny_model(seed=0)
    >>> sum(p.numel() for p in m.parameters())
    822528
    """
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    model = GPT2LMHeadModel(config or tiny_config())
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id
    return model
