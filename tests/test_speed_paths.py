"""The fast paths of a training step compute what the plain ones do.

* ``lab.models.fast``: the lean GPT-2 forward gives transformers' logits, KV-cached samples
  and gradients (to 1e-5), falls back to transformers for anything it does not handle, and
  leaves parameters, state dicts and checkpoints as they were.
* ``lab.train``: with one update per batch the old log-probs are not recomputed, and the
  update is the one a separate no-grad pass for the old log-probs gives.
* ``benchmarks/step_time_vs_trl.py``: its lab-side profile accounts for the step.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lab import losses
from lab.models import completion_logprobs, fast
from lab.models.logprobs import position_ids_from_mask
from lab.models.tiny import build_char_tokenizer, build_tiny_model, tiny_config
from lab.rollout import HFBackend, SamplingParams

PROMPTS = ["8*2=", "74+35=", "1+1=", "20-87="]


def _pair(cfg=None, seed=0):
    """Two models with the same weights: the first stays transformers, the second is made lean."""
    ref = build_tiny_model(cfg or tiny_config(n_layer=2, n_embd=32, n_head=4), seed=seed).eval()
    lean = build_tiny_model(cfg or tiny_config(n_layer=2, n_embd=32, n_head=4), seed=seed).eval()
    return ref, fast.accelerate(lean)


def _padded_batch():
    """Left-padded prompts + right-padded completions, as a RolloutOutput-like object."""
    return SimpleNamespace(
        prompt_token_ids=torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10], [0, 11, 12, 13]]),
        prompt_mask=torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]], dtype=torch.bool),
        completion_ids=torch.tensor([[20, 21, 22], [23, 1, 0], [24, 25, 26]]),
        completion_mask=torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.bool),
    )


@pytest.mark.parametrize("cfg", [tiny_config(n_layer=2, n_embd=32, n_head=4), tiny_config()], ids=["2x32", "shipped 4x128"])
def test_lean_forward_gives_transformers_logits_on_padded_batches(cfg):
    ref, lean = _pair(cfg)
    b = _padded_batch()
    ids = torch.cat([b.prompt_token_ids, b.completion_ids], 1)
    mask = torch.cat([b.prompt_mask, b.completion_mask], 1).long()
    pos = position_ids_from_mask(mask)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        got = lean(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        got_tail = lean(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=4).logits
    real = mask.bool()
    assert torch.isfinite(got).all()  # padded rows stay finite (they attend to themselves)
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_tail, got[:, -4:], atol=0, rtol=0)
    # no padding at all: plain causal attention, position ids left to the model
    with torch.no_grad():
        torch.testing.assert_close(lean(input_ids=ids[1:2]).logits, ref(input_ids=ids[1:2]).logits, atol=1e-5, rtol=1e-5)


def test_lean_logprobs_and_gradients_match_transformers():
    ref, lean = _pair()
    b = _padded_batch()
    lp_ref, ent_ref = completion_logprobs(ref, b, with_entropy=True)
    lp, ent = completion_logprobs(lean, b, with_entropy=True)
    torch.testing.assert_close(lp, lp_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ent_ref, atol=1e-5, rtol=1e-5)
    (lp_ref * torch.arange(1.0, 4.0)[None]).sum().backward()
    (lp * torch.arange(1.0, 4.0)[None]).sum().backward()
    for (name, p), q in zip(ref.named_parameters(), lean.parameters()):
        scale = p.grad.abs().max().clamp(min=1.0)
        assert (p.grad - q.grad).abs().max() / scale < 1e-5, name


def test_kv_cached_sampling_is_the_same_with_the_lean_forward():
    ref, lean = _pair()
    tok = build_char_tokenizer()
    params = SamplingParams(n=3, max_new_tokens=6, temperature=1.0, seed=7)
    a = HFBackend(ref, tok).generate(PROMPTS, params)
    b = HFBackend(lean, tok).generate(PROMPTS, params)
    assert torch.equal(a.completion_ids, b.completion_ids) and a.texts == b.texts
    torch.testing.assert_close(b.logprobs, a.logprobs, atol=1e-5, rtol=1e-5)
    # the rollout's log-probs are the teacher-forced ones (the 1e-4 convention of lab.rollout)
    tf, _ = completion_logprobs(lean, b)
    assert (tf - b.logprobs).abs().max() < 1e-4


def test_accelerate_changes_no_parameter_state_dict_or_checkpoint(tmp_path):
    model = build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=1).eval()
    params = list(model.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert fast.accelerate(model) is model and fast.is_lean(model)
    assert fast.accelerate(model) is model  # idempotent
    assert all(p is q for p, q in zip(model.parameters(), params))
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    model.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert not fast.is_lean(again) and type(again) is type(model)
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, again(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    fast.restore(model)
    assert not fast.is_lean(model) and "forward" not in vars(model)


def test_unsupported_calls_fall_back_to_transformers():
    ref, lean = _pair()
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        emb = ref.transformer.wte(ids)
        torch.testing.assert_close(lean(inputs_embeds=emb).logits, ref(inputs_embeds=emb).logits, atol=1e-6, rtol=1e-6)
        out = lean(input_ids=ids, labels=ids)
        assert out.loss is not None  # transformers' forward computed its loss
    # dropout active in training mode: the lean path (which has no dropout) must not run
    cfg = tiny_config(n_layer=1, n_embd=16, n_head=2)
    cfg.resid_pdrop = 0.5
    ref_d = build_tiny_model(cfg, seed=0).train()
    lean_d = fast.accelerate(build_tiny_model(cfg, seed=0).train())
    torch.manual_seed(3)
    want = ref_d(input_ids=ids).logits
    torch.manual_seed(3)
    torch.testing.assert_close(lean_d(input_ids=ids).logits, want, atol=0, rtol=0)


def test_lean_forward_takes_and_returns_the_cache_under_this_transformers_names():
    # transformers 5.24 renamed forward(past_key_values=) and the output field to `cache`; the
    # lean forward must speak whichever this environment has (5.10 in .venv-verl, 5.19 in
    # .venv-vllm, 5.24 in .venv: make test-integrations runs this file in all three)
    import dataclasses
    import inspect

    from transformers import DynamicCache
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    ref, lean = _pair()
    kw = fast.cache_keyword(lean)
    assert kw in inspect.signature(type(ref).forward).parameters and kw == fast.cache_keyword(ref)
    field = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithCrossAttentions)} else "past_key_values"
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    with torch.no_grad():
        for name in ("cache", "past_key_values"):  # the lean forward accepts either name
            cache = DynamicCache(config=lean.config)
            out = lean(input_ids=ids, use_cache=True, **{name: cache})
            assert getattr(out, field) is cache
            nxt = lean(input_ids=ids[:, :1], use_cache=True, **{name: cache}).logits
            want = ref(input_ids=torch.cat([ids, ids[:, :1]], 1)).logits[:, -1:]
            torch.testing.assert_close(nxt, want, atol=1e-5, rtol=1e-5)
        # an argument the lean path does not handle: transformers' forward gets the cache by its own name
        cache = DynamicCache(config=lean.config)
        out = lean(input_ids=ids, token_type_ids=torch.zeros_like(ids), use_cache=True, **{kw: cache})
        assert getattr(out, field) is cache and cache.get_seq_length() == 4


def test_accelerate_leaves_other_models_alone():
    lin = torch.nn.Linear(2, 2)
    assert fast.accelerate(lin) is lin and not fast.is_lean(lin)
    assert fast.supports(lin).startswith("not a transformers GPT2LMHeadModel")
    cfg = tiny_config(n_layer=1, n_embd=16, n_head=2)
    cfg.activation_function = "relu"
    m = build_tiny_model(cfg)
    assert fast.supports(m) == "activation 'relu' is not supported" and not fast.is_lean(fast.accelerate(m))


def test_one_update_per_batch_uses_the_detached_current_logprobs_as_old():
    # The PPO loss with old = logp.detach() (what the trainer does when ppo_epochs = minibatches = 1)
    # has the gradient of the loss with old log-probs from a separate no-grad pass.
    _, model = _pair()
    b = _padded_batch()
    adv = torch.tensor([1.0, -0.5, 0.25])
    with torch.no_grad():
        old_separate, _ = completion_logprobs(model, b)
    grads = []
    for use_detached in (True, False):
        model.zero_grad()
        logp, _ = completion_logprobs(model, b)
        old = logp.detach() if use_detached else old_separate
        loss, diag = losses.policy_loss(logp, old, adv, b.completion_mask, "ppo", "token-mean", measure="ratio", delta=0.2)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g1, g2 in zip(*grads):
        torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-5)


def _tiny_model_dir(tmp_path):
    d = tmp_path / "model"
    build_tiny_model(tiny_config(n_layer=1, n_embd=16, n_head=2), seed=0).save_pretrained(d)
    build_char_tokenizer().save_pretrained(d)
    return d


@pytest.mark.parametrize("minibatches, no_grad_passes", [(1, 0), (2, 1)])
def test_trainer_recomputes_old_logprobs_only_with_several_updates_per_batch(tmp_path, monkeypatch, minibatches, no_grad_passes):
    from lab import models
    from lab.config import TrainConfig
    from lab.train import train

    calls = {"grad": 0, "no_grad": 0}
    orig = models.completion_logprobs

    def counting(*a, **kw):
        calls["grad" if torch.is_grad_enabled() else "no_grad"] += 1
        return orig(*a, **kw)

    monkeypatch.setattr(models, "completion_logprobs", counting)
    cfg = TrainConfig(model=str(_tiny_model_dir(tmp_path)), steps=1, prompts_per_step=2, rollouts_per_prompt=2,
                      max_new_tokens=3, minibatches=minibatches, shadow_estimators=(), probe_every=0, eval_every=0,
                      checkpoint_every=0, output_dir=str(tmp_path / "runs"), run_name="r", quiet=True, device="cpu")
    train(cfg)
    assert calls == {"grad": minibatches, "no_grad": no_grad_passes}


def _load_benchmark():
    import importlib

    return importlib.import_module("benchmarks.step_time_vs_trl")


@pytest.mark.slow
def test_benchmark_profile_accounts_for_the_lab_step(tmp_path):
    from lab import rollout, tasks

    bench = _load_benchmark()
    bench.register_fixed_length()
    args = SimpleNamespace(warmup=1, steps=2, prompts=2, group=2, new_tokens=3, lr=1e-4, seed=0)
    model_dir = bench.save_random_model(tmp_path / "m", seed=0)
    try:
        res = bench.run_lab(args, model_dir, tmp_path / "runs", "p", shadows=True)
    finally:
        bench.unregister_fixed_length()
    assert bench.TASK not in tasks.available() and bench.BACKEND not in rollout.available()
    assert len(res["times"]) == 2
    for t, parts in zip(res["times"], res["parts"]):
        assert {"rollout", "reward", "estimators", "loss forward", "backward", "optimizer", "logging"} <= set(parts)
        assert "old log-probs" not in parts  # one update per batch: no separate pass
        assert 0 < sum(parts.values()) <= t
    # the patches are undone: the trainer's pieces are the originals again
    from lab import models, train

    assert models.completion_logprobs is completion_logprobs
    assert not hasattr(train.Trainer.generate, "__wrapped__")
    floor = bench.run_floor(args, model_dir, bench.step_prompts(args, 4), lean=True)
    assert len(floor["times"]) == 2 and all(g > 0 and u > 0 for g, u in zip(floor["generate"], floor["update"]))


@pytest.mark.slow
def test_benchmark_times_lab_train_as_a_user_runs_it_from_its_own_metrics(tmp_path):
    import json

    bench = _load_benchmark()
    args = SimpleNamespace(warmup=1, steps=2, prompts=2, group=2, new_tokens=3, lr=1e-4, seed=0, threads=1)
    model_dir = bench.save_random_model(tmp_path / "m", seed=0)
    res = bench.run_lab_cli(args, model_dir, tmp_path / "runs", "cli")
    rows = [json.loads(x) for x in (tmp_path / "runs" / "cli" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["response/length_mean"] for r in rows} == {3.0}  # fixed length: every token generated
    el = [r["time/elapsed_s"] for r in rows]
    assert res["times"] == pytest.approx([el[1] - el[0], el[2] - el[1]])
    assert res["reported"] == pytest.approx([rows[1]["perf/step_time_s"], rows[2]["perf/step_time_s"]])
    assert all(r <= t + 1e-6 for r, t in zip(res["reported"], res["times"]))  # the reported step leaves its logging out


def test_shared_prompt_logprobs_equal_the_full_sequence_pass():
    # G rollouts per prompt, rows shuffled (as in a minibatch), prompts of different lengths
    ref, lean = _pair()
    tok = build_char_tokenizer()
    out = HFBackend(ref, tok).generate(PROMPTS, SamplingParams(n=3, max_new_tokens=5, seed=1))
    out = out.select(torch.randperm(len(out), generator=torch.Generator().manual_seed(0)))
    assert not bool(out.completion_mask.all())  # some completions ended early: right padding is exercised
    lp_ref, ent_ref = completion_logprobs(ref, out, with_entropy=True)
    lp, ent = completion_logprobs(lean, out, with_entropy=True)
    torch.testing.assert_close(lp, lp_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ent_ref, atol=1e-5, rtol=1e-5)
    w = torch.randn(lp.shape, generator=torch.Generator().manual_seed(2))
    (lp_ref * w).sum().backward()
    (lp * w).sum().backward()
    for (name, p), q in zip(ref.named_parameters(), lean.parameters()):
        scale = p.grad.abs().max().clamp(min=1.0)
        assert (p.grad - q.grad).abs().max() / scale < 1e-5, name
