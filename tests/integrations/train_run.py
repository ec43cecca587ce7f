"""A short `lab train` in a subprocess of this environment's Python (shared by the integration tests)."""

import json
import subprocess
import sys


def lab_train(backend: str, steps: int, out_dir) -> list[dict]:
    """Run ``lab train --rollout-backend backend`` for ``steps`` steps (4 prompts x 4 rollouts, no
    probes, evals or checkpoints) into ``out_dir/backend``; return its metrics.jsonl lines. The
    assertion message carries the run's output tails."""
    cmd = [sys.executable, "-m", "lab.cli", "train", "--rollout-backend", backend, "--steps", str(steps),
           "--prompts-per-step", "4", "--rollouts-per-prompt", "4", "--probe-every", "0", "--eval-every", "0",
           "--checkpoint-every", "0", "--shadow-estimators", "grpo", "--output-dir", str(out_dir),
           "--run-name", backend, "--quiet", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    run = out_dir / backend
    assert json.loads((run / "config.json").read_text())["rollout_backend"] == backend
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
