"""Speed of every advantage estimator against a plain Python loop of the same formula.

    .venv/bin/python benchmarks/estimator_speed.py                 # 1M rollouts in 100k prompts
    .venv/bin/python benchmarks/estimator_speed.py --n-rollouts 20000

Prompt ids are shuffled so group members are interleaved, as they are after a real
rollout. Loop baselines exist for the group family and KRPO; loops are timed on a
subsample and scaled linearly to the full size (stated in the table), and their outputs are
checked against the vectorised ones on that subsample. Target: >= 50x over the loop.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

import torch

from lab import estimators
from lab.estimators import RewardBatch


def _groups(ids):
    g = defaultdict(list)
    for i, p in enumerate(ids):
        g[p].append(i)
    return g


def loop_grpo(r, ids, norm=True, eps=1e-6):
    out = [0.0] * len(r)
    for m in _groups(ids).values():
        v = [r[i] for i in m]
        n = len(v)
        mean = sum(v) / n if n > 1 else 0.0
        std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 1.0
        for i in m:
            out[i] = (r[i] - mean) / (std + eps) if norm else r[i] - mean
    return out


def loop_rloo(r, ids):
    out = [0.0] * len(r)
    for m in _groups(ids).values():
        s = sum(r[i] for i in m)
        for i in m:
            out[i] = r[i] - ((s - r[i]) / (len(m) - 1) if len(m) > 1 else 0.0)
    return out


def _loop_whiten(x, eps=1e-8):
    n = len(x)
    mean = sum(x) / n
    var = sum((v - mean) ** 2 for v in x) / (n - 1)
    return [(v - mean) / math.sqrt(var + eps) for v in x]


def loop_rpp(r, ids):
    return _loop_whiten(r)


def loop_rpp_baseline(r, ids):
    base = [ri - a for ri, a in zip(r, loop_grpo(r, ids, norm=False))]
    return _loop_whiten([ri - b for ri, b in zip(r, base)])


def loop_krpo(r, ids, q=1e-5, rr=1e-2):
    out = [0.0] * len(r)
    for m in _groups(ids).values():
        x, p = 0.0, 1.0
        for i in m:
            pm = p + q
            k = pm / (pm + rr)
            x += k * (r[i] - x)
            p = (1 - k) * pm
            out[i] = (r[i] - x) / (math.sqrt(p) + 1e-8)
    return out


def torchloop_grpo(r, ids, norm=True, eps=1e-6):
    """The common reference style (e.g. verl's core_algos): a Python loop over prompts with torch ops per group."""
    scores = torch.tensor(r, dtype=torch.float64)
    id2score = defaultdict(list)
    for i, p in enumerate(ids):
        id2score[p].append(scores[i])
    mean, std = {}, {}
    for p, v in id2score.items():
        if len(v) == 1:
            mean[p], std[p] = torch.tensor(0.0), torch.tensor(1.0)
        else:
            t = torch.stack(v)
            mean[p], std[p] = torch.mean(t), torch.std(t)
    out = scores.clone()
    for i, p in enumerate(ids):
        out[i] = (scores[i] - mean[p]) / (std[p] + eps) if norm else scores[i] - mean[p]
    return out.tolist()


def torchloop_rloo(r, ids):
    scores = torch.tensor(r, dtype=torch.float64)
    id2score = defaultdict(list)
    for i, p in enumerate(ids):
        id2score[p].append(scores[i])
    mean = {p: (torch.mean(torch.stack(v)) if len(v) > 1 else torch.tensor(0.0, dtype=torch.float64)) for p, v in id2score.items()}
    out = scores.clone()
    for i, p in enumerate(ids):
        n = len(id2score[p])
        if n > 1:
            out[i] = scores[i] * n / (n - 1) - mean[p] * n / (n - 1)
    return out.tolist()


def torchloop_rpp_baseline(r, ids):
    centred = torch.tensor(torchloop_grpo(r, ids, norm=False), dtype=torch.float64)
    return ((centred - centred.mean()) * torch.rsqrt(centred.var() + 1e-8)).tolist()


def torchloop_krpo(r, ids, q=1e-5, rr=1e-2):
    """Per prompt, a small filter object fed the group's returns one by one (the reference code's shape)."""
    scores = torch.tensor(r, dtype=torch.float64)
    id2idx = defaultdict(list)
    for i, p in enumerate(ids):
        id2idx[p].append(i)
    out = torch.zeros_like(scores)
    for idx in id2idx.values():
        x, p = torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
        for i in idx:
            pm = p + q
            k = pm / (pm + rr)
            x = x + k * (scores[i] - x)
            p = (1 - k) * pm
            out[i] = (scores[i] - x) / (torch.sqrt(p) + 1e-8)
    return out.tolist()


TORCH_LOOPS = {
    "grpo": torchloop_grpo,
    "dr_grpo": lambda r, ids: torchloop_grpo(r, ids, norm=False),
    "rloo": torchloop_rloo,
    "reinforce_plus_plus_baseline": torchloop_rpp_baseline,
    "krpo": torchloop_krpo,
}


LOOPS = {
    "grpo": loop_grpo,
    "dr_grpo": lambda r, ids: loop_grpo(r, ids, norm=False),
    "rloo": loop_rloo,
    "reinforce_plus_plus": loop_rpp,
    "reinforce_plus_plus_baseline": loop_rpp_baseline,
    "krpo": loop_krpo,
}


def make_batch(n_rollouts: int, group_size: int, step: int = 0, seed: int = 0) -> RewardBatch:
    gen = torch.Generator().manual_seed(seed + step)
    n_prompts = max(1, n_rollouts // group_size)
    ids = torch.arange(n_prompts).repeat_interleave(group_size)[:n_rollouts]
    ids = ids[torch.randperm(ids.numel(), generator=gen)]
    p = torch.rand(n_prompts, generator=gen)[ids]
    rewards = (torch.rand(ids.numel(), generator=gen) < p).float()
    return RewardBatch(rewards, ids, step=step)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-rollouts", type=int, default=1_000_000, help="rollouts per batch (default 1M)")
    ap.add_argument("--group-size", type=int, default=10, help="rollouts per prompt G (default 10: 100k prompts)")
    ap.add_argument("--loop-sample", type=int, default=50_000, help="rollouts the Python loops are timed on (scaled up)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (best is reported)")
    args = ap.parse_args(argv)
    n, g = args.n_rollouts, args.group_size
    batch = make_batch(n, g)
    m = min(args.loop_sample, n)
    small = make_batch(m, g, seed=1)
    r_small, ids_small = small.rewards.double().tolist(), small.prompt_ids.tolist()
    rows = []
    for name in estimators.available():
        def fresh():
            est = estimators.get(name)
            if name == "kae":
                for s in (1, 2):  # two earlier steps of history on the same prompts
                    est(make_batch(n, g, step=s))
            if name == "basis":
                ref = make_batch(n, g, seed=7)
                est.set_reference(ref.prompt_ids, ref.rewards.double())
            return est

        est = fresh()
        step_batch = RewardBatch(batch.rewards, batch.prompt_ids, step=3 if name == "kae" else 0)
        t_vec = _best(lambda: est(step_batch, update=False), args.repeats)
        row = {"estimator": name, "vectorised_s": t_vec, "rollouts_per_s": n / t_vec}
        if name in LOOPS:
            t_loop = _best(lambda: LOOPS[name](r_small, ids_small), 1) * (n / m)
            vec_small = estimators.get(name)(RewardBatch(small.rewards.double(), small.prompt_ids)).advantages
            diff = float((vec_small - torch.tensor(LOOPS[name](r_small, ids_small), dtype=torch.float64)).abs().max())
            if diff > 1e-6 * max(1.0, float(vec_small.abs().max())):
                raise AssertionError(f"{name}: vectorised and loop results differ by {diff}")
            row.update(loop_s=t_loop, speedup=t_loop / t_vec, max_abs_diff=diff)
        if name in TORCH_LOOPS:
            mt = min(m, 20_000)
            r_t, ids_t = r_small[:mt], ids_small[:mt]
            t_tl = _best(lambda: TORCH_LOOPS[name](r_t, ids_t), 1) * (n / mt)
            vec_t = estimators.get(name)(RewardBatch(torch.tensor(r_t, dtype=torch.float64), torch.tensor(ids_t))).advantages
            diff = float((vec_t - torch.tensor(TORCH_LOOPS[name](r_t, ids_t), dtype=torch.float64)).abs().max())
            if diff > 1e-6 * max(1.0, float(vec_t.abs().max())):
                raise AssertionError(f"{name}: vectorised and per-group-torch loop differ by {diff}")
            row.update(torchloop_s=t_tl, torch_speedup=t_tl / t_vec)
        rows.append(row)
    print(f"\nEstimator speed: {n:,} rollouts in {n // g:,} prompts (G = {g}, interleaved), best of {args.repeats}")
    print(f"Loops timed on {m:,} rollouts and scaled x{n / m:g}; loop and vectorised outputs agree on that sample.\n")
    print("| estimator | vectorised s | rollouts/s | pure-Python loop s | speed-up | per-group-torch loop s | speed-up | target >= 50x |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pure = f"{r['loop_s']:.2f} | {r['speedup']:.0f}x" if "loop_s" in r else "— | —"
        tl = f"{r['torchloop_s']:.1f} | {r['torch_speedup']:.0f}x" if "torchloop_s" in r else "— | —"
        best = max(r.get("speedup", 0), r.get("torch_speedup", 0))
        ok = "" if "loop_s" not in r else ("ok" if best >= 50 else "BELOW")
        print(f"| {r['estimator']} | {r['vectorised_s']:.4f} | {r['rollouts_per_s']:,.0f} | {pure} | {tl} | {ok} |")
    print("\npure-Python loop: floats in dicts of lists (the fastest loop); per-group-torch loop: a Python loop")
    print("over prompts with torch ops per group, the style of common reference code (timed on 20k rollouts).")
    return rows


if __name__ == "__main__":
    main()
