"""Speed of every advantage estimator against a plain Python loop of the same formula.

    .venv/bin/python benchmarks/estimator_speed.py                      # 1M rollouts in 100k prompts
    .venv/bin/python benchmarks/estimator_speed.py --n-rollouts 20000 --group-size 4
    .venv/bin/python benchmarks/estimator_speed.py --device cuda        # the default when a GPU is there

Prompt ids are shuffled so group members are interleaved, as after a real rollout; rewards
are Bernoulli(p) with p drawn per prompt. Each vectorised estimator is timed as
``est(batch, update=False)`` (best of ``--repeats`` after two warm-up calls); ``kae`` first sees two earlier steps of
the same prompts, ``basis`` gets one reference sample per rollout (its offline stage).

Loop baselines (the group family and KRPO) are plain Python on floats in dicts of lists,
written from the formulas. They are timed on ``--loop-sample`` rollouts (default: the whole
batch) and scaled linearly to the full size when that is smaller; the table says which.
Scaling from a small sample flatters the loop: a 50k sample runs 2.5-4x faster per rollout
than the full 1M (dict and cache effects), so the default times the whole batch. Every loop's
output is checked against the vectorised one on the loop sample before anything is printed.
Target: vectorised >= 50x faster than the plain loop, measured in the same run.

Prompt ids are the prompts' row numbers 0..P-1, which ``group_by`` groups by counting (no
sort). The "hashed ids" column times the same batch with 62-bit hashed ids (what the trainer's
``stable_prompt_id`` gives), grouped by ``torch.unique``, a sort; its speed-up divides the same
plain-loop time (measured on row-number ids, so it does not flatter the vectorised side).

A second, informational loop column times the style of common reference code (verl's
``core_algos``, KRPO's ``train.py``): a Python loop over prompts with torch ops per group
(timed on at most 20k rollouts and scaled linearly).
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from collections import defaultdict

import torch

from lab import estimators
from lab.estimators import RewardBatch

TARGET = 50.0


# --- plain Python loops (floats, dicts of lists) -----------------------------------------------------
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
    if n < 2:
        return [0.0] * n
    mean = sum(x) / n
    var = sum((v - mean) ** 2 for v in x) / (n - 1)
    return [(v - mean) / math.sqrt(var + eps) for v in x]


def loop_rpp(r, ids):
    return _loop_whiten(r)


def loop_rpp_baseline(r, ids):
    return _loop_whiten(loop_grpo(r, ids, norm=False))


def loop_krpo(r, ids, q=1e-5, rr=1e-2):
    out = [0.0] * len(r)
    for m in _groups(ids).values():
        x, p = 0.0, 1.0  # the filter is reset for every prompt's group
        for i in m:  # rollout order
            pm = p + q
            k = pm / (pm + rr)
            x += k * (r[i] - x)
            p = (1 - k) * pm
            out[i] = (r[i] - x) / (math.sqrt(p) + 1e-8)
    return out


LOOPS = {
    "grpo": loop_grpo,
    "dr_grpo": lambda r, ids: loop_grpo(r, ids, norm=False),
    "rloo": loop_rloo,
    "reinforce_plus_plus": loop_rpp,
    "reinforce_plus_plus_baseline": loop_rpp_baseline,
    "krpo": loop_krpo,
}


# --- reference-code style: Python loop over prompts, torch ops per group (informational) ------------
def torchloop_grpo(r, ids, norm=True, eps=1e-6):
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
TORCH_LOOP_MAX = 20_000


# --- harness --------------------------------------------------------------------------------------------
HASH_MUL = 0x5DEECE66D  # odd: a bijection on 62-bit ids


def hashed(ids: torch.Tensor) -> torch.Tensor:
    """Sparse 62-bit ids (as the trainer's ``stable_prompt_id`` makes) for the same prompts."""
    return (ids * HASH_MUL + 12345) & ((1 << 62) - 1)


def make_batch(n_rollouts: int, group_size: int, step: int = 0, seed: int = 0, sparse: bool = False) -> RewardBatch:
    """n_rollouts rollouts of n_rollouts // group_size prompts, ids shuffled (groups interleaved).

    Ids are the prompts' row numbers 0..P-1 (dense), or their 62-bit hashes with ``sparse``."""
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    n_prompts = max(1, n_rollouts // group_size)
    ids = torch.arange(n_prompts).repeat_interleave(group_size)[:n_rollouts]
    if ids.numel() < n_rollouts:  # n_rollouts not a multiple of G: the last prompts get one more
        ids = torch.cat([ids, torch.arange(n_rollouts - ids.numel()) % n_prompts])
    ids = ids[torch.randperm(ids.numel(), generator=gen)]
    p = torch.rand(n_prompts, generator=gen)[ids]
    rewards = (torch.rand(ids.numel(), generator=gen) < p).float()
    return RewardBatch(rewards, hashed(ids) if sparse else ids, step=step)


def _best(fn, repeats: int, warmup: int = 0) -> float:
    """Best wall time of ``repeats`` calls after ``warmup`` untimed ones, garbage collector off while
    timing (as ``timeit`` does). The first calls in a fresh process can be 10-20x slower (allocator
    and thread-pool warm-up); a trainer calls its estimator every step, so steady state is what counts."""
    for _ in range(warmup):
        fn()
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    finally:
        gc.enable()
    return min(times)


def _on(batch: RewardBatch, device: torch.device) -> RewardBatch:
    return RewardBatch(batch.rewards.to(device), batch.prompt_ids.to(device), step=batch.step)


def _prepared(name: str, n: int, g: int, sparse: bool = False, device: torch.device = torch.device("cpu")):
    """A fresh estimator with its state set up, and the step to time it at."""
    est = estimators.get(name)
    if name == "kae":
        for s in (1, 2):  # two earlier steps on the same prompts
            est(_on(make_batch(n, g, step=s, sparse=sparse), device))
        return est, 3
    if name == "basis":
        ref = make_batch(n, g, seed=7, sparse=sparse)  # reference-model samples: one per rollout, same prompts
        est.set_reference(ref.prompt_ids, ref.rewards.double())
    return est, 0


def _check(name: str, vec: torch.Tensor, loop: list[float], what: str) -> float:
    diff = float((vec - torch.tensor(loop, dtype=torch.float64)).abs().max())
    if diff > 1e-6 * max(1.0, float(vec.abs().max())):
        raise AssertionError(f"{name}: vectorised and {what} results differ by {diff}")
    return diff


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-rollouts", type=int, default=1_000_000, help="rollouts per batch (default 1M)")
    ap.add_argument("--group-size", type=int, default=10, help="rollouts per prompt G (default 10: 100k prompts)")
    ap.add_argument("--loop-sample", type=int, default=None, help="rollouts the plain loops are timed on (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats, best reported (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="device for the vectorised estimators (default: cuda when available); the loops run in Python")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    n, g = args.n_rollouts, args.group_size
    if n < 2 or g < 1:
        ap.error("need --n-rollouts >= 2 and --group-size >= 1")
    m = n if args.loop_sample is None else max(2, min(args.loop_sample, n))
    batch = make_batch(n, g)
    t_validate = _best(lambda: RewardBatch(batch.rewards, batch.prompt_ids), args.repeats)
    sample = batch if m == n else make_batch(m, g, seed=1)
    r_s, ids_s = sample.rewards.double().tolist(), sample.prompt_ids.tolist()
    mt = min(m, TORCH_LOOP_MAX)
    r_t, ids_t = r_s[:mt], ids_s[:mt]

    rows = []
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rewards_dev, sparse_ids = batch.rewards.to(dev), hashed(batch.prompt_ids).to(dev)

    def timed_call(est, b):  # a GPU call counts until its kernels finish
        est(b, update=False)
        sync()

    for name in estimators.available():  # every vectorised timing first, before the loops churn memory
        est, step = _prepared(name, n, g, device=dev)
        timed = RewardBatch(rewards_dev, batch.prompt_ids.to(dev), step=step)
        t_vec = _best(lambda: timed_call(est, timed), args.repeats, warmup=2)
        est, step = _prepared(name, n, g, sparse=True, device=dev)
        timed = RewardBatch(rewards_dev, sparse_ids, step=step)
        t_sparse = _best(lambda: timed_call(est, timed), args.repeats, warmup=2)
        rows.append({"estimator": name, "vectorised_s": t_vec, "rollouts_per_s": n / t_vec, "hashed_ids_s": t_sparse})
        del est
    for row in rows:
        name, t_vec = row["estimator"], row["vectorised_s"]
        if name in LOOPS:
            vec = estimators.get(name)(RewardBatch(sample.rewards.double(), sample.prompt_ids)).advantages
            diff = _check(name, vec, LOOPS[name](r_s, ids_s), "plain-loop")
            t_loop = _best(lambda: LOOPS[name](r_s, ids_s), args.repeats) * (n / m)
            row.update(loop_s=t_loop, speedup=t_loop / t_vec, target_met=t_loop / t_vec >= TARGET, max_abs_diff=diff)
        if name in TORCH_LOOPS:
            vec = estimators.get(name)(RewardBatch(torch.tensor(r_t, dtype=torch.float64), torch.tensor(ids_t))).advantages
            _check(name, vec, TORCH_LOOPS[name](r_t, ids_t), "per-group-torch-loop")
            t_tl = _best(lambda: TORCH_LOOPS[name](r_t, ids_t), 1) * (n / mt)
            row.update(torchloop_s=t_tl, torch_speedup=t_tl / t_vec)

    scale = "timed on the whole batch" if m == n else f"timed on {m:,} rollouts and scaled x{n / m:g} (linear)"
    print(f"\nEstimator speed: {n:,} rollouts in {max(1, n // g):,} prompts (G = {g}, interleaved), "
          f"vectorised on {dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f" with {torch.get_num_threads()} torch threads")
          + f", best of {args.repeats}")
    print(f"Plain-Python loop {scale}; its output matches the vectorised one. Target >= {TARGET:g}x.\n")
    print("| estimator | vectorised s | rollouts/s | plain loop s | speed-up | target >= 50x | hashed ids s | speed-up | per-group-torch loop s | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        loop = f"{r['loop_s']:.3f} | {r['speedup']:.0f}x | {'pass' if r['target_met'] else 'FAIL'}" if "loop_s" in r else "— | — | n/a (no loop)"
        tl = f"{r['torchloop_s']:.1f} | {r['torch_speedup']:.0f}x" if "torchloop_s" in r else "— | —"
        hs = f"{r['hashed_ids_s']:.4f} | " + (f"{r['loop_s'] / r['hashed_ids_s']:.0f}x" if "loop_s" in r else "—")
        print(f"| {r['estimator']} | {r['vectorised_s']:.4f} | {r['rollouts_per_s']:,.0f} | {loop} | {hs} | {tl} |")
    n_loop = sum("loop_s" in r for r in rows)
    n_pass = sum(r.get("target_met", False) for r in rows)
    print(f"\n{n_pass}/{n_loop} estimators with a loop baseline meet the {TARGET:g}x target. "
          f"RewardBatch validation (not in the times above): {t_validate:.4f} s.")
    print("Ids are prompt row numbers (0..P-1, grouped by counting); 'hashed ids' times the same batch "
          "with 62-bit hashed ids, as the trainer's stable_prompt_id gives (grouped by torch.unique, a sort).")
    print(f"Per-group-torch loop: the style of common reference code (verl core_algos, KRPO train.py), "
          f"timed on {mt:,} rollouts and scaled x{n / mt:g}; informational, not the target.")
    return rows


if __name__ == "__main__":
    main()
