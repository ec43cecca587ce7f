"""Benchmarks stay runnable (no timing assertions: speed targets live in the printed tables)."""

import importlib.util
from pathlib import Path

from lab import estimators

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_estimator_speed_benchmark_runs_small_and_checks_loops_against_vectorised(capsys):
    rows = _load("estimator_speed").main(["--n-rollouts", "2000", "--loop-sample", "1000", "--repeats", "1"])
    assert [r["estimator"] for r in rows] == estimators.available()
    out = capsys.readouterr().out
    for name in estimators.available():
        assert f"| {name} |" in out
    assert all(r["max_abs_diff"] < 1e-6 for r in rows if "max_abs_diff" in r)
