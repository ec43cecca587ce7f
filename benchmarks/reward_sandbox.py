"""What the reward sandbox costs per training step, against in-process scoring in the same run.

    .venv/bin/python benchmarks/reward_sandbox.py [--repeats 200] [--step-time-s S | --measure-step]

For each built-in task (every registered one needing no parameters), one default step's
batch (``prompts_per_step x rollouts_per_prompt`` of ``TrainConfig``'s defaults: 16 x 4 = 64
completions, half of them the reference answer and half a wrong one) is scored ``--repeats``
times with ``score(..., sandbox=True)`` (the worker pool, :mod:`lab.tasks.sandbox`) and
``score(..., sandbox=False)`` (in-process, SIGALRM per call), interleaved so both see the
same machine load; the pool is started before timing (it starts once per process). The
medians give ``ratio = sandbox / in-process`` and ``extra_ms = sandbox - in-process``.

The cost is judged against a default step: ``--measure-step`` runs ``lab train`` with the
default config for 4 steps and takes the median ``perf/step_time_s`` of steps 1-3 (step 0
holds warm-up); otherwise ``--step-time-s`` (default: :data:`STATED_STEP_TIME_S`, stated).
Target: ``extra_ms`` at most 5% of the step (``meets_target``). Output:
``data/results/reward_sandbox.csv`` via ``lab.results.write_csv``, provenance beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OUT = REPO / "data" / "results" / "reward_sandbox.csv"
TARGET_FRACTION = 0.05
STATED_STEP_TIME_S = 0.8
"""A default CPU step of the tiny model (the fastest of a 4-step `lab train` on 2 shared cores); used without --measure-step."""
FIELDS = ["task", "batch", "repeats", "inprocess_ms", "sandbox_ms", "ratio", "extra_ms", "step_time_s", "step_time_source",
          "extra_fraction_of_step", "target_fraction", "meets_target"]


def batch(task, n: int):
    """``n`` examples and completions: the reference answer for even indices, a wrong one for odd."""
    exs = task.sample(n, "train", seed=0)
    while len(exs) < n:  # a small finite task: cycle it
        exs += exs[: n - len(exs)]
    comps = [ex.answer if i % 2 == 0 else ex.answer + "9" for i, ex in enumerate(exs)]
    return comps, exs


def time_scoring(task, comps, exs, repeats: int) -> tuple[float, float]:
    """Median seconds per call of (sandboxed, in-process) scoring, interleaved."""
    from lab.tasks.scoring import score

    a = score(task, comps, exs, sandbox=True)  # the pool is up and holds the task
    b = score(task, comps, exs, sandbox=False)
    assert a.rewards == b.rewards and a.sandbox == "process", (a.sandbox, task)
    pool, local = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        score(task, comps, exs, sandbox=True)
        t1 = time.perf_counter()
        score(task, comps, exs, sandbox=False)
        t2 = time.perf_counter()
        pool.append(t1 - t0)
        local.append(t2 - t1)
    return statistics.median(pool), statistics.median(local)


def measure_step_time(steps: int = 4) -> float:
    """Median ``perf/step_time_s`` of steps 1.. of a default ``lab train`` run of ``steps`` steps."""
    import pandas as pd

    from lab import cli

    with tempfile.TemporaryDirectory(prefix="reward_sandbox_") as d:
        assert cli.main(["train", "--steps", str(steps), "--output-dir", d, "--run-name", "r", "--quiet"]) == 0
        m = pd.read_json(Path(d) / "r" / "metrics.jsonl", lines=True)
    return float(m["perf/step_time_s"].iloc[1:].median())


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--step-time-s", type=float, default=None, help=f"a default step's time (default: {STATED_STEP_TIME_S}, stated)")
    ap.add_argument("--measure-step", action="store_true", help="measure the step time with a 4-step default `lab train`")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    from lab import provenance, results, tasks
    from lab.config import TrainConfig

    cfg = TrainConfig()
    n = cfg.prompts_per_step * cfg.rollouts_per_prompt
    if args.measure_step:
        step_s, source = measure_step_time(), "measured: median perf/step_time_s of steps 1-3 of a default 4-step lab train"
    else:
        step_s = args.step_time_s if args.step_time_s is not None else STATED_STEP_TIME_S
        source = "given (--step-time-s)" if args.step_time_s is not None else "stated: STATED_STEP_TIME_S"
    rows = []
    for name in tasks.available():
        if name == "jsonl":  # needs a path; gsm8k is the same code on the shipped fixture
            continue
        task = tasks.get(name)
        comps, exs = batch(task, n)
        pool_s, local_s = time_scoring(task, comps, exs, args.repeats)
        extra = pool_s - local_s
        rows.append({"task": name, "batch": n, "repeats": args.repeats, "inprocess_ms": round(local_s * 1e3, 4),
                     "sandbox_ms": round(pool_s * 1e3, 4), "ratio": round(pool_s / local_s, 4), "extra_ms": round(extra * 1e3, 4),
                     "step_time_s": round(step_s, 4), "step_time_source": source,
                     "extra_fraction_of_step": round(extra / step_s, 5), "target_fraction": TARGET_FRACTION,
                     "meets_target": extra / step_s <= TARGET_FRACTION})
    out = Path(args.out)
    results.write_csv(out, rows, FIELDS)
    results.write_sidecar(out, {"settings": vars(args), "provenance": provenance.collect("cpu"), "target_fraction": TARGET_FRACTION,
                                "what": __doc__.splitlines()[0]})
    for r in rows:
        print(f"| {r['task']:20s} | in-process {r['inprocess_ms']:8.3f} ms | sandbox {r['sandbox_ms']:8.3f} ms | "
              f"x{r['ratio']:.2f} | +{r['extra_ms']:.3f} ms = {100 * r['extra_fraction_of_step']:.2f}% of a {step_s:.3g} s step |")
    print(f"-> {out}")
    return rows


if __name__ == "__main__":
    main()
