"""Where the lab's shipped files are: in a source checkout, or inside an installed wheel.

A checkout keeps them at the repository root (``app/``, ``data/models/tiny-arith/``,
``data/sample_runs/``, ...). A wheel carries the same tree, same relative paths, under
``lab/_data/`` (``setup.py`` maps the folders there; :data:`SHIPPED` lists them), so one
relative path names a file in both: :func:`resource_path` ``("data/models/tiny-arith")``
is ``<checkout>/data/models/tiny-arith`` or ``<site-packages>/lab/_data/data/models/tiny-arith``.
That is also why configs saved by earlier runs (``"model": "data/models/tiny-arith"``) keep
working in an installed lab.

The rule is one folder for the whole tree (:func:`data_root`): ``lab/_data`` when it exists
(an installed wheel; a checkout never has one), else the folder above the ``lab`` package.

>>> resource_path("data/models/tiny-arith").name
'tiny-arith'
>>> resource_path("app/main.py").relative_to(data_root()).as_posix()
'app/main.py'
>>> resource_path("/etc/hosts")
Traceback (most recent call last):
...
ValueError: resource_path takes a path relative to the lab's data root, got '/etc/hosts'
"""

from __future__ import annotations

from pathlib import Path, PurePath

PACKAGE_DIR = Path(__file__).resolve().parent
"""The ``lab`` package folder."""
INSTALLED_ROOT = PACKAGE_DIR / "_data"
"""Where a wheel puts the shipped tree (absent in a checkout)."""
CHECKOUT_ROOT = PACKAGE_DIR.parent
"""The repository root when ``lab`` runs from a checkout (editable install or ``PYTHONPATH=.``)."""

SHIPPED = (
    "app",
    "data/models/tiny-arith",
    "data/sample_runs",
    "data/tasks",
    "data/results",
    "docs/metrics.md",
)
"""What a wheel carries under ``lab/_data`` (setup.py and MANIFEST.in list the same; a test
checks they agree): the dashboard, the shipped model, the sample runs, the task fixtures,
the results the dashboard shows and the metric meanings it quotes."""


def data_root() -> Path:
    """The folder the shipped tree hangs from: ``lab/_data`` in an installed wheel, else the checkout root.

    >>> data_root() in (INSTALLED_ROOT, CHECKOUT_ROOT)
    True
    """
    return INSTALLED_ROOT if INSTALLED_ROOT.is_dir() else CHECKOUT_ROOT


def resource_path(relative: str | PurePath) -> Path:
    """``relative`` (a path like ``"data/sample_runs"``) under :func:`data_root`; the path may not exist.

    Absolute paths are refused (``ValueError``): a caller holding one needs no lookup.
    """
    rel = PurePath(relative)
    if rel.is_absolute():
        raise ValueError(f"resource_path takes a path relative to the lab's data root, got {str(relative)!r}")
    return data_root() / rel


def is_installed() -> bool:
    """True when the lab runs from an installed wheel (its shipped tree is under ``lab/_data``).

    >>> isinstance(is_installed(), bool)
    True
    """
    return INSTALLED_ROOT.is_dir()
