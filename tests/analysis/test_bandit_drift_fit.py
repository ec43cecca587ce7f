"""The bandit's drift measured and fitted the way the real runs measured theirs (lab.analysis.bandit)."""

import importlib
import math

import pandas as pd
import pytest

from lab.analysis import results
from lab.analysis.bandit import ProbeDesign, drift_loss, fit_drift, probed_drift

SMALL = ProbeDesign(cells=((2, 4), (2, 10), (4, 1)), pool=1024)


def test_the_probe_design_is_the_real_runs_design():
    real = importlib.import_module("benchmarks.value_mse_real")
    d = ProbeDesign()
    assert d.cells == tuple((g, j) for g in real.GROUP_SIZES for j in real.REUSES)
    assert (d.steps, d.probe_every, d.probe_prompts, d.rollouts_per_step, d.warmup, d.max_lag) == (
        real.STEPS, real.PROBE_EVERY, real.PROBE_PROMPTS, real.ROLLOUTS_PER_STEP, real.WARMUP, real.MAX_LAG)


def test_probed_pairs_are_prompts_inside_a_reuse_block_so_learn_moves_them_and_not_the_population():
    flat = {"spread": 0.0, "trend": 0.0, "slope": 0.0, "drift": 0.0}
    d = probed_drift({**flat, "learn": 0.2}, ProbeDesign(cells=((2, 10),), pool=1024), seeds=[0])
    # a probed pair k steps apart in one block: the prompt was trained on every step between, so its logit gained 0.2·k
    # from 0.2·t0; at logit 0 and small steps, ΔV ≈ 0.25·0.2·k, so the mean change per step is close to 0.05
    assert all(0.03 < mc < 0.05 for _, mc in d["lags"].values()), d["lags"]
    assert set(d["lags"]) == {3, 6, 9}
    none = probed_drift({**flat, "learn": 0.0}, ProbeDesign(cells=((2, 10),), pool=1024), seeds=[0])
    assert all(msd == 0.0 and mc == 0.0 for msd, mc in none["lags"].values())
    # with J = 1 no prompt comes back within 9 steps (a large pool), so there are no pairs at all
    assert probed_drift({**flat, "learn": 0.2}, ProbeDesign(cells=((2, 1),), pool=4096), seeds=[0])["lags"] == {}


def test_fit_drift_recovers_a_known_worlds_drift_at_every_lag():
    truth = {"spread": 0.8, "trend": 0.01, "learn": 0.15, "slope": 0.0, "drift": 0.2}
    target = probed_drift(truth, SMALL, seeds=range(2))
    fit = fit_drift(target, SMALL, starts=[{"spread": 1.2, "trend": 0.0, "learn": 0.05, "slope": 0.05, "drift": 0.4}],
                    maxiter=250)
    got = probed_drift(fit, SMALL, seeds=range(2))
    for k, (msd, mc) in target["lags"].items():
        assert got["lags"][k][0] == pytest.approx(msd, rel=0.15), (k, fit)
        assert got["lags"][k][1] == pytest.approx(mc, abs=0.2 * math.sqrt(msd) / k), (k, fit)
    assert drift_loss(fit, target, SMALL) < 0.05 < drift_loss({**truth, "learn": 0.0}, target, SMALL)


def test_the_committed_drift_fit_shows_what_its_world_gives_at_every_lag_and_moment():
    bench = importlib.import_module("benchmarks.value_mse")
    df = results.read("value_mse_drift_fit")
    world = {k: float(df[k].iloc[0]) for k in ("spread", "trend", "learn", "slope", "drift")}
    again = pd.DataFrame(bench.drift_fit_rows(world))
    assert list(again["moment"]) == list(df["moment"])
    for col in ("real", "fit", "random_walk"):
        assert again[col].astype(float).round(6).tolist() == pytest.approx(df[col].astype(float).tolist(), abs=2e-6), col
    assert results.provenance("value_mse_long").get("world", {}).get("learn") == pytest.approx(
        world["learn"] * bench.CALIBRATED_STEPS / bench.LONG_STEPS, abs=1e-6)  # the long sweep ran in this world, stretched


def _root_with_the_fit(tmp_path):
    import shutil

    for name in ("value_mse_drift_fit", "value_mse_real_drift", "value_mse_real_truth", "value_mse_real"):
        shutil.copy(results.path(name), tmp_path / f"{name}.csv")
    return tmp_path


def test_a_rerun_of_the_long_sweep_reuses_the_saved_fit_only_while_the_real_drift_it_fits_is_unchanged(tmp_path):
    from lab.analysis.bandit import stretch

    bench = importlib.import_module("benchmarks.value_mse")
    world = bench.cached_fit()
    # the committed long file's world is the saved fit stretched: a rerun reuses it, so it can resume that file
    assert stretch(world, bench.CALIBRATED_STEPS, bench.LONG_STEPS) == results.provenance("value_mse_long")["settings"]["world"]
    root = _root_with_the_fit(tmp_path)
    assert bench.cached_fit(root) == world
    fit = pd.read_csv(root / "value_mse_drift_fit.csv")
    for change in ("real", "world", "rows", "torn"):
        f = fit.copy()
        if change == "real":
            f.loc[3, "real"] += 1e-4  # the real runs moved: the fit is stale
        elif change == "world":
            f.loc[1, "learn"] += 0.01  # the rows disagree about which world they show
        elif change == "rows":
            f = f.iloc[:-1]  # a moment is missing
        f.to_csv(root / "value_mse_drift_fit.csv", index=False)
        if change == "torn":
            (root / "value_mse_drift_fit.csv").write_text("moment,lag,real\nmsd,3,0.02")
        assert bench.cached_fit(root) is None, change
    fit.to_csv(root / "value_mse_drift_fit.csv", index=False)
    truth = pd.read_csv(root / "value_mse_real_truth.csv")
    truth.loc[0, "truth"] += 0.1  # the real runs' truth changed: level, climb or start variance moves
    truth.to_csv(root / "value_mse_real_truth.csv", index=False)
    assert bench.cached_fit(root) is None
