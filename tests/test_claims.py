"""lab/claims.py: the claims table and the README's Results block, generated from data/results/."""

import json
import math
import shutil

import pandas as pd
import pytest
from scipy import stats

from lab import claims, results

KAE = claims.KAE_DEFAULT


def _checks(root, key):
    return dict((c.key, ks) for c, ks in claims.evaluate(root))[key]


def _one(root, key, setting, regime):
    (k,) = [k for k in _checks(root, key) if k.setting == setting and k.regime == regime]
    return k


def _bandit_rows(ratios, g=2, j=10, a=KAE, b="grpo"):
    """value_mse.csv rows whose per-seed ratio a/b is ``ratios`` (b's value is 0.1 + seed/100)."""
    rows = []
    for s, q in enumerate(ratios):
        base = 0.1 + s / 100
        rows += [{"estimator": b, "group_size": g, "reuse": j, "seed": s, "value_mse": base},
                 {"estimator": a, "group_size": g, "reuse": j, "seed": s, "value_mse": q * base}]
    return pd.DataFrame(rows)


# --- the committed files are what the generator makes ---------------------------------------------
def test_committed_claims_page_and_readme_block_match_the_committed_results():
    diffs = claims.stale()
    assert not diffs, "run `python -m lab.claims` (make claims):\n" + "\n".join(diffs)


def test_readme_block_is_between_its_markers_and_links_the_claims_page():
    text = claims.README.read_text(encoding="utf-8")
    assert text.count(claims.BEGIN) == 1 and text.count(claims.END) == 1
    block = text[text.index(claims.BEGIN):text.index(claims.END)]
    assert "[docs/claims.md](docs/claims.md)" in block


# --- the verdict rule -----------------------------------------------------------------------------
@pytest.mark.parametrize("low, high, claimed, want", [
    (0.30, 0.34, 0.36, "reproduced"),   # reaches the claimed 64% cut
    (0.10, 0.20, 0.36, "reproduced"),   # beats it
    (0.40, 0.50, 0.36, "partly"),       # significantly lower, never as low as claimed
    (0.40, 1.00, 0.36, "not"),          # includes "no change"
    (1.10, 1.50, 0.36, "not"),          # the other way
    (0.40, 0.90, None, "reproduced"),   # a direction-only claim
    (None, None, 0.36, "not tested"),
    (math.nan, math.nan, None, "not tested"),
])
def test_verdict_rule_on_a_ratio_claimed_to_fall(low, high, claimed, want):
    assert claims.verdict(low, high, claimed) == want


@pytest.mark.parametrize("low, high, want", [(0.01, 0.03, "reproduced"), (0.002, 0.01, "partly"), (-0.01, 0.03, "not"),
                                             (-0.05, -0.01, "not")])
def test_verdict_rule_on_a_difference_claimed_to_rise(low, high, want):
    assert claims.verdict(low, high, 0.0139, null=0.0, better="higher") == want


@pytest.mark.parametrize("ratios, want", [([0.30, 0.32, 0.31, 0.33], "reproduced"), ([0.50, 0.52, 0.51, 0.53], "partly"),
                                          ([0.90, 1.10, 1.00, 1.05], "not")])
def test_each_verdict_is_reached_from_hand_made_bandit_rows(tmp_path, ratios, want):
    _bandit_rows(ratios).to_csv(tmp_path / "value_mse.csv", index=False)
    k = _one(tmp_path, "kae-value", "bandit", "G = 2, J = 10")
    assert k.verdict == want
    lo, hi = stats.t.interval(0.95, len(ratios) - 1, loc=sum(ratios) / len(ratios), scale=stats.sem(ratios))
    assert k.evidence.value == pytest.approx(sum(ratios) / len(ratios))
    assert (k.evidence.low, k.evidence.high, k.evidence.n) == (pytest.approx(lo), pytest.approx(hi), len(ratios))
    assert "value_mse.csv: estimator=kae(h=0.2), group_size=2, reuse=10" in k.source


def test_a_missing_file_or_row_is_not_tested_and_says_why(tmp_path):
    _bandit_rows([0.3, 0.3, 0.3]).to_csv(tmp_path / "value_mse.csv", index=False)
    assert _one(tmp_path, "kae-value", "bandit", "G = 4, J = 10").why == "no matching row"
    real = _one(tmp_path, "kae-value", "real runs", "G = 2, J = 10")
    assert real.verdict == "not tested" and "value_mse_real_summary.csv` not made yet" in real.why
    empty = tmp_path / "empty"
    empty.mkdir()
    for c, ks in claims.evaluate(empty):
        assert all(k.verdict == "not tested" for k in ks if k.setting != "exact"), c.key


