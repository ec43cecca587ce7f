"""Make ``data/sample_runs/``: a few small real runs for the dashboard, the notebooks and tests.

Run from the repository root (``make sample-runs``)::

    .venv/bin/python scripts/make_sample_runs.py [--output-dir data/sample_runs] [--steps 20]

Every run is trained by ``lab.train.train`` on the shipped tiny model with today's defaults
plus the small overrides in ``COMMON`` (the exact ``lab train`` command of each run is
written to ``<output-dir>/README.md`` and ``manifest.json`` with the provenance). Then:

* checkpoints (and the finished writer's lock file) are deleted: the runs are for viewing,
  not resuming, and the folder stays a few MB;
* the ``failed`` and ``interrupted`` runs get their final status written explicitly (with
  an error text saying so), so they read the same on any machine, whatever the liveness
  check decides about a process that is long gone.

Re-run it whenever the testbed or the defaults change (model, task, estimators, losses).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lab.config import TrainConfig  # noqa: E402
from lab.losses import matched_delta  # noqa: E402
from lab.runs import RunWriter, read_status  # noqa: E402

COMMON = dict(
    rollouts_per_prompt=4,
    prompts_per_step=8,
    prompt_reuse=2,
    probe_every=5,
    probe_prompts=8,
    probe_samples=16,
    eval_every=5,
    eval_prompts=32,
    eval_samples=2,
    checkpoint_every=0,
    quiet=True,
)
"""Small overrides shared by every sample run (rollout budget 32 per step)."""


def sample_configs(steps: int) -> dict[str, dict]:
    """run name -> TrainConfig overrides (on top of ``COMMON``); equal rollout budgets throughout."""
    clip = dict(minibatches=4, lr=3e-4)  # minibatches 2-4 update off-policy, so clipping engages
    runs = {
        "grpo-s0": dict(estimator="grpo", seed=0),
        "grpo-s1": dict(estimator="grpo", seed=1),
        "kae-s0": dict(estimator="kae", seed=0),
        "kae-s1": dict(estimator="kae", seed=1),
        # BASIS as its paper describes it: an offline prior from m reference samples of a fixed pool
        "basis-g1": dict(estimator="basis", rollouts_per_prompt=1, prompts_per_step=32, seed=0,
                         reference_samples=8, train_pool_size=128),
        "krpo": dict(estimator="krpo", seed=0),
        "clip-ratio": dict(estimator="grpo", clip_measure="ratio", clip_delta=matched_delta("ratio"), seed=0, **clip),
        "clip-kl3": dict(estimator="grpo", clip_measure="kl3", clip_delta=matched_delta("kl3"), seed=0, **clip),
        "failed": dict(estimator="rloo", seed=2, steps=max(2, steps // 3)),
        "interrupted": dict(estimator="grpo", seed=3, steps=max(2, steps // 2)),
    }
    return {name: {"steps": steps, **over} for name, over in runs.items()}


FINAL_STATUS = {  # run -> (status, status.json field, text): a failure is an error, a stop only a message
    "failed": ("failed", "error", "sample run: this 'failed' status was written by scripts/make_sample_runs.py "
                                  "after step {step} to show how the dashboard lists a failed run"),
    "interrupted": ("interrupted", "message", "sample run: this 'interrupted' status was written by "
                                              "scripts/make_sample_runs.py after step {step} to show an interrupted run"),
}


def command_line(cfg: TrainConfig) -> str:
    """The ``lab train`` command that makes the same run (non-default fields only)."""
    default = TrainConfig()
    parts = ["lab train"]
    for k, v in cfg.to_dict().items():
        if v == default.to_dict()[k]:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else f"--no-{k.replace('_', '-')}")
        elif isinstance(v, (dict, list)):
            parts.append(f"{flag} '{json.dumps(v)}'")
        else:
            parts.append(f"{flag} {v}")
    return " ".join(parts)


def make(output_dir: Path, steps: int) -> list[dict]:
    from lab import provenance
    from lab.train import train

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for name, over in sample_configs(steps).items():
        run_dir = output_dir / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cfg = TrainConfig(output_dir=str(output_dir), run_name=name, **{**COMMON, **over})
        t0 = time.time()
        print(f"== {name}: {command_line(cfg)}", flush=True)
        train(cfg)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        (run_dir / "writer.lock").unlink(missing_ok=True)  # the writer is done; a lock file means nothing here
        if name in FINAL_STATUS:
            status, field, text = FINAL_STATUS[name]
            step = int(read_status(run_dir).get("step", -1))
            RunWriter(run_dir).set_status(status, step=step, **{field: text.format(step=step)})
        made.append({"name": name, "command": command_line(cfg), "seconds": round(time.time() - t0, 1),
                     "final_status": read_status(run_dir).get("status")})
    manifest = {"provenance": provenance.collect(), "common": COMMON, "runs": made,
                "script": "scripts/make_sample_runs.py", "steps": steps}
    (output_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (output_dir / "README.md").write_text(readme(manifest))
    return made


def readme(manifest: dict) -> str:
    p = manifest["provenance"]
    lines = [
        "# Sample runs",
        "",
        "Small real runs of the tiny model for the dashboard (`lab app --runs data/sample_runs`), the",
        "notebooks and the tests. Made by `make sample-runs` (`scripts/make_sample_runs.py`); do not edit",
        "by hand, re-make them when the testbed or the defaults change. Checkpoints are stripped: view,",
        "don't resume. `failed` and `interrupted` had their final status written by the script.",
        "",
        f"Made {p['created']} from commit "
        f"`{p['git_commit']}`{' (dirty tree)' if p['git_dirty'] else ''}, torch {p['torch']}, {p['cpu']}, "
        f"{p['torch_threads']} threads. Full provenance: `manifest.json`.",
        "",
        "| run | final status | seconds | command |",
        "|---|---|---|---|",
    ]
    for r in manifest["runs"]:
        lines.append(f"| `{r['name']}` | {r['final_status']} | {r['seconds']} | `{r['command']}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output-dir", default="data/sample_runs", help="(relative to the repository root)")
    ap.add_argument("--steps", type=int, default=20, help="training steps of each full run (default 20)")
    args = ap.parse_args(argv)
    os.chdir(REPO)  # configs then record the relative output_dir, the same on every machine
    for r in make(Path(args.output_dir), args.steps):
        print(f"{r['name']:12s} {r['final_status']:12s} {r['seconds']:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
