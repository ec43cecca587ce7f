"""Shared fixtures. ``corrupted_runs_root``: a root of good runs and one broken run per kind
of damage, for every reader of run directories (``lab.runs``, ``lab runs``, the dashboard).

Layout (names relative to the root; what ``list_runs`` / ``load_run`` / ``--resume`` say
is in ``CORRUPTED_RUNS`` below and in the ``corrupted_runs_expected`` fixture)::

    good/grpo-s0, good/kae-s1            healthy finished runs (3 steps, samples, probes, eval)
    broken/config-not-utf8               config.json holds bytes that are not UTF-8
    broken/config-garbage                config.json is not JSON
    broken/status-torn                   status.json cut in the middle
    broken/metrics-bad-middle            metrics.jsonl line 2 is not JSON (lines 1 and 3 are)
    broken/samples-truncated             samples/step_000001.parquet cut in half
    broken/latest-json-garbage           a real (micro-model) run whose checkpoints/latest.json is garbage
    broken/safetensors-truncated         a real run whose only checkpoint's model.safetensors is cut
    broken/metrics-truncated             metrics.jsonl cut inside its 2nd line (1 row left, status says step 2)
    broken/metrics-empty                 metrics.jsonl empty (status says step 2)
    broken/status-wrong-type             status.json's step is the string "2"
    broken/config-bad-type               config.json's seed is the string "zero"
    broken/metrics-fifo                  metrics.jsonl is a FIFO nobody writes (a reader that opens it blocks)
    broken/status-socket                 status.json is a Unix socket
    broken/config-dev-zero               config.json is a symlink to /dev/zero (a reader that reads it never ends)
    empty/                               an empty folder (not a run)

Never copy this root with ``shutil.copytree`` (it would read /dev/zero forever): build a new one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_RUN = FIXTURES / "run-format-v0"
"""A run written by the lab before run-format versioning (format 0), micro model, kae, 3 steps."""

GOOD_RUNS = ("good/grpo-s0", "good/kae-s1")
CORRUPTED_RUNS = {
    # name: (file named by list_runs' `problem`, or None when list_runs cannot see it cheaply,
    #        file named in load_run(...).problems)
    "broken/config-not-utf8": ("config.json", "config.json"),
    "broken/config-garbage": ("config.json", "config.json"),
    "broken/status-torn": ("status.json", "status.json"),
    "broken/metrics-bad-middle": (None, "metrics.jsonl: line 2"),
    "broken/samples-truncated": (None, "samples/step_000001.parquet"),
    "broken/latest-json-garbage": ("checkpoints/latest.json", "checkpoints/latest.json"),
    "broken/safetensors-truncated": (None, None),  # only --resume reads checkpoints: it names model.safetensors
    "broken/metrics-truncated": ("metrics.jsonl", "metrics.jsonl"),
    "broken/metrics-empty": ("metrics.jsonl", "metrics.jsonl: empty"),
    "broken/status-wrong-type": ("status.json", "status.json: step"),
    "broken/config-bad-type": ("config.json", "config.json: field seed"),
    "broken/metrics-fifo": ("metrics.jsonl", "metrics.jsonl: is a FIFO"),
    "broken/status-socket": ("status.json", "status.json: is a socket"),
    "broken/config-dev-zero": ("config.json", "config.json: is a character device"),
}
METRICS_DAMAGE = ("broken/metrics-truncated", "broken/metrics-empty", "broken/metrics-fifo")
"""Broken runs whose metrics rows are (partly) gone: every other one still loads all its rows."""


def make_socket(path: Path) -> Path:
    """A Unix socket file at ``path`` (bound through /proc/self/fd, so a long path is no problem)."""
    import os
    import socket

    dfd = os.open(path.parent, os.O_RDONLY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(f"/proc/self/fd/{dfd}/{path.name}")
    finally:
        s.close()
        os.close(dfd)
    return path


def _config(**kw) -> dict:
    from lab.config import TrainConfig

    return TrainConfig(steps=3, quiet=True, **kw).to_dict()


def write_good_run(path: Path, *, estimator: str = "grpo", seed: int = 0, steps: int = 3) -> Path:
    """A small healthy finished run written through RunWriter (no training)."""
    from lab import runs

    w = runs.RunWriter.create(path, _config(estimator=estimator, seed=seed))
    for s in range(steps):
        rec = {"step": s, "reward/mean": 0.25 * s, "reward/accuracy": 0.2 * s, "time/elapsed_s": 1.5 * (s + 1)}
        if s % 2 == 0:
            rec["eval/accuracy"] = 0.1 * (s + 1)
        w.log_samples(s, pd.DataFrame({"step": [s, s], "prompt_id": [7, 7], "rollout": [0, 1], "reward": [1.0, 0.0],
                                       "baseline": [0.5, 0.5], "advantage": [0.5, -0.5], "completion": ["19", "18"]}))
        if s % 2 == 0:
            w.log_probes(s, pd.DataFrame({"step": [s], "prompt_id": [7], "estimator": [estimator], "truth": [0.5],
                                          "truth_se": [0.1], "baseline_mean": [0.4], "sq_err": [0.01], "n_rollouts": [2]}))
        w.log_metrics(rec)
        w.set_status("running", step=s)
    w.set_status("finished", step=steps - 1)
    w.close()
    return path


def build_corrupted_root(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_good_run(root / "good/grpo-s0", estimator="grpo", seed=0)
    write_good_run(root / "good/kae-s1", estimator="kae", seed=1)

    b = root / "broken"
    d = write_good_run(b / "config-not-utf8")
    (d / "config.json").write_bytes(b'{"estimator": "grpo", "seed": 0, "note": "\xff\xfe"}\n')
    d = write_good_run(b / "config-garbage")
    (d / "config.json").write_text("this is {not json\n")
    d = write_good_run(b / "status-torn")
    (d / "status.json").write_text('{"status": "fini')
    d = write_good_run(b / "metrics-bad-middle")
    lines = (d / "metrics.jsonl").read_text().splitlines()
    lines[1] = "@@ not json @@"
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    d = write_good_run(b / "samples-truncated")
    f = d / "samples" / "step_000001.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])

    d = b / "latest-json-garbage"
    shutil.copytree(OLD_RUN, d)
    (d / "checkpoints" / "latest.json").write_text("garbage{")
    d = b / "safetensors-truncated"
    shutil.copytree(OLD_RUN, d)
    f = d / "checkpoints" / "step_000002" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    d = write_good_run(b / "metrics-truncated")
    data = (d / "metrics.jsonl").read_bytes()
    first = data.index(b"\n") + 1
    (d / "metrics.jsonl").write_bytes(data[: first + (data.index(b"\n", first) - first) // 2])
    d = write_good_run(b / "metrics-empty")
    (d / "metrics.jsonl").write_bytes(b"")
    d = write_good_run(b / "status-wrong-type")
    st = json.loads((d / "status.json").read_text())
    (d / "status.json").write_text(json.dumps({**st, "step": str(st["step"])}))
    d = write_good_run(b / "config-bad-type")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "seed": "zero"}))
    d = write_good_run(b / "metrics-fifo")
    (d / "metrics.jsonl").unlink()
    os.mkfifo(d / "metrics.jsonl")
    d = write_good_run(b / "status-socket")
    (d / "status.json").unlink()
    make_socket(d / "status.json")
    d = write_good_run(b / "config-dev-zero")
    (d / "config.json").unlink()
    (d / "config.json").symlink_to("/dev/zero")
    (root / "empty").mkdir()
    return root


@pytest.fixture
def corrupted_runs_root(tmp_path) -> Path:
    """A fresh copy of the corrupted-runs root (see the module docstring); safe to modify."""
    return build_corrupted_root(tmp_path / "corrupted_runs")


@pytest.fixture
def corrupted_runs_expected() -> dict:
    """``{"good": [names], "broken": {name: (list_runs problem file | None, load_run problem | None)}}``."""
    return {"good": list(GOOD_RUNS), "broken": dict(CORRUPTED_RUNS)}


@pytest.fixture
def old_format_run(tmp_path) -> Path:
    """A copy of the format-0 run fixture (tests/fixtures/run-format-v0), safe to resume."""
    dst = tmp_path / "old-run"
    shutil.copytree(OLD_RUN, dst)
    return dst
