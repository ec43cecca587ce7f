"""The one reader and atomic writer of the results files in ``data/results/`` and their provenance.

The dashboard, the notebooks, the docs generators and every benchmark read and write results
through here, so a results file is defined by the benchmark that makes it and handled in one
place. Each ``<name>.csv`` may have a ``<name>.provenance.json`` beside it (``lab.provenance``).
Writes are atomic (a temp file renamed into place); appends (a resumable sweep writing a row
as it finishes) go through :func:`append_rows`, and :func:`read_rows` skips a torn last line.

>>> df = read("value_mse")
>>> {"estimator", "group_size", "reuse", "seed", "value_mse"} <= set(df.columns)
True
>>> read("no_such_results")
Traceback (most recent call last):
...
FileNotFoundError: no results file data/results/no_such_results.csv; make it with `make bench` (benchmarks/), or see data/results/ for what exists
"""

from __future__ import annotations

import collections
import csv
import json
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from lab.paths import resource_path

RESULTS_DIR = resource_path("data/results")
"""Where the committed results files live (``data/results/`` of the checkout, or of ``lab/_data`` in an installed wheel)."""


def path(name: str, root: str | Path | None = None) -> Path:
    """The CSV path of results file ``name`` (with or without ``.csv``).

    >>> path("value_mse").name
    'value_mse.csv'
    """
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


def sidecar_path(csv_path: str | Path) -> Path:
    """``<name>.provenance.json`` beside ``<name>.csv``.

    >>> sidecar_path("data/results/value_mse.csv").name
    'value_mse.provenance.json'
    """
    p = Path(csv_path)
    return p.with_name(p.stem + ".provenance.json")


def provenance(name: str, root: str | Path | None = None) -> dict:
    """The provenance record written beside results file ``name`` ({} when there is none)."""
    return read_sidecar(path(name, root))


def read_sidecar(csv_path: str | Path) -> dict:
    """The sidecar of the CSV at ``csv_path`` ({} when there is none)."""
    p = sidecar_path(csv_path)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


def source_provenance(csv_path: str | Path) -> dict:
    """Where a results file's numbers came from, for a file derived from it: the commits, the
    dirty flag and the creation times its rows (``git_commit``, ``git_dirty``, ``created``
    columns) or its sidecar (``provenance``) record; {} when it records none."""
    meta = read_sidecar(csv_path)
    if meta.get("derived_from"):  # itself derived: its sources' records
        return {"derived_from": meta["derived_from"]}
    side = meta.get("provenance") or {}
    if side:
        return {"git_commits": [side.get("git_commit")], "git_dirty": bool(side.get("git_dirty")),
                "created": [side.get("created")]}
    rows = read_rows(csv_path) if Path(csv_path).is_file() else []
    if not rows or "git_commit" not in rows[0]:
        return {}
    created = sorted(r.get("created") or "" for r in rows)
    return {"git_commits": sorted({r.get("git_commit") or "" for r in rows}),
            "git_dirty": any(str(r.get("git_dirty")) in ("True", "true", "1") for r in rows),
            "created": [created[0], created[-1]]}


def write_derived(path: str | Path, rows: Iterable[dict], fieldnames: list[str], sources: Sequence[str | Path]) -> None:
    """Write a results file computed from other results files (a summary, a fit, a table of
    drift), atomically, with a sidecar naming each source and the provenance it records
    (:func:`source_provenance`): a derived file carries no provenance columns of its own."""
    write_csv(path, rows, fieldnames)
    mark_derived(path, sources)


def mark_derived(path: str | Path, sources: Sequence[str | Path]) -> Path:
    """The sidecar of a derived results file (written by :func:`write_derived`, or beside a file
    appended row by row): each source's name and the provenance it records."""
    return write_sidecar(path, {"derived_from": {Path(s).name: source_provenance(s) for s in sources}})


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically (temp file + rename): a reader sees the old file or the new one.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.txt"; write_text(p, "hi"); p.read_text()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_sidecar(csv_path: str | Path, meta: dict) -> Path:
    """Write the provenance record of the CSV at ``csv_path`` atomically; returns its path."""
    p = sidecar_path(csv_path)
    write_text(p, json.dumps(meta, indent=1) + "\n")
    return p


