"""Install metadata stays consistent: pyproject, environment.yml, Makefile, README, CI entry."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_torch_is_pinned_to_the_cpu_sized_release():
    deps = _pyproject()["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    # the default install never pulls vLLM (which brings a CUDA torch)
    assert not any(d.startswith("vllm") for d in deps)
    assert any(d.startswith("vllm") for d in _pyproject()["project"]["optional-dependencies"]["gpu"])


def test_environment_yml_installs_the_same_package_and_extras_as_make_setup():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    makefile = (ROOT / "Makefile").read_text()
    make_spec = re.search(r'pip install --quiet -e "([^"]+)"', makefile).group(1)
    assert pip_section == [f"-e {make_spec}"]
    py = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    major_minor = tuple(int(x) for x in py.split("=")[1].split(".")[:2])
    required = _pyproject()["project"]["requires-python"]
    assert required.startswith(">=")
    assert major_minor >= tuple(int(x) for x in required[2:].split("."))
    extras = _pyproject()["project"]["optional-dependencies"]
    for extra in re.findall(r"\[(.*?)\]", make_spec)[0].split(","):
        assert extra in extras


def test_readme_gives_exactly_two_setup_commands_and_they_exist_in_the_makefile():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    first = [line.strip() for line in blocks[0].splitlines() if line.strip() and not line.strip().startswith("#")]
    assert first == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)


def test_ci_entry_runs_make_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "set -e" in ci


def test_the_sdist_manifest_carries_exactly_the_files_a_wheel_ships():
    """MANIFEST.in (sdist) and setup.py (wheel, from lab.paths.SHIPPED) name the same folders and files."""
    from lab.paths import SHIPPED

    named = set()
    for line in (ROOT / "MANIFEST.in").read_text().splitlines():
        words = line.split()
        if words and words[0] in ("graft", "include"):
            assert all((ROOT / w).is_dir() == (words[0] == "graft") for w in words[1:]), line
            named.update(words[1:])
    assert named == set(SHIPPED)
    assert all((ROOT / entry).exists() for entry in SHIPPED)
