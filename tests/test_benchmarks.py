"""Benchmarks stay runnable (no timing assertions: speed targets live in the printed tables)."""

import json
from pathlib import Path

import pytest
import torch

from lab import estimators
import importlib

from lab.analysis import docblocks

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    return importlib.import_module(f"benchmarks.{name}")


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


def test_value_mse_benchmark_resumes_after_a_kill_and_ends_with_the_same_file(tmp_path, monkeypatch):
    bench = _load("value_mse")
    whole, part = tmp_path / "whole.csv", tmp_path / "part.csv"
    bench.main([*SMALL, "--out", str(whole)])
    lines = whole.read_text().splitlines(keepends=True)
    (tmp_path / "part.provenance.json").write_text((tmp_path / "whole.provenance.json").read_text())
    part.write_text("".join(lines[:40]) + lines[40][:7])  # killed while writing row 40
    calls = []
    real = bench.run_one
    monkeypatch.setattr(bench, "run_one", lambda *a: (calls.append(a), real(*a))[1])
    bench.main([*SMALL, "--out", str(part)])
    assert part.read_text() == whole.read_text()
    assert len(calls) == len(lines) - 1 - 39  # only the rows that were missing ran again
    side = json.loads((tmp_path / "part.provenance.json").read_text())
    assert side["complete"] and side["resumed_rows"] == 39


def test_value_mse_benchmark_with_nothing_left_to_run_keeps_its_file_and_provenance(tmp_path, capsys, monkeypatch):
    bench = _load("value_mse")
    out = tmp_path / "v.csv"
    bench.main([*SMALL, "--out", str(out)])
    side = tmp_path / "v.provenance.json"
    meta = json.loads(side.read_text())
    meta["provenance"]["git_commit"] = "made-by-an-earlier-commit"
    side.write_text(json.dumps(meta))
    before_csv, before_side = out.read_text(), side.read_text()
    monkeypatch.setattr(bench, "run_one", lambda *a: pytest.fail("a finished file ran a row again"))
    rows = bench.main([*SMALL, "--out", str(out)])
    assert out.read_text() == before_csv and side.read_text() == before_side
    assert len(rows) == len(before_csv.splitlines()) - 1
    assert "nothing left to run" in capsys.readouterr().out


def test_value_mse_benchmark_measures_again_the_rows_whose_parameters_changed(tmp_path, monkeypatch):
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
    monkeypatch.setattr(bench, "run_one", lambda *a: (calls.append(a), real(*a))[1])
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


# --- the bandit's world: --trend/--drift and --calibrated ------------------------------------------
TINY = ["--seeds", "2", "--steps", "4", "--warmup", "1", "--group-sizes", "2", "--reuses", "2"]


def _drift_csv(root, trend=0.2, drift=0.4, matched=True):
    rows = [{"source": "real", "rollouts_per_prompt": "all", "lag": 3, "mean_change_per_step": 0.03, "drift_per_step": 0.05,
             "trend": "", "drift": "", "spread": ""},
            {"source": "bandit", "rollouts_per_prompt": "", "lag": 3, "mean_change_per_step": 0.005, "drift_per_step": 0.008,
             "trend": 0.03, "drift": 0.05, "spread": 1.5}]
    if matched:
        rows.append({"source": "bandit_matched", "rollouts_per_prompt": "", "lag": 3, "mean_change_per_step": 0.02,
                     "drift_per_step": 0.049, "trend": trend, "drift": drift, "spread": 1.5})
    import pandas as pd

    pd.DataFrame(rows).to_csv(root / "value_mse_real_drift.csv", index=False)


def test_trend_and_drift_set_the_world_of_every_row_and_the_floor(tmp_path):
    from lab.synthetic import posterior_mse_run, value_mse_run

    bench = _load("value_mse")
    rows = bench.main([*TINY, "--trend", "0.2", "--drift", "0.4", "--out", str(tmp_path / "w.csv")])
    got = {(r["estimator"], r["seed"]): r["value_mse"] for r in rows}
    with bench.one_thread():
        for s in (0, 1):  # computed directly with lab.synthetic, the world passed by hand
            rloo = value_mse_run("rloo", 2, steps=4, reuse=2, seed=s, trend=0.2, drift=0.4).mse[1:].mean()
            floor = posterior_mse_run(2, steps=4, reuse=2, seed=s, reference_samples=0, trend=0.2, drift=0.4).mse[1:].mean()
            assert got[("rloo", s)] == pytest.approx(float(rloo), abs=1e-12)
            assert got[("posterior(reference=0)", s)] == pytest.approx(float(floor), abs=1e-12)
    default = {(r["estimator"], r["seed"]): r["value_mse"] for r in bench.main([*TINY, "--out", str(tmp_path / "d.csv")])}
    assert default[("rloo", 0)] != got[("rloo", 0)]
    side = json.loads((tmp_path / "w.provenance.json").read_text())
    assert side["world"] == side["settings"]["world"] == {"spread": 1.5, "trend": 0.2, "drift": 0.4}
    assert "world" not in json.loads((tmp_path / "d.provenance.json").read_text())["settings"]  # old sidecars resume


def test_a_file_is_never_resumed_in_another_world(tmp_path, capsys):
    bench = _load("value_mse")
    out = tmp_path / "w.csv"
    bench.main([*TINY, "--drift", "0.4", "--out", str(out)])
    with pytest.raises(SystemExit):
        bench.main([*TINY, "--drift", "0.5", "--out", str(out)])
    assert "rerun with --fresh" in capsys.readouterr().err


