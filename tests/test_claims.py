"""lab.analysis.claims: the verdict rule, the claims page and the README's Results block, generated from data/results/."""

import math
import shutil

import pytest
from hypothesis import given, settings, strategies as st

from lab import claims as shim
from lab.analysis import claims, docblocks, results, stats

ROOT = claims.ROOT


def _checks(root, key):
    return dict((c.key, ks) for c, ks in claims.evaluate(root))[key]


def _bandit(tmp_path, ratios, floor=0.2, name="value_mse"):
    """A bandit table where kae/grpo per seed is ``ratios[s]`` and the floor sits at ``floor`` × grpo."""
    rows = []
    for s, r in enumerate(ratios):
        for est, v in (("grpo", 1.0), (claims.KAE_DEFAULT, r), ("posterior(reference=0)", floor)):
            rows.append({"estimator": est, "group_size": 2, "reuse": 10, "seed": s, "value_mse": v})
    results.write_csv(tmp_path / f"{name}.csv", rows, ["estimator", "group_size", "reuse", "seed", "value_mse"])


def test_committed_claims_page_and_readme_block_match_the_committed_results():
    diffs = claims.stale()
    assert not diffs, "run `make claims`:\n" + "\n".join(diffs)


def test_readme_block_is_between_one_pair_of_markers_and_links_the_claims_page():
    text = claims.README.read_text(encoding="utf-8")
    start, end = docblocks.markers(claims.BLOCK)
    assert text.count(start) == 1 and text.count(end) == 1
    assert "[docs/claims.md](docs/claims.md)" in docblocks.block(text, claims.BLOCK)


@pytest.mark.parametrize("low, high, value, claimed, floor, want", [
    (0.30, 0.40, 0.35, 0.36, None, "reproduced"),
    (0.30, 0.40, 0.37, 0.36, None, "partly"),          # the interval reaches the claim, the point does not
    (0.44, 0.51, 0.47, 0.36, None, "partly"),
    (0.30, 1.10, 0.60, 0.36, None, "inconclusive"),    # holds both no effect and the paper's number
    (0.50, 1.10, 0.70, 0.36, None, "not"),             # holds no effect, excludes the paper's number
    (1.01, 1.30, 1.10, 0.36, None, "not"),             # the other side
    (0.30, 0.40, 0.35, 0.36, 0.45, "not testable here"),
    (0.30, 0.40, 0.35, None, 1.02, "not testable here"),   # direction only, the floor cannot get below 1
    (0.30, 0.40, 0.35, None, None, "reproduced"),
    (0.90, 1.05, 0.97, None, None, "inconclusive"),
    (1.00, 1.00, 1.00, None, None, "not"),
    (math.nan, math.nan, math.nan, 0.36, None, "not tested"),
])
def test_each_verdict_is_reached_from_hand_made_intervals(low, high, value, claimed, floor, want):
    assert claims.verdict(low, high, claimed, value=value, floor=floor) == want


def test_a_rise_is_the_mirror_of_a_fall():
    for lo, hi, v in ((0.004, 0.010, 0.007), (0.004, 0.020, 0.015), (-0.03, 0.02, 0.0), (-0.05, -0.01, -0.03)):
        assert claims.verdict(lo, hi, 0.0139, null=0.0, better="higher", value=v) == \
            claims.verdict(-hi, -lo, -0.0139, null=0.0, value=-v)


@settings(max_examples=60, deadline=None)
@given(lo=st.floats(0.05, 2.0), width=st.floats(0.0, 1.5), claimed=st.floats(0.1, 0.95), floor=st.floats(0.0, 1.5))
def test_the_rule_order_floor_first_then_side_then_the_point(lo, width, claimed, floor):
    hi = lo + width
    v = claims.verdict(lo, hi, claimed, value=(lo + hi) / 2, floor=floor)
    if floor > claimed + 1e-9:
        assert v == "not testable here"
    elif hi < 1 - 1e-9:
        assert v in ("reproduced", "partly")
        assert (v == "reproduced") == ((lo + hi) / 2 <= claimed + 1e-9)
    elif lo <= 1 + 1e-9:
        assert v == ("inconclusive" if lo <= claimed + 1e-9 else "not")
    else:
        assert v == "not"