def test_the_calibrated_bandit_is_its_own_column_read_from_its_own_file(tmp_path):
    _bandit_rows([0.90, 1.10, 1.00, 1.05]).to_csv(tmp_path / "value_mse.csv", index=False)  # default world: no effect
    cal_ratios = [0.30, 0.32, 0.31, 0.33]
    _bandit_rows(cal_ratios).to_csv(tmp_path / "value_mse_calibrated.csv", index=False)
    world = {"spread": 1.5, "trend": 0.34, "drift": 0.85}
    (tmp_path / "value_mse_calibrated.provenance.json").write_text(json.dumps({"world": world}))
    cal = _one(tmp_path, "kae-value", "bandit (calibrated)", "G = 2, J = 10")
    assert cal.verdict == "reproduced" and cal.evidence.value == pytest.approx(sum(cal_ratios) / 4)
    assert cal.source.startswith("value_mse_calibrated.csv (world: trend = 0.34, drift = 0.85, spread = 1.5): "
                                 "estimator=kae(h=0.2), group_size=2, reuse=10")
    assert _one(tmp_path, "kae-value", "bandit", "G = 2, J = 10").verdict == "not"  # the default file, untouched
    assert [k.regime for k in _checks(tmp_path, "kae-value") if k.setting == "bandit (calibrated)"] == [
        "G = 2, J = 8", "G = 2, J = 10", "G = 4, J = 8", "G = 4, J = 10"]  # the same checks as the default bandit
    page = claims.claims_markdown(tmp_path)
    assert "| claim | paper's number | bandit | bandit (calibrated) | real runs |" in page
    kae_row = next(line for line in page.splitlines() if line.startswith("| KAE: value error"))
    assert kae_row.split(" | ")[2:4] == ["not, not tested ×3", "reproduced, not tested ×3"]
    assert "value_mse_calibrated.csv) (world: trend = 0.34, drift = 0.85, spread = 1.5)" in page  # the Sources line
    (tmp_path / "value_mse_calibrated.csv").unlink()
    gone = _one(tmp_path, "basis-rpp", "bandit (calibrated)", "G = 1, J = 1, the default reading")
    assert gone.verdict == "not tested" and "`.venv/bin/python benchmarks/value_mse.py --calibrated`" in gone.why


def test_a_single_seed_gives_no_interval_and_is_not_tested(tmp_path):
    _bandit_rows([0.3]).to_csv(tmp_path / "value_mse.csv", index=False)
    k = _one(tmp_path, "kae-value", "bandit", "G = 2, J = 10")
    assert (k.verdict, k.why) == ("not tested", "no interval (fewer than 2 seeds)")


# --- a changed CSV changes the table --------------------------------------------------------------
def test_a_changed_results_file_changes_the_claims_table(tmp_path):
    tmp_path = tmp_path / "results"  # every committed results file, so only the edit below differs
    shutil.copytree(results.RESULTS_DIR, tmp_path, ignore=shutil.ignore_patterns("*.png"))
    before = claims.claims_markdown(tmp_path)
    assert before == claims.claims_markdown()  # same file, same page
    df = pd.read_csv(tmp_path / "value_mse.csv")
    sel = (df.estimator == "grpo") & (df.group_size == 2) & (df.reuse == 10)
    df.loc[sel, "value_mse"] *= 2  # the baseline twice as bad: every KAE ratio at G = 2, J = 10 halves
    df.to_csv(tmp_path / "value_mse.csv", index=False)
    after = claims.claims_markdown(tmp_path)
    assert after != before
    orig = results.read("value_mse")
    kae = orig[(orig.estimator == KAE) & (orig.group_size == 2) & (orig.reuse == 10)].set_index("seed").value_mse
    grpo = orig[sel].set_index("seed").value_mse
    want = (kae / (2 * grpo)).mean()
    k = _one(tmp_path, "kae-value", "bandit", "G = 2, J = 10")
    assert k.evidence.value == pytest.approx(want)
    assert f"| bandit | G = 2, J = 10 | {claims.fmt_effect(k.evidence, 'ratio')} |" in after


