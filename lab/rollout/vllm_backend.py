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
* weight sync: ``sync_weights(model)`` streams ``model.state_dict()`` into the
  engine's model with ``load_weights`` (directly when the engine runs in this
  process, through ``LLM.apply_model`` otherwise), then resets vLLM's prefix
  cache so no KV computed with the old weights is reused. For the direct path
  run vLLM in-process: ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (set by default).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from lab.rollout.base import BACKENDS, RolloutOutput, SamplingParams, cut_at_stop, left_pad, tokenize_prompts

INSTALL_HINT = (
    "the 'vllm' rollout backend needs vLLM, which is not installed. On a CUDA machine run "
    "`pip install -e .[gpu]` (or `pip install vllm`), or use the default backend: rollout='hf'."
)


def import_vllm():
    """Import vllm or raise ``ImportError`` carrying :data:`INSTALL_HINT`."""
    try:
        import vllm  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised via monkeypatch in tests
        raise ImportError(INSTALL_HINT) from e
    return vllm


def to_vllm_params(params: SamplingParams, sampling_params_cls) -> Any:
    """Translate the lab's :class:`SamplingParams` into ``vllm.SamplingParams``.

    >>> to_vllm_params(SamplingParams(n=2, max_new_tokens=5, stop=("\\n",), seed=3), dict)["max_tokens"]
    5
    """
    return sampling_params_cls(
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


@BACKENDS.register("vllm")
class VLLMBackend:
    """vLLM engine behind the lab's rollout interface.

    Args:
        model: hub id or local path the engine loads (ignored when ``llm`` is given).
        tokenizer: the HF tokenizer (used for prompt token ids and pad id); loaded
            with ``AutoTokenizer`` from ``model`` when None.
        llm: an already built engine (``vllm.LLM`` or a test double); skips the import.
        logprobs_mode: engine log-prob mode, default ``"processed_logprobs"``.
        sampling_params_cls: the ``SamplingParams`` class to build (default
            ``vllm.SamplingParams``; tests inject a stand-in with ``llm``).
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
        **engine_kwargs,
    ):
        self._vllm = None
        self._sampling_params = sampling_params_cls
        self.logprobs_mode = logprobs_mode
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
        vparams = to_vllm_params(params, self._sampling_params_cls())
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

    def sync_weights(self, model) -> None:
        """Load ``model``'s current weights into the engine, then drop vLLM's prefix cache."""
        weights = [(name, t.detach()) for name, t in model.state_dict().items()]
        target = self.engine_model()
        if target is not None:
            target.load_weights(weights)
        elif hasattr(self.llm, "apply_model"):
            cpu_weights = [(name, t.cpu()) for name, t in weights]
            self.llm.apply_model(lambda m: m.load_weights(cpu_weights) and None)
        else:
            raise RuntimeError("cannot reach the engine's model: no in-process model runner and no LLM.apply_model")
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()
