"""The dashboard in a real browser: `lab app` as a subprocess, Debian's chromium driven by Playwright.

Every page is visited on sample runs and on the corrupted-runs fixture (two roots of one
server). On each page every plotly chart must be drawn: each chart Streamlit placed has its
``.js-plotly-plot``, and each has drawn marks (non-empty line paths, points, bars or heatmap
images) inside its plot area; no band (a filled trace) draws markers; no Streamlit
exception box. Every figure builder of ``lab/figures.py`` is rendered the same way. A view
changed in one browser and copied by URL into a fresh browser context shows the same
charts. A screenshot of each page goes to ``artifacts/browser/`` (ignored by git).
``make test`` installs chromium first (``make browser``); with ``CI=true`` a missing
browser or Playwright fails instead of skipping.
"""

from __future__ import annotations

import inspect
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent

from app.state import PRELOAD_SELECTOR  # noqa: E402  (the app's hidden plotly.js preload, left out of every check)
CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "browser"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PAGES = {"runs": "", "curves": "curves", "advantages": "advantages", "value_mse": "value-mse",
         "groups": "groups", "clipping": "clipping"}
SAMPLE_RUNS = ("grpo-s0", "grpo-s1", "kae-s0", "clip-ratio", "clip-kl3")
CORRUPTED = ("good/grpo-s0", "broken/metrics-bad-middle", "broken/samples-truncated")
TIMEOUT = 150_000  # ms: the 2-core machine is shared

# For every plotly figure of the page (the main area: the sidebar holds the app's hidden plotly.js preload,
# app.state.preload_plotly): was it drawn (marks inside a plot area), and do any
# filled traces (bands) draw markers? Marks: line/area paths with more than a move-to,
# scatter points, bar and histogram paths, heatmap images.
CHECK_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].filter(gd => !gd.closest('PRELOAD')).map(gd => {
  const areas = [...gd.querySelectorAll('.draglayer .nsewdrag')].map(e => e.getBoundingClientRect());
  const inside = r => (r.width > 0 || r.height > 0) && areas.some(a =>
      r.right >= a.left - 1 && r.left <= a.right + 1 && r.bottom >= a.top - 1 && r.top <= a.bottom + 1);
  const marks = [...gd.querySelectorAll('.cartesianlayer .trace path, .cartesianlayer .trace image, .cartesianlayer .hm image')].filter(e => {
    if (e.tagName.toLowerCase() === 'path') {
      const d = e.getAttribute('d') || '';
      if (!/[LHVCQAZlhvcqaz]/.test(d.slice(1))) return false;
    }
    return inside(e.getBoundingClientRect());
  });
  const bandMarkers = (gd._fullData || []).filter(t => t.visible !== false && t.fill && t.fill !== 'none'
      && String(t.mode || '').includes('markers')).map(t => t.name);
  const key = (gd.closest('[class*="st-key-"]') || {}).className || '';
  return {marks: marks.length, areas: areas.length, bandMarkers, key: String(key).slice(0, 80),
          traces: (gd._fullData || []).length};
})""".replace("PRELOAD", PRELOAD_SELECTOR)


def _need(ok: bool, why: str) -> None:
    if not ok:
        if CI:
            pytest.fail(f"{why} (CI=true: the browser test must run; `make browser` installs chromium)")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    """Sample runs copied into a fresh root (the real ones when made, else small written ones),
    and the corrupted-runs fixture as a second root."""
    from tests.conftest import build_corrupted_root, write_good_run

    base = tmp_path_factory.mktemp("browser")
    root = base / "runs"
    src = REPO / "data" / "sample_runs"
    if all((src / n / "config.json").exists() for n in SAMPLE_RUNS):
        for n in SAMPLE_RUNS:
            shutil.copytree(src / n, root / n)
    else:
        for n in SAMPLE_RUNS:
            write_good_run(root / n, estimator="kae" if n.startswith("kae") else "grpo", seed=int(n[-1]) if n[-1].isdigit() else 0)
    return {"runs": root, "corrupted_runs": build_corrupted_root(base / "corrupted_runs")}


@pytest.fixture(scope="module")
def server(roots):
    """`lab app --runs ROOT --runs CORRUPTED --port P` until the module's tests end; yields its URL."""
    port = _free_port()
    logf = roots["runs"].parent / "server.log"
    log = open(logf, "wb")
    cmd = [sys.executable, "-m", "lab.cli", "app", "--port", str(port)]
    for r in roots.values():
        cmd += ["--runs", str(r)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 150
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"lab app did not start: {logf.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    _need(Path(CHROMIUM).exists(), f"no chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright package is not installed (it is in the test extra)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                    "--disable-component-update", "--disable-sync", "--no-first-run",
                                    "--disable-dev-shm-usage"])
        yield b
        b.close()


SCRIPT_DONE = ("() => document.querySelector('[data-testid=\"stApp\"][data-test-script-state=\"notRunning\"]') "
               "&& document.querySelector('[data-testid=\"stMain\"] h1')")


