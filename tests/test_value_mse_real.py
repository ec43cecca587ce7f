"""benchmarks/value_mse_real.py: statistics on hand-made rows, drift on series of known drift, resume on a tiny real run."""

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
import importlib

from lab.analysis import docblocks

ROOT = Path(__file__).resolve().parents[1]


def _load():
    return importlib.import_module("benchmarks.value_mse_real")


bench = _load()


def _rows(est, g, j, values):
    return [{"rollouts_per_prompt": g, "prompt_reuse": j, "seed": s, "estimator": est, "value_mse": v}
            for s, v in enumerate(values)]


def _t_half(x):
    x = np.asarray(x, float)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return (hi - lo) / 2


def _by(summary, g, j, est):
    (row,) = [r for r in summary if (r["rollouts_per_prompt"], r["prompt_reuse"], r["estimator"]) == (g, j, est)]
    return row


def test_summary_gives_seed_means_t_intervals_and_paired_ratios_to_each_papers_baseline():
    rows = (_rows("grpo", 4, 10, [0.02, 0.04, 0.03]) + _rows("kae", 4, 10, [0.01, 0.01, 0.015])
            + _rows("rloo", 4, 10, [0.03, 0.03, 0.03])
            + _rows("reinforce_plus_plus", 1, 10, [0.10, 0.20, 0.25]) + _rows("basis", 1, 10, [0.05, 0.05, 0.10])
            + _rows("grpo", 8, 10, [0.02, 0.03, 0.04]) + _rows("basis", 8, 10, [0.03, 0.03, 0.03]))
    s = bench.summarize(rows)
    kae = _by(s, 4, 10, "kae")
    assert kae["seeds"] == 3 and kae["value_mse"] == pytest.approx(0.035 / 3)
    assert kae["value_mse_ci95"] == pytest.approx(_t_half([0.01, 0.01, 0.015]))
    q = [0.5, 0.25, 0.5]  # per-seed kae / grpo
    assert kae["baseline"] == "grpo"
    assert kae["ratio_to_baseline"] == pytest.approx(np.mean(q))
    assert (kae["ratio_ci_low"], kae["ratio_ci_high"]) == pytest.approx((np.mean(q) - _t_half(q), np.mean(q) + _t_half(q)))
    # by hand: sd of q = 0.144338, t(0.975, 2) = 4.302653 -> half-width 0.358554
    assert kae["ratio_ci_high"] - kae["ratio_to_baseline"] == pytest.approx(0.358554, abs=1e-6)
    basis1 = _by(s, 1, 10, "basis")
    assert basis1["baseline"] == "reinforce_plus_plus" and basis1["ratio_to_baseline"] == pytest.approx(np.mean([0.5, 0.25, 0.4]))
    assert basis1["ratio_to_grpo_g8"] == pytest.approx((0.2 / 3) / 0.03)  # ratio of means across the two sets of runs
    assert basis1["ratio_to_grpo_g8_ci_low"] <= basis1["ratio_to_grpo_g8"] <= basis1["ratio_to_grpo_g8_ci_high"]
    assert _by(s, 8, 10, "basis")["ratio_to_baseline"] == pytest.approx(np.mean([1.5, 1.0, 0.75]))
    rloo = _by(s, 4, 10, "rloo")
    assert rloo["baseline"] == rloo["ratio_to_baseline"] == "" and rloo["value_mse_ci95"] == pytest.approx(0.0)
    assert list(s[0]) == bench.SUMMARY_FIELDS


def test_ratio_skips_seeds_whose_baseline_error_is_not_positive_and_one_seed_has_no_interval():
    rows = _rows("grpo", 2, 4, [0.04, -0.001, 0.02]) + _rows("kae", 2, 4, [0.01, 0.01, 0.01])
    kae = _by(bench.summarize(rows), 2, 4, "kae")
    assert kae["ratio_to_baseline"] == pytest.approx(np.mean([0.25, 0.5]))
    one = _by(bench.summarize(_rows("grpo", 2, 4, [0.04]) + _rows("kae", 2, 4, [0.01])), 2, 4, "kae")
    assert one["ratio_to_baseline"] == pytest.approx(0.25) and one["ratio_ci_low"] == one["value_mse_ci95"] == ""