def test_infeasible_rows_are_shown_but_never_counted(tmp_path):
    _bandit(tmp_path, [0.30, 0.31, 0.29, 0.30, 0.32, 0.30, 0.31, 0.29], floor=0.5)  # floor −50% cannot reach −64%
    k = next(k for k in _checks(tmp_path, "kae-value") if k.setting == "bandit" and k.regime == "G = 2, J = 10")
    assert k.verdict == "not testable here" and not k.counted
    assert claims.tally([k]) == {}
    assert "✗" in claims.claims_markdown(tmp_path)


def test_a_feasible_bandit_row_gives_its_floor_and_share_above_it(tmp_path):
    ratios = [0.50, 0.52, 0.48, 0.50, 0.51, 0.49, 0.50, 0.50]
    _bandit(tmp_path, ratios, floor=0.2)
    k = next(k for k in _checks(tmp_path, "kae-value") if k.setting == "bandit" and k.regime == "G = 2, J = 10")
    assert k.verdict == "partly" and k.counted
    assert k.floor == pytest.approx(0.2)
    assert k.vs_floor == pytest.approx(sum((r - 0.2) / 0.8 for r in ratios) / 8)
    assert k.effect.value == pytest.approx(math.exp(sum(math.log(r) for r in ratios) / 8))


def test_an_inconclusive_row_says_its_minimum_detectable_effect_and_the_seeds_to_decide(tmp_path):
    _bandit(tmp_path, [0.4, 1.3, 0.7, 1.1], floor=0.1)
    k = next(k for k in _checks(tmp_path, "kae-value") if k.setting == "bandit" and k.regime == "G = 2, J = 10")
    assert k.verdict == "inconclusive"
    assert k.mde is not None and k.mde < 1 and k.seeds_to_decide and k.seeds_to_decide > 4


def test_best_h_is_picked_on_other_seeds_than_those_that_judge_it(tmp_path):
    rows = []
    for s in range(8):  # h=1 is best on seeds 0-3 only; h=2 on 4-7 only
        for est, v in (("grpo", 1.0), ("kae(h=1.0)", 0.2 if s < 4 else 0.9), ("kae(h=2.0)", 0.9 if s < 4 else 0.2)):
            rows.append({"estimator": est, "group_size": 2, "reuse": 10, "seed": s, "value_mse": v})
    results.write_csv(tmp_path / "value_mse.csv", rows, ["estimator", "group_size", "reuse", "seed", "value_mse"])
    k = next(k for k in _checks(tmp_path, "kae-value") if "best h" in k.regime and k.setting == "bandit" and "G = 2" in k.regime)
    assert "kae(h=1.0)" in k.regime and k.effect.n == 4 and k.effect.value == pytest.approx(0.9)


def test_rows_restating_one_identity_count_once_and_readings_other_than_the_papers_never():
    krpo = _checks(None, "krpo-value")
    same = [k for k in krpo if k.identity == "krpo-harmonic" and k.counted]
    assert len(same) > 1 and sum(claims.tally(same).values()) == 1
    basis = _checks(None, "basis-rpp")
    assert all(not k.counted for k in basis if k.reading in ("rejected", "extension"))


def test_the_real_kae_g4_j10_row_is_not_reproduced_unless_its_point_reaches_the_paper():
    k = next(k for k in _checks(None, "kae-value") if k.setting == "real runs" and k.regime == "G = 4, J = 10")
    assert k.effect.n == 3 and k.effect.method == "t on log-ratio"
    assert (k.verdict == "reproduced") == (k.effect.value <= 0.36)


def test_a_missing_file_or_row_is_not_tested_and_says_why(tmp_path):
    for c, ks in claims.evaluate(tmp_path):
        for k in ks:
            if c.key not in ("kl3-asymmetric",):
                assert k.verdict == "not tested" and k.why, (c.key, k)


