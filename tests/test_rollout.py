"""Rollout backends: layout, padding, stop/eos/length conventions, log-prob correctness, vLLM glue."""

from __future__ import annotations

import math
import sys
from types import SimpleNamespace

import pytest
import torch

from lab.models import completion_logprobs
from lab.models.tiny import build_char_tokenizer, build_tiny_model, tiny_config
from lab.rollout import (
    BACKENDS,
    INSTALL_HINT,
    HFBackend,
    RolloutBackend,
    SamplingParams,
    VLLMBackend,
    available,
    get,
    sample_next,
)

PROMPTS = ["1+2=", "123+456=", "7*8=", "99-1="]


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def model():
    """A random tiny GPT-2 with a large init so greedy completions vary from token to token."""
    cfg = tiny_config(n_layer=2, n_embd=32, n_head=2)
    cfg.initializer_range = 0.5
    return build_tiny_model(cfg, seed=0).eval()


@pytest.fixture(scope="module")
def backend(model, tok):
    return HFBackend(model, tok)


GREEDY = SamplingParams(temperature=0.0, max_new_tokens=12)


def test_registry_lists_hf_and_vllm_and_rejects_unknown_names():
    assert available() == ["hf", "vllm"]
    assert BACKENDS.get("hf") is HFBackend
    with pytest.raises(ValueError, match="available: hf, vllm"):
        get("hf2")


def test_hf_backend_satisfies_the_protocol(backend):
    assert isinstance(backend, RolloutBackend)


def test_rows_are_grouped_by_prompt_and_prompts_left_padded(backend, tok):
    out = backend.generate(PROMPTS, SamplingParams(n=3, max_new_tokens=5, seed=0)).validate()
    assert out.prompt_index.tolist() == [i for i in range(4) for _ in range(3)]
    for r in range(len(out)):
        i = r // 3
        ids = out.prompt_token_ids[r][out.prompt_mask[r]].tolist()
        assert ids == tok(PROMPTS[i])["input_ids"]
    # left padding: the longest prompt has no padding, shorter ones are padded on the left
    assert out.prompt_mask[3:6].all()
    assert not out.prompt_mask[0, 0] and out.prompt_mask[0, -1]


def test_logprobs_match_teacher_forced_forward_within_1e4(backend, model):
    out = backend.generate(PROMPTS, SamplingParams(n=4, temperature=1.0, top_p=1.0, max_new_tokens=20, seed=1))
    assert out.completion_mask.sum() > 40  # a real amount of sampled tokens
    with torch.no_grad():
        tf, _ = completion_logprobs(model, out)
    assert torch.allclose(tf, out.logprobs, atol=1e-4, rtol=0)
    assert (out.logprobs[~out.completion_mask] == 0).all()


def test_logprobs_at_temperature_are_those_of_the_tempered_distribution(backend, model):
    out = backend.generate(PROMPTS, SamplingParams(n=2, temperature=0.5, max_new_tokens=10, seed=2))
    with torch.no_grad():
        tf, _ = completion_logprobs(model, out, temperature=0.5)
    assert torch.allclose(tf, out.logprobs, atol=1e-4, rtol=0)


def test_top_p_samples_only_the_nucleus_and_renormalises():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    tok, lp = sample_next(logits, temperature=1.0, top_p=0.7, generator=gen)
    assert set(tok.tolist()) == {0, 1}  # 0.5 < 0.7 so the second token is in, the third never
    expected = torch.log(torch.tensor([0.5, 0.3]) / 0.8)
    assert torch.allclose(lp, expected[tok], atol=1e-6)
    assert abs((tok == 0).float().mean().item() - 0.625) < 0.05  # renormalised 0.5 / 0.8


def test_greedy_logprobs_are_the_untempered_model_logprobs(backend, model):
    out = backend.generate(PROMPTS, GREEDY)
    with torch.no_grad():
        tf, _ = completion_logprobs(model, out)
    assert torch.allclose(tf, out.logprobs, atol=1e-4, rtol=0)


