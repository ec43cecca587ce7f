"""Every reader of a run directory returns whatever stands in place of one of the format's files,
and names that file: a sweep over (file of the format) x (kind of bad file).

Kinds: a FIFO nobody writes (a reader that opens it blocks forever), a Unix socket, a symlink
to /dev/zero (a reader that reads it never ends), a directory, a dangling symlink, a 20 GiB
sparse file without a newline, an empty file and a file cut in half. Each reader runs in a
thread under a generous time limit (a hang guard, not a speed test), so a regression fails
here, naming the reader and the case, instead of hanging the suite.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_socket, write_good_run
from lab import cli, runs
from lab.errors import LabError
from lab.runs import files

GUARD_S = 60.0
"""Seconds a reader may take before the sweep calls it hung (it takes well under one)."""

FILES = ("config.json", "status.json", "metrics.jsonl", "provenance.json", "checkpoints/latest.json",
         "samples/step_000001.parquet", "probes/step_000000.parquet", "reference.parquet", "writer.lock")


def _fifo(p: Path, good: bytes) -> None:
    os.mkfifo(p)


def _socket(p: Path, good: bytes) -> None:
    make_socket(p)


def _dev_zero(p: Path, good: bytes) -> None:
    p.symlink_to("/dev/zero")


def _directory(p: Path, good: bytes) -> None:
    p.mkdir()


def _dangling(p: Path, good: bytes) -> None:
    p.symlink_to(p.parent / "no-such-file")


def _huge_sparse(p: Path, good: bytes) -> None:
    with open(p, "wb"):
        pass
    os.truncate(p, 20 << 30)  # 20 GiB of zeros, no newline, no disk used


def _empty(p: Path, good: bytes) -> None:
    p.write_bytes(b"")


def _cut_in_half(p: Path, good: bytes) -> None:
    p.write_bytes(good[: len(good) // 2])


KINDS = {"fifo": _fifo, "socket": _socket, "symlink-to-dev-zero": _dev_zero, "directory": _directory,
         "dangling-symlink": _dangling, "sparse-20GiB": _huge_sparse, "empty": _empty, "cut-in-half": _cut_in_half}
NOT_REGULAR = ("fifo", "socket", "symlink-to-dev-zero", "directory", "dangling-symlink")
CASES = [(f, k) for f, k in itertools.product(FILES, KINDS) if not (f == "writer.lock" and k not in NOT_REGULAR)]
"""Every pair but a regular writer.lock of odd content (its content is never read: only its flock counts)."""
CHEAP = ("config.json", "status.json", "metrics.jsonl", "checkpoints/latest.json")
"""Files the cheap listing reads (and so names whatever stands in their place)."""


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A healthy finished run holding every file of the format (3 steps, reference, a checkpoint)."""
    d = write_good_run(tmp_path_factory.mktemp("template") / "root" / "run")
    w = runs.RunWriter(d)
    w.write_provenance({"lab_version": "test"})
    w.write_reference(pd.DataFrame({"prompt_id": [7, 7], "split": ["train", "probe"], "sample": [0, 1],
                                    "prompt": ["1+1=", "1+1="], "completion": ["2", "3"], "reward": [1.0, 0.0]}))
    tmp = runs.checkpoint_tmp_dir(d, 2)
    tmp.mkdir(parents=True)
    (tmp / "model.safetensors").write_bytes(b"weights")
    w.commit_checkpoint(2, tmp)
    assert runs.check_run(d) == [] and runs.load_run(d).problems == []
    return d.parent


def _readers(root: Path, run: Path) -> dict:
    return {
        "list_runs": lambda: runs.list_runs(root),
        "list_runs(full=True)": lambda: runs.list_runs(root, full=True),
        "load_run": lambda: runs.load_run(run),
        "check_run": lambda: runs.check_run(run),
        "read_status": lambda: runs.read_status(run),
        "read_config": lambda: runs.read_config(run),
        "read_metrics": lambda: runs.read_metrics(run),
        "read_samples": lambda: runs.read_samples(run),
        "read_probes": lambda: runs.read_probes(run),
        "read_reference": lambda: runs.read_reference(run),
        "last_logged_step": lambda: runs.last_logged_step(run),
        "checkpoint_candidates": lambda: runs.checkpoint_candidates(run),
        "lock_held": lambda: runs.lock_held(run),
        "lab runs list": lambda: cli.main(["runs", "list", str(root)]),
        "lab runs show": lambda: cli.main(["runs", "show", str(run)]),
    }