def test_missing_files_give_not_yet_run_lines_never_an_error(tmp_path):
    block = claims.readme_block(tmp_path)
    assert "not yet run" in block and "[docs/claims.md](docs/claims.md)" in block


def test_check_exits_1_with_a_diff_when_out_of_date_and_write_fixes_it(tmp_path, capsys):
    docs, readme = tmp_path / "claims.md", tmp_path / "README.md"
    start, end = docblocks.markers(claims.BLOCK)
    readme.write_text(f"intro\n{start}\nold\n{end}\nrest\n", encoding="utf-8")
    assert claims.stale(tmp_path, docs, readme)
    assert claims.write(tmp_path, docs, readme) == [docs, readme]
    assert claims.stale(tmp_path, docs, readme) == []
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith(f"{end}\nrest\n")


def test_the_old_import_path_and_module_entry_point_still_work():
    assert shim.verdict is claims.verdict and shim.evaluate is claims.evaluate
    from lab import gradvar, results as old_results, synthetic

    assert old_results.read is results.read and synthetic.DriftingBandit.__module__ == "lab.analysis.bandit"
    assert gradvar.mean_ci95 is stats.mean_ci95


def test_a_changed_results_file_changes_the_claims_table(tmp_path):
    shutil.copy(results.path("value_mse"), tmp_path / "value_mse.csv")
    before = claims.claims_markdown(tmp_path)
    rows = results.read_rows(tmp_path / "value_mse.csv")
    for r in rows:
        if r["estimator"] == claims.KAE_DEFAULT:
            r["value_mse"] = str(float(r["value_mse"]) * 0.5)
    results.write_csv(tmp_path / "value_mse.csv", rows, ["estimator", "group_size", "reuse", "seed", "value_mse"])
    assert claims.claims_markdown(tmp_path) != before


def test_the_drift_fit_sentence_is_computed_from_its_results_file(tmp_path):
    rows = ["moment,lag,real,fit,random_walk,spread,trend,learn,slope,drift",
            "msd,3,0.02,0.03,0.01,1,0,0.25,0,0.1", "mean_change_per_step,3,0.03,0.03,0.01,1,0,0.25,0,0.1",
            "msd,9,0.10,0.05,0.20,1,0,0.25,0,0.1", "level,,0.2,0.2,0.1,1,0,0.25,0,0.1"]
    (tmp_path / "value_mse_drift_fit.csv").write_text("\n".join(rows) + "\n")
    text = claims.drift_fit_text(tmp_path)[0]
    assert "at lags 3/9 is 1.50×/0.50× the real runs'" in text and "`--calibrated`: 0.50×/2.00×" in text
    assert "gains 0.25 logit" in text
    assert "not made yet" in claims.drift_fit_text(tmp_path / "nothing")[0]


def test_checks_frame_is_the_claims_checks_row_for_row():
    from lab.analysis import claims

    ks = claims.CLAIMS_BY_KEY["basis-rpp"].checks(None)
    f = claims.checks_frame("basis-rpp")
    assert f["verdict"].tolist() == [k.verdict for k in ks] and f["regime"].tolist() == [k.regime for k in ks]
    assert f["lab's number"].tolist() == [claims.fmt_effect(k.effect, "ratio") for k in ks]
    one = claims.checks_frame("basis-rpp", setting="real runs, reference stage")
    assert set(one["setting"]) == {"real runs, reference stage"} and 0 < len(one) < len(f)


def test_the_basis_accuracy_rows_state_the_reference_stage_that_ran(tmp_path):
    # the pool, samples and reference rollouts in the regime come from time_to_accuracy.csv, not from the label
    for name in ("time_to_accuracy", "time_to_accuracy_summary"):
        shutil.copy(results.path(name, ROOT / "data" / "results"), tmp_path / f"{name}.csv")
    regimes = [k.regime for k in _checks(tmp_path, "basis-accuracy") if "reference stage (" in k.regime]
    assert regimes and all("8 samples of each, 2,048 rollouts" in r for r in regimes), regimes
    df = results.read("time_to_accuracy", tmp_path)
    ref = df["label"] == "basis_g1_pool256_ref8"
    df.loc[ref, "reference_samples"], df.loc[ref, "reference_rollouts"] = 4, 1024
    results.write_csv(tmp_path / "time_to_accuracy.csv", df.to_dict("records"), list(df.columns))
    ks = [k for k in _checks(tmp_path, "basis-accuracy") if "reference stage (" in k.regime]
    assert ks and all("4 samples of each, 1,024 rollouts" in k.regime for k in ks), [k.regime for k in ks]
    assert any("BASIS 1,024 more before step 0" in (k.why or "") for k in ks)


