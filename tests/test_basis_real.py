"""benchmarks/basis_real.py: BASIS with its reference stage on tiny real runs, each m a shadow keeping
the last m of the stage's samples; the comparisons and the claims recomputed from the rows by hand."""

import csv
import doctest
import math

import pytest
import torch
from scipy import stats as sps

from benchmarks import basis_real
from lab import estimators
from lab.estimators.basis import BASIS, soft_values


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_driver_examples_hold():
    assert doctest.testmod(basis_real).failed == 0


def test_each_variant_keeps_the_last_m_reference_samples_and_the_registry_is_restored():
    before = estimators.available()
    rewards = torch.tensor([1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 1], dtype=torch.float64)  # 12 samples of prompt 7
    ids = torch.full((12,), 7)
    with basis_real.basis_variants() as names:
        assert set(names) <= set(estimators.available())
        for name, (m, grid) in basis_real.VARIANTS.items():
            est = estimators.ESTIMATORS.get(name)()
            assert isinstance(est, BASIS) and est.wants_reference == (m > 0)
            betas = grid or BASIS().betas
            assert est.betas == tuple(betas)
            if not m:
                continue
            est.set_reference(ids, rewards)
            kept = rewards[-m:] if m <= 12 else rewards
            want = soft_values(kept[None], torch.ones(1, len(kept), dtype=torch.bool), betas)[:, 0]
            got = est.priors(torch.tensor([7]))[:, 0]
            assert torch.allclose(got, want), name
            if grid:  # the mean prior is the plain mean of the kept samples
                assert float(got[0]) == pytest.approx(float(kept.mean()), abs=1e-3)
    assert estimators.available() == before


def test_the_sweep_runs_both_arms_counts_reference_rollouts_resumes_and_refuses_other_settings(tmp_path, capsys, monkeypatch):
    out = tmp_path / "b.csv"
    args = ["--seeds", "2", "--steps", "2", "--probe-every", "1", "--probe-samples", "8", "--warmup", "0", "--out", str(out)]
    basis_real.main(args)
    rows = _rows(out)
    assert sorted((r["arm"], r["seed"]) for r in rows) == [("basis_g1", "0"), ("basis_g1", "1"), ("grpo_g8", "0"), ("grpo_g8", "1")]
    for r in rows:
        g1 = r["arm"] == "basis_g1"
        assert int(r["reference_rollouts"]) == (basis_real.REFERENCE * basis_real.POOL if g1 else 0)
        assert int(r["train_rollouts"]) == 2 * 64 and r["git_commit"]
        filled = {k[4:] for k, v in r.items() if k.startswith("mse:") and v != ""}
        assert filled == ({*basis_real.VARIANTS, "basis_m32", "reinforce_plus_plus"} if g1 else {"grpo"})
    g1 = [r for r in rows if r["arm"] == "basis_g1"]
    # fewer reference samples give another prior, so another baseline: the shadows really differ
    assert any(r["mse:basis_m4"] != r["mse:basis_m32"] for r in g1)
    printed = capsys.readouterr().out
    assert "reinforce_plus_plus" in printed  # (GRPO-8 may have too few positive corrected MSEs at 8 samples)
    monkeypatch.setattr(basis_real, "run_one", lambda *a: pytest.fail("a finished run ran again"))
    basis_real.main(args)
    with pytest.raises(SystemExit):
        basis_real.main([*args[:-2], "--probe-samples", "16", "--out", str(out)])
    assert "probe_samples=8" in capsys.readouterr().err


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _hand_rows():
    """Four seeds: BASIS m = 8 at 0.6/0.5/0.7/0.55 of REINFORCE++; GRPO-8 runs beside them."""
    b8, rpp, g8 = [0.030, 0.025, 0.035, 0.022], [0.05, 0.05, 0.05, 0.04], [0.020, 0.018, 0.025, 0.021]
    blank = {f"mse:{n}": "" for n in basis_real.ESTIMATES}
    rows = []
    for s in range(4):
        rows.append({**blank, "arm": "basis_g1", "seed": s, "train_rollouts": 1984, "train_pool_size": 128,
                     "mse:basis_m8": b8[s], "mse:reinforce_plus_plus": rpp[s], "mse:basis_m0": -0.001 if s == 0 else 0.04})
        rows.append({**blank, "arm": "grpo_g8", "seed": s, "train_rollouts": 1984, "train_pool_size": 128, "mse:grpo": g8[s]})
    return rows, b8, rpp, g8


def _t_log(logs):
    m = sum(logs) / len(logs)
    half = sps.t.ppf(0.975, len(logs) - 1) * sps.tstd(logs) / math.sqrt(len(logs))
    return math.exp(m), math.exp(m - half), math.exp(m + half)


def test_comparisons_are_the_t_intervals_on_the_log_computed_by_hand():
    rows, b8, rpp, g8 = _hand_rows()
    got = {(c["m"], c["grid"], c["vs"]): c for c in basis_real.comparisons([{k: str(v) for k, v in r.items()} for r in rows])}
    c = got[(8, "lab", "reinforce_plus_plus")]
    assert (c["ratio"], c["low"], c["high"]) == pytest.approx(_t_log([math.log(a / b) for a, b in zip(b8, rpp)]))
    assert c["rollouts"] == 1984 + 8 * 128 and c["vs_rollouts"] == 1984
    assert got[(0, "lab", "reinforce_plus_plus")]["seeds"] == 3  # a corrected MSE <= 0 has no ratio
    w = sps.ttest_ind([math.log(v) for v in b8], [math.log(v) for v in g8], equal_var=False)
    lo, hi = w.confidence_interval()
    c = got[(8, "lab", "grpo_g8")]
    point = math.exp((sum(map(math.log, b8)) - sum(map(math.log, g8))) / 4)
    assert (c["ratio"], c["low"], c["high"]) == pytest.approx((point, math.exp(lo), math.exp(hi)))


def test_claims_count_only_m8_on_real_runs_and_say_the_compute(tmp_path):
    from lab.analysis import claims

    rows, b8, rpp, _ = _hand_rows()
    _write(tmp_path / "basis_real.csv", rows)
    checks = [k for k in claims.CLAIMS_BY_KEY["basis-rpp"].checks(tmp_path) if k.setting == "real runs, reference stage"]
    counted = [k for k in checks if k.reading == "paper"]
    assert len(counted) == 1 and "m = 8, the lab's β grid" in counted[0].regime
    k = counted[0]
    assert (k.effect.value, k.effect.low, k.effect.high) == pytest.approx(_t_log([math.log(a / b) for a, b in zip(b8, rpp)]))
    assert k.verdict == "partly"  # wholly below 1 but the point (≈0.58) does not reach the paper's 0.31
    assert "3,008 rollouts with 1,024 reference ones, against 1,984: ×1.52 the compute" in k.regime
    assert {x.reading for x in checks if x is not k} == {"sweep", "extension"}
    # columns never filled are "not tested", never a number
    assert all(x.verdict == "not tested" for x in checks if "m = 16" in x.regime)