def test_max_new_tokens_caps_every_completion_and_reports_length(backend):
    out = backend.generate(PROMPTS, SamplingParams(n=2, max_new_tokens=3, seed=0)).validate()
    assert out.completion_ids.shape[1] <= 3
    for r in range(len(out)):
        if out.finish_reasons[r] == "length":
            assert out.completion_mask[r].sum() == 3


def test_stop_string_ends_generation_keeps_the_token_and_strips_the_text(backend, tok):
    free = backend.generate(["1+2="], GREEDY)
    ids = free.completion_ids[0].tolist()
    text = tok.decode(ids)
    assert len(set(text)) > 3, "fixture model should produce varied greedy text"
    k = 3
    stop_char = text[k]
    k = text.index(stop_char)  # first occurrence
    out = backend.generate(["1+2="], SamplingParams(temperature=0.0, max_new_tokens=12, stop=[stop_char, "never"]))
    assert out.texts == [text[:k]]
    assert out.finish_reasons == ["stop"]
    assert out.completion_mask[0].sum() == k + 1  # the stop token is kept as the last token
    assert out.completion_ids[0, k] == ids[k]


def test_multi_character_stop_string_spanning_tokens(backend, tok):
    text = tok.decode(backend.generate(["7*8="], GREEDY).completion_ids[0].tolist())
    stop = text[4:6]
    k = text.index(stop)
    out = backend.generate(["7*8="], SamplingParams(temperature=0.0, max_new_tokens=12, stop=(stop,)))
    assert out.texts == [text[:k]] and out.finish_reasons == ["stop"]
    assert out.completion_mask[0].sum() == k + 2


def test_eos_ends_generation_is_kept_in_ids_and_reported_as_stop(model, tok):
    ids = HFBackend(model, tok).generate(["1+2="], GREEDY).completion_ids[0].tolist()
    k = 2
    end_id = ids[k]
    k = ids.index(end_id)
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [saved, end_id]  # treat that token as an extra eos
    try:
        out = HFBackend(model, tok).generate(["1+2="], GREEDY)
    finally:
        model.generation_config.eos_token_id = saved
    assert out.finish_reasons == ["stop"]
    assert out.completion_ids[0].tolist()[: k + 1] == ids[: k + 1]
    assert out.completion_mask[0].sum() == k + 1


def test_eos_token_is_not_in_text(tok):
    class EosModel(torch.nn.Module):
        """Always puts all mass on eos: completions are exactly one eos token."""

        config = tiny_config()
        generation_config = SimpleNamespace(eos_token_id=None)

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None, past_key_values=None):
            logits = torch.full((*input_ids.shape, 100), -30.0)
            logits[..., tok.eos_token_id] = 30.0
            return SimpleNamespace(logits=logits)

    out = HFBackend(EosModel(), tok).generate(["1+2="], SamplingParams(n=2, max_new_tokens=5, seed=0)).validate()
    assert out.completion_ids.tolist() == [[tok.eos_token_id]] * 2
    assert out.texts == ["", ""] and out.finish_reasons == ["stop", "stop"]


def test_left_padding_does_not_change_a_prompts_greedy_completion(backend):
    alone = backend.generate(["1+2="], GREEDY)
    batched = backend.generate(["123456789+987654321=", "1+2=", "55*55="], GREEDY)
    T = alone.completion_ids.shape[1]
    assert batched.completion_ids[1, :T].tolist() == alone.completion_ids[0].tolist()
    assert batched.texts[1] == alone.texts[0]
    assert torch.allclose(batched.logprobs[1, :T], alone.logprobs[0], atol=1e-5)


def test_chunking_large_batches_gives_the_same_greedy_result(model, tok):
    big = HFBackend(model, tok, max_batch_size=64).generate(PROMPTS, SamplingParams(n=2, temperature=0, max_new_tokens=8))
    small = HFBackend(model, tok, max_batch_size=3).generate(PROMPTS, SamplingParams(n=2, temperature=0, max_new_tokens=8))
    assert big.texts == small.texts
    assert torch.equal(big.completion_ids, small.completion_ids)
    assert torch.allclose(big.logprobs, small.logprobs, atol=1e-5)


