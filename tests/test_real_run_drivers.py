"""benchmarks/kl3_entropy.py and benchmarks/krpo_partial_credit.py: tiny real runs, resume, and
the tables recomputed from the rows by hand; the claims read the same numbers."""

import csv
import doctest
import math

import pytest
from scipy import stats as sps

from benchmarks import kl3_entropy, krpo_partial_credit
from lab import losses


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _paired_by_hand(rows, key, a, b, col):
    by = {(r[key], int(r["seed"])): float(r[col]) for r in rows}
    d = [by[(a, s)] - by[(b, s)] for s in sorted({int(r["seed"]) for r in rows})]
    m = sum(d) / len(d)
    half = sps.t.ppf(0.975, len(d) - 1) * sps.tstd(d) / math.sqrt(len(d))
    return m, m - half, m + half


def test_driver_examples_hold():
    assert doctest.testmod(kl3_entropy).failed == 0


def test_kl3_entropy_runs_both_measures_at_the_matched_budget_resumes_and_tabulates(tmp_path, capsys, monkeypatch):
    out = tmp_path / "k.csv"
    kl3_entropy.main(["--seeds", "2", "--steps", "2", "--window", "1", "--out", str(out)])
    rows = _rows(out)
    assert sorted((r["measure"], r["seed"]) for r in rows) == [("kl3", "0"), ("kl3", "1"), ("ratio", "0"), ("ratio", "1")]
    assert {r["measure"]: float(r["delta"]) for r in rows} == pytest.approx({m: losses.matched_delta(m) for m in ("kl3", "ratio")})
    assert all(r["git_commit"] and r["ppo_epochs"] == "4" and r["minibatches"] == "2" for r in rows)
    m, lo, hi = _paired_by_hand(rows, "measure", "kl3", "ratio", "entropy")
    assert f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}] (2 seeds" in capsys.readouterr().out
    monkeypatch.setattr(kl3_entropy, "run_one", lambda *a: pytest.fail("a finished run ran again"))
    kl3_entropy.main(["--seeds", "2", "--steps", "2", "--window", "1", "--out", str(out)])
    with pytest.raises(SystemExit):  # another horizon never mixes into the file
        kl3_entropy.main(["--seeds", "2", "--steps", "3", "--window", "1", "--out", str(out)])
    assert "2 steps, window 1" in capsys.readouterr().err


def test_krpo_partial_credit_pairs_seeds_and_resumes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "k.csv"
    krpo_partial_credit.main(["--seeds", "2", "--steps", "1", "--window", "1", "--out", str(out)])
    with pytest.raises(SystemExit):
        krpo_partial_credit.main(["--seeds", "2", "--steps", "2", "--out", str(out)])
    rows = _rows(out)
    assert sorted((r["estimator"], r["seed"]) for r in rows) == [("grpo", "0"), ("grpo", "1"), ("krpo", "0"), ("krpo", "1")]
    assert {r["rollouts_per_prompt"] for r in rows} == {"12"} and {r["task"] for r in rows} == {"arithmetic-partial"}
    m, lo, hi = _paired_by_hand(rows, "estimator", "krpo", "grpo", "final_reward")
    assert f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}] (2 seeds" in capsys.readouterr().out
    monkeypatch.setattr(krpo_partial_credit, "run_one", lambda *a: pytest.fail("a finished run ran again"))
    krpo_partial_credit.main(["--seeds", "2", "--steps", "1", "--window", "1", "--out", str(out)])
    with pytest.raises(SystemExit):
        krpo_partial_credit.main(["--seeds", "2", "--steps", "2", "--out", str(out)])


def test_claims_judge_kl3_exploration_on_the_files_paired_entropy(tmp_path):
    from lab.analysis import claims

    rows = [{"measure": m, "seed": s, "entropy": e, "clip_frac_low": 0.1, "clip_frac_high": 0.05}
            for s, (er, ek) in enumerate([(0.50, 0.40), (0.55, 0.47), (0.52, 0.41)]) for m, e in (("ratio", er), ("kl3", ek))]
    with open(tmp_path / "kl3_entropy.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (k,) = claims.CLAIMS_BY_KEY["kl3-exploration"].checks(tmp_path)
    m, lo, hi = _paired_by_hand([{k2: str(v) for k2, v in r.items()} for r in rows], "measure", "kl3", "ratio", "entropy")
    assert (k.effect.value, k.effect.low, k.effect.high) == pytest.approx((m, lo, hi))
    assert k.verdict == "not" and hi < 0   # entropy lower under kl3: the other side of no effect