def test_default_settings_are_those_the_committed_file_was_made_with():
    bench = _load("value_mse")
    args = type("A", (), {"seeds": bench.SEEDS, "steps": 40, "warmup": 10, "group_sizes": bench.GROUP_SIZES,
                          "reuses": bench.REUSES})()
    side = json.loads(bench.sidecar_path(bench.DEFAULT_OUT).read_text())
    assert bench._settings(args, bench.default_world()) == side["settings"]  # so `make bench` still resumes it


def test_calibrated_runs_over_the_real_runs_horizon_and_the_committed_file_resumes():
    bench, real = _load("value_mse"), _load("value_mse_real")
    assert (bench.CALIBRATED_STEPS, bench.CALIBRATED_WARMUP) == (real.STEPS, real.WARMUP)
    side = json.loads(bench.sidecar_path(bench.CALIBRATED_OUT).read_text())
    args = type("A", (), {"seeds": bench.SEEDS, "steps": bench.CALIBRATED_STEPS, "warmup": bench.CALIBRATED_WARMUP,
                          "group_sizes": bench.GROUP_SIZES, "reuses": bench.REUSES})()
    assert bench._settings(args, bench.calibrated_world()) == side["settings"]  # so `--calibrated` in `make bench` resumes it


def test_calibrated_takes_the_world_fitted_to_the_real_drift(tmp_path, monkeypatch):
    from lab.analysis import results

    bench = _load("value_mse")
    _drift_csv(tmp_path, trend=0.2, drift=0.4)
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    out = tmp_path / "c.csv"
    rows = bench.main(["--calibrated", *TINY, "--out", str(out)])
    side = json.loads(bench.sidecar_path(out).read_text())
    assert side["world"] == {"spread": 1.5, "trend": 0.2, "drift": 0.4}
    assert side["calibrated_from"]["drift"]["real"] == {"lag": 3, "drift_per_step": 0.05, "mean_change_per_step": 0.03}
    by_hand = {(r["estimator"], r["seed"]): r["value_mse"]
               for r in bench.main([*TINY, "--trend", "0.2", "--drift", "0.4", "--out", str(tmp_path / "h.csv")])}
    assert {(r["estimator"], r["seed"]): r["value_mse"] for r in rows} == by_hand
    assert bench.calibrated_block(bench.read_csv(out), side).count("trend = 0.2, drift = 0.4, spread = 1.5") == 1


def test_calibrated_without_a_fit_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from lab.analysis import results

    bench = _load("value_mse")
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path)
    with pytest.raises(SystemExit):
        bench.main(["--calibrated", *TINY, "--out", str(tmp_path / "c.csv")])
    assert "benchmarks/value_mse_real.py" in capsys.readouterr().err
    _drift_csv(tmp_path, matched=False)
    with pytest.raises(SystemExit):
        bench.main(["--calibrated", *TINY, "--out", str(tmp_path / "c.csv")])
    assert "without --no-match" in capsys.readouterr().err
    _drift_csv(tmp_path)
    with pytest.raises(SystemExit):
        bench.main(["--calibrated", "--drift", "0.1", *TINY, "--out", str(tmp_path / "c.csv")])
    assert "drop --trend/--drift/--spread" in capsys.readouterr().err


def test_world_levels_are_the_mean_of_the_bandits_values():
    bench = _load("value_mse")
    from lab.synthetic import DriftingBandit

    w = {"spread": 1.5, "trend": 0.3, "drift": 0.8}
    lv = bench.world_levels(w, steps=6, warmup=2, seeds=[0, 1], n_prompts=8)
    v = torch.cat([torch.stack([DriftingBandit(8, seed=s, **w).values(t) for t in range(2, 6)]).flatten() for s in (0, 1)])
    assert lv["mean_v"] == pytest.approx(float(v.mean())) and lv["mean_var"] == pytest.approx(float((v * (1 - v)).mean()))
    assert lv["saturated"] == pytest.approx(float(((v < 0.01) | (v > 0.99)).double().mean()))


def test_calibrated_block_in_the_docs_matches_the_committed_results():
    bench = _load("value_mse")
    doc = bench.DOCS.read_text()
    side = json.loads(bench.sidecar_path(bench.CALIBRATED_OUT).read_text())
    want = bench.calibrated_block(bench.read_csv(bench.CALIBRATED_OUT), side, bench.read_csv(bench.DEFAULT_OUT))
    assert docblocks.block(doc, bench.CALIBRATED_BLOCK) == want, "run benchmarks/value_mse.py --write-docs"


def test_committed_calibrated_results_were_run_in_todays_fitted_world_and_reproduce():
    bench = _load("value_mse")
    side = json.loads(bench.sidecar_path(bench.CALIBRATED_OUT).read_text())
    assert side["complete"] and side["settings"]["seeds"] >= 5
    # a refit of the real drift (benchmarks/value_mse_real.py) shows up here: rerun value_mse.py --calibrated --fresh
    assert side["world"] == side["settings"]["world"] == bench.calibrated_world()
    assert side["rows"] == {label: bench.resolved_params(label) for label in bench.ROWS}
    committed = {(r["estimator"], r["group_size"], r["reuse"], r["seed"]): r["value_mse"]
                 for r in bench.read_csv(bench.CALIBRATED_OUT)}
    st = side["settings"]
    assert list(committed) == bench.jobs(group_sizes=st["group_sizes"], reuses=st["reuses"], seeds=range(st["seeds"]))
    with bench.one_thread():
        for label, g, j, s in bench.jobs(group_sizes=(4,), reuses=(10,), seeds=(0,)):
            fresh = bench.run_one(label, g, j, s, st["steps"], st["warmup"], side["world"])
            assert abs(fresh - committed[(label, g, j, s)]) < 1e-9, (label, g, j, s)
