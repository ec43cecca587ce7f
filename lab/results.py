"""Reading the committed results files of ``data/results/`` (made by ``benchmarks/``).

One reader for the dashboard, the notebooks and the docs generators, so the schema of a
results file is defined by the benchmark that writes it and read in one place. Each
``<name>.csv`` may have a ``<name>.provenance.json`` beside it (``lab.provenance``).

>>> df = read("value_mse")
>>> {"estimator", "group_size", "reuse", "seed", "value_mse"} <= set(df.columns)
True
>>> read("no_such_results")
Traceback (most recent call last):
...
FileNotFoundError: no results file data/results/no_such_results.csv; make it with `make bench` (benchmarks/), or see data/results/ for what exists
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RESULTS_DIR = Path(__file__).resolve().parent.parent / "data" / "results"
"""Where the committed results files live (``data/results/`` of the checkout)."""


def path(name: str, root: str | Path | None = None) -> Path:
    """The CSV path of results file ``name`` (with or without ``.csv``)."""
    name = name[:-4] if name.endswith(".csv") else name
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"results name must be a plain file name such as 'value_mse', got {name!r}")
    return Path(root or RESULTS_DIR) / f"{name}.csv"


def read(name: str, root: str | Path | None = None) -> pd.DataFrame:
    """The results table ``name`` (e.g. ``"value_mse"``) as a DataFrame."""
    p = path(name, root)
    if not p.is_file():
        shown = f"data/results/{p.name}" if root is None else str(p)
        raise FileNotFoundError(f"no results file {shown}; make it with `make bench` (benchmarks/), or see data/results/ for what exists")
    return pd.read_csv(p)


def provenance(name: str, root: str | Path | None = None) -> dict:
    """The provenance record written beside results file ``name`` ({} when there is none)."""
    p = path(name, root).with_suffix(".provenance.json")
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def write_csv(path: str | Path, rows: list[dict], fieldnames: list[str]) -> None:
    """Write a whole results file at once, atomically (a temp file renamed into place), so a
    reader never sees half of it; columns not in ``fieldnames`` are left out.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.csv"
    >>> write_csv(p, [{"a": 1, "b": 2, "extra": 3}], ["a", "b"])
    >>> p.read_text().splitlines()
    ['a,b', '1,2']
    """
    import csv

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