def test_default_chunks_are_sized_by_memory_and_a_tiny_budget_chunks_row_by_row(model, tok):
    from lab.rollout.hf import rows_per_chunk

    p = SamplingParams(n=8, max_new_tokens=8, seed=3)  # 32 sampled rows
    seq = max(len(tok(x)["input_ids"]) for x in PROMPTS) + p.max_new_tokens
    assert rows_per_chunk(model, seq, 2**30) >= 32  # the default budget holds every row of this call
    default = HFBackend(model, tok).generate(PROMPTS, p)
    one_chunk = HFBackend(model, tok, max_batch_size=32).generate(PROMPTS, p)
    assert default.texts == one_chunk.texts and torch.equal(default.logprobs, one_chunk.logprobs)
    # a budget below one row's KV cache: one row per chunk, the same draws as max_batch_size=1
    by_row = HFBackend(model, tok, max_batch_bytes=1).generate(PROMPTS, p)
    single = HFBackend(model, tok, max_batch_size=1).generate(PROMPTS, p)
    assert by_row.texts == single.texts and torch.equal(by_row.logprobs, single.logprobs)
    assert by_row.texts != default.texts  # chunking decides which draw goes to which row
    for bad in ({"max_batch_size": 0}, {"max_batch_bytes": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            HFBackend(model, tok, **bad)


def test_seed_makes_sampling_reproducible(backend):
    p = SamplingParams(n=4, max_new_tokens=8, seed=7)
    a, b = backend.generate(PROMPTS, p), backend.generate(PROMPTS, p)
    c = backend.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=8, seed=8))
    assert a.texts == b.texts and torch.equal(a.logprobs, b.logprobs)
    assert a.texts != c.texts


def test_generation_restores_train_mode_and_needs_no_grad(model, tok):
    model.train()
    out = HFBackend(model, tok).generate(["1+2="], SamplingParams(max_new_tokens=3, seed=0))
    assert model.training and not out.logprobs.requires_grad
    model.eval()


def test_too_long_request_for_learned_positions_raises(backend):
    with pytest.raises(ValueError, match="positions"):
        backend.generate(["1" * 120], SamplingParams(max_new_tokens=20))


def test_sync_weights_is_a_noop_for_the_shared_model_and_copies_another(model, tok):
    cfg = tiny_config(n_layer=2, n_embd=32, n_head=2)
    mine = build_tiny_model(cfg, seed=1)
    b = HFBackend(mine, tok)
    b.sync_weights(mine)
    assert b.model is mine
    b.sync_weights(model)
    assert b.model is mine
    assert all(torch.equal(p, q) for p, q in zip(mine.parameters(), model.parameters()))


