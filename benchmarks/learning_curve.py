"""The default testbed's learning curve: held-out accuracy of default GRPO over steps, per seed.

    .venv/bin/python benchmarks/learning_curve.py                 # 3 seeds; writes data/results/learning_curve.csv (resumes)
    .venv/bin/python benchmarks/learning_curve.py --seeds 0 1 --steps 50 --out /tmp/lc.csv
    .venv/bin/python benchmarks/learning_curve.py --fresh         # start over instead of resuming

Each seed is one ``lab train`` run with every ``TrainConfig`` default (the shipped model,
the default ``arithmetic`` task, GRPO, shadow estimators, probes and held-out eval as a
default run has them) except ``seed`` (and ``--steps`` when given). Every held-out
evaluation (``eval/accuracy``: the mean reward of ``eval_samples`` samples at the training
temperature on ``eval_prompts`` fixed test-split prompts) becomes one CSV row as soon as it
is on disk, with the run's wall time so far (``time/elapsed_s``). A seed whose last row is
marked ``final`` is done; an interrupted seed's rows are dropped and that seed is run again,
so the benchmark resumes where it stopped. Provenance (``lab.provenance.collect()``) goes in
every row.

The printed summary per seed: accuracy at step 0, at the end, the rise, and the first eval
step (and seconds) at which the accuracy is at least ``--rise`` above step 0's. Timing is
measured, not asserted: it depends on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from pathlib import Path

from lab.analysis import results

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "results" / "learning_curve.csv"
SEEDS = (0, 1, 2)
RISE = 0.30
"""The rise the default testbed must show (issue 12): eval/accuracy at least this above step 0's."""
RUN_FIELDS = ["estimator", "seed", "step", "eval_accuracy", "elapsed_s", "rollouts", "final"]
SETTINGS = ["model", "task", "rollouts_per_prompt", "prompts_per_step", "steps", "lr", "eval_prompts", "eval_samples",
            "temperature"]


def fieldnames() -> list[str]:
    from lab import provenance

    return RUN_FIELDS + SETTINGS + list(provenance.FIELDS)


def read_rows(path: Path) -> list[dict]:
    """Rows of an existing results file (``lab.analysis.results.read_rows``: empty when absent, a torn last line skipped)."""
    return results.read_rows(path)


def done_seeds(rows: list[dict]) -> set[int]:
    """Seeds whose run finished (a row with ``final`` = 1).

    >>> sorted(done_seeds([{"seed": "0", "final": "0"}, {"seed": "0", "final": "1"}, {"seed": "1", "final": "0"}]))
    [0]
    """
    return {int(r["seed"]) for r in rows if r.get("final") == "1"}


def summarise(rows: list[dict], rise: float = RISE) -> list[dict]:
    """Per seed: start and final accuracy, the rise, and the first step/seconds reaching start + ``rise``.

    >>> rows = [{"seed": "0", "step": "0", "eval_accuracy": "0.4", "elapsed_s": "1"},
    ...         {"seed": "0", "step": "10", "eval_accuracy": "0.75", "elapsed_s": "9"},
    ...         {"seed": "0", "step": "20", "eval_accuracy": "0.7", "elapsed_s": "18"}]
    >>> s = summarise(rows)[0]
    >>> (s["start"], s["final"], s["best"], s["step_to_rise"], s["seconds_to_rise"])
    (0.4, 0.7, 0.75, 10, 9.0)
    """
    by_seed: dict[int, list[dict]] = {}
    for r in rows:
        by_seed.setdefault(int(r["seed"]), []).append(r)
    out = []
    for seed, rs in sorted(by_seed.items()):
        rs = sorted(rs, key=lambda r: int(r["step"]))
        acc = [float(r["eval_accuracy"]) for r in rs]
        start = acc[0]
        hit = next((r for r, a in zip(rs, acc) if a >= start + rise - 1e-9), None)
        out.append({
            "seed": seed, "start": start, "final": acc[-1], "best": max(acc), "rise": round(acc[-1] - start, 4),
            "last_step": int(rs[-1]["step"]), "seconds": float(rs[-1]["elapsed_s"]),
            "step_to_rise": int(hit["step"]) if hit else None,
            "seconds_to_rise": float(hit["elapsed_s"]) if hit else None,
        })
    return out


