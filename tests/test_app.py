"""The Streamlit dashboard, page by page, with ``streamlit.testing.v1.AppTest`` on data/sample_runs.

Each test checks what a person would see: no exception, the widgets and charts of the page,
and that changing a filter or a selection changes what is shown (the chart's data, the
table's rows). Charts are read back as the plotly JSON Streamlit sends to the browser.
"""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from lab.figures import ema  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MAIN = str(REPO / "app" / "main.py")
SAMPLES = REPO / "data" / "sample_runs"
TIMEOUT = 120  # seconds per script run: the 2-core CI machine is shared


@pytest.fixture
def app(monkeypatch):
    """An AppTest of the dashboard on data/sample_runs (roots as ``lab app`` passes them)."""
    return make_app(monkeypatch, [str(SAMPLES)])


def make_app(monkeypatch, roots, query=None) -> AppTest:
    monkeypatch.setenv("LAB_APP_ROOTS", json.dumps([str(r) for r in roots]))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    if query:
        at.query_params.update(query)
    return at


def go(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.main.get("plotly_chart")]  # the sidebar holds the hidden preload


def arr(v) -> list:
    """A plotly JSON array as a list (plotly >= 6 sends numeric arrays base64-encoded)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def trace_names(fig: dict) -> list[str]:
    return [t.get("name") for t in fig["data"]]


def selected(at: AppTest) -> list[str]:
    return list(at.multiselect(key="selected_runs").value)


def _sample_keys() -> list[str]:
    return sorted(f"sample_runs/{p.name}" for p in SAMPLES.iterdir() if (p / "config.json").exists())


needs_samples = pytest.mark.skipif(not (SAMPLES / "grpo-s0" / "config.json").exists(),
                                   reason="data/sample_runs not made yet (make sample-runs)")


def test_app_modules_doctests_pass():
    import app.charts
    import app.data

    for mod in (app.charts, app.data):
        res = doctest.testmod(mod)
        assert res.failed == 0 and res.attempted > 0, mod.__name__


# --- Runs -----------------------------------------------------------------------------------
@needs_samples
@pytest.mark.parametrize("page", ["runs", "curves", "advantages", "value_mse", "groups", "clipping"])
def test_every_page_places_the_hidden_plotly_preload_in_the_sidebar_before_its_own_charts(app, page):
    # plotly.js loads when a page's first chart arrives; the hidden one-point chart makes that happen while the
    # page's script still reads its runs (app.state.preload_plotly), and it is never one of the page's charts
    from app.state import PRELOAD_KEY

    app.run()
    go(app, page)
    side = [el for el in app.sidebar.get("plotly_chart")]
    assert len(side) == 1 and side[0].proto.id.endswith(PRELOAD_KEY)
    assert not any(el.proto.id.endswith(PRELOAD_KEY) for el in app.main.get("plotly_chart"))
    hidden = " ".join(el.proto.body for el in app.get("html") if hasattr(el.proto, "body"))
    assert f".st-key-{PRELOAD_KEY}" in hidden and "display: none" in hidden


def test_runs_page_lists_every_sample_run_with_its_status(app):
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    table = app.dataframe[0].value
    assert sorted(table["key"]) == _sample_keys()
    st = dict(zip(table["key"], table["status"]))
    assert st["sample_runs/failed"] == "failed"
    assert st["sample_runs/interrupted"] == "interrupted"
    assert st["sample_runs/grpo-s0"] == "finished"
    assert {"estimator", "loss", "clip_measure", "G", "seed", "eval_accuracy", "reward_mean"} <= set(table.columns)


@needs_samples
def test_runs_filters_change_the_rows_shown(app):
    app.run()
    n_all = len(app.dataframe[0].value)
    app.multiselect(key="runs_status").set_value(["failed"]).run()
    assert app.dataframe[0].value["key"].tolist() == ["sample_runs/failed"]
    app.multiselect(key="runs_status").set_value([]).run()
    app.selectbox(key="runs_field").set_value("estimator").run()
    app.multiselect(key="runs_values").set_value(["kae"]).run()
    shown = app.dataframe[0].value
    assert sorted(shown["key"]) == ["sample_runs/kae-s0", "sample_runs/kae-s1"] and n_all > 2
    app.text_input(key="runs_text").set_value("s1").run()
    assert app.dataframe[0].value["key"].tolist() == ["sample_runs/kae-s1"]
    # the text matches the key as shown (root label included), not only the name inside the root
    app.multiselect(key="runs_values").set_value([]).run()
    app.text_input(key="runs_text").set_value("sample_runs/").run()
    assert len(app.dataframe[0].value) == n_all


@needs_samples
def test_config_diff_shows_only_fields_that_differ(app):
    app.run()
    app.multiselect(key="selected_runs").set_value(["sample_runs/grpo-s0", "sample_runs/kae-s1"]).run()
    diff = app.dataframe[1].value
    assert set(diff.index) == {"estimator", "seed", "run_name"}
    assert diff.loc["estimator"].tolist() == ["grpo", "kae"]


@needs_samples
def test_selection_survives_page_changes_and_is_in_the_url(app):
    app.run()
    want = ["sample_runs/clip-ratio", "sample_runs/clip-kl3"]
    app.multiselect(key="selected_runs").set_value(want).run()
    go(app, "curves")
    assert selected(app) == want
    go(app, "clipping")
    assert selected(app) == want
    assert app.query_params["run"] == want


@needs_samples
def test_selection_is_read_from_the_url(monkeypatch):
    at = make_app(monkeypatch, [SAMPLES], {"run": ["sample_runs/krpo", "sample_runs/basis-g1"]})
    at.run()
    assert selected(at) == ["sample_runs/krpo", "sample_runs/basis-g1"]


# --- safety -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["sample_runs/../../etc", "sample_runs//etc/passwd", "sample_runs/~root",
                                 "elsewhere/grpo-s0"])
def test_run_names_that_escape_the_root_are_refused(monkeypatch, bad):
    at = make_app(monkeypatch, [SAMPLES], {"run": [bad]})
    at.run()
    assert not at.exception
    msgs = " ".join(e.value for e in at.sidebar.error)
    assert "refused" in msgs and bad in msgs
    assert selected(at) == []


def test_a_symlink_out_of_the_root_is_refused(monkeypatch, tmp_path):
    from tests.conftest import write_good_run

    root, outside = tmp_path / "root", tmp_path / "outside"
    write_good_run(root / "inside")
    write_good_run(outside / "secret")
    (root / "link").symlink_to(outside / "secret", target_is_directory=True)
    at = make_app(monkeypatch, [root], {"run": ["root/link", "root/inside"]})
    at.run()
    msgs = " ".join(e.value for e in at.sidebar.error)
    assert "root/link" in msgs and "outside" in msgs
    assert selected(at) == ["root/inside"]
    assert "root/link" not in at.dataframe[0].value["key"].tolist()
    named = next((m.value for m in at.markdown if "`root/link`" in m.value), "")  # and the Runs page says why
    assert "outside" in named and "secret" in named


def test_the_app_writes_nothing_into_run_directories(monkeypatch, tmp_path):
    from tests.conftest import write_good_run

    root = tmp_path / "r"
    for i in range(2):
        write_good_run(root / f"run{i}", seed=i)

    def snapshot():
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}

    before = snapshot()
    at = make_app(monkeypatch, [root])
    at.run()
    for page in ("curves", "advantages", "value_mse", "groups", "clipping"):
        go(at, page)
    assert snapshot() == before


# --- broken runs ----------------------------------------------------------------------------
def test_corrupted_root_lists_good_runs_and_names_each_bad_one(monkeypatch, corrupted_runs_root, corrupted_runs_expected):
    at = make_app(monkeypatch, [corrupted_runs_root])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    keys = at.dataframe[0].value["key"].tolist()
    label = corrupted_runs_root.name
    for name in corrupted_runs_expected["good"]:
        assert f"{label}/{name}" in keys
    problems = " ".join(m.value for m in at.markdown)
    for name, (listed, loaded) in corrupted_runs_expected["broken"].items():
        assert f"{label}/{name}" in keys
        named = loaded or listed
        if named:
            line = next((m.value for m in at.markdown if f"`{label}/{name}`" in m.value), "")
            assert named in line, (name, line)
    assert "good/grpo-s0`:" not in problems
    lines = [m.value for m in at.markdown if m.value.startswith(f"- `{label}/")]
    assert lines and all(ln.count("status.json says step") <= 1 for ln in lines), lines  # the full check replaces the cheap one
    # the good runs still draw on every page
    at.multiselect(key="selected_runs").set_value([f"{label}/good/grpo-s0", f"{label}/broken/metrics-bad-middle"]).run()
    go(at, "curves")
    assert charts(at)


# --- Curves ---------------------------------------------------------------------------------
@needs_samples
def test_curves_overlay_changes_with_metric_smoothing_and_grouping(app):
    app.run()
    app.multiselect(key="selected_runs").set_value(
        ["sample_runs/grpo-s0", "sample_runs/grpo-s1", "sample_runs/kae-s0", "sample_runs/kae-s1"]).run()
    go(app, "curves")
    assert app.multiselect(key="curves_metrics").value == ["eval/accuracy"]
    fig = charts(app)[0]
    assert "sample_runs/grpo-s0" in trace_names(fig)
    app.multiselect(key="curves_metrics").set_value(["reward/mean"]).run()
    assert "mean reward" in " ".join(c.value for c in app.caption)  # the docs/metrics.md meaning
    fig = charts(app)[0]
    smooth = arr([t for t in fig["data"] if t["name"] == "sample_runs/grpo-s0"][0]["y"])
    raw = arr([t for t in fig["data"] if t["name"] == "sample_runs/grpo-s0 (raw)"][0]["y"])
    assert smooth != raw and len(smooth) == 20
    app.slider(key="curves_smoothing").set_value(0.0).run()
    assert not any(t["name"].endswith("(raw)") for t in charts(app)[0]["data"])
    app.selectbox(key="curves_group").set_value("estimator").run()
    names = trace_names(charts(app)[0])
    assert names == ["grpo (n=2)", "grpo 95% band", "kae (n=2)", "kae 95% band"]
    app.checkbox(key="curves_log").check().run()
    assert charts(app)[0]["layout"]["yaxis"]["type"] == "log"


# --- Advantages -----------------------------------------------------------------------------
@needs_samples
def test_advantages_page_shows_training_and_shadow_estimators_on_the_same_rollouts(app):
    app.run()
    app.multiselect(key="selected_runs").set_value(["sample_runs/kae-s0"]).run()
    go(app, "advantages")
    figs = charts(app)
    assert len(figs) == 5  # histogram, heatmap, scatter, baseline vs reward, zero spread
    hist = figs[0]
    assert trace_names(hist)[0] == "kae" and len(hist["data"]) >= 2
    before = arr(hist["data"][0]["x"])
    slider = app.select_slider(key="adv_step")
    slider.set_value(5).run()
    assert arr(charts(app)[0]["data"][0]["x"]) != before
    app.multiselect(key="adv_est").set_value(["kae", "rloo"]).run()
    assert trace_names(charts(app)[0]) == ["kae", "rloo"]


@needs_samples
def test_advantages_of_a_single_rollout_run_show_basis_first(app):
    app.run()
    app.multiselect(key="selected_runs").set_value(["sample_runs/basis-g1"]).run()
    go(app, "advantages")
    hist = charts(app)[0]
    assert trace_names(hist)[0] == "basis"
    assert len(arr(hist["data"][0]["x"])) == 32  # one rollout for each of 32 prompts


# --- Value MSE -------------------------------------------------------------------------------
@needs_samples
def test_value_mse_page_plots_probes_per_estimator_and_the_exact_results(app):
    app.run()
    app.multiselect(key="selected_runs").set_value(["sample_runs/grpo-s0"]).run()
    go(app, "value_mse")
    figs = charts(app)
    assert len(figs) == 3
    assert app.radio(key="vm_facet").value == "run"  # one run: one panel, a line per estimator
    app.multiselect(key="vm_est").set_value(["grpo", "kae"]).run()
    names = trace_names(charts(app)[0])
    assert names == ["grpo", "grpo ± SE", "kae", "kae ± SE"]
    assert all(t["mode"] == "lines" for t in charts(app)[0]["data"] if t.get("fill"))  # bands draw no markers
    rank = app.dataframe[0].value  # the ranking table
    assert sorted(rank["estimator"]) == ["grpo", "kae"] and rank["rank"].tolist() == [1, 2]
    assert (rank["lo"] <= rank["mse"]).all() and (rank["mse"] <= rank["hi"]).all()
    exact = charts(app)[2]
    assert exact["layout"]["yaxis"]["type"] == "log"
    app.multiselect(key="vm_exact_est").set_value(["grpo"]).run()
    assert trace_names(charts(app)[2]) == ["grpo"]


# --- Groups ---------------------------------------------------------------------------------
@needs_samples
def test_groups_page_has_one_row_per_prompt_and_search_narrows_it(app):
    app.run()
    app.multiselect(key="selected_runs").set_value(["sample_runs/grpo-s0"]).run()
    go(app, "groups")
    table = app.dataframe[0].value
    assert len(table) == 8  # prompts per step
    assert {"prompt", "answer", "completions", "rewards", "baseline (grpo)", "advantage (grpo)", "zero_spread"} <= set(table.columns)
    assert all(len(c) == 4 for c in table["completions"])
    prompt = table["prompt"].iloc[0]
    app.text_input(key="grp_search").set_value(prompt).run()
    assert app.dataframe[0].value["prompt"].tolist() == [prompt] * len(app.dataframe[0].value) and len(app.dataframe[0].value) >= 1
    app.selectbox(key="grp_shadow").set_value("rloo").run()
    assert "advantage (rloo)" in app.dataframe[0].value.columns
    group = charts(app)[0]  # the chosen group, rollout by rollout
    assert trace_names(group) == ["reward", "advantage (grpo)", "advantage (rloo)"]
    assert len(arr(group["data"][0]["y"])) == 4


# --- Clipping -------------------------------------------------------------------------------
@needs_samples
def test_clipping_page_draws_each_runs_trust_region_and_kl3_is_asymmetric(app):
    app.run()
    app.multiselect(key="selected_runs").set_value(["sample_runs/clip-ratio", "sample_runs/clip-kl3"]).run()
    go(app, "clipping")
    figs = charts(app)
    bars = {t["name"]: arr(t["x"]) for t in figs[0]["data"] if not t["name"].endswith(" · log")}
    logs = {t["name"]: arr(t["x"]) for t in figs[0]["data"] if t["name"].endswith(" · log")}
    assert logs["sample_runs/clip-ratio · log"] == pytest.approx([math.log(0.8), math.log(1.2)])
    lo, hi = bars["sample_runs/clip-ratio"]
    assert (lo, hi) == pytest.approx((0.8, 1.2))
    lo, hi = bars["sample_runs/clip-kl3"]
    assert hi - lo == pytest.approx(0.4, abs=1e-3) and (hi - 1) > (1 - lo)
    names = trace_names(figs[2])
    assert "sample_runs/clip-kl3 low" in names and "sample_runs/clip-ratio high" in names
    app.multiselect(key="selected_runs").set_value(["sample_runs/clip-ratio"]).run()
    assert sorted({t["name"] for t in charts(app)[0]["data"]}) == ["sample_runs/clip-ratio", "sample_runs/clip-ratio · log"]
    matched = charts(app)[1]  # every registered measure, drawn on numeric rows (it was empty on a category axis)
    from lab.losses import available_measures

    assert sorted({t["name"] for t in matched["data"] if "log" not in t["name"]}) == sorted(available_measures())
    assert all(all(math.isfinite(v) for v in arr(t["y"])) for t in matched["data"])


# --- empty and missing roots ----------------------------------------------------------------
def test_an_empty_root_explains_how_to_get_runs(monkeypatch, tmp_path):
    at = make_app(monkeypatch, [tmp_path / "nothing-here"])
    at.run()
    assert not at.exception
    assert any("No runs under" in i.value for i in at.info)
    for page in ("curves", "advantages", "value_mse", "groups", "clipping"):
        go(at, page)
        assert at.info, page


# --- a live run -------------------------------------------------------------------------------
def test_a_running_runs_new_metrics_rows_appear_on_the_next_rerun(monkeypatch, tmp_path):
    from lab import runs
    from lab.config import TrainConfig

    w = runs.RunWriter.create(tmp_path / "live" / "grpo", TrainConfig(steps=50, quiet=True).to_dict())
    try:
        for s in range(3):
            w.log_metrics({"step": s, "reward/mean": 0.1 * s})
            w.set_status("running", step=s)
        at = make_app(monkeypatch, [tmp_path / "live"])
        at.run()
        assert at.dataframe[0].value["status"].tolist() == ["running"]
        assert selected(at) == ["live/grpo"]
        go(at, "curves")
        assert at.toggle(key="curves_auto").value  # auto-refresh is on while a selected run runs
        at.multiselect(key="curves_metrics").set_value(["reward/mean"]).run()
        assert len(arr(charts(at)[0]["data"][-1]["y"])) == 3
        for s in range(3, 5):
            w.log_metrics({"step": s, "reward/mean": 0.1 * s})
        at.run()
        expect = ema([0.0, 0.1, 0.2, 0.3, 0.4], 0.6)  # the page's default smoothing
        assert arr(charts(at)[0]["data"][-1]["y"]) == pytest.approx(expect.tolist())
    finally:
        w.close()


def test_curves_x_axis_can_be_resume_aware_wall_time(monkeypatch, tmp_path):
    from tests.conftest import write_good_run

    write_good_run(tmp_path / "r" / "a")  # logs time/elapsed_s = 1.5, 3.0, 4.5
    at = make_app(monkeypatch, [tmp_path / "r"])
    at.run()
    go(at, "curves")
    at.multiselect(key="curves_metrics").set_value(["reward/mean"]).run()
    at.radio(key="curves_x").set_value("time/elapsed_s").run()
    fig = charts(at)[0]
    assert fig["layout"]["xaxis"]["title"]["text"] == "time/elapsed_s"
    assert arr(fig["data"][-1]["x"]) == [1.5, 3.0, 4.5]


# --- views as data ----------------------------------------------------------------------------
@needs_samples
def test_the_whole_curves_view_is_read_from_the_url_and_written_back(monkeypatch):
    runs = ["sample_runs/grpo-s0", "sample_runs/grpo-s1", "sample_runs/kae-s0", "sample_runs/kae-s1"]
    view = {"metric": ["reward/mean", "eval/accuracy"], "smooth": ["0.3"], "logy": ["1"], "group": ["estimator"]}
    at = make_app(monkeypatch, [SAMPLES], {"run": runs, **view})
    at.run()
    go(at, "curves")
    assert selected(at) == runs
    assert at.multiselect(key="curves_metrics").value == ["reward/mean", "eval/accuracy"]
    assert at.slider(key="curves_smoothing").value == pytest.approx(0.3)
    assert at.checkbox(key="curves_log").value and at.selectbox(key="curves_group").value == "estimator"
    fig = charts(at)[0]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["reward/mean", "eval/accuracy"]  # two panels
    assert fig["layout"]["yaxis"]["type"] == "log" and fig["layout"]["yaxis2"]["type"] == "log"
    assert fig["layout"]["hovermode"] == "x unified"
    assert {t["name"] for t in fig["data"] if t.get("showlegend") is not False} == {"grpo (n=2)", "kae (n=2)"}
    for k, v in view.items():  # and the URL still holds it all, with the selection
        q = at.query_params[k]
        assert ([q] if isinstance(q, str) else list(q)) == v, k
    at.slider(key="curves_smoothing").set_value(0.6).run()  # back to the default: left out of the URL
    assert "smooth" not in at.query_params and at.query_params["run"] == runs


def test_default_selection_is_the_first_roots_runs_newest_first_in_natural_order(monkeypatch, tmp_path):
    from tests.conftest import write_good_run

    for name in ("run-s10", "run-s2", "run-s1"):  # written in this order: run-s1 is the newest
        write_good_run(tmp_path / "first" / name)
    write_good_run(tmp_path / "second" / "other")
    at = make_app(monkeypatch, [tmp_path / "first", tmp_path / "second"])
    at.run()
    assert selected(at) == ["first/run-s1", "first/run-s2", "first/run-s10"]
    assert at.dataframe[0].value["key"].tolist() == ["first/run-s1", "first/run-s2", "first/run-s10", "second/other"]


def test_grouped_runs_that_differ_in_config_or_stop_early_are_marked(monkeypatch, tmp_path):
    from tests.conftest import write_good_run

    root = tmp_path / "r"
    write_good_run(root / "a", seed=0, steps=5)
    write_good_run(root / "b", seed=1, steps=3)  # stops two steps early
    cfg = json.loads((root / "b" / "config.json").read_text())
    cfg["prompts_per_step"] = 32
    (root / "b" / "config.json").write_text(json.dumps(cfg))
    write_good_run(root / "c", estimator="kae")
    at = make_app(monkeypatch, [root], {"run": ["r/a", "r/b", "r/c"], "metric": ["reward/mean"], "group": ["estimator"],
                                        "smooth": ["0"]})
    at.run()
    go(at, "curves")
    note = " ".join(m.value for m in at.markdown)
    assert "`prompts_per_step`" in note and "32" in note
    fig = charts(at)[0]
    names = trace_names(fig)
    assert names[0] == "grpo (n=2)" and "grpo: fewer runs" in names
    solid = arr(fig["data"][0]["y"])
    assert [v == v for v in solid] == [True, True, True, False, False]  # the mean of both stops at step 2
    dotted = arr(fig["data"][names.index("grpo: fewer runs")]["y"])
    assert dotted[3:] == pytest.approx([0.75, 1.0])  # then run a alone, dotted
    assert all(t["mode"] == "lines" for t in fig["data"] if t.get("fill"))


def test_a_truncated_metrics_file_is_named_on_the_runs_page(monkeypatch, tmp_path):
    from tests.conftest import write_good_run

    d = write_good_run(tmp_path / "r" / "torn", steps=20)
    lines = (d / "metrics.jsonl").read_text().splitlines()
    (d / "metrics.jsonl").write_text("\n".join(lines[:10]) + "\n" + lines[10][: len(lines[10]) // 2])
    at = make_app(monkeypatch, [tmp_path / "r"])
    at.run()
    assert not at.exception
    line = next((m.value for m in at.markdown if "`r/torn`" in m.value), "")
    assert "metrics.jsonl" in line, [m.value for m in at.markdown]


def test_no_page_but_clipping_imports_torch():
    # torch takes seconds to import and the pages only read files: every page but Clipping (which asks the policy
    # rules, torch modules, which of them use clip bounds), in a fresh interpreter
    import subprocess
    import sys

    pages = sorted(p.stem for p in (REPO / "app" / "views").glob("*.py") if p.stem not in ("__init__", "clipping"))
    assert {"runs", "curves"} <= set(pages)
    code = f"""
import json, os, sys
os.environ["LAB_APP_ROOTS"] = json.dumps([{str(SAMPLES)!r}])
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({MAIN!r}, default_timeout={TIMEOUT})
at.run()
for page in {pages!r}:
    at.switch_page(f"views/{{page}}.py")
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