def test_sampling_params_validate_and_normalise():
    assert SamplingParams(stop="\n").stop == ("\n",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    for bad in (dict(n=0), dict(temperature=-1), dict(top_p=1.5), dict(max_new_tokens=0), dict(stop=[""])):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def test_completion_logprobs_gradients_flow(backend, model):
    out = backend.generate(PROMPTS[:2], SamplingParams(n=2, max_new_tokens=6, seed=0))
    logp, ent = completion_logprobs(model, out, with_entropy=True)
    (logp.sum() + ent.sum()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- vLLM


def test_vllm_missing_raises_an_error_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match=r"pip install -e \.\[gpu\]"):
        get("vllm", model="some/model")
    assert "pip install vllm" in INSTALL_HINT


class _FakeLogprob:
    def __init__(self, lp):
        self.logprob = lp


class _FakeEngineModel:
    def __init__(self):
        self.loaded = []

    def load_weights(self, weights):
        self.loaded.append(dict(weights))
        return set(dict(weights))


class FakeLLM:
    """Mimics the parts of ``vllm.LLM`` the backend touches (generate, model runner, prefix cache)."""

    def __init__(self, tok, in_process=True):
        self.tok = tok
        self.model = _FakeEngineModel()
        self.resets = 0
        self.calls = []
        if in_process:
            runner = SimpleNamespace(model=self.model)
            self.llm_engine = SimpleNamespace(
                model_executor=SimpleNamespace(driver_worker=SimpleNamespace(worker=SimpleNamespace(model_runner=runner)))
            )

    def generate(self, requests, params, use_tqdm=False):
        self.calls.append((requests, params))
        results = []
        for i, req in enumerate(requests):
            outs = []
            for j in reversed(range(params["n"])):  # out of order on purpose: the backend sorts by index
                text = f"{i}{j}"
                ids = self.tok(text)["input_ids"]
                if j == 0:  # stopped by eos, which vLLM keeps in token_ids but not in text
                    ids = ids + [self.tok.eos_token_id]
                    reason = "stop"
                else:
                    reason = "length"
                lps = [{t: _FakeLogprob(-0.1 * (k + 1))} for k, t in enumerate(ids)]
                outs.append(SimpleNamespace(index=j, token_ids=ids, logprobs=lps, text=text, finish_reason=reason))
            results.append(SimpleNamespace(outputs=outs))
        return results

    def apply_model(self, fn):
        return [fn(self.model)]

    def reset_prefix_cache(self):
        self.resets += 1


def test_vllm_glue_packs_engine_outputs_into_rollout_output(tok):
    llm = FakeLLM(tok)
    backend = get("vllm", llm=llm, tokenizer=tok, sampling_params_cls=dict)
    out = backend.generate(["1+2=", "10+20="], SamplingParams(n=2, max_new_tokens=4, stop=["\n"], seed=3)).validate()
    requests, vparams = llm.calls[0]
    assert requests == [{"prompt_token_ids": tok("1+2=")["input_ids"]}, {"prompt_token_ids": tok("10+20=")["input_ids"]}]
    assert vparams == dict(n=2, temperature=1.0, top_p=1.0, max_tokens=4, stop=["\n"], seed=3, logprobs=0,
                           include_stop_str_in_output=False, skip_special_tokens=True)
    assert out.prompt_index.tolist() == [0, 0, 1, 1]
    assert out.texts == ["00", "01", "10", "11"]
    assert out.finish_reasons == ["stop", "length", "stop", "length"]
    assert out.completion_mask.sum(-1).tolist() == [3, 2, 3, 2]  # eos kept as the last token
    assert out.completion_ids[0, 2] == tok.eos_token_id
    assert torch.allclose(out.logprobs[0], torch.tensor([-0.1, -0.2, -0.3]))
    assert out.logprobs[1, 2] == 0


def test_vllm_sync_weights_loads_the_state_dict_and_resets_prefix_cache(tok):
    policy = build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0)
    for in_process in (True, False):  # direct model-runner path, then LLM.apply_model
        llm = FakeLLM(tok, in_process=in_process)
        backend = VLLMBackend(llm=llm, tokenizer=tok, sampling_params_cls=dict)
        backend.sync_weights(policy)
        (loaded,) = llm.model.loaded
        tied = {"lm_head.weight"}  # shares the embedding's storage: sent once, as on disk
        assert set(loaded) == set(policy.state_dict()) - tied
        assert torch.equal(loaded["transformer.wte.weight"].cpu(), policy.transformer.wte.weight.detach())
        assert llm.resets == 1


def _fake_vllm(monkeypatch, tok):
    """A stand-in ``vllm`` module whose ``LLM`` records the engine arguments it was built with."""
    built = []

    class LLM(FakeLLM):
        def __init__(self, model, **kwargs):
            super().__init__(tok)
            built.append(dict(kwargs, model=model))

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=LLM, SamplingParams=dict))
    return built