def test_bootstrap_ratio_interval_brackets_the_ratio_of_means_and_is_reproducible():
    a, b = [0.01, 0.02, 0.015], [0.03, 0.05, 0.04]
    r, lo, hi = bench.bootstrap_ratio(a, b)
    assert r == pytest.approx(0.015 / 0.04) and lo < r < hi
    assert bench.bootstrap_ratio(a, b) == (r, lo, hi)
    assert lo >= min(a) / max(b) and hi <= max(a) / min(b)  # no resample can leave these bounds


def _noisy_truth(values, m, rng):
    """MC truth of exact values (runs, steps, prompts) from m Bernoulli samples, as the probes compute it."""
    rows = []
    for (run, step, p), v in np.ndenumerate(values):
        x = rng.random(m) < v
        rows.append({"run": run, "step": step * 3, "prompt_id": p, "truth": x.mean(), "truth_se": x.std(ddof=1) / math.sqrt(m)})
    return pd.DataFrame(rows)


def test_drift_of_a_linear_trend_is_recovered_through_monte_carlo_noise():
    rng = np.random.default_rng(0)
    steps = np.arange(4) * 3  # probe steps 0, 3, 6, 9
    v = 0.3 + 0.01 * steps  # +0.01 per step for every prompt
    values = np.broadcast_to(v[None, :, None], (2, 4, 1500))
    rows = bench.drift_by_lag(bench.lag_pairs(_noisy_truth(values, 64, rng)))
    assert [r["lag"] for r in rows] == [3, 6, 9]
    for r in rows:
        assert r["mean_change_per_step"] == pytest.approx(0.01, abs=0.001)
        assert r["drift_per_step"] == pytest.approx(0.01, abs=0.002)  # uncorrected it would be ~0.03 at lag 3
        # corrected: (0.01 k)^2, with the noise term 2 V(1 - V)/64 ~ 0.0066 removed
        assert r["msd"] == pytest.approx((0.01 * r["lag"]) ** 2, abs=0.0007)


def test_drift_of_a_random_walk_grows_linearly_in_the_lag():
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(0, 0.02 * math.sqrt(3), (1, 4, 5000)), axis=1)  # sd 0.02 per step, probes 3 apart
    values = 0.5 + walk - walk[:, :1]
    rows = bench.drift_by_lag(bench.lag_pairs(_noisy_truth(values, 64, rng)))
    for r in rows:
        assert r["msd"] == pytest.approx(0.0004 * r["lag"], rel=0.25)
        assert r["drift_per_step"] == pytest.approx(0.02 / math.sqrt(r["lag"]), rel=0.15)


def test_bandit_drift_is_measured_the_same_way_on_exact_values_and_the_match_recovers_its_parameters():
    still = bench.drift_by_lag(bench.lag_pairs(bench.bandit_truth(steps=10, probe_every=3, trend=0.0, drift=0.0, seeds=[0])))
    assert all(r["msd"] == 0 and r["drift_per_step"] == 0 for r in still)
    target = bench.drift_by_lag(bench.lag_pairs(bench.bandit_truth(steps=10, probe_every=3, trend=0.1, drift=0.2, seeds=range(2))))
    assert bench.match_bandit(target, steps=10, probe_every=3, trends=(0.0, 0.1, 0.2), drifts=(0.1, 0.2, 0.3)) == (0.1, 0.2)


def test_drift_table_puts_the_real_runs_beside_the_bandits_defaults():
    truth = [{"rollouts_per_prompt": 2, "prompt_reuse": 4, "seed": 0, "step": s, "prompt_id": p,
              "truth": 0.2 + 0.01 * s, "truth_se": 0.0} for s in (0, 3) for p in range(3)]
    rows = bench.drift_table(truth, steps=4, probe_every=3, match=False)
    real = [r for r in rows if r["source"] == "real"]
    assert {r["rollouts_per_prompt"] for r in real} == {"all", 2}
    assert all(r["drift_per_step"] == pytest.approx(0.01) for r in real)
    bandit = [r for r in rows if r["source"] == "bandit"]
    assert bandit and bandit[0]["trend"] == 0.03 and bandit[0]["drift"] == 0.05  # DriftingBandit's defaults
    assert set(rows[0]) == set(bench.DRIFT_FIELDS)


