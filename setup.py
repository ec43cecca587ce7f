"""Package layout that pyproject.toml cannot express (everything else is in pyproject.toml).

A wheel carries the lab's shipped files, which live outside ``lab/`` in the source tree
(``app/``, ``data/models/tiny-arith/``, ``data/sample_runs/``, ...), under ``lab/_data/`` with
the same relative paths, where ``lab.paths.resource_path`` finds them. The list is
``lab.paths.SHIPPED`` (read here without importing the package); MANIFEST.in puts the same
files into an sdist (tests/test_packaging.py checks that it agrees).
"""

import runpy
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
SHIPPED = runpy.run_path(str(ROOT / "lab" / "paths.py"))["SHIPPED"]
DATA = "lab._data"

package_dir, package_data = {}, {}
for entry in SHIPPED:  # "app" -> package lab._data.app from app/, all its files; "data/tasks" -> lab._data.data, "tasks/**/*"
    top, _, rest = entry.partition("/")
    name = f"{DATA}.{top}"
    package_dir[name] = top
    pattern = "**/*" if not rest else f"{rest}/**/*" if (ROOT / entry).is_dir() else rest
    package_data.setdefault(name, []).append(pattern)

setup(
    packages=[*find_packages(include=["lab", "lab.*"]), *package_dir],
    package_dir=package_dir,
    package_data=package_data,
    exclude_package_data={"": ["*.pyc", "*/__pycache__/*"]},
)