def test_vllm_on_cpu_sizes_its_kv_cache_from_the_first_calls_rows_and_lengths(tok, monkeypatch):
    from lab.rollout.base import model_dims
    from lab.rollout.vllm_backend import KV_FLOOR_BYTES, KV_OVERRIDE_ENV, kv_cache_bytes

    monkeypatch.delenv(KV_OVERRIDE_ENV, raising=False)
    built = _fake_vllm(monkeypatch, tok)
    policy = build_tiny_model(tiny_config(n_layer=2, n_embd=32, n_head=2), seed=0)
    policy.name_or_path = "tiny/policy"
    backend = get("vllm", model=policy, tokenizer=tok, max_batch_bytes=2**20)  # the trainer passes max_batch_bytes
    assert built == []  # no engine yet: the run's first call says how big it must be
    backend.generate(["1+2=", "123+456="], SamplingParams(n=3, max_new_tokens=5))
    (args,) = built
    assert "max_batch_bytes" not in args and args["dtype"] == "float32"
    per_token = 2 * 2 * 2 * 16 * 4  # K and V x layers x heads x head-dim x float32
    assert model_dims(policy.config, 4)["kv_bytes_per_token"] == per_token
    rows, seq = 2 * 3, len(tok("123+456=")["input_ids"]) + 5
    assert args["kv_cache_memory_bytes"] == backend.kv_cache_memory_bytes == kv_cache_bytes(per_token, rows, seq, cap=2**20)
    assert backend.kv_cache_memory_bytes == KV_FLOOR_BYTES  # this tiny job needs less than the floor
    (loaded,) = backend.llm.model.loaded  # the policy's weights went in when the engine started
    assert torch.equal(loaded["transformer.wte.weight"], policy.transformer.wte.weight.detach())
    # a large job is capped at max_batch_bytes (vLLM then schedules it in waves)
    assert kv_cache_bytes(per_token, 10_000, 128, cap=2**27) == 2**27
    assert kv_cache_bytes(per_token, 1, 10**6, cap=1) == per_token * 10**6  # always one full sequence


def test_vllm_kv_cache_override_leaves_the_size_to_vllm(tok, monkeypatch):
    from lab.rollout.vllm_backend import KV_OVERRIDE_ENV

    built = _fake_vllm(monkeypatch, tok)
    monkeypatch.setenv(KV_OVERRIDE_ENV, "2")
    get("vllm", model="some/model", tokenizer=tok)
    monkeypatch.delenv(KV_OVERRIDE_ENV)
    get("vllm", model="some/model", tokenizer=tok, kv_cache_memory_bytes=12345)
    assert [b.get("kv_cache_memory_bytes") for b in built] == [None, 12345]  # built at once, sized by vLLM / the caller
    with pytest.raises(ValueError, match="max_batch_bytes"):
        get("vllm", model="some/model", tokenizer=tok, max_batch_bytes=0)


@pytest.mark.gpu
def test_vllm_real_engine_generates_from_the_tiny_model():
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA device")
    from lab.models.loading import TINY_ARITH

    backend = get("vllm", model=str(TINY_ARITH), gpu_memory_utilization=0.2, enforce_eager=True, dtype="float32")
    out = backend.generate(["12+7=", "3+4="], SamplingParams(n=4, max_new_tokens=8, seed=0)).validate()
    assert len(out) == 8 and all(math.isfinite(x) for x in out.logprobs.flatten().tolist())


def test_left_padding_invariance_on_the_shipped_model():
    from lab.models import load

    model, tok = load("tiny-arith", device="cpu")
    backend = HFBackend(model, tok)
    prompts = ["7+8=", "45*67=", "3-9=", "12+7="]
    greedy = SamplingParams(temperature=0, max_new_tokens=8, stop=["\n"])
    alone = [backend.generate([p], greedy) for p in prompts]
    batched = backend.generate(prompts, greedy)
    assert batched.texts == [a.texts[0] for a in alone]
    for i, a in enumerate(alone):
        T = a.completion_ids.shape[1]
        assert batched.completion_ids[i, :T].tolist() == a.completion_ids[0].tolist()
        assert torch.allclose(batched.logprobs[i, :T], a.logprobs[0], atol=1e-5)