def test_plot_writes_a_png(tmp_path):
    s = bench.summarize(_rows("grpo", 1, 1, [0.1, 0.2]) + _rows("grpo", 4, 1, [0.03, 0.04]) + _rows("grpo", 4, 10, [0.02, 0.03]))
    bench.plot(s, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TINY = ["--group-sizes", "2", "--reuses", "2", "--steps", "2", "--probe-every", "1", "--probe-prompts", "2",
        "--probe-samples", "4", "--warmup", "0", "--no-match"]


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_tiny_real_run_reports_the_probes_corrected_error_and_resume_skips_done_runs_and_redoes_torn_ones(tmp_path, monkeypatch):
    from lab import runs

    out = tmp_path / "v.csv"
    bench.main(TINY + ["--seeds", "0", "--out", str(out), "--runs-dir", str(tmp_path / "runs")])
    names = bench.estimator_names()
    rows = _read(out)
    assert [r["estimator"] for r in rows] == names and {r["seed"] for r in rows} == {"0"}
    # the run's value MSE, computed another way: from its probe table, per step mean sq_err - mean SE², then over steps
    probes = runs.read_probes(tmp_path / "runs" / "g2-j2-s0")
    per_step = probes.groupby(["estimator", "step"]).apply(lambda g: g["sq_err"].mean() - (g["truth_se"] ** 2).mean())
    for r in rows:
        assert float(r["value_mse"]) == pytest.approx(per_step[r["estimator"]].mean(), abs=1e-9)
    assert len(_read(tmp_path / "v_truth.csv")) == 2 * 2  # 2 probe steps x 2 prompts
    assert (tmp_path / "v_summary.csv").is_file() and (tmp_path / "v_drift.csv").is_file() and (tmp_path / "v.png").is_file()

    # seed 1 was torn: two estimators' rows, then half a line; seed 0's kae row has outdated parameters
    good = out.read_text()
    torn = [dict(r, seed="1") for r in rows[:2]]
    with open(out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=bench.run_fieldnames())
        w.writerows(torn)
    with open(out, "a") as f:
        f.write("2,2,1,basis,{},0.0")
    calls = []

    def fake(g, j, s, settings, runs_dir):
        calls.append((g, j, s))
        return [dict(r, seed=s) for r in rows], [{"rollouts_per_prompt": g, "prompt_reuse": j, "seed": s, "step": 0,
                                                  "prompt_id": 1, "truth": 0.5, "truth_se": 0.1}]

    monkeypatch.setattr(bench, "measure_run", fake)
    bench.main(TINY + ["--seeds", "0", "1", "--out", str(out)])
    assert calls == [(2, 2, 1)]  # seed 0 skipped, torn seed 1 redone
    after = _read(out)
    assert [(r["seed"], r["estimator"]) for r in after] == [(s, n) for s in ("0", "1") for n in names]
    assert out.read_text().startswith(good)

    text = out.read_text().replace(rows[names.index("kae")]["estimator_params"].replace('"', '""'), '{""h"": 99}', 1)
    out.write_text(text)
    calls.clear()
    bench.main(TINY + ["--seeds", "0", "1", "--out", str(out)])
    assert calls == [(2, 2, 0)]  # a row measured with other estimator parameters: that run is measured again
    assert sorted((r["seed"], r["estimator"]) for r in _read(out)) == sorted((s, n) for s in ("0", "1") for n in names)


def test_resuming_a_file_written_with_other_settings_asks_for_fresh(tmp_path, monkeypatch, capsys):
    out = tmp_path / "v.csv"
    row = {k: "" for k in bench.run_fieldnames()}
    row.update(rollouts_per_prompt=2, prompt_reuse=2, seed=0, estimator="grpo", steps=99, model="data/models/tiny-arith",
               task="arithmetic", probe_set="batch", probe_every=1, probe_prompts=2, probe_samples=4, warmup=0, lr=0.0003)
    bench.write_rows(out, [row], bench.run_fieldnames())
    monkeypatch.setattr(bench, "measure_run", lambda *a: pytest.fail("must not train"))
    with pytest.raises(SystemExit):
        bench.main(TINY + ["--seeds", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert "steps=99" in err and "--fresh" in err


def test_a_group_size_that_does_not_divide_the_rollouts_per_step_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--group-sizes: 3"):
        bench.run_config(3, 1, 0, steps=2, probe_every=1, probe_prompts=2, probe_samples=4, runs_dir=tmp_path)


def test_the_docs_section_is_generated_from_the_committed_results():
    doc = (ROOT / "docs" / "estimators.md").read_text()
    block = docblocks.block(doc, bench.DOC_BLOCK)
    files = bench.paths(bench.DEFAULT_OUT)
    if not files["summary"].is_file():
        assert block == bench.PLACEHOLDER
    else:
        drift = _read(files["drift"]) if files["drift"].is_file() else None
        assert block == bench.docs_block(_read(files["summary"]), drift)
