"""All of the dashboard's loading, in one place: ``lab.runs`` readers under ``st.cache_data``.

Cache keys include each file's modification time and size, so a running run's new metrics
rows (and new sample/probe files) appear on the next rerun while unchanged runs are served
from the cache. Nothing here writes to a run directory.

Runs are addressed by a *key* ``"<root label>/<run name>"`` (the root label is the root
folder's own name, made unique), which is what the URL query holds (``?run=...``). Every
key read from the URL or a widget goes through :func:`resolve_key`, i.e.
``lab.runs.resolve_run``, which refuses ``..``, absolute paths and symlinks out of the root.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pandas as pd
import streamlit as st

from lab import runs as labruns
from lab.figures import natural_key

REPO = Path(__file__).resolve().parent.parent
ROOTS_ENV = "LAB_APP_ROOTS"
"""JSON list of run roots, set by ``lab app`` for the Streamlit process."""


# --- roots and run keys ---------------------------------------------------------------------
def roots_from_env(environ: dict | None = None) -> list[str]:
    """Run roots: ``LAB_APP_ROOTS`` (JSON list, set by ``lab app``), else ``LAB_RUNS_DIR``
    (``:``-separated), else ``runs``."""
    env = os.environ if environ is None else environ
    if env.get(ROOTS_ENV):
        roots = json.loads(env[ROOTS_ENV])
        if isinstance(roots, list) and roots and all(isinstance(r, str) for r in roots):
            return roots
    if env.get("LAB_RUNS_DIR"):
        return [r for r in env["LAB_RUNS_DIR"].split(":") if r]
    return ["runs"]


def root_labels(roots: list[str]) -> dict[str, str]:
    """label -> root: each root by its folder name, suffixed ``-2``, ``-3`` when names repeat.

    >>> root_labels(["runs/demo", "data/sample_runs", "other/demo"])
    {'demo': 'runs/demo', 'sample_runs': 'data/sample_runs', 'demo-2': 'other/demo'}
    """
    out: dict[str, str] = {}
    for r in roots:
        base = Path(r).resolve().name or "root"
        label, i = base, 2
        while label in out:
            label, i = f"{base}-{i}", i + 1
        out[label] = r
    return out


def resolve_key(key: str, roots: list[str]) -> Path:
    """The run directory of ``"<root label>/<name>"``; ``lab.runs.RunPathError`` if it escapes
    its root or names no known root."""
    labels = root_labels(roots)
    label, _, name = str(key).partition("/")
    if label not in labels:
        raise labruns.RunPathError(f"run {key!r}: unknown root {label!r}; roots are {', '.join(labels)}")
    return labruns.resolve_run(labels[label], name)


# --- cached readers ---------------------------------------------------------------------------
def _stamp(*files: Path) -> tuple:
    out = []
    for f in files:
        try:
            s = f.stat()
            out.append((s.st_mtime_ns, s.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


@st.cache_data(ttl=3, show_spinner=False)
def runs_table(roots: tuple[str, ...]) -> pd.DataFrame:
    """``lab.runs.list_runs`` over the roots plus a ``key`` column (refreshed every 3 s).

    Rows in the order of the roots as given (``--runs``), then of the run names in natural
    order (``s2`` before ``s10``)."""
    df = labruns.list_runs(list(roots))
    by_root = {v: k for k, v in root_labels(list(roots)).items()}
    df.insert(0, "key", [f"{by_root[r]}/{n}" for r, n in zip(df["root"], df["name"])])
    for i, (r, n) in enumerate(zip(df["root"], df["name"])):  # the same check as names from the URL
        try:
            labruns.resolve_run(r, n)
        except labruns.RunPathError as e:
            df.loc[df.index[i], ["path", "problem"]] = [None, str(e)]
    order = {str(r): i for i, r in enumerate(roots)}
    ranks = sorted(range(len(df)), key=lambda i: (order.get(str(df["root"].iloc[i]), len(order)),
                                                  natural_key(df["name"].iloc[i])))
    return df.iloc[ranks].reset_index(drop=True)


@st.cache_data(ttl=3, show_spinner=False)
def refused_links(roots: tuple[str, ...]) -> pd.DataFrame:
    """Symlinks under the roots that lead outside their root (or nowhere): never read, but
    named on the Runs page so a person knows why a run is missing. Columns: key, target, reason."""
    rows = []
    for label, root in root_labels(list(roots)).items():
        base = Path(root)
        if not base.is_dir():
            continue
        for here, dirs, files in os.walk(base):
            for d in sorted(dirs + files):
                p = Path(here) / d
                if not p.is_symlink():
                    continue
                name = p.relative_to(base).as_posix()
                try:
                    labruns.resolve_run(root, name)
                    if p.exists():
                        continue
                    reason = "the link leads nowhere (its target is missing)"
                except labruns.RunPathError as e:
                    reason = f"refused: {e}"
                rows.append({"key": f"{label}/{name}", "target": os.readlink(p), "reason": reason})
            dirs[:] = sorted(x for x in dirs if x not in ("checkpoints", "samples", "probes") and not x.startswith(".")
                             and not (Path(here) / x).is_symlink())
    return pd.DataFrame(rows, columns=["key", "target", "reason"])


@st.cache_data(show_spinner=False, max_entries=256)
def _metrics(path: str, stamp: tuple) -> pd.DataFrame:
    return labruns.read_metrics(path)


def metrics(path: str | Path) -> pd.DataFrame:
    """metrics.jsonl of one run (cached until the file changes); empty frame when unreadable."""
    p = Path(path)
    try:
        return _metrics(str(p), _stamp(p / "metrics.jsonl"))
    except (labruns.RunReadError, OSError):
        return pd.DataFrame()


def metrics_long(paths: dict[str, str], metric, x: str = "step") -> pd.DataFrame:
    """Long frame (run, metric, step[, x], value) of one metric (or a list of them) over
    several runs (key -> path)."""
    names = [metric] if isinstance(metric, str) else list(metric)
    frames = []
    for key, path in paths.items():
        m = metrics(path)
        if m.empty or "step" not in m.columns:
            continue
        cols = ["step"] + ([x] if x != "step" and x in m.columns else [])
        for name in names:
            if name not in m.columns:
                continue
            d = m[cols + [name]].rename(columns={name: "value"}).dropna(subset=["value"])
            d.insert(0, "metric", name)
            d.insert(0, "run", key)
            frames.append(d)
    if not frames:
        return pd.DataFrame(columns=["run", "metric", "step", "value"])
    return pd.concat(frames, ignore_index=True)


@st.cache_data(show_spinner=False, max_entries=64)
def _steps(path: str, folder: str, stamp: tuple) -> list[int]:
    return labruns.sample_steps(path) if folder == "samples" else labruns.probe_steps(path)


def sample_steps(path: str | Path) -> list[int]:
    p = Path(path)
    return _steps(str(p), "samples", _stamp(p / "samples"))


def probe_steps(path: str | Path) -> list[int]:
    p = Path(path)
    return _steps(str(p), "probes", _stamp(p / "probes"))


@st.cache_data(show_spinner=False, max_entries=128)
def _samples(path: str, steps: tuple[int, ...] | None, stamp: tuple) -> pd.DataFrame:
    return labruns.read_samples(path, list(steps) if steps is not None else None)


def samples(path: str | Path, steps: list[int] | None = None) -> pd.DataFrame:
    """Samples of the given steps (all when None), cached per file state."""
    p = Path(path)
    files = [labruns.step_file(p / "samples", s) for s in (steps if steps is not None else sample_steps(p))]
    return _samples(str(p), tuple(steps) if steps is not None else None, _stamp(p / "samples", *files))


@st.cache_data(show_spinner=False, max_entries=64)
def _probes(path: str, stamp: tuple) -> pd.DataFrame:
    return labruns.read_probes(path)


def probes(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    files = [labruns.step_file(p / "probes", s) for s in probe_steps(p)]
    return _probes(str(p), _stamp(p / "probes", *files))


def stacked(rows: pd.DataFrame, read) -> pd.DataFrame:
    """``read(path)`` (``metrics`` or ``probes``) of each selected run, one frame with a ``run`` column
    holding the run's key; empty when no run has any."""
    frames = [f.assign(run=r.key) for r in rows.itertuples() if not (f := read(r.path)).empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@st.cache_data(show_spinner=False, max_entries=64)
def _problems(path: str, stamp: tuple) -> list[str]:
    try:
        return labruns.load_run(path, samples=True, probes=True).problems
    except labruns.RunReadError as e:
        return [str(e)]


def problems(path: str | Path) -> list[str]:
    """Every file or line of the run that could not be read (``load_run(...).problems``)."""
    p = Path(path)
    return _problems(str(p), _stamp(p / "config.json", p / "status.json", p / "metrics.jsonl",
                                     p / "samples", p / "probes"))


@st.cache_data(show_spinner=False)
def results(name: str = "value_mse.csv") -> pd.DataFrame:
    """A results file of ``data/results/`` through ``lab.results`` (empty when not made yet)."""
    from lab import results as lab_results

    try:
        return lab_results.read(name)
    except FileNotFoundError:
        return pd.DataFrame()


# --- metric documentation -------------------------------------------------------------------
@st.cache_data(show_spinner=False)
def metric_docs(path: str = str(REPO / "docs" / "metrics.md")) -> list[tuple[str, str]]:
    """(name pattern, meaning) rows of docs/metrics.md's table; ``<x>`` is a wildcard."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        m = re.match(r"^\|\s*(`[^|]+`)\s*\|\s*(.+?)\s*\|\s*$", line)
        if not m:
            continue
        for name in re.findall(r"`([^`]+)`", m.group(1)):
            rows.append((name, m.group(2)))
    return rows


def metric_help(metric: str, docs: list[tuple[str, str]]) -> str | None:
    """The meaning of ``metric`` from docs/metrics.md (patterns like ``probe/value_mse/<name>``).

    >>> metric_help("probe/value_mse/kae", [("probe/value_mse/<name>", "value error")])
    'value error'
    """
    for pat, meaning in docs:
        rx = "^" + re.sub(r"<[^>]+>", ".+", re.escape(pat).replace(r"\<", "<").replace(r"\>", ">")) + "$"
        if pat == metric or re.match(rx, metric):
            return meaning
    return None


# --- downloads --------------------------------------------------------------------------------
def to_csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def to_parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    d = df.copy()
    for c in d.columns:  # mixed-type object columns (config dicts) as JSON text
        if d[c].dtype == object and d[c].map(lambda v: isinstance(v, (dict, list, tuple))).any():
            d[c] = d[c].map(lambda v: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v)
    d.to_parquet(buf, index=False)
    return buf.getvalue()


def downloads(df: pd.DataFrame, name: str, key: str) -> None:
    """CSV and Parquet download buttons for the data behind a table or chart (made on click)."""
    c1, c2, _ = st.columns([1, 1, 4])
    c1.download_button("CSV", data=lambda: to_csv(df), file_name=f"{name}.csv", mime="text/csv",
                       key=f"dl_csv_{key}", on_click="ignore", help=f"{name}: {len(df)} rows as CSV")
    c2.download_button("Parquet", data=lambda: to_parquet(df), file_name=f"{name}.parquet",
                       mime="application/octet-stream", key=f"dl_pq_{key}", on_click="ignore",
                       help=f"{name}: {len(df)} rows as Parquet")
