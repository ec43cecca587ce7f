"""Load any Hugging Face causal LM by hub name or local path, the lab's way.

Rules (``load``):

* **name resolution**: an existing local directory wins (a relative path is
  also tried against the repository root, so ``"data/models/tiny-arith"`` works
  from ``notebooks/``); the short name
  ``"tiny-arith"`` means the shipped checkpoint (:data:`TINY_ARITH`); anything
  else must look like a hub id (``"gpt2"``, ``"Qwen/Qwen2.5-0.5B-Instruct"``:
  at most one ``/``, no leading ``.``/``/``/``~``), or a ``FileNotFoundError``
  says the path does not exist. Hub ids go to ``from_pretrained``, which uses
  the local HF cache and only downloads when the network allows it.
* **device** ``"auto"``: cuda, then mps, then cpu (:func:`pick_device`).
* **dtype** ``"auto"``: bfloat16 on CUDA, float32 elsewhere (CPU bf16 matmuls
  are slow and too coarse for the 1e-4 log-prob checks the lab relies on).
* **tokenizer**: pad token set to eos when the tokenizer has none, and left
  padding, which batched generation needs.

* **local folders are checked before loading** (:func:`check_model_dir`): a folder needs
  ``config.json``, safetensors weights and tokenizer files; pickle-only weights
  (``pytorch_model.bin``, ``*.pt``) are refused, never unpickled. Problems raise
  :class:`ModelLoadError` in one line naming the folder and the fix.
* an explicit device that is not there (``"cuda"`` without CUDA, ``"cuda:3"`` on a
  one-GPU machine, ``"mps"`` off Apple silicon) raises :class:`DeviceUnavailableError`.

``format_prompt`` applies the tokenizer's chat template when it has one.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from lab.errors import UsageError, reason
from lab.paths import data_root

REPO_ROOT = data_root()  # the checkout, or lab/_data inside an installed wheel (lab/paths.py)
TINY_ARITH = REPO_ROOT / "data" / "models" / "tiny-arith"
"""Where the shipped tiny checkpoint lives (``load("tiny-arith")`` resolves here)."""

SHORT_NAMES = {"tiny-arith": TINY_ARITH}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class ModelLoadError(UsageError, FileNotFoundError):
    """A model name or folder that cannot be loaded; the message names it and the fix."""


class DeviceUnavailableError(UsageError):
    """An explicitly requested device is not available on this machine."""


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else mps if available, else cpu; anything else as given,
    after checking it exists here (:class:`DeviceUnavailableError` otherwise).

    >>> pick_device("cpu")
    device(type='cpu')
    >>> pick_device("auto").type in {"cuda", "mps", "cpu"}
    True
    """
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise DeviceUnavailableError(f"device: {device!r} is not a device; use cpu, cuda, cuda:N, mps or auto") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise DeviceUnavailableError(
                    f"device: {device!r} requested but CUDA is not available here (torch {torch.__version__}); "
                    "use --device cpu or --device auto")
            n = torch.cuda.device_count()
            if dev.index is not None and dev.index >= n:
                raise DeviceUnavailableError(f"device: {device!r} requested but this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
        if dev.type == "mps":
            mps = getattr(torch.backends, "mps", None)
            if mps is None or not mps.is_available():
                raise DeviceUnavailableError(f"device: {device!r} requested but MPS (Apple GPU) is not available here; use --device cpu or auto")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``"auto"`` -> bfloat16 on CUDA, float32 elsewhere; names like ``"bf16"`` -> torch dtypes.

    >>> resolve_dtype("auto", torch.device("cpu"))
    torch.float32
    >>> resolve_dtype("auto", torch.device("cuda"))
    torch.bfloat16
    >>> resolve_dtype("fp16", torch.device("cpu"))
    torch.float16
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}") from None


def is_plausible_hub_id(name: str) -> bool:
    """True for strings shaped like a hub id: ``name`` or ``org/name``.

    >>> [is_plausible_hub_id(s) for s in ["gpt2", "Qwen/Qwen2.5-0.5B", "data/models/x", "./m", "/tmp/m"]]
    [True, True, False, False, False]
    """
    return bool(_HUB_ID.match(name)) and ".." not in name