# --- real runs, gradients, accuracy ---------------------------------------------------------------
def test_real_runs_take_the_summary_rows_own_ratio_and_interval(tmp_path):
    pd.DataFrame([
        {"rollouts_per_prompt": 2, "prompt_reuse": 10, "estimator": "kae", "seeds": 3, "value_mse": 0.02,
         "value_mse_ci95": 0.004, "baseline": "grpo", "ratio_to_baseline": 0.6, "ratio_ci_low": 0.5, "ratio_ci_high": 0.7},
        {"rollouts_per_prompt": 1, "prompt_reuse": 1, "estimator": "basis", "seeds": 3, "value_mse": 0.04,
         "value_mse_ci95": 0.01, "baseline": "reinforce_plus_plus", "ratio_to_baseline": 0.25, "ratio_ci_low": 0.2,
         "ratio_ci_high": 0.35},
        {"rollouts_per_prompt": 8, "prompt_reuse": 1, "estimator": "grpo", "seeds": 4, "value_mse": 0.02,
         "value_mse_ci95": 0.002, "baseline": "", "ratio_to_baseline": "", "ratio_ci_low": "", "ratio_ci_high": ""},
    ]).to_csv(tmp_path / "value_mse_real_summary.csv", index=False)
    kae = _one(tmp_path, "kae-value", "real runs", "G = 2, J = 10")
    assert (kae.evidence, kae.verdict) == (claims.Evidence(0.6, 0.5, 0.7, 3), "partly")
    assert _one(tmp_path, "kae-value", "real runs", "G = 4, J = 10").verdict == "not tested"
    assert _one(tmp_path, "basis-rpp", "real runs", "G = 1, J = 1").verdict == "reproduced"
    g8 = _one(tmp_path, "basis-g8", "real runs", "G = 1 vs G = 8, J = 1")
    se = math.sqrt((0.01 / 1.96 / 0.04) ** 2 + (0.002 / 1.96 / 0.02) ** 2)  # delta method on log(0.04 / 0.02)
    assert g8.evidence.value == pytest.approx(2.0) and g8.evidence.low == pytest.approx(2.0 * math.exp(-1.96 * se))
    assert g8.verdict == "not" and g8.evidence.n == 3
    df = pd.read_csv(tmp_path / "value_mse_real_summary.csv")  # the benchmark's own bootstrap ratio wins when present
    df["ratio_to_grpo_g8"], df["ratio_to_grpo_g8_ci_low"], df["ratio_to_grpo_g8_ci_high"] = 0.8, 0.7, 0.95
    df.to_csv(tmp_path / "value_mse_real_summary.csv", index=False)
    g8 = _one(tmp_path, "basis-g8", "real runs", "G = 1 vs G = 8, J = 1")
    assert (g8.evidence, g8.verdict) == (claims.Evidence(0.8, 0.7, 0.95, 3), "reproduced")


def test_gradient_error_is_the_geometric_mean_over_snapshots(tmp_path):
    rows = [{"snapshot_step": s, "estimator": e, "rollouts_per_prompt": 2, "batches": 64, "rel_sq_error": v,
             "rel_sq_error_ci95": 0.01 * v, "cosine": 0.5, "cosine_ci95": 0.01, "reference_rollouts": 4096}
            for s, (a, b) in ((0, (0.5, 1.0)), (10, (0.2, 0.8))) for e, v in (("kae", a), ("grpo", b))]
    pd.DataFrame(rows).assign(train_estimator="grpo", prompt_reuse=4).to_csv(tmp_path / "grad_variance.csv", index=False)
    k = _one(tmp_path, "kae-value", "real-model gradients", "G = 2 (snapshots of a `grpo` run, J = 4)")
    assert k.evidence.value == pytest.approx(math.sqrt(0.5 * 0.25)) and (k.evidence.n, k.evidence.unit) == (2, "snapshots")
    assert k.verdict == "reproduced"  # judged by direction: the paper's 64% is about value error, not gradients
    worse = pd.DataFrame(rows).assign(rel_sq_error=lambda d: d.rel_sq_error.where(d.estimator == "grpo", 1.5))
    worse.to_csv(tmp_path / "grad_variance.csv", index=False)  # kae worse than grpo at both snapshots
    assert _one(tmp_path, "kae-value", "real-model gradients", "G = 2").verdict == "not"


def _tta(tmp_path, kae_ratio=0.4, reached=True):
    base = dict(prompt_reuse=1, seeds=3, start_accuracy=0.15, final_ci95=0.02, target_accuracy=0.35,
                rollouts_to_target_ci95=100, seconds_to_target=60, seconds_to_target_ci95=5, reached_seeds=3)
    rows = [dict(base, label="grpo_g8", estimator="grpo", rollouts_per_prompt=8, prompts_per_step=16, final_accuracy=0.40,
                 rollouts_to_target=10000, rollout_ratio_to_grpo=1.0),
            dict(base, label="kae_g2", estimator="kae", rollouts_per_prompt=2, prompts_per_step=64, final_accuracy=0.45,
                 rollouts_to_target=10000 * kae_ratio if reached else "", rollout_ratio_to_grpo=kae_ratio if reached else ""),
            dict(base, label="rloo_g8", estimator="rloo", rollouts_per_prompt=8, prompts_per_step=16, final_accuracy=0.41,
                 rollouts_to_target=9000, rollout_ratio_to_grpo=0.9)]
    pd.DataFrame(rows).to_csv(tmp_path / "time_to_accuracy_summary.csv", index=False)


