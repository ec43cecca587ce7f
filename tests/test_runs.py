"""The run directory: atomic writes, tolerant readers, liveness (lock + heartbeat), listing."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from lab import runs
from lab.config import TrainConfig

from conftest import METRICS_DAMAGE

ROOT = Path(__file__).resolve().parents[1]


def test_run_directory_round_trips_config_metrics_samples_and_probes(tmp_path):
    w = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo", "seed": 1})
    w.log_metrics({"step": 0, "reward/mean": 0.25})
    w.log_metrics({"step": 1, "reward/mean": 0.5, "adv/max": float("nan")})
    w.log_samples(0, pd.DataFrame({"step": [0, 0], "reward": [1.0, 0.0], "completion": ["12", "13"]}))
    w.log_probes(0, pd.DataFrame({"step": [0], "estimator": ["grpo"], "sq_err": [0.1], "truth_se": [0.01], "truth": [0.5]}))
    w.set_status("finished", step=1)
    w.close()
    run = runs.load_run(tmp_path / "r")
    assert run.config == {"estimator": "grpo", "seed": 1}  # the format version is not a config field
    assert run.format_version == runs.FORMAT_VERSION
    assert json.loads((tmp_path / "r" / "config.json").read_text())["format_version"] == runs.FORMAT_VERSION
    assert run.status["format_version"] == runs.FORMAT_VERSION
    assert run.metrics["reward/mean"].tolist() == [0.25, 0.5]
    assert pd.isna(run.metrics["adv/max"].iloc[1])  # NaN is stored as JSON null, read back as missing
    assert run.samples["completion"].tolist() == ["12", "13"]
    assert run.probes["estimator"].tolist() == ["grpo"]
    assert run.status["status"] == "finished" and run.problems == []
    # readable without lab: plain pandas on the files
    assert pd.read_json(tmp_path / "r" / "metrics.jsonl", lines=True)["step"].tolist() == [0, 1]
    assert len(pd.read_parquet(tmp_path / "r" / "samples")) == 2


def test_create_refuses_to_overwrite_an_existing_run(tmp_path):
    runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"}).close()
    with pytest.raises(FileExistsError, match="already holds a run"):
        runs.RunWriter.create(tmp_path / "r", {"estimator": "rloo"})


def test_torn_last_metrics_line_is_skipped_and_a_bad_middle_line_is_skipped_and_named(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    f = d / "metrics.jsonl"
    f.write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "rew')
    assert [r["step"] for r in runs.read_jsonl(f)] == [0, 1]
    assert runs.read_metrics(d)["step"].tolist() == [0, 1]
    assert not [p for p in runs.load_run(d).problems if p.startswith("metrics")]  # a torn last line is no problem
    f.write_bytes(b'{"step": 0}\nnot json\n{"step": 2}\n{"step": 3, "x": "\xff"}\n{"step": 4}\n')
    with pytest.raises(ValueError, match="line 2"):
        runs.read_jsonl(f)  # the strict reader the writer uses
    assert runs.read_metrics(d)["step"].tolist() == [0, 2, 4]
    assert runs.read_metrics(d, since_step=2)["step"].tolist() == [4]
    problems = runs.load_run(d).problems
    assert "metrics.jsonl: line 2 is not valid JSON" in problems
    assert "metrics.jsonl: line 4 is not valid UTF-8" in problems
    f.write_text("garbage\nmore garbage\n")
    with pytest.raises(runs.RunReadError, match="metrics.jsonl"):
        runs.read_metrics(d)


def test_truncate_after_drops_later_steps_for_resume(tmp_path):
    w = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"})
    for s in range(5):
        w.log_metrics({"step": s})
        w.log_samples(s, pd.DataFrame({"step": [s]}))
    w.truncate_after(2)
    run = runs.load_run(tmp_path / "r")
    assert run.metrics["step"].tolist() == [0, 1, 2]
    assert sorted(run.samples["step"].tolist()) == [0, 1, 2]
    assert runs.sample_steps(tmp_path / "r") == [0, 1, 2]
    assert runs.read_samples(tmp_path / "r", steps=[1, 4])["step"].tolist() == [1]


def test_atomic_write_leaves_no_temp_files_and_replaces_whole(tmp_path):
    p = tmp_path / "x.json"
    runs.atomic_write_json(p, {"a": 1})
    runs.atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]


# --- liveness -----------------------------------------------------------------------------------
_WRITER = """
import sys, time
from lab import runs
w = runs.RunWriter.create(sys.argv[1], {"estimator": "grpo"})
w.start_heartbeat(0.05)
print("ready", flush=True)
time.sleep(600)
"""


def _spawn_writer(path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_killed_writer_process_reads_as_interrupted_and_its_run_can_be_reopened(tmp_path):
    proc = _spawn_writer(tmp_path / "r")
    try:
        assert runs.read_status(tmp_path / "r")["status"] == "running"
        with pytest.raises(runs.RunLockedError, match=f"pid {proc.pid}"):
            runs.RunWriter.reopen(tmp_path / "r", from_step=-1)  # a second writer on a live run
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    st = runs.read_status(tmp_path / "r")
    assert st["status"] == "interrupted" and "gone" in st["error"]
    runs.RunWriter.reopen(tmp_path / "r", from_step=-1).close()


def test_a_writer_thread_in_this_process_reads_as_running_until_it_closes(tmp_path):
    started, release = threading.Event(), threading.Event()
    box = {}

    def work():
        box["w"] = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"})
        started.set()
        release.wait(30)
        box["w"].close()

    t = threading.Thread(target=work)
    t.start()
    started.wait(30)
    assert runs.read_status(tmp_path / "r")["status"] == "running"  # lock held by a live thread of this process
    with pytest.raises(runs.RunLockedError):
        runs.RunWriter.reopen(tmp_path / "r", from_step=-1)
    release.set()
    t.join()
    assert runs.read_status(tmp_path / "r")["status"] == "interrupted"  # closed without finishing


def test_a_running_run_from_another_host_is_alive_only_while_its_heartbeat_is_fresh(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    st = {"status": "running", "step": 3, "error": None, "pid": 1, "host": "elsewhere.example", "updated": time.time()}
    (d / "status.json").write_text(json.dumps(st))
    assert runs.read_status(d)["status"] == "running"
    with pytest.raises(runs.RunLockedError, match="elsewhere.example"):
        runs.RunWriter.reopen(d, from_step=-1)
    (d / "status.json").write_text(json.dumps({**st, "updated": time.time() - runs.STALE_AFTER_S - 5}))
    out = runs.read_status(d)
    assert out["status"] == "interrupted" and out["step"] == 3


def test_a_run_written_before_locks_falls_back_to_its_pid(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    st = {"status": "running", "step": 0, "pid": dead.pid, "host": socket.gethostname(), "updated": time.time()}
    (d / "status.json").write_text(json.dumps(st))
    assert runs.read_status(d)["status"] == "interrupted"
    (d / "status.json").write_text(json.dumps({**st, "pid": os.getpid()}))
    assert runs.read_status(d)["status"] == "running"


def test_the_heartbeat_refreshes_updated_while_running_and_stops_at_close(tmp_path):
    w = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"})
    first = runs.read_status(tmp_path / "r")["updated"]
    w.start_heartbeat(0.02)
    deadline = time.time() + 10
    while runs.read_status(tmp_path / "r")["updated"] == first and time.time() < deadline:
        time.sleep(0.02)
    assert runs.read_status(tmp_path / "r")["updated"] > first
    w.set_status("finished", step=0)
    done = runs.read_status(tmp_path / "r")["updated"]
    time.sleep(0.1)
    assert runs.read_status(tmp_path / "r")["updated"] == done  # no heartbeat once not running
    w.close()


# --- listing and loading damaged roots ---------------------------------------------------------
def test_list_runs_shows_every_good_run_and_each_broken_one_with_its_problem(corrupted_runs_root, corrupted_runs_expected):
    df = runs.list_runs(corrupted_runs_root)
    names = df["name"].tolist()
    assert names == sorted(corrupted_runs_expected["good"] + list(corrupted_runs_expected["broken"]))  # empty/ is no run
    by = df.set_index("name")
    for n in corrupted_runs_expected["good"]:
        assert by.loc[n, "problem"] is None and by.loc[n, "status"] == "finished" and by.loc[n, "step"] == 2
    for n, (file, _) in corrupted_runs_expected["broken"].items():
        if file is None:
            assert by.loc[n, "problem"] is None, n
        else:
            assert by.loc[n, "problem"].startswith(file + ":"), (n, by.loc[n, "problem"])
    assert "not valid UTF-8" in by.loc["broken/config-not-utf8", "problem"]
    assert by.loc["broken/status-torn", "status"] == "interrupted" and by.loc["broken/status-torn", "step"] == 2
    g = by.loc["good/grpo-s0"]
    assert (g["eval_accuracy"], g["reward_mean"], g["accuracy"], g["elapsed_s"]) == pytest.approx((0.3, 0.5, 0.4, 4.5))
    assert g["estimator"] == "grpo" and g["steps"] == 3 and g["root"] == str(corrupted_runs_root)
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert list(df.columns) == runs.SUMMARY_COLUMNS + fields


def test_list_runs_eval_accuracy_is_the_last_logged_one_even_far_back(tmp_path):
    w = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"})
    w.log_metrics({"step": 0, "eval/accuracy": 0.75})
    for s in range(1, 400):
        w.log_metrics({"step": s, "reward/mean": 0.5, "pad": "x" * 400})  # ~170 kB after the eval line
    w.close()
    row = runs.list_runs(tmp_path).iloc[0]
    assert row["eval_accuracy"] == 0.75 and row["reward_mean"] == 0.5


def test_list_runs_reads_no_parquet_and_skips_model_folders_and_checkpoints(corrupted_runs_root, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("list_runs must not read Parquet files")

    monkeypatch.setattr(pd, "read_parquet", boom)
    (corrupted_runs_root / "a-model").mkdir()
    (corrupted_runs_root / "a-model" / "config.json").write_text('{"model_type": "gpt2"}')
    df = runs.list_runs(corrupted_runs_root)
    assert "a-model" not in df["name"].tolist()
    assert not any("checkpoints" in n for n in df["name"])


def test_list_runs_takes_several_roots_and_a_missing_root_gives_no_rows(tmp_path):
    from conftest import write_good_run

    write_good_run(tmp_path / "a" / "x")
    write_good_run(tmp_path / "b" / "y")
    df = runs.list_runs([tmp_path / "b", tmp_path / "a", tmp_path / "missing"])
    assert list(zip(df["root"], df["name"])) == [(str(tmp_path / "a"), "x"), (str(tmp_path / "b"), "y")]
    empty = runs.list_runs(tmp_path / "missing")
    assert empty.empty and "problem" in empty.columns


def test_load_run_loads_what_is_readable_and_names_each_broken_file(corrupted_runs_root, corrupted_runs_expected):
    for n, (_, named) in corrupted_runs_expected["broken"].items():
        run = runs.load_run(corrupted_runs_root / n)
        if named is None:
            assert run.problems == [], n
        else:
            assert any(p.startswith(named) for p in run.problems), (n, run.problems)
        if n not in METRICS_DAMAGE:
            assert len(run.metrics) >= 2, n  # the rest of the run still loads
    trunc = runs.load_run(corrupted_runs_root / "broken/samples-truncated")
    assert sorted(trunc.samples["step"].unique()) == [0, 2]  # steps 0 and 2 load, step 1 is named
    assert trunc.config["estimator"] == "grpo"
    with pytest.raises(runs.NotARunError, match="not a run directory"):
        runs.load_run(corrupted_runs_root / "empty")
    nothing = corrupted_runs_root / "nothing"
    nothing.mkdir()
    (nothing / "config.json").write_bytes(b"\xff")
    (nothing / "status.json").write_text("{")
    with pytest.raises(runs.RunReadError, match="config.json: not valid UTF-8.*status.json"):
        runs.load_run(nothing)


def test_load_run_names_a_path_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        runs.load_run(tmp_path)


def test_old_format_run_loads(old_format_run):
    run = runs.load_run(old_format_run)
    assert run.format_version == 0 and run.problems == []
    assert run.config["estimator"] == "kae" and run.config["clip_delta"] == 0.2
    assert run.metrics["step"].tolist() == [0, 1, 2] and run.status["status"] == "finished"
    assert runs.list_runs(old_format_run.parent).iloc[0]["problem"] is None


def test_resolve_run_refuses_names_that_escape_the_root(tmp_path):
    root = tmp_path / "runs"
    (root / "demo" / "grpo").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    assert runs.resolve_run(root, "demo/grpo") == root / "demo" / "grpo"
    for bad, why in [("../outside", "'..'"), ("demo/../../x", "'..'"), (str(tmp_path / "outside"), "absolute"),
                     ("link", "outside"), ("", "non-empty"), ("a\x00b", "non-empty")]:
        with pytest.raises(runs.RunPathError, match=why):
            runs.resolve_run(root, bad)
    assert issubclass(runs.RunPathError, ValueError)


def test_checkpoint_candidates_fall_back_past_a_torn_latest_json(tmp_path):
    ck = tmp_path / "checkpoints"
    for s in (3, 5):
        (ck / f"step_{s:06d}").mkdir(parents=True)
    (ck / "latest.json").write_text('{"step": 5, "pa')
    found, problems = runs.checkpoint_candidates(tmp_path)
    assert [s for s, _ in found] == [5, 3]
    assert problems and problems[0].startswith("checkpoints/latest.json: not valid JSON")


def test_a_status_rewritten_by_a_fresh_writer_object_keeps_the_start_time(tmp_path):
    w = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"})
    started = runs.read_status(tmp_path / "r")["started"]
    w.close()
    time.sleep(0.01)
    runs.RunWriter(tmp_path / "r").set_status("failed", step=-1, error="made up")  # e.g. scripts/make_sample_runs.py
    st = runs.read_status(tmp_path / "r")
    assert st["started"] == started and st["updated"] > started and st["error"] == "made up"


def test_check_step_files_reads_only_footers_and_names_a_truncated_file(corrupted_runs_root):
    assert runs.check_step_files(corrupted_runs_root / "good/grpo-s0") == []
    problems = runs.check_step_files(corrupted_runs_root / "broken/samples-truncated")
    assert len(problems) == 1 and problems[0].startswith("samples/step_000001.parquet: not a readable Parquet file")
