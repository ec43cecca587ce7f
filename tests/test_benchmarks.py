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


def test_value_mse_benchmark_runs_small_and_writes_its_csv(tmp_path, capsys):
    out = tmp_path / "v.csv"
    bench = _load("value_mse")
    rows = bench.main(["--seeds", "2", "--steps", "4", "--warmup", "1", "--out", str(out)])
    assert bench.read_csv(out) == [{**r, "value_mse": round(r["value_mse"], 10)} for r in rows]
    printed = capsys.readouterr().out
    for label in [*estimators.available(), *bench.VARIANTS]:
        assert f"| {label}" in printed


def test_own_reward_marks_are_measured_not_declared():
    bench = _load("value_mse")
    marked = {label for label in bench._entries() if bench.sees_own_reward(label)}
    assert {"grpo", "dr_grpo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "krpo"} <= marked
    assert "basis(beta_selection=batch)" in marked  # the own reward leaks through the choice of beta
    assert not marked & {"rloo", "kae", "krpo_invariant", "basis", "blend", "blend(no reference)"}  # leave-one-out by construction


def test_value_mse_table_in_the_docs_matches_the_committed_results():
    bench = _load("value_mse")
    doc = (ROOT / "docs" / "estimators.md").read_text()
    start, end = "<!-- value-mse:start -->\n", "\n<!-- value-mse:end -->"
    assert doc[doc.index(start) + len(start) : doc.index(end)] == bench.table(bench.read_csv(bench.DEFAULT_OUT))


def test_committed_value_mse_results_reproduce_exactly():
    bench = _load("value_mse")
    committed = bench.read_csv(bench.DEFAULT_OUT)
    fresh = bench.run(progress=False)
    assert [(r["estimator"], r["group_size"], r["seed"]) for r in fresh] == [
        (r["estimator"], r["group_size"], r["seed"]) for r in committed
    ]
    assert all(abs(a["value_mse"] - b["value_mse"]) < 1e-9 for a, b in zip(fresh, committed))
