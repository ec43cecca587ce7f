"""``make demo`` / ``lab demo``: short GRPO and KAE runs on the shipped tiny model, then a comparison.

Both runs see the same prompts (same seed), reuse each prompt for a few consecutive steps
(KAE's setting), and compute every other estimator in shadow mode with value probes on
the step's own prompts, so one table compares all estimators on identical data.
"""

from __future__ import annotations

from pathlib import Path

from lab import compare
from lab.config import TrainConfig
from lab.runs import load_run
from lab.train import train

DEMO = dict(
    rollouts_per_prompt=4,
    prompts_per_step=32,
    steps=60,
    prompt_reuse=2,
    lr=3e-4,
    eval_every=10,
    eval_prompts=128,
    eval_samples=4,
    probe_set="batch",
    probe_every=10,
    probe_prompts=16,
    probe_samples=64,
    checkpoint_every=0,
    seed=0,
)
ESTIMATORS = ("grpo", "kae")


def demo_configs(output_dir: Path, steps: int | None = None, quiet: bool = False) -> list[TrainConfig]:
    """The demo's run configs (one per estimator)."""
    extra = {"steps": steps} if steps else {}
    return [
        TrainConfig(estimator=e, output_dir=str(output_dir), run_name=f"{e}", quiet=quiet, **{**DEMO, **extra})
        for e in ESTIMATORS
    ]


def run_demo(output_dir: Path = Path("runs/demo"), steps: int | None = None, quiet: bool = False) -> list[Path]:
    """Train the demo runs (replacing an earlier demo in ``output_dir``) and print the comparison."""
    import shutil

    output_dir = Path(output_dir)
    dirs = []
    for cfg in demo_configs(output_dir, steps, quiet):
        d = output_dir / cfg.run_name
        if d.exists():
            shutil.rmtree(d)
        if not quiet:
            print(f"\n== training {cfg.estimator}: G={cfg.rollouts_per_prompt}, {cfg.prompts_per_step} prompts/step, "
                  f"{cfg.steps} steps, each prompt reused {cfg.prompt_reuse} steps")
        dirs.append(train(cfg))
    print_comparison([load_run(d) for d in dirs])
    return dirs


def print_comparison(runs) -> None:
    import pandas as pd

    table = compare.runs_table(runs)
    curves = {r.name: compare.sparkline(r.metrics.dropna(subset=["eval/accuracy"]).sort_values("step")["eval/accuracy"].tolist())
              for r in runs}
    table["held-out curve"] = table["run"].map(curves)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print("\nTraining. acc = fraction of training rollouts with reward 1 (first/last 5 steps);")
        print("heldout = eval/accuracy on fixed test prompts (first/last eval); probe = Monte-Carlo value of the probed prompts")
        print(table.drop(columns=["status"]).to_string(index=False))
        curve = compare.heldout_curves(runs)
        if not curve.empty:
            print("\nHeld-out accuracy (eval/accuracy) by step: the learning curve")
            print(curve.to_string())
        mse = compare.value_mse_table(runs)
        if not mse.empty:
            mse = mse.sort_values(mse.columns[0])
            print("\nValue MSE of each estimator's baseline against Monte-Carlo truth (lower is better;")
            print("every estimator scored on the same rollouts in each run, SE^2 of the truth subtracted)")
            print(mse.to_string())
            print("(basis is built for one rollout per prompt with an offline prior from reference samples; here it runs\n"
                  " in shadow at G > 1 with no reference stage, so its prior is a running estimate from the prompt's own rollouts)")
    print(f"\nRuns are in {Path(runs[0].path).parent}/ — open them with lab.runs.load_run(path) or `lab runs list {Path(runs[0].path).parent}`.")
