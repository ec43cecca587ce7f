"""Benchmarks stay runnable (no timing assertions: speed targets live in the printed tables)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

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


SMALL = ["--seeds", "2", "--steps", "4", "--warmup", "1", "--group-sizes", "1", "2", "--reuses", "1", "3"]


def test_value_mse_benchmark_runs_small_and_writes_its_csv_and_provenance(tmp_path, capsys):
    out = tmp_path / "v.csv"
    bench = _load("value_mse")
    rows = bench.main([*SMALL, "--out", str(out)])
    assert bench.read_csv(out) == [{**r, "value_mse": round(r["value_mse"], 10)} for r in rows]
    assert {(r["group_size"], r["reuse"]) for r in rows} == {(1, 1), (1, 3), (2, 1), (2, 3)}
    printed = capsys.readouterr().out
    for label in bench.ROWS:
        assert f"| `{label}`" in printed
    side = json.loads((tmp_path / "v.provenance.json").read_text())
    assert side["complete"] and side["settings"]["reuses"] == [1, 3]
    assert set(side["provenance"]) >= {"git_commit", "torch", "cpu", "created"}
    assert side["rows"] == {label: bench.resolved_params(label) for label in bench.ROWS}


def test_value_mse_benchmark_resumes_after_a_kill_and_ends_with_the_same_file(tmp_path):
    bench = _load("value_mse")
    whole, part = tmp_path / "whole.csv", tmp_path / "part.csv"
    bench.main([*SMALL, "--out", str(whole)])
    lines = whole.read_text().splitlines(keepends=True)
    (tmp_path / "part.provenance.json").write_text((tmp_path / "whole.provenance.json").read_text())
    part.write_text("".join(lines[:40]) + lines[40][:7])  # killed while writing row 40
    calls = []
    real = bench.run_one
    bench.run_one = lambda *a: (calls.append(a), real(*a))[1]
    bench.main([*SMALL, "--out", str(part)])
    assert part.read_text() == whole.read_text()
    assert len(calls) == len(lines) - 1 - 39  # only the rows that were missing ran again
    side = json.loads((tmp_path / "part.provenance.json").read_text())
    assert side["complete"] and side["resumed_rows"] == 39


def test_value_mse_benchmark_measures_again_the_rows_whose_parameters_changed(tmp_path):
    bench = _load("value_mse")
    out = tmp_path / "v.csv"
    bench.main([*SMALL, "--out", str(out)])
    before = out.read_text()
    side = tmp_path / "v.provenance.json"
    meta = json.loads(side.read_text())
    meta["rows"]["kae(h=0.5)"]["h"] = 0.3  # as if the file had been written when the row meant something else
    side.write_text(json.dumps(meta))
    calls = []
    real = bench.run_one
    bench.run_one = lambda *a: (calls.append(a), real(*a))[1]
    bench.main([*SMALL, "--out", str(out)])
    assert {a[0] for a in calls} == {"kae(h=0.5)"} and len(calls) == 2 * 2 * 2  # G × J × seeds
    assert out.read_text() == before


def test_value_mse_benchmark_refuses_to_resume_with_other_settings(tmp_path, capsys):
    bench = _load("value_mse")
    out = tmp_path / "v.csv"
    bench.main([*SMALL, "--out", str(out)])
    with pytest.raises(SystemExit):
        bench.main([*SMALL[:-3], "--reuses", "1", "--out", str(out)])
    assert "rerun with --fresh" in capsys.readouterr().err
    bench.main([*SMALL[:-3], "--reuses", "1", "--out", str(out), "--fresh"])
    assert {r["reuse"] for r in bench.read_csv(out)} == {1}


def test_row_labels_are_the_parameters_they_run_with():
    bench = _load("value_mse")
    assert bench.parse_label("basis(fallback=zero, online_prior=never, reference=0)") == (
        "basis", {"fallback": "zero", "online_prior": "never"}, 0)
    for label in bench.ROWS:
        name, params, _ = bench.parse_label(label)
        if name != bench.POSTERIOR:
            est = bench.estimators.get(name, **params)  # an unknown parameter would raise here
            assert all(getattr(est, k) == v for k, v in params.items()), label
    # every BASIS row names each reading the paper leaves open, so no default can relabel it
    for label in (x for x in bench.ROWS if x.startswith("basis")):
        assert set(bench.parse_label(label)[1]) >= {"fallback", "online_prior", "beta_selection"}, label


def test_own_reward_marks_are_measured_not_declared():
    bench = _load("value_mse")
    marked = {label for label in bench.ROWS if bench.sees_own_reward(label)}
    assert {"grpo", "dr_grpo", "reinforce_plus_plus", "reinforce_plus_plus_baseline", "krpo"} <= marked
    assert bench.BASIS_DEFAULT.replace("crossfit", "batch") in marked  # the own reward leaks through the choice of beta
    clean = {"rloo", "krpo_invariant", "posterior", *(x for x in bench.ROWS if x.startswith(("kae", "blend")))}
    assert not marked & clean and bench.BASIS_DEFAULT not in marked  # leave-one-out by construction


def test_floors_match_each_rows_offline_information():
    bench = _load("value_mse")
    assert bench.floor_of("rloo") == bench.floor_of("kae(h=0.5)") == "posterior(reference=0)"
    assert bench.floor_of(bench.BASIS_DEFAULT) == bench.floor_of("blend(decay=0.95)") == "posterior"
    assert bench.floor_of("blend(decay=0.95, reference=0)") == "posterior(reference=0)"


def test_value_mse_tables_in_the_docs_match_the_committed_results():
    bench = _load("value_mse")
    doc = (ROOT / "docs" / "estimators.md").read_text()
    start, end = "<!-- value-mse:start -->\n", "\n<!-- value-mse:end -->"
    assert doc[doc.index(start) + len(start) : doc.index(end)] == bench.table(bench.read_csv(bench.DEFAULT_OUT))


def test_committed_value_mse_results_cover_every_row_and_were_run_with_todays_parameters():
    bench = _load("value_mse")
    committed = bench.read_csv(bench.DEFAULT_OUT)
    side = json.loads(bench.sidecar_path(bench.DEFAULT_OUT).read_text())
    assert side["complete"] and side["settings"]["seeds"] >= 5
    keys = [(r["estimator"], r["group_size"], r["reuse"], r["seed"]) for r in committed]
    assert keys == bench.jobs(seeds=range(side["settings"]["seeds"]))
    # a changed default of any row's estimator shows up here: rerun benchmarks/value_mse.py --fresh
    assert side["rows"] == {label: bench.resolved_params(label) for label in bench.ROWS}


def test_committed_value_mse_results_reproduce_exactly_on_a_slice():
    bench = _load("value_mse")
    committed = {(r["estimator"], r["group_size"], r["reuse"], r["seed"]): r["value_mse"] for r in bench.read_csv(bench.DEFAULT_OUT)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for label, g, j, s in bench.jobs(group_sizes=(1, 4), reuses=(10,), seeds=(0,)):
            fresh = bench.run_one(label, g, j, s, 40, 10)
            assert abs(fresh - committed[(label, g, j, s)]) < 1e-9, (label, g, j, s)
    finally:
        torch.set_num_threads(threads)
