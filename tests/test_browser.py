"""The dashboard in a real browser: `lab app` as a subprocess, Debian's chromium driven by Playwright.

Every page is visited; each must draw at least one plotly chart (a non-empty
``.js-plotly-plot`` SVG) and show no Streamlit exception box. A screenshot of each page goes
to ``artifacts/browser/`` (ignored by git). ``make test`` installs chromium first
(``make browser``); with ``CI=true`` a missing browser or Playwright fails instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "browser"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PAGES = {"runs": "", "curves": "curves", "advantages": "advantages", "value_mse": "value-mse",
         "groups": "groups", "clipping": "clipping"}
SAMPLE_RUNS = ("grpo-s0", "kae-s0", "clip-ratio", "clip-kl3")


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
def test_root(tmp_path_factory) -> Path:
    """A few sample runs copied into a fresh root (the real ones when made, else small written ones)."""
    root = tmp_path_factory.mktemp("browser") / "runs"
    src = REPO / "data" / "sample_runs"
    if all((src / n / "config.json").exists() for n in SAMPLE_RUNS):
        for n in SAMPLE_RUNS:
            shutil.copytree(src / n, root / n)
    else:
        from tests.conftest import write_good_run

        write_good_run(root / "grpo-s0")
        write_good_run(root / "kae-s0", estimator="kae")
    return root


@pytest.fixture(scope="module")
def server(test_root):
    """`lab app --runs ROOT --port P` until the module's tests end; yields its URL."""
    port = _free_port()
    log = open(test_root.parent / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "app", "--runs", str(test_root), "--port", str(port)],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"lab app did not start: {(test_root.parent / 'server.log').read_text()[-2000:]}")
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


def test_every_page_renders_its_charts_without_an_exception(server, browser, test_root):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    query = "?" + "&".join(f"run=runs/{p.name}" for p in sorted(test_root.iterdir()))
    for name, path in PAGES.items():
        page.goto(f"{server}/{path}{query}", wait_until="domcontentloaded", timeout=120_000)
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=120_000)
        # let the script run finish (the status widget goes away) before judging the page
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: a Streamlit exception is shown"
        plots = page.locator(".js-plotly-plot")
        assert plots.count() >= 1, name
        drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(
            p => p.querySelectorAll('svg.main-svg path, svg.main-svg rect.point, svg.main-svg .trace').length)""")
        assert max(drawn) > 0, f"{name}: plotly charts are empty ({drawn})"
    assert not errors, errors