def resolve_name(name_or_path: str | Path) -> str:
    """The string to hand to ``from_pretrained``: a local directory, or a hub id.

    Raises ``FileNotFoundError`` when ``name_or_path`` is neither an existing
    directory, a short name (``"tiny-arith"``), nor shaped like a hub id.

    >>> resolve_name("gpt2")
    'gpt2'
    >>> resolve_name("./no/such/dir")
    Traceback (most recent call last):
    ...
    FileNotFoundError: model path './no/such/dir' does not exist (and is not a Hugging Face hub id such as 'gpt2' or 'Qwen/Qwen2.5-0.5B-Instruct')
    """
    s = str(name_or_path)
    p = Path(s).expanduser()
    if p.is_dir():
        return str(p)
    if not p.is_absolute() and (REPO_ROOT / p).is_dir():  # e.g. "data/models/tiny-arith" from notebooks/
        return str(REPO_ROOT / p)
    if p.exists():
        raise FileNotFoundError(f"model path {s!r} is a file; expected a model directory")
    if s in SHORT_NAMES:
        shipped = SHORT_NAMES[s]
        if not shipped.is_dir():
            raise FileNotFoundError(
                f"{s!r} refers to {shipped}, which does not exist; create it with `python -m lab.models.pretrain`"
            )
        return str(shipped)
    if isinstance(name_or_path, Path) or not is_plausible_hub_id(s):
        raise FileNotFoundError(
            f"model path {s!r} does not exist (and is not a Hugging Face hub id "
            "such as 'gpt2' or 'Qwen/Qwen2.5-0.5B-Instruct')"
        )
    return s


_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model", "spiece.model")


def check_model_dir(folder: str | Path) -> None:
    """Refuse a local model folder that cannot load safely, in one line naming what is missing.

    Needs ``config.json``, safetensors weights (``model.safetensors`` or a sharded
    ``model.safetensors.index.json``) and tokenizer files. A folder with only pickle weights
    is refused (unpickling can run code); convert it once where you trust it, e.g.
    ``AutoModelForCausalLM.from_pretrained(d).save_pretrained(d, safe_serialization=True)``.

    >>> import tempfile; d = tempfile.mkdtemp()
    >>> _ = open(f"{d}/config.json", "w").write("{}"); _ = open(f"{d}/pytorch_model.bin", "wb").write(b"")
    >>> check_model_dir(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lab.models.loading.ModelLoadError: model folder ... has only pickle weights (pytorch_model.bin); ...
    """
    d = Path(folder)
    if not (d / "config.json").is_file():
        raise ModelLoadError(f"model folder {d} has no config.json; it is not a Hugging Face model folder")
    has_safe = any(d.glob("*.safetensors")) or (d / "model.safetensors.index.json").is_file()
    if not has_safe:
        pickles = sorted({p.name for pat in _PICKLE_WEIGHTS for p in d.glob(pat)})
        if pickles:
            raise ModelLoadError(
                f"model folder {d} has only pickle weights ({', '.join(pickles)}); the lab loads safetensors only "
                "(unpickling can run code): convert it with save_pretrained(..., safe_serialization=True) where you trust it")
        raise ModelLoadError(f"model folder {d} has no weights (model.safetensors); it is incomplete")
    if not any((d / n).is_file() for n in _TOKENIZER_FILES):
        raise ModelLoadError(f"model folder {d} has no tokenizer files (tokenizer.json / tokenizer_config.json); "
                             "save the tokenizer into it with tokenizer.save_pretrained(folder)")


def prepare_tokenizer(tokenizer):
    """Set pad = eos when missing and left padding; returns the same tokenizer.

    >>> from lab.models.tiny import build_char_tokenizer
    >>> tok = build_char_tokenizer()
    >>> tok.pad_token = None
    >>> tok.padding_side = "right"
    >>> t = prepare_tokenizer(tok)
    >>> t.pad_token == t.eos_token, t.padding_side
    (True, 'left')
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad nor an eos token; set one before loading")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
):
    """Load ``(model, tokenizer)`` for a causal LM (see the module docstring for the rules).

    Shapes: none (returns modules). The model is in eval mode on ``device``;
    its ``generation_config.pad_token_id`` is set to the tokenizer's pad id.

    >>> model, tok = load("tiny-arith", device="cpu")  # doctest: +SKIP
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_name(name_or_path)
    dev = pick_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    local = Path(source).is_dir()
    if local:
        check_model_dir(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        try:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, use_safetensors=True)
        except TypeError:  # transformers < 4.56 spells it torch_dtype
            model = AutoModelForCausalLM.from_pretrained(source, torch_dtype=torch_dtype, use_safetensors=True)
    except (OSError, ValueError, KeyError) as e:
        first = reason(e, 200)
        if local:
            raise ModelLoadError(f"model folder {source} could not be loaded: {first}") from None
        raise ModelLoadError(
            f"could not load {source!r}: not a local directory, and the Hugging Face hub "
            f"(or its local cache) did not provide it ({first})"
        ) from None
    prepare_tokenizer(tokenizer)
    model.to(dev)
    model.eval()
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def format_prompt(tokenizer, text: str) -> str:
    """Wrap ``text`` as one user turn with the chat template, or return it unchanged.

    With a template: ``apply_chat_template([{"role": "user", "content": text}],
    add_generation_prompt=True, tokenize=False)``. The result already holds any
    bos token the template writes; the rollout backends do not add a second one.

    >>> from lab.models.tiny import build_char_tokenizer
    >>> tok = build_char_tokenizer()
    >>> format_prompt(tok, "12+7=")
    '12+7='
    >>> tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    >>> format_prompt(tok, "12+7=")
    '<user>12+7=\\n<assistant>'
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
    return text
