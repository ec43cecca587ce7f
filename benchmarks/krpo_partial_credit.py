"""KRPO against GRPO in its reference code's regime: G = 12, partial-credit rewards {1, 0.5, 0.01, 0}.

    .venv/bin/python benchmarks/krpo_partial_credit.py            # writes data/results/krpo_partial_credit.csv (resumes)
    .venv/bin/python benchmarks/krpo_partial_credit.py --table    # the table from the file, no runs
    .venv/bin/python benchmarks/krpo_partial_credit.py --seeds 2 --steps 5 --out /tmp/k.csv   # smoke

A thin driver: each (estimator, seed) is one training run of the default testbed on the task
``arithmetic-partial`` (``lab.tasks.partial_credit``) at G = 12 with 64 ÷ 12 → 5 prompts per
step (60 rollouts), the same seeds for both estimators (paired); the row keeps the mean training
reward of the last ``--window`` steps (``final_reward``) and the run's provenance. The claim
(``lab.analysis.claims``, "krpo-training") is judged on the paired per-seed difference.
Cost: about 0.3 s a step on one core, so 2 estimators × 8 seeds × 150 steps ≈ 12 min.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from lab.analysis import results, stats

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "results" / "krpo_partial_credit.csv"
ESTIMATORS = ("grpo", "krpo")
G, PROMPTS, STEPS, SEEDS, WINDOW = 12, 5, 150, 8, 10
FIELDS = ["estimator", "seed", "rollouts_per_prompt", "prompts_per_step", "steps", "task", "final_reward"]


def config(estimator: str, seed: int, steps: int, output_dir: str):
    """The ``TrainConfig`` of one run (the testbed's defaults except task, G, prompts, shadows, probes)."""
    from lab.config import TrainConfig

    return TrainConfig(estimator=estimator, task="arithmetic-partial", rollouts_per_prompt=G, prompts_per_step=PROMPTS,
                       shadow_estimators=(), probe_every=0, steps=steps, seed=seed, output_dir=output_dir,
                       run_name=f"krpo_pc-{estimator}-s{seed}", quiet=True)


def run_one(estimator: str, seed: int, steps: int, window: int, work: Path) -> dict:
    from lab.train import train

    rewards: list[float] = []
    train(config(estimator, seed, steps, str(work)),
          callback=lambda step, m: rewards.append(float(m.get("reward/mean", math.nan))))
    from lab import provenance

    tail = [r for r in rewards[-window:] if not math.isnan(r)]
    return {**provenance.collect("cpu"), "estimator": estimator, "seed": seed, "rollouts_per_prompt": G, "prompts_per_step": PROMPTS, "steps": steps,
            "task": "arithmetic-partial", "final_reward": round(sum(tail) / len(tail), 5) if tail else ""}


def table(rows: list[dict]) -> str:
    """KRPO − GRPO final reward, paired by seed (``lab.analysis.stats.paired_difference``)."""
    by = {(r["estimator"], int(r["seed"])): float(r["final_reward"]) for r in rows if str(r.get("final_reward", ""))}
    seeds = sorted(s for e, s in by if e == "krpo" and ("grpo", s) in by)
    if not seeds:
        return "no paired seeds yet"
    e = stats.paired_difference([by[("krpo", s)] for s in seeds], [by[("grpo", s)] for s in seeds])
    return f"KRPO − GRPO final reward: {e.value:+.4f} [{e.low:+.4f}, {e.high:+.4f}] ({e.n} seeds, {e.method})"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=SEEDS)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--window", type=int, default=WINDOW)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--table", action="store_true", help="only print the table of an existing --out")
    args = ap.parse_args(argv)
    rows = results.read_rows(args.out)
    if not args.table:
        other = sorted({r["steps"] for r in rows if int(r["steps"]) != args.steps})
        if other:
            ap.error(f"{args.out} holds runs of {', '.join(other)} steps, not {args.steps}: pass the same --steps, "
                     f"or another --out (or delete the file) to start over")
        from lab import provenance

        rows = results.run_paired_seeds(args.out, rows, ESTIMATORS, "estimator", args.seeds,
                                        lambda arm, seed, work: run_one(arm, seed, args.steps, args.window, work),
                                        FIELDS + list(provenance.FIELDS), prefix="lab-krpo-pc-")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