def test_every_check_finds_its_row_in_the_committed_results():
    # a check asking for a cell its sweep never runs (KRPO at G = 12 in worlds swept at G ∈ {1, 2, 4, 8, 16}) is a defect
    # of the claims table, not evidence: on the committed files no check is left "not tested"
    untested = [(c.key, k.setting, k.regime) for c, ks in claims.evaluate() for k in ks if k.verdict == "not tested"]
    assert not untested, untested


def test_seeds_added_after_a_first_look_decide_alone_and_the_pooled_row_is_shown_not_counted(tmp_path):
    # BASIS's accuracy pair: seeds 0–11 fixed how many more to run; the added ones judge it, all of them are shown
    pair = ("basis_g1_pool256_ref8", "reinforce_plus_plus_g1_pool256")
    cols = ["label", "seeds", "final_accuracy", "final_ci95", "planned_seeds", "confirm_seeds", "confirm_final_accuracy",
            "confirm_final_ci95"]
    se = 0.01  # each label's standard error, for both samples
    def half(n):
        return round(stats.t_quantile(0.975, n - 1) * se, 6)
    rows = [{"label": pair[0], "seeds": 60, "final_accuracy": 0.62, "final_ci95": half(60), "planned_seeds": 60,
             "confirm_seeds": 48, "confirm_final_accuracy": 0.64, "confirm_final_ci95": half(48)},
            {"label": pair[1], "seeds": 60, "final_accuracy": 0.60, "final_ci95": half(60), "planned_seeds": 60,
             "confirm_seeds": 48, "confirm_final_accuracy": 0.60, "confirm_final_ci95": half(48)}]
    results.write_csv(tmp_path / "time_to_accuracy_summary.csv", rows, cols)
    ks = [k for k in _checks(tmp_path, "basis-accuracy") if "pool of" in k.regime and "vs GRPO" not in k.regime]
    alone, pooled = ks
    assert "added seeds alone" in alone.regime and alone.reading == "paper" and alone.counted
    assert alone.effect.value == pytest.approx(0.04) and alone.effect.n == 48  # 0.64 − 0.60, the added seeds' numbers
    want = stats.welch_difference(0.64, se, 48, 0.60, se, 48)
    assert (alone.effect.low, alone.effect.high) == pytest.approx((want.low, want.high), rel=1e-4)
    assert alone.verdict == "reproduced"  # a direction-only claim, the interval wholly above 0
    assert pooled.reading == "pilot" and not pooled.counted and pooled.effect.value == pytest.approx(0.02)
    # while some planned seeds have not run: no counted row, the seeds so far shown and the shortfall named
    part = [dict(r, seeds=40) for r in rows]
    results.write_csv(tmp_path / "time_to_accuracy_summary.csv", part, cols)
    ks = [k for k in _checks(tmp_path, "basis-accuracy") if "pool of" in k.regime and "vs GRPO" not in k.regime]
    assert len(ks) == 1 and ks[0].reading == "pilot" and not ks[0].counted and "40 of 60 seeds" in ks[0].why
    # without confirmatory columns (a file from before them) one row, over every seed, counts
    results.write_csv(tmp_path / "time_to_accuracy_summary.csv", [{k: r[k] for k in cols[:4]} for r in rows], cols[:4])
    ks = [k for k in _checks(tmp_path, "basis-accuracy") if "pool of" in k.regime and "vs GRPO" not in k.regime]
    assert len(ks) == 1 and ks[0].reading == "paper" and ks[0].effect.value == pytest.approx(0.02)