def run_seed(seed: int, out: Path, runs_dir: Path, steps: int | None) -> None:
    """Train default GRPO with ``seed``, appending one row per held-out evaluation to ``out``."""
    import torch

    from lab import provenance
    from lab.config import TrainConfig
    from lab.train import train

    extra = {"steps": steps} if steps else {}
    cfg = TrainConfig(seed=seed, output_dir=str(runs_dir), run_name=f"grpo-s{seed}", quiet=True, **extra)
    run_dir = runs_dir / cfg.run_name
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # an interrupted earlier attempt: its rows were dropped, so start over
    prov = provenance.collect("cpu" if not torch.cuda.is_available() or cfg.device == "cpu" else cfg.device)
    settings = {k: getattr(cfg, k) for k in SETTINGS}
    names = fieldnames()

    def append(step: int, metrics: dict) -> None:
        acc = metrics.get("eval/accuracy")
        if acc is None or (isinstance(acc, float) and math.isnan(acc)):
            return
        row = {"estimator": cfg.estimator, "seed": seed, "step": step, "eval_accuracy": round(float(acc), 4),
               "elapsed_s": round(float(metrics.get("time/elapsed_s", float("nan"))), 2),
               "rollouts": (step + 1) * cfg.rollouts_per_prompt * cfg.prompts_per_step,
               "final": int(step == cfg.steps - 1), **settings, **prov}
        new = not out.is_file() or out.stat().st_size == 0
        with out.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=names)
            if new:
                w.writeheader()
            w.writerow(row)
            f.flush()
        print(f"seed {seed}  step {step:4d}  eval/accuracy {row['eval_accuracy']:.3f}  {row['elapsed_s']:7.1f} s", flush=True)

    train(cfg, callback=append)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds to run (default 0 1 2)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: TrainConfig's)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results CSV (default {DEFAULT_OUT.relative_to(ROOT)})")
    ap.add_argument("--runs-dir", type=Path, default=None, help="where the run directories go (default: a temporary folder)")
    ap.add_argument("--fresh", action="store_true", help="delete the results file first instead of resuming")
    ap.add_argument("--rise", type=float, default=RISE, help=f"rise to time (default {RISE})")
    args = ap.parse_args(argv)

    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh and out.exists():
        out.unlink()
    rows = read_rows(out)
    done = done_seeds(rows)
    kept = [r for r in rows if int(r["seed"]) in done]
    if len(kept) != len(rows):  # drop the rows of an interrupted seed; it runs again
        with out.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fieldnames(), extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
    todo = [s for s in args.seeds if s not in done]
    if done & set(args.seeds):
        print(f"resuming: seeds {sorted(done & set(args.seeds))} already in {out}")
    with tempfile.TemporaryDirectory(prefix="lab-learning-curve-") as tmp:
        runs_dir = args.runs_dir or Path(tmp)
        for seed in todo:
            run_seed(seed, out, runs_dir, args.steps)

    rows = [r for r in read_rows(out) if int(r["seed"]) in set(args.seeds)]
    print(f"\nheld-out accuracy of default GRPO ({out}):")
    print(f"{'seed':>4} {'start':>6} {'final':>6} {'best':>6} {'rise':>6} {'steps':>6} {'seconds':>8}  first step (s) at +{args.rise:.2f}")
    ok = True
    for s in summarise(rows, args.rise):
        hit = f"{s['step_to_rise']} ({s['seconds_to_rise']:.0f} s)" if s["step_to_rise"] is not None else "not reached"
        ok &= s["step_to_rise"] is not None
        print(f"{s['seed']:>4} {s['start']:6.3f} {s['final']:6.3f} {s['best']:6.3f} {s['rise']:+6.3f} {s['last_step'] + 1:6d} "
              f"{s['seconds']:8.1f}  {hit}")
    print("every seed reached the rise" if ok else "some seed did not reach the rise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
