"""app/charts.py and app/data.py without Streamlit running: numbers checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app import charts, data
from lab.losses import clip_bounds


def _samples() -> pd.DataFrame:
    # step 0: prompt 1 rewards (1, 0), prompt 2 rewards (1, 1) -> zero spread; step 1: prompt 1 (0, 0)
    return pd.DataFrame({
        "step": [0, 0, 0, 0, 1, 1], "prompt_id": [1, 1, 2, 2, 1, 1], "rollout": [1, 0, 0, 1, 0, 1],
        "prompt": ["3+4=", "3+4=", "5+5=", "5+5=", "3+4=", "3+4="], "answer": ["7", "7", "10", "10", "7", "7"],
        "completion": ["8", "7", "10", "10", "1", "2"], "reward": [0.0, 1.0, 1.0, 1.0, 0.0, 0.0],
        "baseline": [0.5, 0.5, 1.0, 1.0, 0.0, 0.0], "advantage": [-0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
        "baseline__rloo": [1.0, 0.0, 1.0, 1.0, 0.0, 0.0], "advantage__rloo": [-1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    })


def test_zero_spread_counts_groups_with_equal_rewards_per_step():
    t = charts.zero_spread_table(_samples())
    assert t.to_dict("records") == [{"step": 0, "groups": 2, "zero_spread_frac": 0.5},
                                    {"step": 1, "groups": 1, "zero_spread_frac": 1.0}]


def test_groups_table_orders_rollouts_and_carries_the_shadow_estimator():
    g = charts.groups_table(_samples()[lambda d: d.step == 0], "grpo", "rloo").set_index("prompt_id")
    assert g.loc[1, "completions"] == ["7", "8"]  # rollout 0 first
    assert g.loc[1, "advantage (grpo)"] == [0.5, -0.5]
    assert g.loc[1, "advantage (rloo)"] == [1.0, -1.0]
    assert g.loc[2, "zero_spread"] and not g.loc[1, "zero_spread"]
    assert charts.search_groups(g.reset_index(), "10")["prompt_id"].tolist() == [2]


def test_heatmap_rows_are_each_steps_distribution():
    t = charts.advantage_heatmap_table(_samples(), "advantage__rloo", nbins=4)
    assert np.allclose(t.sum(axis=1), 1.0)
    # step 0: -1, 1, 0, 0 over bins [-1,-.5), [-.5,0), [0,.5), [.5,1]
    assert t.loc[0].tolist() == [0.25, 0.0, 0.5, 0.25]


def test_config_diff_keeps_only_differing_fields_and_lists_compare_by_value():
    t = pd.DataFrame({"key": ["a", "b", "c"], "name": ["a", "b", "c"], "status": ["finished"] * 3,
                      "estimator": ["grpo", "grpo", "grpo"], "seed": [0, 1, 0],
                      "shadow_estimators": [["all"], ["all"], ["all"]], "clip_delta_low": [None, None, float("nan")]})
    d = charts.config_diff(t, ["a", "b", "c"])
    assert d.index.tolist() == ["seed"]
    assert d.loc["seed"].tolist() == [0, 1, 0]
    assert charts.config_diff(t, ["a", "c"]).empty


def test_run_bounds_follow_each_runs_clip_config():
    t = charts.run_bounds_table({
        "ratio": {"clip_measure": "ratio", "clip_delta": 0.2, "loss": "ppo"},
        "higher": {"clip_measure": "ratio", "clip_delta": 0.2, "clip_delta_high": 0.28, "loss": "ppo"},
        "kl3": {"clip_measure": "kl3", "clip_delta": 0.03, "loss": "dual_clip"},
        "none": {"clip_measure": "ratio", "clip_delta": 0.2, "loss": "vanilla"},
    }).set_index("run")
    assert list(t.index) == ["ratio", "higher", "kl3"]
    assert (t.loc["higher", "low"], t.loc["higher", "high"]) == pytest.approx((0.8, 1.28))
    assert (t.loc["kl3", "low"], t.loc["kl3", "high"]) == pytest.approx(clip_bounds("kl3", 0.03))


def test_metric_help_matches_docs_metrics_rows_including_wildcards():
    docs = data.metric_docs.__wrapped__()  # the function under st.cache_data
    assert "mean reward" in data.metric_help("reward/mean", docs)
    assert data.metric_help("probe/value_mse_corrected/kae", docs).startswith("the same minus")
    assert data.metric_help("actor/clip_frac_high", docs)  # two names in one table row
    assert data.metric_help("no/such_metric", docs) is None


def test_roots_come_from_the_app_variable_then_lab_runs_dir_then_runs():
    assert data.roots_from_env({"LAB_APP_ROOTS": '["a", "b:c"]', "LAB_RUNS_DIR": "x"}) == ["a", "b:c"]
    assert data.roots_from_env({"LAB_RUNS_DIR": "x:y"}) == ["x", "y"]
    assert data.roots_from_env({}) == ["runs"]


def test_downloads_round_trip_through_csv_and_parquet(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "cfg": [{"h": 0.3}, {}], "lst": [["x"], ["y", "z"]]})
    assert pd.read_csv(pd.io.common.BytesIO(data.to_csv(df)))["a"].tolist() == [1, 2]
    f = tmp_path / "x.parquet"
    f.write_bytes(data.to_parquet(df))
    back = pd.read_parquet(f)
    assert back["a"].tolist() == [1, 2] and back["cfg"].tolist() == ['{"h": 0.3}', "{}"]


def test_run_bounds_read_uses_bounds_from_the_rule_registry():
    from lab.losses import RULES, RuleOutput, register_rule

    @register_rule("test_no_bounds_rule", uses_bounds=False)
    def _rule(ratio, adv, low, high, *, dual_clip_c=3.0):  # pragma: no cover - never called
        return RuleOutput(ratio * adv, ratio > 0, ratio > 0, ratio > 0)

    try:
        t = charts.run_bounds_table({"custom": {"clip_measure": "ratio", "clip_delta": 0.2, "loss": "test_no_bounds_rule"},
                                     "ppo": {"clip_measure": "ratio", "clip_delta": 0.2, "loss": "ppo"}})
        assert t["run"].tolist() == ["ppo"]  # a rule named anything but "vanilla" that ignores bounds is left out
    finally:
        RULES.unregister("test_no_bounds_rule")


def test_name_filter_matches_the_key_as_shown_with_its_root_label():
    t = pd.DataFrame({"key": ["demo/grpo", "sample_runs/grpo-s0"], "name": ["grpo", "grpo-s0"],
                      "status": ["finished"] * 2})
    assert charts.filter_runs(t, None, [], text="demo")["key"].tolist() == ["demo/grpo"]
    assert charts.filter_runs(t, None, [], text="DEMO/G")["key"].tolist() == ["demo/grpo"]


def test_bounded_metrics_have_their_range_and_others_none():
    assert charts.metric_range("eval/accuracy") == (0.0, 1.0)
    assert charts.metric_range("reward/accuracy") == (0.0, 1.0)
    assert charts.metric_range("batch/zero_std_frac") == (0.0, 1.0)
    assert charts.metric_range("actor/clip_frac_high") == (0.0, 1.0)
    assert charts.metric_range("probe/value_mse_corrected/kae") is None  # can be negative
    assert charts.metric_range("loss/total") is None


def test_group_differences_name_fields_other_than_the_seed():
    t = pd.DataFrame({"key": ["a", "b", "c", "d"], "name": list("abcd"), "estimator": ["g", "g", "k", "k"],
                      "seed": [0, 1, 0, 1], "prompts_per_step": [32, 8, 8, 8], "lr": [1e-5] * 4})
    d = charts.group_differences(t, {"g": ["a", "b"], "k": ["c", "d"]})
    assert d[["group", "field", "values"]].to_dict("records") == [{"group": "g", "field": "prompts_per_step",
                                                                    "values": "32, 8"}]


def test_ratio_panels_share_one_y_axis_and_each_run_keeps_its_colour():
    m = pd.DataFrame({"run": ["r", "r", "k", "k"], "step": [0, 1, 0, 1], "actor/ratio_mean": [1.0, 1.1, 1.0, 0.9],
                      "actor/ratio_min": [0.9, 0.8, 0.9, 0.85], "actor/ratio_max": [1.1, 1.3, 1.1, 1.2]})
    bounds = pd.DataFrame({"run": ["r", "k"], "measure": ["ratio", "kl3"], "delta": [0.2, 0.02],
                           "low": [0.8, 0.8133], "high": [1.2, 1.2133]})
    colors = {"r": "#111111", "k": "#222222"}
    fig = charts.ratio_figure(m, bounds, colors, panels=True)
    assert fig.layout.yaxis2.matches == "y"
    assert {t.line.color for t in fig.data if t.name.startswith("r ")} == {"#111111"}
    assert sorted((s.yref, round(s.y0, 4)) for s in fig.layout.shapes) == [
        ("y", 0.8133), ("y", 1.2133), ("y2", 0.8), ("y2", 1.2)]  # k first in natural order
