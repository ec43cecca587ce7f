"""A non-editable install works: the wheel carries the dashboard, the shipped model and the sample runs.

Built the way ``python -m build`` builds (an sdist from the source tree, then the wheel from the
unpacked sdist, so MANIFEST.in is exercised too), installed with ``pip install --no-deps`` into a
fresh venv layered on this environment's packages (``--system-site-packages``, plus this venv's
site-packages when the tests run in one), and run from a folder outside the checkout with no
``PYTHONPATH``: whatever works there works from the wheel, not from the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_IGNORED = (".venv*", ".git", "runs", "build", "dist", "*.egg-info", ".hypothesis", "artifacts", "notebooks",
               "tests", "benchmarks", "examples")
"""Top-level folders not needed to build the lab (the sdist takes only what MANIFEST.in and the packages name)."""


def _ignore(folder, names):
    top = shutil.ignore_patterns(*TOP_IGNORED)(folder, names) if Path(folder) == ROOT else set()
    return top | shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")(folder, names)

pytestmark = pytest.mark.slow


def _run(args, *, cwd, env=None, timeout=300):
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, venv bin dir, the wheel, a working folder outside the checkout)."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    build = "from setuptools import build_meta as b; import sys; print(getattr(b, sys.argv[1])(sys.argv[2]))"
    sdist = _run([sys.executable, "-c", build, "build_sdist", str(tmp / "dist")], cwd=src).stdout.split()[-1]
    with tarfile.open(tmp / "dist" / sdist) as t:
        t.extractall(tmp / "sdist", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (unpacked,) = (tmp / "sdist").iterdir()
    wheel = tmp / "dist" / _run([sys.executable, "-c", build, "build_wheel", str(tmp / "dist")], cwd=unpacked).stdout.split()[-1]

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], cwd=tmp)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp).stdout.strip())
    if sys.prefix != sys.base_prefix:  # a venv's packages are not the "system" ones: layer them in too
        (purelib / "_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)], cwd=tmp, env=env)
    work = tmp / "elsewhere"
    work.mkdir()
    return py, venv / "bin", wheel, work, env


def test_the_wheel_carries_the_app_the_shipped_model_and_the_sample_runs(installed):
    from lab.paths import SHIPPED

    *_, wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for entry in SHIPPED:
        src = ROOT / entry
        files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        missing = [str(p.relative_to(ROOT)) for p in files if f"lab/_data/{p.relative_to(ROOT).as_posix()}" not in names]
        assert files and not missing, f"{entry}: {missing[:5]}"
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    assert {n.split("/")[0] for n in names} == {"lab", dist_info}  # nothing else at the top of site-packages


def test_lab_help_and_lab_app_help_run_from_the_installed_console_script(installed):
    _, bindir, _, work, env = installed
    assert "train" in _run([str(bindir / "lab"), "--help"], cwd=work, env=env).stdout
    assert "--runs" in _run([str(bindir / "lab"), "app", "--help"], cwd=work, env=env).stdout


def test_a_two_step_lab_train_on_the_default_model_runs_outside_the_checkout(installed):
    _, bindir, _, work, env = installed
    out = _run([str(bindir / "lab"), "train", "--steps", "2", "--prompts-per-step", "2", "--rollouts-per-prompt", "2",
                "--probe-every", "0", "--eval-every", "0", "--shadow-estimators", "", "--checkpoint-every", "0",
                "--quiet", "--output-dir", "runs", "--run-name", "installed"], cwd=work, env=env)
    run = work / "runs" / "installed"
    assert (work / out.stdout.strip().splitlines()[-1]).resolve() == run.resolve()  # the run dir it prints
    assert json.loads((run / "config.json").read_text())["model"] == "data/models/tiny-arith"  # what earlier runs saved
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()] == [0, 1]


PROBE = """\
import json, os, sys
import lab, lab.paths as p, lab.models.loading as l, lab.applaunch as a
seen = [lab.__file__, str(p.data_root()), l.resolve_name("data/models/tiny-arith"), str(a.APP_MAIN),
        a.APP_MAIN.is_file(), a.demo_roots("runs/demo")[-1]]
from streamlit.testing.v1 import AppTest
os.environ[a.ROOTS_ENV] = json.dumps([str(a.SAMPLE_RUNS)])
at = AppTest.from_file(str(a.APP_MAIN), default_timeout=120).run()
assert not at.exception, [e.value for e in at.exception]
print(json.dumps(seen + [sys.modules["app"].__file__]))
"""
"""From the installed lab: where it imports from, where the default model, the dashboard and the sample
runs resolve, then the dashboard's entry script run by Streamlit's test harness over the sample runs
(``app/main.py`` imports its pages with ``from app import ...``: they must come from the wheel too)."""


def test_the_installed_lab_finds_its_model_dashboard_and_sample_runs_inside_the_wheel(installed):
    pytest.importorskip("streamlit")
    py, _, _, work, env = installed
    lab_file, root, model, app_main, app_exists, sample_runs, app_pkg = json.loads(
        _run([str(py), "-c", PROBE], cwd=work, env=env).stdout.strip().splitlines()[-1])
    assert not lab_file.startswith(str(ROOT)) and root == str(Path(lab_file).parent / "_data")
    assert model == str(Path(root) / "data" / "models" / "tiny-arith")
    assert app_main == str(Path(root) / "app" / "main.py") and app_exists
    assert app_pkg.startswith(str(Path(root) / "app"))
    assert (work / sample_runs).resolve() == (Path(root) / "data" / "sample_runs").resolve()
