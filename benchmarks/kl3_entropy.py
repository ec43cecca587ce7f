"""KL3 clipping against ratio clipping at the matched budget, where clipping binds: entropy and clip fractions over seeds.

    .venv/bin/python benchmarks/kl3_entropy.py            # writes data/results/kl3_entropy.csv (resumes)
    .venv/bin/python benchmarks/kl3_entropy.py --table    # the table from the file, no runs
    .venv/bin/python benchmarks/kl3_entropy.py --seeds 2 --steps 4 --out /tmp/k.csv   # smoke

A thin driver: each (measure, seed) is one training run of the default testbed with 4 PPO
epochs over 2 minibatches per step (so the policy moves away from the one that sampled and
clipping binds: about 10% of tokens at the low bound and 5% at the high bound on this model),
8 prompts × 4 rollouts, ``clip_measure`` ``ratio`` (ε = 0.2) or ``kl3`` at
``lab.losses.matched_delta("kl3")`` (the same width u − l = 0.4), the same seeds for both
measures (paired). A row keeps the run's mean ``actor/entropy`` over its last ``--window``
steps (``entropy``: the claim's metric, read late so that the two policies have had time to
differ), the mean over all steps of the clip fractions and ``actor/approx_kl``, the mean
training reward of the last window, and the run's provenance. The claim
(``lab.analysis.claims``, "kl3-exploration") is judged on the paired per-seed difference
kl3 − ratio of ``entropy``.

Cost: about 0.4 s a step on one core, so 2 measures × 8 seeds × 60 steps ≈ 7 min.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from lab.analysis import results, stats

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "results" / "kl3_entropy.csv"
MEASURES = ("ratio", "kl3")
G, PROMPTS, EPOCHS, MINIBATCHES, STEPS, SEEDS, WINDOW = 4, 8, 4, 2, 60, 8, 20
METRICS = {"clip_frac_low": "actor/clip_frac_low", "clip_frac_high": "actor/clip_frac_high", "approx_kl": "actor/approx_kl"}
FIELDS = ["measure", "delta", "seed", "rollouts_per_prompt", "prompts_per_step", "ppo_epochs", "minibatches", "steps",
          "window", "entropy", "entropy_all_steps", *METRICS, "final_reward"]


def config(measure: str, seed: int, steps: int, output_dir: str):
    """The ``TrainConfig`` of one run (the testbed's defaults except sizes, epochs, clip rule, shadows, probes)."""
    from lab import losses
    from lab.config import TrainConfig

    return TrainConfig(clip_measure=measure, clip_delta=losses.matched_delta(measure), rollouts_per_prompt=G,
                       prompts_per_step=PROMPTS, ppo_epochs=EPOCHS, minibatches=MINIBATCHES, shadow_estimators=(),
                       probe_every=0, eval_every=0, checkpoint_every=0, steps=steps, seed=seed, output_dir=output_dir,
                       run_name=f"kl3_entropy-{measure}-s{seed}", quiet=True)


def _mean(values: list[float]) -> float | str:
    v = [x for x in values if math.isfinite(x)]
    return round(sum(v) / len(v), 6) if v else ""


def summarise_run(metrics: list[dict], window: int) -> dict:
    """One run's row values from its per-step metrics (``train``'s callback dicts).

    >>> m = [{"actor/entropy": e, "actor/clip_frac_low": 0.1, "actor/clip_frac_high": 0.0,
    ...       "actor/approx_kl": 0.01, "reward/mean": r} for e, r in ((1.0, 0.0), (0.5, 1.0))]
    >>> summarise_run(m, window=1)["entropy"], summarise_run(m, window=2)["entropy"], summarise_run(m, 1)["final_reward"]
    (0.5, 0.75, 1.0)
    """
    col = lambda k, rows: [float(r.get(k, math.nan)) for r in rows]
    tail = metrics[-window:]
    return {"entropy": _mean(col("actor/entropy", tail)), "entropy_all_steps": _mean(col("actor/entropy", metrics)),
            **{name: _mean(col(key, metrics)) for name, key in METRICS.items()},
            "final_reward": _mean(col("reward/mean", tail))}


def run_one(measure: str, seed: int, steps: int, window: int, work: Path) -> dict:
    from lab import provenance
    from lab.train import train

    cfg = config(measure, seed, steps, str(work))
    metrics: list[dict] = []
    train(cfg, callback=lambda step, m: metrics.append(dict(m)))
    return {**provenance.collect("cpu"), "measure": measure, "delta": round(cfg.clip_delta, 8), "seed": seed,
            "rollouts_per_prompt": G, "prompts_per_step": PROMPTS, "ppo_epochs": EPOCHS, "minibatches": MINIBATCHES,
            "steps": steps, "window": window, **summarise_run(metrics, window)}


def paired(rows: list[dict], column: str) -> stats.Effect | None:
    """kl3 − ratio of ``column``, paired by seed (``lab.analysis.stats.paired_difference``); None without a pair."""
    by = {(r["measure"], int(r["seed"])): float(r[column]) for r in rows if str(r.get(column, "")) not in ("", "nan")}
    seeds = sorted(s for m, s in by if m == "kl3" and ("ratio", s) in by)
    if not seeds:
        return None
    return stats.paired_difference([by[("kl3", s)] for s in seeds], [by[("ratio", s)] for s in seeds])


def table(rows: list[dict]) -> str:
    """One line per metric: kl3 − ratio paired by seed, with its interval."""
    lines = []
    for col in ("entropy", "entropy_all_steps", *METRICS, "final_reward"):
        e = paired(rows, col)
        lines.append(f"{col:<18} kl3 − ratio: " + ("no paired seeds yet" if e is None else
                     f"{e.value:+.4f} [{e.low:+.4f}, {e.high:+.4f}] ({e.n} seeds, {e.method})"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=SEEDS, help=f"seeds 0 .. N-1 per measure (default {SEEDS})")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"training steps per run (default {STEPS})")
    ap.add_argument("--window", type=int, default=WINDOW, help=f"last steps averaged for entropy and reward (default {WINDOW})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results CSV (default {DEFAULT_OUT.relative_to(ROOT)})")
    ap.add_argument("--table", action="store_true", help="only print the table of an existing --out")
    args = ap.parse_args(argv)
    for k in ("seeds", "steps", "window"):
        if getattr(args, k) < 1:
            ap.error(f"--{k} must be >= 1, got {getattr(args, k)}")
    rows = results.read_rows(args.out)
    if not args.table:
        other = sorted({f"{r['steps']} steps, window {r['window']}" for r in rows
                        if (int(r["steps"]), int(r["window"])) != (args.steps, args.window)})
        if other:
            ap.error(f"{args.out} holds runs with {', '.join(other)}: pass the same --steps/--window, "
                     f"or another --out (or delete the file) to start over")
        from lab import provenance

        rows = results.run_paired_seeds(args.out, rows, MEASURES, "measure", args.seeds,
                                        lambda arm, seed, work: run_one(arm, seed, args.steps, args.window, work),
                                        FIELDS + list(provenance.FIELDS), prefix="lab-kl3-entropy-")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
