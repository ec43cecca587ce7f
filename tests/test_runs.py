"""The run directory: atomic writes, torn-line tolerance, truncation on resume, status inference."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from lab import runs


def test_run_directory_round_trips_config_metrics_samples_and_probes(tmp_path):
    w = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo", "seed": 1})
    w.log_metrics({"step": 0, "reward/mean": 0.25})
    w.log_metrics({"step": 1, "reward/mean": 0.5, "adv/max": float("nan")})
    w.log_samples(0, pd.DataFrame({"step": [0, 0], "reward": [1.0, 0.0], "completion": ["12", "13"]}))
    w.log_probes(0, pd.DataFrame({"step": [0], "estimator": ["grpo"], "sq_err": [0.1], "truth_se": [0.01], "truth": [0.5]}))
    w.set_status("finished", step=1)
    run = runs.load_run(tmp_path / "r")
    assert run.config == {"estimator": "grpo", "seed": 1}
    assert run.metrics["reward/mean"].tolist() == [0.25, 0.5]
    assert pd.isna(run.metrics["adv/max"].iloc[1])  # NaN is stored as JSON null, read back as missing
    assert run.samples["completion"].tolist() == ["12", "13"]
    assert run.probes["estimator"].tolist() == ["grpo"]
    assert run.status["status"] == "finished"
    # readable without lab: plain pandas on the files
    assert pd.read_json(tmp_path / "r" / "metrics.jsonl", lines=True)["step"].tolist() == [0, 1]
    assert len(pd.read_parquet(tmp_path / "r" / "samples")) == 2


def test_create_refuses_to_overwrite_an_existing_run(tmp_path):
    runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"})
    with pytest.raises(FileExistsError, match="already holds a run"):
        runs.RunWriter.create(tmp_path / "r", {"estimator": "rloo"})


def test_torn_last_metrics_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "rew')
    assert [r["step"] for r in runs.read_jsonl(f)] == [0, 1]
    f.write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        runs.read_jsonl(f)


def test_truncate_after_drops_later_steps_for_resume(tmp_path):
    w = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"})
    for s in range(5):
        w.log_metrics({"step": s})
        w.log_samples(s, pd.DataFrame({"step": [s]}))
    w.truncate_after(2)
    run = runs.load_run(tmp_path / "r")
    assert run.metrics["step"].tolist() == [0, 1, 2]
    assert sorted(run.samples["step"].tolist()) == [0, 1, 2]


def test_running_status_of_a_dead_process_reads_as_interrupted(tmp_path):
    w = runs.RunWriter.create(tmp_path / "r", {"estimator": "grpo"})
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    st = json.loads((tmp_path / "r" / "status.json").read_text())
    st["pid"] = proc.pid
    (tmp_path / "r" / "status.json").write_text(json.dumps(st))
    assert runs.read_status(tmp_path / "r")["status"] == "interrupted"
    w.set_status("running", step=0)  # our own live pid
    assert runs.read_status(tmp_path / "r")["status"] == "running"


def test_atomic_write_leaves_no_temp_files_and_replaces_whole(tmp_path):
    p = tmp_path / "x.json"
    runs.atomic_write_json(p, {"a": 1})
    runs.atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [f.name for f in tmp_path.iterdir()] == ["x.json"]


def test_list_runs_reads_only_small_files_and_skips_non_runs(tmp_path):
    for name, est in (("a", "grpo"), ("b", "kae")):
        w = runs.RunWriter.create(tmp_path / name, {"estimator": est, "seed": 0, "task": "arithmetic"})
        w.log_metrics({"step": 0, "reward/mean": 0.5, "reward/accuracy": 0.5})
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text("{}")  # e.g. a model folder's config
    df = runs.list_runs(tmp_path)
    assert df["name"].tolist() == ["a", "b"]
    assert df["estimator"].tolist() == ["grpo", "kae"]
    assert df["accuracy"].tolist() == [0.5, 0.5]


def test_load_run_names_a_path_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        runs.load_run(tmp_path)