def _call_guarded(name: str, fn, unblock) -> object:
    """``fn()`` in a thread; fails the test if it has not returned after GUARD_S (then ``unblock()``
    frees the thread), or if it raised anything but a LabError (a one-line error for the user)."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - judged below
            out["error"] = e

    t = threading.Thread(target=target, name=f"reader:{name}", daemon=True)
    t.start()
    t.join(GUARD_S)
    if t.is_alive():
        unblock()
        pytest.fail(f"{name} did not return within {GUARD_S:.0f} s: it blocks or reads without limit")
    err = out.get("error")
    if err is not None and not isinstance(err, LabError):
        raise AssertionError(f"{name} raised {type(err).__name__}: {err}") from err
    return out.get("value", err)


def _unblocker(p: Path):
    def unblock():
        try:  # a reader stuck opening a FIFO gets its EOF
            os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    return unblock


@pytest.mark.parametrize(("name", "kind"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_every_reader_returns_and_the_full_check_names_the_file(name, kind, template, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "METRICS_MAX_BYTES", 8 << 20)  # the full read's cap, small so the sweep stays fast
    root = tmp_path / "root"
    shutil.copytree(template, root)
    run = root / "run"
    target = run / name
    good = target.read_bytes()
    target.unlink()
    KINDS[kind](target, good)

    results = {n: _call_guarded(n, fn, _unblocker(target)) for n, fn in _readers(root, run).items()}
    capsys.readouterr()

    must_name = name != "writer.lock" or kind in NOT_REGULAR
    full = results["list_runs(full=True)"]
    assert list(full["name"]) == ["run"]
    problem = full["problem"].iloc[0] or ""
    if must_name:
        assert name + ":" in problem, (name, kind, problem)
        assert any(p.startswith(name + ":") for p in results["check_run"]), results["check_run"]
        loaded = results["load_run"]
        assert isinstance(loaded, runs.Run) and any(p.startswith(name + ":") for p in loaded.problems), loaded
    if name in CHEAP and (kind in NOT_REGULAR or name != "metrics.jsonl" or kind in ("empty", "cut-in-half")):
        cheap = results["list_runs"]["problem"].iloc[0] or ""
        assert name + ":" in cheap, (name, kind, cheap)
    if name == "reference.parquet":
        assert isinstance(results["read_reference"], runs.RunReadError)
        assert "reference.parquet" in str(results["read_reference"])
    # the rest of the run still reads
    if name != "metrics.jsonl":
        assert results["last_logged_step"] == 2
    if name not in ("config.json", "status.json", "metrics.jsonl"):
        assert full["status"].iloc[0] == "finished" and full["step"].iloc[0] == 2


def test_a_20_gib_metrics_file_without_a_newline_is_listed_from_a_bounded_tail(template, tmp_path, monkeypatch):
    root = tmp_path / "root"
    shutil.copytree(template, root)
    f = root / "run" / "metrics.jsonl"
    _huge_sparse(f, b"")
    reads: list[int] = []
    real_open = files.open_regular

    class Counting:  # the huge file, counting the bytes read from it
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            b = self.fh.read(n)
            reads.append(len(b))
            return b

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def counting_open(path, label):
        fh, prob = real_open(path, label)
        return (Counting(fh) if fh is not None and Path(path) == f else fh), prob

    monkeypatch.setattr(files, "open_regular", counting_open)
    row = runs.list_runs(root).iloc[0]
    assert row["problem"].startswith("metrics.jsonl: no readable row") and row["step"] == 2
    assert 0 < sum(reads) <= files.TAIL_MAX_BYTES
    scan = files.scan_jsonl(f, max_bytes=4 << 20)  # the full read stops at its cap and says so
    assert scan.records == [] and "20.0 GiB, more than the 4.0 MiB" in scan.problems[0]