def write_csv(path: str | Path, rows: Iterable[dict], fieldnames: list[str]) -> None:
    """Write a whole results file at once, atomically (a temp file renamed into place), so a
    reader never sees half of it; columns not in ``fieldnames`` are left out.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.csv"
    >>> write_csv(p, [{"a": 1, "b": 2, "extra": 3}], ["a", "b"])
    >>> p.read_text().splitlines()
    ['a,b', '1,2']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def drop_torn_tail(path: str | Path) -> None:
    """Cut an unfinished last line (a kill mid-write) so appends start on a fresh line.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.csv"; _ = p.write_text("a\\n1\\n2"); drop_torn_tail(p); p.read_text()
    'a\\n1\\n'
    """
    path = Path(path)
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def append_rows(path: str | Path, rows: Iterable[dict], fieldnames: list[str]) -> None:
    """Append ``rows`` to a resumable results file (header first when the file is new or empty).

    Safe for several processes appending side by side (``--jobs``): the header decision, the cut of
    an unfinished last line (a kill mid-write) and the write happen under one exclusive lock, with
    the file's size read under it, so the file gets one header and whole lines.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.csv"
    >>> append_rows(p, [{"a": 1}], ["a"]); append_rows(p, [{"a": 2}], ["a"]); p.read_text().splitlines()
    ['a', '1', '2']
    """
    import fcntl
    import io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fieldnames, extrasaction="ignore")
    w.writerows(rows)
    body = buf.getvalue()
    with path.open("a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            size = os.fstat(f.fileno()).st_size
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a torn last line: cut it so this append starts on a fresh line
                    f.seek(0)
                    f.truncate(f.read().rfind(b"\n") + 1)
                    size = os.fstat(f.fileno()).st_size
            head = io.StringIO(newline="")
            if size == 0:
                csv.DictWriter(head, fieldnames=fieldnames).writeheader()
            f.write((head.getvalue() + body).encode())
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_rows(path: str | Path, types: dict | None = None) -> list[dict]:
    """Rows of a results CSV as dicts of strings (``types`` converts named columns); an unfinished last line
    (no newline: a kill mid-write) and rows that do not convert are skipped; a missing file gives [].

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.csv"; _ = p.write_text("a,b\\n1,x\\n2")
    >>> read_rows(p, {"a": int})
    [{'a': 1, 'b': 'x'}]
    """
    path = Path(path)
    if not path.is_file():
        return []
    import io

    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # an unfinished last line (a kill mid-write)
    out = []
    with io.StringIO(text, newline="") as f:
        for r in csv.DictReader(f):
            if None in r.values() or None in r:  # a short (torn) line
                continue
            try:
                out.append({**r, **{k: fn(r[k]) for k, fn in (types or {}).items()}})
            except (TypeError, ValueError, KeyError):
                continue
    return out


def run_paired_seeds(path: str | Path, rows: list[dict], arms: Sequence[str], arm_field: str, seeds: int,
                     run: Callable[[str, int, Path], dict], fieldnames: list[str], *, prefix: str = "lab-") -> list[dict]:
    """The resumable loop of a paired real-run driver: for seed 0..seeds-1 and each arm, run
    ``run(arm, seed, work_dir)`` unless ``rows`` already hold (arm, seed), appending each new row
    to ``path`` as it finishes (so an interrupted sweep loses at most the run in progress).
    Returns ``rows`` with the new rows added.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.csv"
    >>> rows = run_paired_seeds(p, [{"arm": "a", "seed": "0"}], ["a", "b"], "arm", 1,
    ...                         lambda arm, seed, work: {"arm": arm, "seed": seed}, ["arm", "seed"])
    >>> [(r["arm"], int(r["seed"])) for r in rows], p.read_text().splitlines()
    ([('a', 0), ('b', 0)], ['arm,seed', 'b,0'])
    """
    import tempfile

    done = {(str(r[arm_field]), int(r["seed"])) for r in rows}
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        for seed in range(seeds):
            for arm in arms:
                if (arm, seed) not in done:
                    row = run(arm, seed, Path(work))
                    append_rows(path, [row], fieldnames)
                    rows.append(row)
    return rows


UNCOMPARED = re.compile(r"(^|_|/)(elapsed|time|seconds|created|wall|perf)(_|/|$)|_s$|_s_ci95$|per_s$|^git_|^prov_"
                        r"|^(lab_version|python|torch|transformers|cpu|device|platform|torch_threads)$")
"""Columns two makings of one results file may differ in without their numbers differing: timings (wall clock,
seconds, tokens per second) and provenance (commit, versions, machine, creation time)."""


def made_by(csv_path: str | Path) -> list[str]:
    """The commits that made a results file's rows: its ``git_commit`` column (in the order they
    first appear), else its sidecar's; [] when it records none (a derived file: see its sources).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "r.csv"; _ = p.write_text("a,git_commit\\n1,abc\\n2,def\\n3,abc\\n")
    >>> made_by(p)
    ['abc', 'def']
    """
    rows = read_rows(csv_path)
    if rows and "git_commit" in rows[0]:
        return list(dict.fromkeys(r["git_commit"] for r in rows if r.get("git_commit")))
    commit = (read_sidecar(csv_path).get("provenance") or {}).get("git_commit")
    return [commit] if commit else []


def _cell(v) -> str:
    try:
        return repr(float(v))  # "0.50" and "0.5" are one number; exact, no tolerance
    except (TypeError, ValueError):
        return "" if v is None else str(v)


def row_agreement(old: Sequence[dict], new: Sequence[dict]) -> tuple[int, list[str]]:
    """How many of ``old``'s rows ``new`` has too, exactly, on the columns both sides have but
    :data:`UNCOMPARED` (timings, provenance); and those columns. Rows match as a multiset, so
    order and rows only ``new`` has (a label added since) do not matter; a row without one of
    the columns (a metrics line with no eval) compares it as empty.

    >>> old = [{"seed": "0", "mse": "0.5", "elapsed_s": "3.1"}, {"seed": "1", "mse": "0.25", "elapsed_s": "2"}]
    >>> new = [{"seed": "1", "mse": "0.25", "elapsed_s": "9", "extra": "x"}, {"seed": "0", "mse": "0.50", "elapsed_s": "1"}]
    >>> row_agreement(old, new)
    (2, ['seed', 'mse'])
    >>> row_agreement(old, [{"seed": "0", "mse": "0.5000001"}, {"seed": "1", "mse": "0.25"}])[0]
    1
    """
    if not old or not new:
        return 0, []
    new_cols = {c for r in new for c in r}  # rows of a metrics log differ in their keys: the union of each side's
    cols = [c for c in dict.fromkeys(c for r in old for c in r) if c in new_cols and not UNCOMPARED.search(c)]
    have = collections.Counter(tuple(_cell(r.get(c)) for c in cols) for r in new)
    same = 0
    for r in old:
        key = tuple(_cell(r.get(c)) for c in cols)
        if have[key] > 0:
            have[key] -= 1
            same += 1
    return same, cols