def _settle(page) -> None:
    """Wait until the script run is over and every chart Streamlit placed has been drawn."""
    page.wait_for_function(SCRIPT_DONE, timeout=TIMEOUT)
    page.wait_for_timeout(500)
    page.wait_for_function(SCRIPT_DONE, timeout=TIMEOUT)
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stPlotlyChart"]')].every(
        c => c.querySelector('.js-plotly-plot .main-svg'))""", timeout=TIMEOUT)
    # Streamlit places a chart only once plotly.js has loaded, after the script run: wait until no more arrive,
    # or a chart not placed yet would go unchecked
    placed = -1
    for _ in range(20):
        now = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').count()
        if now == placed:
            break
        placed = now
        page.wait_for_timeout(1000)


def _checked(page) -> list[dict]:
    """CHECK_JS once plotly has drawn (it draws the traces after the axes: give it a few
    seconds; a chart that stays empty is reported by the caller)."""
    try:
        page.wait_for_function(f"() => ({CHECK_JS})().every(f => f.marks > 0)", timeout=20_000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: judged below
        pass
    return page.evaluate(CHECK_JS)


def _assert_drawn(page, where: str, min_charts: int = 1) -> list[dict]:
    placed = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').count()
    figs = _checked(page)
    assert len(figs) == placed >= min_charts, f"{where}: {placed} charts placed, {len(figs)} drawn"
    for i, f in enumerate(figs):
        assert f["areas"] > 0 and f["marks"] > 0, f"{where}: chart {i} ({f['key']}) is empty: {f}"
        assert not f["bandMarkers"], f"{where}: chart {i} ({f['key']}): bands draw markers: {f['bandMarkers']}"
    return figs


def test_every_page_draws_every_chart_on_sample_and_corrupted_runs(server, browser, roots):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 2600})  # tall: the screenshot shows the whole page
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # one selection holds runs of both roots: every page shows the sample runs and the damaged ones
    both = [f"runs/{n}" for n in SAMPLE_RUNS] + [f"corrupted_runs/{n}" for n in CORRUPTED]
    visits = [("both", name, path, "") for name, path in PAGES.items()]
    visits += [("corrupted", name, PAGES[name], f"&focus=corrupted_runs/{CORRUPTED[-1]}") for name in ("advantages", "groups")]
    visits.append(("both", "curves_grouped", "curves", "&group=estimator&metric=eval/accuracy&metric=reward/mean"))
    for sel, name, path, extra in visits:
        query = "?" + "&".join(f"run={k}" for k in both) + extra
        page.goto(f"{server}/{path}{query}", wait_until="domcontentloaded", timeout=TIMEOUT)
        _settle(page)
        page.screenshot(path=str(ARTIFACTS / f"{sel}_{name}.png"), full_page=True)
        where = f"{sel}/{name}"
        assert page.locator('[data-testid="stException"]').count() == 0, f"{where}: a Streamlit exception is shown"
        preload = page.locator(PRELOAD_SELECTOR)
        assert preload.count() == 1 and not preload.is_visible(), f"{where}: the plotly.js preload chart is not hidden"
        figs = _assert_drawn(page, where)
        if name == "curves_grouped":
            assert any(f["traces"] >= 4 for f in figs), figs  # two groups: mean lines and bands
        if name == "runs":
            text = page.inner_text('[class*="st-key-runs_problems"]')
            assert "broken/metrics-bad-middle" in text and "metrics.jsonl" in text
    assert not errors, errors


LOG_DRAWN = """() => { const gd = document.querySelector('[data-testid="stMain"] [data-testid="stPlotlyChart"] .js-plotly-plot');
    return gd && gd.layout && gd.layout.yaxis.type === 'log' && gd.querySelectorAll('.cartesianlayer .trace path').length > 0; }"""


def test_a_copied_url_restores_the_view_in_a_fresh_browser(server, browser):
    runs = "&".join(f"run=runs/{n}" for n in ("grpo-s0", "grpo-s1", "kae-s0"))
    first = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = first.new_page()
    page.goto(f"{server}/curves?{runs}", wait_until="domcontentloaded", timeout=TIMEOUT)
    _settle(page)
    page.locator('[class*="st-key-curves_log"]').get_by_text("log y").click()  # change the view by hand
    page.wait_for_function("() => location.search.includes('logy=1')", timeout=TIMEOUT)
    page.wait_for_function(LOG_DRAWN, timeout=TIMEOUT)
    _settle(page)
    url = page.url
    chart = "() => { const gd = document.querySelector('[data-testid=\"stMain\"] [data-testid=\"stPlotlyChart\"] .js-plotly-plot'); " \
            "return {y: gd.layout.yaxis.type, names: gd.data.map(t => t.name), " \
            "last: gd.data.map(t => Array.from(t.y || []).slice(-1)[0])}; }"
    before = page.evaluate(chart)
    first.close()
    assert before["y"] == "log" and "/curves?" in url

    fresh = browser.new_context(viewport={"width": 1400, "height": 1000})  # no cookies, no session
    page = fresh.new_page()
    page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT)
    _settle(page)
    page.wait_for_function(LOG_DRAWN, timeout=TIMEOUT)
    assert page.evaluate(chart) == before
    assert page.locator('[class*="st-key-curves_log"] input').is_checked()
    fresh.close()


def _builder_inputs() -> dict:
    """One call of every figure builder of lab.figures on a small hand-made table."""
    from lab import figures

    rng = np.random.default_rng(0)
    long = pd.DataFrame([{"run": f"r{s}", "estimator": "grpo" if s < 2 else "kae", "step": t, "metric": m,
                          "value": 0.1 * t + 0.05 * s + rng.normal(0, 0.02)}
                         for s in range(3) for t in range(8) for m in ("reward/mean", "eval/accuracy")])
    samples = pd.DataFrame({"step": [0] * 8, "prompt_id": np.repeat([1, 2], 4), "reward": [1, 0, 1, 0, 1, 1, 0, 0.0],
                            "advantage": rng.normal(0, 1, 8), "advantage__rloo": rng.normal(0, 1, 8)})
    probes = pd.DataFrame([{"run": f"r{s}", "step": t, "estimator": e, "prompt_id": p, "truth": 0.5,
                            "truth_se": 0.05, "sq_err": 0.02 + 0.01 * p + 0.005 * t}
                           for s in range(2) for t in (0, 5) for e in ("grpo", "kae") for p in range(3)])
    res = pd.DataFrame([{"estimator": e, "group_size": g, "seed": s, "value_mse": 0.1 / g + 0.01 * s}
                        for e in ("grpo", "kae") for g in (2, 4, 8) for s in range(2)])
    metrics = pd.DataFrame({"run": ["a"] * 4, "step": range(4), "actor/clip_frac_low": [0, 0.1, 0.2, 0.1],
                            "actor/clip_frac_high": [0, 0.2, 0.1, 0.3]})
    return {
        "curves_figure": [lambda: figures.curves_figure(long[long.metric == "reward/mean"], smoothing=0.5),
                          lambda: figures.curves_figure(long, band_by="estimator", facet="metric")],
        "advantage_histogram": [lambda: figures.advantage_histogram(samples, ["grpo", "rloo"], train_estimator="grpo")],
        "advantage_scatter": [lambda: figures.advantage_scatter(samples, "grpo", "rloo", train_estimator="grpo")],
        "value_mse_figure": [lambda: figures.value_mse_figure(probes),
                             lambda: figures.value_mse_figure(probes, facet="estimator", log_y=True)],
        "value_mse_vs_g_figure": [lambda: figures.value_mse_vs_g_figure(res)],
        "trust_region_figure": [lambda: figures.trust_region_figure(["ratio", "kl1", "kl2", "kl3"]),
                                lambda: figures.trust_region_figure(["ratio", "kl3"], space="both")],
        "trust_region_bars": [lambda: figures.trust_region_bars(figures.trust_region_table(["ratio"]), space="log")],
        "clip_fraction_figure": [lambda: figures.clip_fraction_figure(metrics)],
        "clip_objective_figure": [lambda: figures.clip_objective_figure(["ratio", "kl3"])],
        "log_ratio_histogram": [lambda: figures.log_ratio_histogram(rng.normal(0, 0.1, (4, 50)), np.ones((4, 50), bool),
                                                                    ["ratio", "kl3"])],
    }


def test_every_figure_builder_of_lab_figures_draws_in_the_browser(browser, tmp_path):
    import plotly.graph_objects as go
    import plotly.io as pio

    from lab import figures

    builders = {n for n in figures.__all__ if callable(getattr(figures, n))
                and inspect.signature(getattr(figures, n)).return_annotation in ("go.Figure", go.Figure)}
    calls = _builder_inputs()
    assert builders == set(calls), f"give every builder an example here: {sorted(builders ^ set(calls))}"
    parts = []
    for name, makers in calls.items():
        for i, make in enumerate(makers):
            parts.append(f"<h3>{name} {i}</h3>" + pio.to_html(make(), full_html=False, include_plotlyjs=False,
                                                               default_width="1100px", default_height="420px"))
    html = tmp_path / "figures.html"
    plotly_js = Path(pio.__file__).resolve().parent.parent / "package_data" / "plotly.min.js"
    html.write_text(f"<html><head><script src='{plotly_js.as_uri()}'></script></head><body>{''.join(parts)}</body></html>")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(html.as_uri(), wait_until="load", timeout=TIMEOUT)
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {len(parts)}",
                           timeout=TIMEOUT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "figures.png"), full_page=True)
    figs = _checked(page)
    assert len(figs) == len(parts)
    for (name, i), f in zip([(n, i) for n, ms in calls.items() for i in range(len(ms))], figs):
        assert f["marks"] > 0, f"{name} #{i} is empty in the browser: {f}"
        assert not f["bandMarkers"], f"{name} #{i}: bands draw markers: {f['bandMarkers']}"
