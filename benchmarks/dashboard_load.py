"""How fast the dashboard loads many long runs: Runs page and a 10-run Curves overlay.

    .venv/bin/python benchmarks/dashboard_load.py [--runs 100] [--steps 2000] [--repeats 3] [--browser-repeats 1]

Generates ``--runs`` runs × ``--steps`` steps under a temporary root (config, status, a
metrics.jsonl with the ~30 metric names a real run logs, samples for 3 steps and probes
for 2, all through ``lab.runs``), then measures two ways:

* **script** (``streamlit.testing.v1.AppTest``): the page script alone, *cold*
  (``st.cache_data`` cleared, so every file is read again) and *cached* (the same script
  re-run: what a person waiting on a widget change sees). Python imports are warmed up
  first on a tiny root, so cold is the data cost, not the interpreter's.
* **chromium** (what a user waits for): ``lab app`` on the root, headless Chromium through
  Playwright; the time from navigation start to the page drawn (the script run over, the
  page's charts placed with SVG marks and its table drawn: :data:`PAGES`), on the *first
  visit* (a fresh server and browser profile, nothing cached), on a *revisit* (a reload of
  that tab: the HTTP cache, the tab's compiled scripts and the server's caches warm) and on a
  *revisit in a new tab* (HTTP and server caches warm, Streamlit's client and plotly.js
  compiled again by a fresh renderer). Two
  reference pages are measured the same way in the same run: an empty Streamlit page (each
  time is also given as a ratio to it: the machine is shared and noisy) and one with a
  single three-point chart (the floor of any page with a chart: Streamlit's client, then
  plotly.js loaded and started).

Pages: ``runs`` (listing every run, default selection) and ``curves`` (10 runs'
``reward/mean``, smoothed). Medians go to ``data/results/dashboard_load.csv`` through
``lab.results.write_csv``, with ``lab.provenance.collect()`` in
``dashboard_load.provenance.json`` beside it. Targets (2 CPU cores): chromium first visit
≤ 2 s and revisit ≤ 1 s (in the same tab and in a new one) for both pages; script cold < 2 s,
cached < 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.state import PRELOAD_SELECTOR  # noqa: E402  (the app's hidden plotly.js preload, left out of every count)

OUT = REPO / "data" / "results" / "dashboard_load.csv"
TARGETS = {"cold": 2.0, "cached": 0.3, "first_visit": 2.0, "revisit": 1.0, "revisit_new_tab": 1.0}
CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
FIELDS = ["page", "measured_in", "cache", "seconds", "min_s", "max_s", "repeats", "target_s", "meets_target",
          "ratio_to_empty", "runs", "runs_overlaid", "steps", "git_commit", "created"]
# set before the page's own scripts run: remembers that a script run began (so "not running" below means "over",
# never "not started yet"); a fixed wait for it would be counted in every time measured
SAW_RUN_JS = """window.__labRan = false;
new MutationObserver(() => {
  if (document.querySelector('[data-testid="stApp"][data-test-script-state="running"]')) window.__labRan = true;
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ["data-test-script-state"]});"""
# the script run is over and the page shows what it should: at least ``want.plotly`` charts with marks in their plot
# area and ``want.grid`` tables drawn (Streamlit places a chart only once plotly.js has loaded, well after the script
# ended: counting only the charts already placed stopped the clock before any chart was there)
DRAWN_JS = """(want) => {
  if (!window.__labRan) return false;
  if (!document.querySelector('[data-testid="stApp"][data-test-script-state="notRunning"]')) return false;
  if (!document.querySelector('[data-testid="stMain"] h1, [data-testid="stMain"] p')) return false;
  const placed = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].filter(c => !c.closest('PRELOAD'));
  if (placed.length < (want.plotly || 0)) return false;
  if (document.querySelectorAll('[data-testid="stDataFrame"] canvas').length < (want.grid || 0)) return false;
  return placed.every(c => c.querySelectorAll('.cartesianlayer .trace path, .cartesianlayer .trace image').length > 0);
}""".replace("PRELOAD", PRELOAD_SELECTOR)
PAGES = {"empty": {}, "one_chart": {"plotly": 1}, "runs": {"plotly": 1, "grid": 1}, "curves": {"plotly": 1}}
"""What each measured page must show before its clock stops (``empty`` and ``one_chart`` are the references)."""
REFERENCE_PAGES = {"empty": "import streamlit as st\n\nst.write('empty')\n",
                   "one_chart": "import plotly.graph_objects as go\nimport streamlit as st\n\nst.write('one chart')\n"
                                "st.plotly_chart(go.Figure(go.Scatter(x=[0, 1, 2], y=[0, 1, 0])))\n"}
"""An empty Streamlit page, and one with a single three-point plotly chart: the floor a page with a chart
cannot go under on this machine (Streamlit's client, then plotly.js loaded and started)."""
ESTIMATORS = ("grpo", "kae", "rloo", "krpo", "basis")
METRIC_NAMES = (
    ["reward/mean", "reward/accuracy", "reward/errors", "loss/total", "actor/pg_loss", "actor/clip_frac_low",
     "actor/clip_frac_high", "actor/clip_low_bound", "actor/clip_high_bound", "actor/ratio_mean", "actor/ratio_min",
     "actor/ratio_max", "actor/approx_kl", "actor/zero_grad_frac", "actor/dual_clip_frac", "actor/entropy",
     "actor/grad_norm", "adv/mean", "adv/std", "adv/min", "adv/max", "adv/baseline_mean", "batch/zero_std_frac",
     "response/length_mean", "response/truncated_frac", "perf/tokens_per_s", "perf/rollout_time_s",
     "perf/step_time_s", "time/elapsed_s", "est/num_groups", "est/zero_std_frac"]
)


def make_root(root: Path, n_runs: int, n_steps: int, seed: int = 0) -> list[str]:
    """Write ``n_runs`` synthetic finished runs of ``n_steps`` steps under ``root``; returns their names."""
    from lab import runs
    from lab.config import TrainConfig

    rng = np.random.default_rng(seed)
    names = []
    for i in range(n_runs):
        est = ESTIMATORS[i % len(ESTIMATORS)]
        name = f"sweep/{est}-s{i // len(ESTIMATORS)}"
        path = root / name
        cfg = TrainConfig(estimator=est, seed=i // len(ESTIMATORS), steps=n_steps, quiet=True).to_dict()
        w = runs.RunWriter.create(path, cfg)
        base = rng.uniform(0.1, 0.4)
        vals = rng.normal(0, 0.05, size=(n_steps, len(METRIC_NAMES)))
        lines = []
        for s in range(n_steps):
            rec = {k: float(v) for k, v in zip(METRIC_NAMES, vals[s])}
            rec["step"] = s
            rec["reward/mean"] = float(np.clip(base + 0.4 * s / n_steps + vals[s, 0], 0, 1))
            rec["time/elapsed_s"] = 1.3 * (s + 1)
            if s % 50 == 0 or s == n_steps - 1:
                rec["eval/accuracy"] = float(np.clip(base + 0.3 * s / n_steps, 0, 1))
            lines.append(json.dumps(rec, sort_keys=True))
        runs.atomic_write_bytes(path / "metrics.jsonl", ("\n".join(lines) + "\n").encode())
        for s in (0, n_steps // 2, n_steps - 1):
            n = 32
            w.log_samples(s, pd.DataFrame({
                "step": s, "prompt_id": np.repeat(np.arange(8), 4), "rollout": np.tile(np.arange(4), 8),
                "prompt": "12+34=", "answer": "46", "completion": "46", "reward": rng.integers(0, 2, n).astype(float),
                "baseline": rng.uniform(0, 1, n), "advantage": rng.normal(0, 1, n),
                **{f"{k}__{e}": rng.normal(0, 1, n) for e in ESTIMATORS if e != est for k in ("baseline", "advantage")},
            }))
        for s in (0, n_steps - 1):
            w.log_probes(s, pd.DataFrame({"step": s, "prompt_id": np.repeat(np.arange(8), len(ESTIMATORS)),
                                          "estimator": list(ESTIMATORS) * 8, "truth": rng.uniform(0, 1, 8 * len(ESTIMATORS)),
                                          "truth_se": 0.05, "baseline_mean": 0.5, "sq_err": rng.uniform(0, 0.1, 8 * len(ESTIMATORS)),
                                          "n_rollouts": 4}))
        w.set_status("finished", step=n_steps - 1)
        if hasattr(w, "close"):
            w.close()
        names.append(name)
    return names


def _app(root: Path, query: dict | None = None):
    from streamlit.testing.v1 import AppTest

    os.environ["LAB_APP_ROOTS"] = json.dumps([str(root)])
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=600)
    if query:
        at.query_params.update(query)
    return at


def _timed(at) -> float:
    t0 = time.perf_counter()
    at.run()
    dt = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"the app raised: {[e.value for e in at.exception]}")
    return dt


def measure(root: Path, names: list[str], repeats: int) -> list[dict]:
    import streamlit as st

    warm = root.parent / "warm"
    make_root(warm, 2, 5, seed=1)
    at = _app(warm)
    at.run()
    at.switch_page("views/curves.py")
    at.run()

    label = root.name
    sel = {"run": [f"{label}/{n}" for n in names[:10]]}
    out = {("runs", "cold"): [], ("runs", "cached"): [], ("curves", "cold"): [], ("curves", "cached"): []}
    for _ in range(repeats):
        st.cache_data.clear()
        at = _app(root, sel)
        out[("runs", "cold")].append(_timed(at))
        out[("runs", "cached")].append(_timed(at))
        at.switch_page("views/curves.py")
        at.run()  # the page's first run builds its widgets
        at.multiselect(key="curves_metrics").set_value(["reward/mean"])
        st.cache_data.clear()
        out[("curves", "cold")].append(_timed(at))
        out[("curves", "cached")].append(_timed(at))
    rows = []
    for (page, cache), ts in out.items():
        med = statistics.median(ts)
        rows.append({"page": page, "measured_in": "script", "cache": cache, "seconds": round(med, 4),
                     "min_s": round(min(ts), 4),
                     "max_s": round(max(ts), 4), "repeats": len(ts), "target_s": TARGETS[cache],
                     "meets_target": med < TARGETS[cache], "runs": len(names),
                     "runs_overlaid": 10 if page == "curves" else None})
    return rows


def _serve(cmd: list[str], env: dict, port: int):
    import subprocess
    import urllib.request

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {cmd}")
        time.sleep(0.3)


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except Exception:  # noqa: BLE001
        proc.kill()
        proc.wait()


VISITS = ("first_visit", "revisit", "revisit_new_tab")
"""The visits :func:`_visits` times, in order (see there)."""


def _visits(browser, url: str, want: dict) -> dict[str, float]:
    """Seconds from navigation start to the page drawn, for each of :data:`VISITS`: the *first visit* in
    a fresh browser profile (nothing cached); the *revisit*, a reload of the tab (its URL as the page left
    it: ``/`` sends a person on to ``/runs``, and a view writes its settings into the URL; the HTTP cache
    warm, and the tab's renderer keeps the scripts it compiled); the *revisit in a new tab*, that URL
    opened in a new tab (the HTTP cache warm, a fresh renderer that compiles Streamlit's client and
    plotly.js again). The server's caches are warm on both revisits."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.add_init_script(SAW_RUN_JS)
    out = {}
    page = ctx.new_page()
    for visit in VISITS:
        if visit == "revisit":  # the page's own URL now (``/`` has become ``/runs``, the view's parameters added)
            page.reload(wait_until="domcontentloaded", timeout=300_000)
        else:
            if visit == "revisit_new_tab":
                url = page.url
                page.close()
                page = ctx.new_page()
            page.goto(url, wait_until="domcontentloaded", timeout=300_000)
        page.wait_for_function(DRAWN_JS, arg=want, timeout=120_000, polling=50)
        out[visit] = page.evaluate("() => performance.now()") / 1000.0
    page.close()
    ctx.close()
    return out


def measure_browser(root: Path, names: list[str], repeats: int) -> list[dict]:
    """First visit (fresh server) and revisit of Runs and Curves, and of an empty page, in Chromium."""
    from playwright.sync_api import sync_playwright

    from lab import applaunch

    sel = "&".join(f"run={root.name}/{n}" for n in names[:10])
    targets = {"runs": "", "curves": f"curves?{sel}&metric=reward/mean"}
    out: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        for _ in range(repeats):
            for page, text in REFERENCE_PAGES.items():
                script = root.parent / f"{page}_page.py"
                script.write_text(text)
                port = applaunch.free_port(8750)
                cmd = applaunch.streamlit_command(port)
                cmd[cmd.index(str(applaunch.APP_MAIN))] = str(script)
                proc = _serve(cmd, dict(os.environ), port)
                try:
                    for visit, t in _visits(browser, f"http://127.0.0.1:{port}/", PAGES[page]).items():
                        out.setdefault((page, visit), []).append(t)
                finally:
                    _stop(proc)
            for page, path in targets.items():  # a fresh server per page: its first visit reads every file
                port = applaunch.free_port(8750)
                proc = _serve(applaunch.streamlit_command(port), applaunch.app_env([str(root)]), port)
                try:
                    for visit, t in _visits(browser, f"http://127.0.0.1:{port}/{path}", PAGES[page]).items():
                        out.setdefault((page, visit), []).append(t)
                finally:
                    _stop(proc)
        browser.close()
    rows = []
    for (page, visit), ts in out.items():
        med = statistics.median(ts)
        base = statistics.median(out[("empty", visit)])
        rows.append({"page": page, "measured_in": "chromium", "cache": visit, "seconds": round(med, 4),
                     "min_s": round(min(ts), 4), "max_s": round(max(ts), 4), "repeats": len(ts),
                     "target_s": None if page in REFERENCE_PAGES else TARGETS[visit],
                     "meets_target": None if page in REFERENCE_PAGES else med <= TARGETS[visit],
                     "ratio_to_empty": round(med / base, 3), "runs": len(names),
                     "runs_overlaid": 10 if page == "curves" else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3, help="script-timing repeats")
    ap.add_argument("--browser-repeats", type=int, default=1, help="Chromium repeats (0: skip the browser)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    from lab import provenance

    with tempfile.TemporaryDirectory(prefix="dashboard_load_") as tmp:
        root = Path(tmp) / "bench"
        t0 = time.perf_counter()
        names = make_root(root, args.runs, args.steps)
        print(f"generated {len(names)} runs x {args.steps} steps in {time.perf_counter() - t0:.1f} s under {root}")
        rows = measure(root, names, args.repeats)
        if args.browser_repeats > 0:
            rows += measure_browser(root, names, args.browser_repeats)
    df = pd.DataFrame(rows)
    df["steps"] = args.steps
    prov = provenance.collect("cpu")
    df["git_commit"] = prov.get("git_commit")
    df["created"] = prov.get("created")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from lab.results import write_csv

    write_csv(out, df.astype(object).where(df.notna(), None).to_dict("records"), FIELDS)
    out.with_name(out.stem + ".provenance.json").write_text(json.dumps(
        {"settings": vars(args), "provenance": prov, "targets_s": TARGETS}, indent=2, sort_keys=True) + "\n")
    print(df[["page", "measured_in", "cache", "seconds", "ratio_to_empty", "target_s", "meets_target"]].to_string(index=False))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
