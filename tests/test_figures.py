"""lab.figures: the shared plotly builders, checked against numbers worked out by hand."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import pytest

from lab import figures
from lab.analysis import stats
from lab.losses import clip_bounds, matched_delta


def test_ema_matches_tensorboard_debiased_formula_worked_by_hand():
    # s = 0.6, values 2, 4, 1:
    # m1 = 0.4*2 = 0.8          -> 0.8 / (1 - 0.6)    = 2
    # m2 = 0.6*0.8 + 0.4*4 = 2.08 -> 2.08 / (1 - 0.36) = 3.25
    # m3 = 0.6*2.08 + 0.4*1 = 1.648 -> 1.648 / (1 - 0.216) = 2.1020408...
    out = figures.ema([2.0, 4.0, 1.0], 0.6)
    assert out == pytest.approx([2.0, 3.25, 1.648 / 0.784], abs=1e-12)


def test_ema_skips_non_finite_values_without_counting_them():
    # the nan is passed through and the next point is debiased with n = 2, not 3
    out = figures.ema([2.0, math.nan, 4.0], 0.6)
    assert math.isnan(out[1])
    assert out[2] == pytest.approx(3.25)


def test_ema_zero_smoothing_is_identity_and_bad_weight_is_refused():
    v = np.array([3.0, -1.0, 7.0])
    assert figures.ema(v, 0.0).tolist() == v.tolist()
    with pytest.raises(ValueError, match="smoothing"):
        figures.ema(v, 1.0)


def _seeds_frame() -> pd.DataFrame:
    # two estimators; grpo has 3 seeds at steps 0 and 1; kae 1 seed
    rows = []
    for run, est, vals in [("g0", "grpo", [1.0, 2.0]), ("g1", "grpo", [2.0, 4.0]), ("g2", "grpo", [3.0, 6.0]),
                           ("k0", "kae", [5.0, 5.0])]:
        for step, v in enumerate(vals):
            rows.append({"run": run, "estimator": est, "step": step, "value": v})
    return pd.DataFrame(rows)


def test_band_is_mean_plus_minus_t_interval_across_seeds():
    t = figures.band_table(_seeds_frame(), band_by="estimator")
    g1 = t[(t.estimator == "grpo") & (t.step == 1)].iloc[0]
    # values 2, 4, 6: mean 4, sample sd 2, n 3; t_{0.975, 2} = 4.302652729749464
    half = 4.302652729749464 * 2.0 / math.sqrt(3)
    assert g1["mean"] == pytest.approx(4.0)
    assert (g1["lo"], g1["hi"]) == pytest.approx((4.0 - half, 4.0 + half))
    assert g1["n"] == 3


def test_band_of_a_single_seed_has_no_width_and_groups_stay_apart():
    t = figures.band_table(_seeds_frame(), band_by="estimator")
    k = t[t.estimator == "kae"]
    assert k["mean"].tolist() == [5.0, 5.0]
    assert k["lo"].isna().all() and k["hi"].isna().all()
    assert sorted(t.estimator.unique()) == ["grpo", "kae"]


def test_band_smooths_each_seed_before_averaging():
    t = figures.band_table(_seeds_frame(), band_by="estimator", smoothing=0.5)
    # seed g0: ema(1, 2) = (1, (0.25 + 1)/0.75); g1: (2, (0.5 + 2)/0.75); g2: (3, (0.75 + 3)/0.75)
    expect = np.mean([1.25 / 0.75, 2.5 / 0.75, 3.75 / 0.75])
    assert t[(t.estimator == "grpo") & (t.step == 1)]["mean"].iloc[0] == pytest.approx(expect)


def test_curves_figure_grouped_draws_one_mean_line_and_one_band_per_group():
    fig = figures.curves_figure(_seeds_frame(), band_by="estimator")
    names = [tr.name for tr in fig.data]
    assert names == ["grpo (n=3)", "grpo 95% band", "kae (n=1)"]
    assert list(fig.data[0].y) == pytest.approx([2.0, 4.0])


def test_curves_figure_draws_raw_faint_behind_each_smoothed_line_and_log_axis():
    fig = figures.curves_figure(_seeds_frame(), smoothing=0.9, log_y=True)
    assert [tr.name for tr in fig.data][:2] == ["g0 (raw)", "g0"]
    assert list(fig.data[0].y) == [1.0, 2.0]
    assert list(fig.data[1].y) == pytest.approx(figures.ema([1.0, 2.0], 0.9).tolist())
    assert fig.layout.yaxis.type == "log"


def test_curves_figure_names_a_missing_column():
    with pytest.raises(KeyError, match="elapsed"):
        figures.curves_figure(_seeds_frame(), x="elapsed")


def _samples() -> pd.DataFrame:
    return pd.DataFrame({
        "step": [0, 0, 0, 0, 1, 1],
        "prompt_id": [7, 7, 8, 8, 7, 7],
        "reward": [1.0, 0.0, 1.0, 1.0, 0.0, 1.0],
        "baseline": [0.5, 0.5, 1.0, 1.0, 0.5, 0.5],
        "advantage": [0.5, -0.5, 0.0, 0.0, -0.5, 0.5],
        "baseline__rloo": [0.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        "advantage__rloo": [1.0, -1.0, 0.0, 0.0, -1.0, 1.0],
    })


def test_advantage_histogram_picks_training_and_shadow_columns_at_one_step():
    fig = figures.advantage_histogram(_samples(), ["grpo", "rloo"], step=0, train_estimator="grpo")
    assert [tr.name for tr in fig.data] == ["grpo", "rloo"]
    assert list(fig.data[0].x) == [0.5, -0.5, 0.0, 0.0]
    assert list(fig.data[1].x) == [1.0, -1.0, 0.0, 0.0]
    # one shared set of bins, so the bars line up
    assert fig.data[0].xbins.size == fig.data[1].xbins.size == pytest.approx(2.0 / 40)


def test_advantage_column_error_lists_the_estimators_the_table_has():
    with pytest.raises(KeyError, match="rloo"):
        figures.advantage_column(_samples(), "kae", train_estimator="grpo")


def test_advantage_scatter_pairs_the_same_rollouts():
    fig = figures.advantage_scatter(_samples(), "grpo", "rloo", train_estimator="grpo")
    pts = list(zip(fig.data[0].x, fig.data[0].y))
    assert pts == list(zip(_samples()["advantage"], _samples()["advantage__rloo"]))


def test_value_mse_table_subtracts_truth_variance_and_gives_standard_error():
    p = pd.DataFrame({"step": [0, 0, 0], "estimator": ["kae"] * 3, "prompt_id": [1, 2, 3],
                      "sq_err": [0.10, 0.20, 0.60], "truth_se": [0.1, 0.2, 0.3]})
    t = figures.value_mse_table(p).iloc[0]
    e = np.array([0.10 - 0.01, 0.20 - 0.04, 0.60 - 0.09])
    assert t["mse"] == pytest.approx(e.mean())
    assert t["se"] == pytest.approx(e.std(ddof=1) / math.sqrt(3))
    assert t["n"] == 3


def test_value_mse_figure_reads_metrics_columns_as_lines_per_run_and_estimator():
    m = pd.DataFrame({"run": ["a", "a", "b"], "step": [0, 10, 0],
                      "probe/value_mse_corrected/grpo": [0.2, 0.1, 0.3],
                      "probe/value_mse_corrected/kae": [0.1, None, 0.2]})
    fig = figures.value_mse_figure(m)
    assert [tr.name for tr in fig.data] == ["a · grpo", "a · kae", "b · grpo", "b · kae"]
    assert list(fig.data[0].y) == [0.2, 0.1]
    assert list(fig.data[1].y) == [0.1]


def test_value_mse_vs_g_averages_seeds_and_uses_log_axes():
    r = pd.DataFrame({"estimator": ["a", "a", "a", "b"], "group_size": [1, 1, 4, 1], "seed": [0, 1, 0, 0],
                      "value_mse": [0.2, 0.4, 0.05, 0.5]})
    t = figures.value_mse_vs_g_table(r)
    a1 = t[(t.estimator == "a") & (t.group_size == 1)].iloc[0]
    assert a1["mse"] == pytest.approx(0.3) and a1["se"] == pytest.approx(np.std([0.2, 0.4], ddof=1) / math.sqrt(2))
    fig = figures.value_mse_vs_g_figure(r)
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis.type == "log"
    assert [tr.name for tr in fig.data] == ["a", "b"]


def test_value_mse_vs_g_reads_the_shipped_results_file_one_reuse_at_a_time():
    r = pd.read_csv("data/results/value_mse.csv")
    for j in sorted(r["reuse"].unique()):
        fig = figures.value_mse_vs_g_figure(r, reuse=j)
        assert len(fig.data) == r.loc[r["reuse"] == j, "estimator"].nunique()
    with pytest.raises(ValueError, match="reuse=J"):
        figures.value_mse_vs_g_table(r)  # never averages different J together


def test_value_mse_vs_g_keeps_reuse_levels_apart():
    r = pd.DataFrame({"estimator": ["a"] * 4, "group_size": [2] * 4, "reuse": [1, 1, 10, 10], "seed": [0, 1, 0, 1],
                      "value_mse": [0.2, 0.4, 0.02, 0.04]})
    assert figures.value_mse_vs_g_table(r, reuse=10)["mse"].tolist() == pytest.approx([0.03])
    assert figures.value_mse_vs_g_table(r[r["reuse"] == 1])["mse"].tolist() == pytest.approx([0.3])


def test_trust_regions_default_to_matched_budgets():
    t = figures.trust_region_table(["ratio", "kl3"]).set_index("measure")
    assert t.loc["ratio", "delta"] == pytest.approx(0.2)
    lo, hi = clip_bounds("kl3", matched_delta("kl3"))
    assert (t.loc["kl3", "low"], t.loc["kl3", "high"]) == pytest.approx((lo, hi))
    assert t.loc["kl3", "high"] - t.loc["kl3", "low"] == pytest.approx(0.4, abs=1e-6)
    assert t.loc["kl3", "room_up"] > t.loc["kl3", "room_down"]  # KL3 is asymmetric
    fig = figures.trust_region_figure(["ratio", "kl3"], delta={"ratio": 0.1, "kl3": 0.05})
    assert list(fig.data[0].x) == pytest.approx([0.9, 1.1])


def test_clip_fraction_figure_draws_low_and_high_per_run():
    m = pd.DataFrame({"run": ["r", "r", "k", "k"], "step": [0, 1, 0, 1],
                      "actor/clip_frac_low": [0.0, 0.1, 0.0, 0.05], "actor/clip_frac_high": [0.0, 0.2, 0.0, 0.3]})
    fig = figures.clip_fraction_figure(m)
    assert [tr.name for tr in fig.data] == ["k low", "k high", "r low", "r high"]
    assert list(fig.data[3].y) == [0.0, 0.2]


# --- bands, colours, small multiples ------------------------------------------------------------
def _band_traces(fig):
    return [t for t in fig.data if t.fill not in (None, "none")]


def test_every_band_is_drawn_as_lines_only_so_its_corners_are_not_dots():
    probes = pd.DataFrame({"step": [0, 0, 5, 5], "estimator": ["grpo"] * 4, "sq_err": [0.1, 0.3, 0.1, 0.2],
                           "truth_se": [0.0] * 4})
    figs = [figures.curves_figure(_seeds_frame(), band_by="estimator"), figures.value_mse_figure(probes),
            figures.value_mse_figure(probes.assign(run="a"), facet="estimator")]
    for fig in figs:
        bands = _band_traces(fig)
        assert bands and all(t.mode == "lines" for t in bands)


def test_a_band_stops_where_it_is_undefined_instead_of_bridging_the_gap():
    t = figures.band_trace([0, 1, 2, 3], [0.0, 0.0, float("nan"), 1.0], [1.0, 1.0, float("nan"), 2.0], "#000000", "b")
    assert list(t.x) == [0, 1, 1, 0, None, 3, 3]
    assert list(t.y) == [1.0, 1.0, 0.0, 0.0, None, 2.0, 1.0]


def test_grouped_mean_is_marked_where_runs_drop_out_and_counts_runs_per_step():
    df = pd.DataFrame({"run": ["a"] * 3 + ["b"], "estimator": ["g"] * 4, "step": [0, 1, 2, 0],
                       "value": [1.0, 2.0, 3.0, 3.0]})
    table = figures.band_table(df)
    assert table["n"].tolist() == [2, 1, 1] and table["runs"].tolist() == [2, 2, 2]
    fig = figures.curves_figure(df, band_by="estimator")
    solid, dotted = fig.data[0], fig.data[1]
    assert solid.name == "g (n=2)" and dotted.name == "g: fewer runs" and dotted.line.dash == "dot"
    assert np.isnan(solid.y[1:]).all() and solid.y[0] == 2.0
    assert list(dotted.y) == [2.0, 2.0, 3.0]  # joined to the last mean of both runs
    assert [list(c) for c in solid.customdata] == [[2, 2], [1, 2], [1, 2]]


def test_bands_are_clipped_to_the_metrics_range():
    df = pd.DataFrame({"run": ["a", "b"], "estimator": ["g", "g"], "step": [0, 0], "value": [0.0, 0.02]})
    raw = figures.band_table(df).iloc[0]
    assert raw["lo"] < 0  # n = 2: the t-interval reaches below 0 ...
    t = figures.band_table(df, y_range=(0.0, 1.0)).iloc[0]
    assert t["lo"] == 0.0 and t["hi"] == pytest.approx(raw["hi"]) and t["mean"] == pytest.approx(0.01)


def test_value_mse_ranking_orders_estimators_within_each_run_at_its_last_step():
    rows = []
    for run, last in (("r1", 4), ("r2", 2)):
        for step in (0, last):
            for est, err in (("a", 0.3), ("b", 0.1), ("c", 0.2)):
                for pid in range(3):
                    rows.append({"run": run, "step": step, "estimator": est, "prompt_id": pid,
                                 "sq_err": err + 0.01 * pid + (1.0 if step == 0 else 0.0), "truth_se": 0.1})
    r = figures.value_mse_ranking(pd.DataFrame(rows))
    assert r["run"].tolist() == ["r1"] * 3 + ["r2"] * 3 and r["step"].tolist() == [4] * 3 + [2] * 3
    assert r["estimator"].tolist() == ["b", "c", "a"] * 2 and r["rank"].tolist() == [1, 2, 3] * 2
    b = r.iloc[0]
    e = np.array([0.1, 0.11, 0.12]) - 0.01
    assert b["mse"] == pytest.approx(e.mean()) and b["n"] == 3
    assert (b["lo"], b["hi"]) == pytest.approx(stats.mean_ci(e)[1:3])


def test_series_colors_come_from_the_name_and_stay_distinct():
    names = [f"sample_runs/run-{i}" for i in range(12)]
    c = figures.series_colors(names)
    assert len(set(c.values())) == 12  # no repeats below the palette's 20
    alone = figures.series_colors([names[5]])[names[5]]
    assert alone == figures.COLORS[zlib.crc32(names[5].encode()) % len(figures.COLORS)]
    # the same run, the same colour, whatever chart it is drawn in
    df = pd.DataFrame({"run": [names[5]] * 2, "step": [0, 1], "value": [1.0, 2.0]})
    assert figures.curves_figure(df).data[-1].line.color == alone


def test_natural_sort_orders_numbers_by_value():
    assert sorted(["s10", "s9", "s1", "S2"], key=figures.natural_key) == ["s1", "S2", "s9", "s10"]


def test_small_multiples_share_x_and_keep_one_legend_entry_per_run():
    df = pd.concat([_seeds_frame().assign(metric=m) for m in ("a/x", "b/y")])
    fig = figures.curves_figure(df, facet="metric", smoothing=0.5)
    assert [a.text for a in fig.layout.annotations] == ["a/x", "b/y"]
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x" or fig.layout.xaxis.matches == "x"
    assert fig.layout.hovermode == "x unified"
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert sorted(legend) == ["g0", "g1", "g2", "k0"]


def test_trust_regions_sit_on_numeric_rows_so_they_are_drawn():
    # defect: text labels on y with the shared layout's linear axis drew nothing
    fig = figures.trust_region_figure(["ratio", "kl1", "kl2", "kl3"], space="both")
    ratio = [t for t in fig.data if not t.name.endswith(" · log")]
    assert [t.name for t in ratio] == ["ratio", "kl1", "kl2", "kl3"]
    assert all(isinstance(v, (int, float)) for t in fig.data for v in t.y)
    assert list(fig.layout.yaxis.ticktext) == [f"{m} δ={matched_delta(m):.4g}" for m in ("ratio", "kl1", "kl2", "kl3")]
    logs = {t.name: list(t.x) for t in fig.data if t.name.endswith(" · log")}
    lo, hi = clip_bounds("kl3", matched_delta("kl3"))
    assert logs["kl3 · log"] == pytest.approx([math.log(lo), math.log(hi)])
    assert fig.layout.xaxis.range[0] < 0.8 and fig.layout.xaxis.range[1] > 1.2134  # every bar inside the axis


def test_clip_objective_table_is_the_clipped_surrogate_and_flat_where_the_gradient_is_cut():
    t = figures.clip_objective_table(["ratio", "kl3"])
    lo, hi = t["low"].to_numpy(), t["high"].to_numpy()
    w, a = t["w"].to_numpy(), t["advantage"].to_numpy()
    assert np.allclose(t["objective"], np.minimum(w * a, np.clip(w, lo, hi) * a))
    for (m, adv), g in t.groupby(["measure", "advantage"]):
        slope = np.gradient(g["objective"].to_numpy(), g["w"].to_numpy())
        inside = g["gradient_zero"].to_numpy() & np.r_[g["gradient_zero"].to_numpy()[1:], True] & np.r_[True, g["gradient_zero"].to_numpy()[:-1]]
        assert np.allclose(slope[inside], 0.0) and np.allclose(slope[~g["gradient_zero"].to_numpy()][1:-1], adv, atol=1e-6)
        cut = g["w"][g["gradient_zero"]]
        assert (cut > g["high"].iloc[0]).all() if adv > 0 else (cut < g["low"].iloc[0]).all()


def test_log_ratio_table_counts_the_same_tokens_against_each_interval():
    rng = np.random.default_rng(1)
    lr = rng.normal(0, 0.15, (6, 40))
    adv = np.repeat(rng.choice([-1.0, 1.0], 6), 1)
    mask = rng.random((6, 40)) < 0.8
    t = figures.log_ratio_table(lr, adv, mask, ["ratio", "kl3"]).set_index("measure")
    w, A, n = np.exp(lr)[mask], np.broadcast_to(adv[:, None], lr.shape)[mask], mask.sum()
    for m in ("ratio", "kl3"):
        lo, hi = clip_bounds(m, matched_delta(m))
        r = t.loc[m]
        assert (r["tokens"], r["low"], r["high"]) == (n, pytest.approx(lo), pytest.approx(hi))
        assert r["below"] == pytest.approx((w < lo).mean()) and r["above"] == pytest.approx((w > hi).mean())
        assert r["clipped_low"] == pytest.approx(((A < 0) & (w < lo)).mean())
        assert r["clipped_high"] == pytest.approx(((A > 0) & (w > hi)).mean())
    # KL3's matched interval sits above ratio clipping's: it cuts more falling tokens and fewer rising ones
    assert t.loc["kl3", "clipped_low"] >= t.loc["ratio", "clipped_low"] and t.loc["kl3", "clipped_high"] <= t.loc["ratio", "clipped_high"]


def test_long_curves_are_drawn_thinned_after_smoothing_on_every_point():
    n = 2500
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"run": np.repeat(["a", "b"], n), "estimator": "g", "step": np.tile(np.arange(n), 2),
                       "value": rng.normal(size=2 * n)})
    fig = figures.curves_figure(df, smoothing=0.9)
    a_raw, a = fig.data[0], fig.data[1]
    assert len(a.x) <= figures.DRAWN_POINTS + 1 and a.x[-1] == n - 1 and list(a.x[:3]) == [0, 3, 6]
    full = figures.ema(df[df.run == "a"]["value"].to_numpy(), 0.9)
    assert np.allclose(a.y, full[np.asarray(a.x)]) and np.allclose(a_raw.y, df[df.run == "a"]["value"].to_numpy()[np.asarray(a_raw.x)])
    assert list(fig.data[3].x) == list(a.x)  # every run of the panel is drawn at the same steps (one hover row per step)
    assert len(figures.curves_figure(df, smoothing=0.9, max_points=None).data[1].x) == n
    band = figures.curves_figure(df, band_by="estimator").data[0]
    table = figures.band_table(df, band_by="estimator")
    assert len(band.x) <= figures.DRAWN_POINTS + 1 and np.allclose(band.y, table["mean"].to_numpy()[np.asarray(band.x)])


def _cielab(hex_color: str) -> np.ndarray:
    # sRGB -> linear -> XYZ (D65) -> L*a*b*, written out here independently of the palette code
    rgb = np.array([int(hex_color.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)])
    rgb = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    t = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ rgb
    t = t / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_no_two_palette_colours_look_alike():
    # every pair of the 20 colours, not only the pair a screenshot showed (#1f77b4 and #3182bd were ΔE 4.6)
    import itertools

    lab = {c: _cielab(c) for c in figures.COLORS}
    assert len(lab) == len(figures.COLORS) == 20
    close = [(a, b, round(float(np.linalg.norm(lab[a] - lab[b])), 1))
             for a, b in itertools.combinations(figures.COLORS, 2) if np.linalg.norm(lab[a] - lab[b]) < 15]
    assert not close, f"palette colours closer than ΔE 15: {close}"
    assert _cielab("#ffffff")[0] == pytest.approx(100, abs=0.1) and _cielab("#000000")[0] == pytest.approx(0, abs=0.1)


def test_an_estimator_keeps_its_colour_whatever_it_is_drawn_with():
    from lab import estimators

    assert tuple(sorted(estimators.available())) == figures.BUILTIN_ESTIMATORS  # the torch-free copy is the registry
    every = figures.estimator_colors(figures.BUILTIN_ESTIMATORS)
    assert len(set(every.values())) == len(every) and figures.GREY not in every.values()
    import itertools

    for k in (1, 2, 3):
        for combo in itertools.combinations(figures.BUILTIN_ESTIMATORS, k):
            got = figures.estimator_colors(list(combo) + ["kae(h=0.2)"])
            assert all(got[n] == every[n] for n in combo), combo
            assert got["kae(h=0.2)"] not in every.values() and got["kae(h=0.2)"] != figures.GREY
    # the Groups chart: the reward bars are grey, no estimator is
    from app import charts

    g = pd.DataFrame({"rollout": [0, 1], "reward": [1.0, 0.0], "advantage": [0.5, -0.5], "advantage__basis": [1.0, -1.0]})
    bars = charts.group_figure(g, "grpo", "basis").data
    assert bars[0].marker.color == figures.GREY and len({b.marker.color for b in bars}) == 3


@pytest.mark.parametrize("names, where", [(["a", "b"], "above"), ([f"run-{i}" for i in range(8)], "right"),
                                          (["basis(fallback=prior, online_prior=missing, beta_selection=crossfit)",
                                           "basis(fallback=zero, online_prior=missing, beta_selection=crossfit)"], "below")])
def test_a_titled_figure_keeps_its_legend_off_the_title(names, where):
    # plotly's default title sits in the top margin where a row legend above the plot also goes (lessons 01-05 showed both
    # on top of each other); a long legend would wrap into rows over the title: it goes to the right instead
    df = pd.DataFrame({"run": np.repeat(names, 2), "step": [0, 1] * len(names), "value": np.arange(2.0 * len(names))})
    fig = figures.curves_figure(df, title="A title")
    assert fig.layout.title.yref == "container" and fig.layout.title.yanchor == "top"
    if where == "above":
        assert fig.layout.legend.orientation == "h" and fig.layout.legend.yanchor == "bottom" and fig.layout.margin.t >= 80
    elif where == "right":
        assert fig.layout.legend.orientation == "v" and fig.layout.legend.x > 1
    else:  # entries too long for the side (they would squeeze the plot): below it, one a line, the figure taller
        assert fig.layout.legend.orientation == "v" and fig.layout.legend.y < 0 and fig.layout.legend.x == 0
        assert fig.layout.height == 450 + figures.LEGEND_LINE_PX * len(names)
        assert fig.layout.margin.b >= 50 + figures.LEGEND_LINE_PX * len(names)
