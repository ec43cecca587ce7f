"""`make results-current`: whether the committed results are the numbers today's code computes.

The comparison (``lab.analysis.results.row_agreement``) is exact on every column but timings and
provenance; these tests prove it ignores exactly those (swept over every checked file's columns),
catches a one-ulp change, and that the script, run for real on one bandit file, finds the committed
``value_mse.csv`` reproduced by HEAD's code.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import provenance
from lab.analysis import claims, results

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "results_current.py"


def _script():
    spec = importlib.util.spec_from_file_location("results_current", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TIMINGS = {"elapsed_s", "seconds", "seconds_to_target", "seconds_to_target_ci95"}


def test_only_timings_and_provenance_go_uncompared_in_every_checked_file():
    for name in _script().SMOKE:
        with open(results.RESULTS_DIR / name, newline="") as f:
            header = next(csv.reader(f))
        skipped = {c for c in header if results.UNCOMPARED.search(c)}
        assert skipped <= set(provenance.FIELDS) | TIMINGS, (name, skipped - set(provenance.FIELDS) - TIMINGS)
        assert len(header) - len(skipped) >= 4, name  # the numbers themselves are compared


def test_every_results_file_is_checked_or_derived_from_checked_files_or_says_why_not():
    mod = _script()

    def checked(name: str, seen=()) -> bool:
        if name in mod.SMOKE:
            return True
        sources = results.read_sidecar(results.RESULTS_DIR / name).get("derived_from") or {}
        return bool(sources) and name not in seen and all(checked(s, (*seen, name)) for s in sources)

    for f in sorted(results.RESULTS_DIR.glob("*.csv")):
        assert f.name in mod.NOT_CHECKED or checked(f.name), \
            f"{f.name}: add it to SMOKE in scripts/results_current.py (or to NOT_CHECKED, saying why)"


def test_row_agreement_is_exact_order_free_and_counts_duplicates():
    old = [{"seed": "0", "v": "0.1", "created": "t0"}, {"seed": "0", "v": "0.1", "created": "t0"},
           {"seed": "1", "v": "0.3", "created": "t0"}]
    new = [{"seed": "1", "v": "0.30", "created": "t9"}, {"seed": "0", "v": "0.1", "created": "t9"}]
    assert results.row_agreement(old, new) == (2, ["seed", "v"])  # one of the two duplicates is missing
    bumped = [{**r, "v": repr(math.nextafter(float(r["v"]), 1.0))} if r["seed"] == "1" else r for r in old]
    assert results.row_agreement(old, bumped)[0] == 2
    assert results.row_agreement(old, []) == (0, [])


def test_row_agreement_compares_keys_that_only_some_metric_lines_have():
    old = [{"step": 0, "reward/mean": 0.5, "time/elapsed_s": 1.0}, {"step": 1, "eval/accuracy": 0.25}]
    same = [{"step": 1, "eval/accuracy": 0.25}, {"step": 0, "reward/mean": 0.5, "time/elapsed_s": 7.0}]
    moved = [{"step": 0, "reward/mean": 0.5}, {"step": 1, "eval/accuracy": 0.5}]
    assert results.row_agreement(old, same)[0] == 2
    assert results.row_agreement(old, moved)[0] == 1


def test_made_by_reads_the_row_commits_else_the_sidecar(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("seed,git_commit\n0,aaa\n1,bbb\n2,aaa\n")
    assert results.made_by(rows) == ["aaa", "bbb"]
    side = tmp_path / "side.csv"
    side.write_text("seed,value\n0,1\n")
    results.write_sidecar(side, {"provenance": {"git_commit": "ccc"}})
    assert results.made_by(side) == ["ccc"]
    bare = tmp_path / "bare.csv"
    bare.write_text("seed\n0\n")
    assert results.made_by(bare) == []


def test_time_to_accuracy_checks_run_each_commit_on_the_labels_it_made(tmp_path):
    f = tmp_path / "time_to_accuracy.csv"
    f.write_text("label,seed,git_commit\ngrpo_g8,0,aaa\nkae_g2,0,aaa\ngrpo_g8,1,bbb\n")
    (tmp_path / "value_mse.csv").write_text("seed,value_mse\n0,0.1\n")
    results.write_sidecar(tmp_path / "value_mse.csv", {"provenance": {"git_commit": "ccc"}})
    plan = _script().plan(["time_to_accuracy.csv", "value_mse.csv"], root=tmp_path)
    assert plan == [("time_to_accuracy.csv", "aaa", ["--labels", "grpo_g8", "kae_g2"]),
                    ("time_to_accuracy.csv", "bbb", ["--labels", "grpo_g8"]), ("value_mse.csv", "ccc", [])]


def test_claims_sources_say_when_a_recheck_found_rows_that_a_remake_would_change(tmp_path):
    results.write_csv(tmp_path / "results_current.csv",
                      [{"file": "basis_real.csv", "made_at": "aaa", "checked_against": "zzz", "outcome": "same"},
                       {"file": "basis_real.csv", "made_at": "bbb", "checked_against": "zzz", "outcome": "differs"}],
                      ["file", "made_at", "checked_against", "outcome"])
    text = claims.recheck_text("basis_real", tmp_path)
    assert text.startswith("**checked: bbb differs from zzz**") and "would change its rows" in text
    assert claims.recheck_text("value_mse", tmp_path) == ""  # never checked: nothing said


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_committed_bandit_results_are_what_heads_code_computes(tmp_path):
    commit = results.made_by(results.RESULTS_DIR / "value_mse.csv")
    have = subprocess.run(["git", "cat-file", "-e", f"{commit[0]}^{{commit}}"], cwd=REPO, capture_output=True)
    if have.returncode != 0:
        pytest.skip(f"this clone lacks commit {commit[0][:10]} (a shallow clone)")
    out = tmp_path / "rc.csv"
    p = subprocess.run([sys.executable, str(SCRIPT), "--files", "value_mse.csv", "--no-samples", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    rows = results.read_rows(out)
    assert p.returncode == 0, p.stdout + p.stderr
    assert [(r["file"], r["outcome"]) for r in rows] == [("value_mse.csv", "same")]
    assert int(rows[0]["equal_rows"]) == int(rows[0]["rows"]) > 100
