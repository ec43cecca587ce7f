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


def test_estimator_speed_benchmark_runs_small(capsys):
    rows = _load("estimator_speed").main(["--n-rollouts", "2000", "--group-size", "4", "--repeats", "1"])
    assert [r["estimator"] for r in rows] == estimators.available()
    out = capsys.readouterr().out
    assert "2,000 rollouts in 500 prompts (G = 4, interleaved)" in out
    for name in estimators.available():
        assert f"| {name} |" in out
    looped = {r["estimator"] for r in rows if "loop_s" in r}
    assert looped == {"grpo", "dr_grpo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "krpo"}
    assert all(r["max_abs_diff"] < 1e-6 for r in rows if "max_abs_diff" in r)  # the loops compute the same numbers


def test_estimator_speed_benchmark_scales_a_loop_subsample():
    rows = _load("estimator_speed").main(["--n-rollouts", "3000", "--loop-sample", "1000", "--repeats", "1"])
    assert all(r["loop_s"] > 0 and r["speedup"] > 0 for r in rows if "loop_s" in r)
