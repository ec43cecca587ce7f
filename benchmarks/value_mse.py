"""Value error of every estimator's baseline against the *exact* value, for G = 1, 2, 4, 8, 16.

    .venv/bin/python benchmarks/value_mse.py            # writes data/results/value_mse.csv
    .venv/bin/python benchmarks/value_mse.py --seeds 2 --steps 20 --out /tmp/v.csv

Every estimator runs on the same drifting Bernoulli bandit (``lab.synthetic``): 64 prompts,
16 drawn per step, G rollouts each, interleaved; logits trend upward and wander, so history
helps but goes stale. The true value of every rollout's prompt is known, so the error is
exact (basis and blend get 8 reference samples per prompt at step 0 unless a row says
otherwise): MSE = mean over rollouts of (b − V)², averaged over the steps after ``--warmup`` and
then over seeds (± the standard error over seeds). All estimators of one seed see the same
batches. The table is in docs/estimators.md; a test keeps it in sync with the CSV.

Reading it: RLOO is unbiased with MSE V(1−V)/(G−1); GRPO's mean includes the rollout's own
reward (MSE V(1−V)/G, but correlated with r); at G = 1 the group family has baseline 0.
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
from pathlib import Path

import torch
from tqdm import tqdm

from lab import estimators
from lab.estimators import RewardBatch
from lab.synthetic import DriftingBandit, value_mse_run

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "results" / "value_mse.csv"
GROUP_SIZES = (1, 2, 4, 8, 16)
VARIANTS = {
    "basis(fallback=prior)": ("basis", {"fallback": "prior"}),
    "basis(beta_selection=batch)": ("basis", {"beta_selection": "batch"}),
    "blend(no reference)": ("blend", {}),
}
"""Extra rows: label -> (registered name, parameters). BASIS's paper fallback (baseline 0 for
prompts whose prior is near 0 or 1) is its default; the prior fallback shows what it costs.
``beta_selection="batch"`` (the paper's literal reading) picks β on all rewards, the rollout's
own included; the default cross-fits β on the other half of the batch."""
NO_REFERENCE = {"blend(no reference)"}
"""Rows run without the 8 offline reference samples per prompt that estimators with
``set_reference`` (basis, blend) otherwise get."""


def _entries() -> dict[str, tuple[str, dict]]:
    """Every registered estimator on its defaults, then the variants."""
    return {**{n: (n, {}) for n in estimators.available()}, **VARIANTS}


@functools.lru_cache(maxsize=None)  # deterministic; table() asks once per row and is called more than once
def sees_own_reward(label: str, trials: int = 20) -> bool:
    """Whether a rollout's own reward can move its own baseline (checked, not declared).

    Flips one rollout's reward in random batches (groups of 4, some history) and looks at that
    rollout's baseline. Such a baseline lowers value MSE partly by copying the reward, and it
    biases the policy gradient; the table marks it.
    """
    name, params = _entries()[label]
    gen = torch.Generator().manual_seed(0)
    for _ in range(trials):
        sim = DriftingBandit(8, seed=int(torch.randint(1000, (1,), generator=gen)))
        outs = []
        for flip in (False, True):
            est = estimators.get(name, **params)
            if hasattr(est, "set_reference") and label not in NO_REFERENCE:
                ref, _ = sim.sample(torch.arange(8), 8, 0, generator=torch.Generator().manual_seed(1))
                est.set_reference(ref.prompt_ids, ref.rewards)
            hist, _ = sim.sample(torch.arange(8), 4, 0, generator=torch.Generator().manual_seed(2))
            est(hist)
            batch, _ = sim.sample(torch.arange(8), 4, 1, interleave=True, generator=torch.Generator().manual_seed(3))
            r = batch.rewards.clone()
            if flip:
                r[0] = 1.0 - r[0]
            outs.append(float(est(RewardBatch(r, batch.prompt_ids, step=1)).baselines[0]))
        if abs(outs[0] - outs[1]) > 1e-9:  # leave-one-out by subtraction moves the last bits only
            return True
    return False


def run(seeds: int = 5, steps: int = 40, warmup: int = 10, group_sizes=GROUP_SIZES, progress: bool = True) -> list[dict]:
    """Long-format rows: estimator, group_size, seed, value_mse (mean over steps >= warmup)."""
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup: expected 0 <= warmup < steps ({steps}), got {warmup}")
    entries = _entries()
    jobs = [(label, g, s) for g in group_sizes for label in entries for s in range(seeds)]
    rows = []
    for label, g, s in tqdm(jobs, desc="value MSE", disable=not progress):
        name, params = entries[label]
        r = value_mse_run(name, g, steps=steps, seed=s, make=lambda n, p=params: estimators.get(n, **p),
                          reference_samples=0 if label in NO_REFERENCE else 8)
        rows.append({"estimator": label, "group_size": g, "seed": s, "value_mse": float(r.mse[warmup:].mean())})
    return rows


def summarize(rows: list[dict]) -> dict[tuple[str, int], tuple[float, float]]:
    """(estimator, G) -> (mean over seeds, standard error over seeds)."""
    by: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        by.setdefault((r["estimator"], int(r["group_size"])), []).append(float(r["value_mse"]))
    out = {}
    for key, v in by.items():
        mean = sum(v) / len(v)
        se = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1) / len(v)) if len(v) > 1 else float("nan")
        out[key] = (mean, se)
    return out


def table(rows: list[dict]) -> str:
    """Markdown table: one row per estimator, one column per G, best per column in bold.

    An estimator whose baseline sees the rollout's own reward gets a † (see ``sees_own_reward``).
    """
    stats = summarize(rows)
    names = list(dict.fromkeys(k[0] for k in stats))  # first-seen order: registry order, then variants
    sizes = sorted({k[1] for k in stats})
    best = {g: min(stats[(n, g)][0] for n in names) for g in sizes}
    lines = ["| estimator | " + " | ".join(f"G = {g}" for g in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for n in names:
        cells = []
        for g in sizes:
            mean, se = stats[(n, g)]
            cell = f"{mean:.4f} ± {se:.4f}"
            cells.append(f"**{cell}**" if mean == best[g] else cell)
        mark = " †" if n in _entries() and sees_own_reward(n) else ""
        lines.append(f"| {n}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["estimator", "group_size", "seed", "value_mse"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "value_mse": f"{r['value_mse']:.10f}"})
    tmp.replace(path)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{**r, "group_size": int(r["group_size"]), "seed": int(r["seed"]), "value_mse": float(r["value_mse"])} for r in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="independent runs per (estimator, G) (default 5)")
    ap.add_argument("--steps", type=int, default=40, help="training steps per run (default 40)")
    ap.add_argument("--warmup", type=int, default=10, help="first steps left out of the average (default 10)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"CSV to write (default {DEFAULT_OUT.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    if args.seeds < 2:
        ap.error("--seeds: need at least 2 for a standard error")
    rows = run(args.seeds, args.steps, args.warmup)
    write_csv(rows, args.out)
    print(f"\nValue MSE against the exact value (drifting bandit, {args.seeds} seeds x {args.steps} steps, "
          f"first {args.warmup} left out), mean ± s.e. over seeds; lowest per G in bold; "
          "† the baseline sees the rollout's own reward:\n")
    print(table(rows))
    print(f"\nRows: {args.out}")
    return rows


if __name__ == "__main__":
    main()