def test_time_to_accuracy_line_names_the_best_estimator_and_its_ratio(tmp_path):
    _tta(tmp_path)
    line = claims.time_to_accuracy_line(tmp_path)
    assert "`kae` (label `kae_g2`: G = 2, 64 prompts per step, reuse 1)" in line and "**0.40×**" in line
    _tta(tmp_path, reached=False)  # kae never reached it: the next best is rloo
    assert "`rloo`" in claims.time_to_accuracy_line(tmp_path) and "**0.90×**" in claims.time_to_accuracy_line(tmp_path)
    acc = _one(tmp_path, "kae-accuracy", "real runs (accuracy)", "label kae_g2")
    assert acc.evidence.value == pytest.approx(0.05) and acc.evidence.high == pytest.approx(0.05 + math.hypot(0.02, 0.02))
    assert acc.verdict == "reproduced"


def test_missing_files_give_not_yet_run_lines_never_an_error(tmp_path):
    block = claims.readme_block(tmp_path)
    assert block.startswith(claims.BEGIN) and block.endswith(claims.END)
    assert block.count("not yet run (`") == 3
    assert "[docs/claims.md](docs/claims.md)" in block
    page = claims.claims_markdown(tmp_path)
    assert "`data/results/value_mse.csv` not made yet" in page


def test_learning_curve_line_is_the_mean_rise_of_finished_seeds(tmp_path):
    rows = [{"estimator": "grpo", "seed": s, "step": st, "eval_accuracy": a, "elapsed_s": st, "final": int(st == 9)}
            for s, (a0, a1) in enumerate(((0.1, 0.5), (0.2, 0.4))) for st, a in ((0, a0), (9, a1))]
    rows.append({"estimator": "grpo", "seed": 2, "step": 0, "eval_accuracy": 0.9, "elapsed_s": 0, "final": 0})  # unfinished
    pd.DataFrame(rows).to_csv(tmp_path / "learning_curve.csv", index=False)
    line = claims.learning_curve_line(tmp_path)
    assert "0.15 → 0.45 (rise +0.30; per seed +0.20 to +0.40) in 10 steps" in line and "(2 seeds)" in line


# --- KL3: computed, not read ----------------------------------------------------------------------
def test_kl3_room_is_the_smallest_up_over_down_ratio_found_by_bisection():
    def root(delta, a, b):  # w − 1 − log w = δ between a and b (bisection, independent of lab.losses)
        f = lambda w: w - 1 - math.log(w) - delta  # noqa: E731
        for _ in range(200):
            m = (a + b) / 2
            a, b = (m, b) if (f(m) > 0) == (f(a) > 0) else (a, m)
        return (a + b) / 2

    from lab.losses.bounds import matched_delta
    rooms = [(root(d, 1, 5) - 1) / (1 - root(d, 1e-9, 1)) for d in (*claims.KL3_DELTAS, matched_delta("kl3"))]
    (k,) = _checks(None, "kl3-asymmetric")
    assert k.evidence.value == pytest.approx(min(rooms), rel=1e-9) and k.verdict == "reproduced"


# --- files and the command ------------------------------------------------------------------------
def test_check_exits_1_with_a_diff_when_out_of_date_and_write_fixes_it(tmp_path, capsys):
    docs, readme = tmp_path / "claims.md", tmp_path / "README.md"
    readme.write_text(f"intro\n{claims.BEGIN}\nold\n{claims.END}\nrest\n", encoding="utf-8")
    diffs = claims.stale(tmp_path, docs, readme)
    assert len(diffs) == 2 and "+- **Time to accuracy:** not yet run" in diffs[1]
    assert claims.write(tmp_path, docs, readme) == [docs, readme]
    assert claims.stale(tmp_path, docs, readme) == []
    assert readme.read_text(encoding="utf-8").startswith("intro\n") and readme.read_text(encoding="utf-8").endswith("\nrest\n")
    assert claims.main(["--check", "--results", str(tmp_path)]) == 1  # the committed files describe other results
    out = capsys.readouterr().out
    assert "(generated)" in out and "python -m lab.claims" in out


def test_readme_without_markers_is_a_clear_error():
    with pytest.raises(ValueError, match="no <!-- results:begin --> ... <!-- results:end --> markers"):
        claims.splice("no block here", claims.readme_block())


def test_a_results_file_without_an_agreed_column_names_it(tmp_path):
    pd.DataFrame([{"label": "grpo_g8"}]).to_csv(tmp_path / "time_to_accuracy_summary.csv", index=False)
    with pytest.raises(ValueError, match="time_to_accuracy_summary.csv: missing column.*estimator"):
        claims.time_to_accuracy_line(tmp_path)
