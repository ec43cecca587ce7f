"""The GPU training path: fp32 master weights + bf16 autocast, gradient checkpointing, vLLM colocated.

The CUDA tests run a few real steps when a CUDA device is present and skip otherwise; the
first two tests pin, on CPU, the pieces the GPU path is made of.
"""

import json

import pytest
import torch

from lab.models import precision
from lab.models.tiny import build_tiny_model, tiny_config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _grads(model, ids, active=True):
    model.zero_grad(set_to_none=True)
    with precision.checkpointing_active(model) if active else torch.enable_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    logits.float().logsumexp(-1).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_recomputes_in_eval_mode_and_gives_the_same_gradients():
    model = build_tiny_model(tiny_config(n_layer=2, n_embd=32, n_head=4), seed=0).eval()
    ids = torch.randint(3, 50, (3, 12), generator=torch.Generator().manual_seed(0))
    plain = _grads(model, ids)
    calls = []
    hook = model.transformer.h[0].attn.register_forward_hook(lambda *a: calls.append(1))  # runs inside the checkpointed forward
    assert precision.set_gradient_checkpointing(model, True)
    _grads(model, ids, active=False)
    assert len(calls) == 1  # eval mode alone: HF does not checkpoint
    ckpt = _grads(model, ids)
    hook.remove()
    assert len(calls) == 3  # forward, then the recomputation during backward
    assert not model.transformer.h[0].training  # flags restored: still eval mode
    assert plain.keys() == ckpt.keys()
    for n in plain:
        torch.testing.assert_close(ckpt[n], plain[n], atol=1e-6, rtol=1e-5)


def test_auto_dtype_keeps_fp32_master_weights_on_every_device():
    assert precision.master_dtype("auto") == "float32"
    with precision.autocast("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@cuda
def test_cuda_training_keeps_fp32_weights_and_runs_matmuls_in_bf16():
    model = build_tiny_model(tiny_config(n_layer=2, n_embd=32, n_head=4), seed=0).cuda().eval()
    with precision.autocast("cuda"):
        logits = model(input_ids=torch.randint(3, 50, (2, 8), device="cuda")).logits
    assert logits.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())


@cuda
@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_few_real_training_steps_on_cuda(tmp_path, checkpointing):
    from lab.config import TrainConfig
    from lab.train import train

    cfg = TrainConfig(device="cuda", steps=3, prompts_per_step=4, rollouts_per_prompt=4, probe_every=0, eval_every=0,
                      shadow_estimators=(), gradient_checkpointing=checkpointing, output_dir=str(tmp_path), quiet=True)
    run = train(cfg)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss/total"])) for r in rows)


@cuda
def test_vllm_colocated_on_cuda_syncs_weights_each_step(tmp_path):
    pytest.importorskip("vllm")
    from lab.config import TrainConfig
    from lab.train import train

    cfg = TrainConfig(device="cuda", rollout_backend="vllm", steps=3, prompts_per_step=4, rollouts_per_prompt=4,
                      probe_every=0, eval_every=0, shadow_estimators=(), output_dir=str(tmp_path), quiet=True)
    run = train(cfg)
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
