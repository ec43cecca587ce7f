"""The run format's files: names defined once, file modes from the umask, reference samples,
wrong-typed status/config values and truncated metrics named, missing roots reported."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import write_good_run
from lab import runs
from lab.runs import files

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=5)
"""Any value a JSON file can hold."""
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(st.integers(0, 10**6 - 1))
def test_step_file_and_step_of_are_inverse_and_sort_like_steps(step):
    f = runs.step_file(Path("r/samples"), step)
    assert f.name == f"step_{step:06d}.parquet" and runs.step_of(f) == step
    assert runs.step_of(runs.checkpoint_dir(Path("r"), step)) == step
    assert runs.step_of(runs.checkpoint_tmp_dir(Path("r"), step)) is None  # a checkpoint being written is no step


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o000])
def test_every_file_a_writer_makes_has_the_mode_a_plain_open_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        d = write_good_run(tmp_path / "r")
        w = runs.RunWriter(d)
        w.write_provenance({"lab_version": "test"})
        w.write_reference(_reference())
        tmp = runs.checkpoint_tmp_dir(d, 2)
        tmp.mkdir(parents=True)
        w.commit_checkpoint(2, tmp)
    finally:
        os.umask(old)
    made = [p for p in d.rglob("*") if p.is_file()]
    assert {p.relative_to(d).as_posix() for p in made} >= {
        "config.json", "status.json", "provenance.json", "metrics.jsonl", "reference.parquet", "writer.lock",
        "samples/step_000000.parquet", "probes/step_000000.parquet", "checkpoints/latest.json"}
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p


# --- reference samples ---------------------------------------------------------------------------------
def _reference(**changes) -> pd.DataFrame:
    df = pd.DataFrame({"prompt_id": [3, 3, 9], "split": ["train", "train", "probe"], "sample": [0, 1, 0],
                       "prompt": ["1+1=", "1+1=", "2+2="], "completion": ["2", "3", "4"], "reward": [1.0, 0.0, 1.0]})
    return df.assign(**changes)


def test_reference_samples_round_trip_with_their_dtypes(tmp_path):
    d = write_good_run(tmp_path / "r")
    runs.RunWriter(d).write_reference(_reference(extra=[1, 2, 3]))
    back = runs.read_reference(d)
    assert back["completion"].tolist() == ["2", "3", "4"] and back["extra"].tolist() == [1, 2, 3]
    assert {c: str(back[c].dtype) for c in ("prompt_id", "sample", "reward")} == \
        {"prompt_id": "int64", "sample": "int64", "reward": "float64"}
    assert runs.load_run(d).reference.shape == (3, 7) and runs.check_run(d) == []
    assert runs.REFERENCE_FILE == "reference.parquet" and (d / runs.REFERENCE_FILE).is_file()


BAD_REFERENCES = {
    "prompt_id": _reference(prompt_id=[3.0, 3.0, 9.0]),
    "sample": _reference(sample=["0", "1", "0"]),
    "reward": _reference(reward=[1, 0, 1]),
    "completion": _reference(completion=[2, 3, 4]),
    "split": _reference(split=["train", "test", "probe"]),
    "prompt": _reference().drop(columns=["prompt"]),
}


@pytest.mark.parametrize("column", BAD_REFERENCES)
def test_a_reference_table_of_the_wrong_form_is_refused_on_write_and_named_on_read(tmp_path, column):
    d = write_good_run(tmp_path / "r")
    bad = BAD_REFERENCES[column]
    with pytest.raises(ValueError, match=f"column {column}"):
        runs.RunWriter(d).write_reference(bad)
    assert not (d / runs.REFERENCE_FILE).exists()
    bad.to_parquet(d / runs.REFERENCE_FILE, index=False)  # written by something else
    with pytest.raises(runs.RunReadError, match=f"reference.parquet: column {column}.*train the run again"):
        runs.read_reference(d)
    assert any(p.startswith(f"reference.parquet: column {column}") for p in runs.load_run(d).problems)


def test_read_reference_of_a_run_without_one_names_the_file_and_the_fix(tmp_path):
    d = write_good_run(tmp_path / "r")
    saved = runs.read_config(d)[0].get("reference_samples")
    want = "missing: this run was trained without a reference stage.*--reference-samples" if saved == 0 else "missing.*train the run again"
    with pytest.raises(runs.RunReadError, match=f"reference.parquet: {want}"):
        runs.read_reference(d)
    assert runs.load_run(d).problems == []  # a run without reference samples is not damaged


def test_read_reference_says_when_the_run_was_trained_without_a_reference_stage_and_when_it_cannot_tell(tmp_path):
    import json

    d = write_good_run(tmp_path / "r")
    config = json.loads((d / "config.json").read_text())
    for value, want in ((0, "trained without a reference stage \\(reference_samples=0\\); train with --reference-samples M"),
                        (8, "has no reference samples \\(written before they existed, or stopped before the reference stage\\)")):
        (d / "config.json").write_text(json.dumps({**config, "reference_samples": value}))
        with pytest.raises(runs.RunReadError, match=want):
            runs.read_reference(d)
    (d / "config.json").unlink()  # no config at all: it cannot tell, so the general message
    with pytest.raises(runs.RunReadError, match="has no reference samples"):
        runs.read_reference(d)


# --- wrong-typed status and config ---------------------------------------------------------------------
STATUS_OK = {"step": lambda v: type(v) is int, "error": lambda v: v is None or isinstance(v, str),
             "pid": lambda v: v is None or type(v) is int, "host": lambda v: v is None or isinstance(v, str),
             "updated": lambda v: v is None or type(v) in (int, float),
             "status": lambda v: v in ("running", "finished", "failed", "interrupted")}
"""What each status.json key may hold, written out here apart from the reader's own table."""


@FAST
@given(key=st.sampled_from(sorted(STATUS_OK)), value=JSON)
def test_a_status_value_of_the_wrong_type_is_named_and_nothing_raises(tmp_path_factory, key, value):
    d = write_good_run(tmp_path_factory.mktemp("st") / "r", steps=1)
    f = d / "status.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), key: value}))
    named = [p for p in runs.load_run(d).problems if p.startswith("status.json")]
    assert bool(named) == (not STATUS_OK[key](value)), (key, value, named)
    if named:
        assert key in named[0]
        row = runs.list_runs(d.parent).iloc[0]
        assert row["problem"].startswith("status.json") and row["step"] == 0  # the step from metrics.jsonl


@pytest.mark.parametrize("step", [10**6, 10**12, 2**63, 10**40])
def test_a_huge_status_step_is_named_without_counting_up_to_it(tmp_path, step):
    # the fuzz above once drew such a step and the reader built range(step + 1) as a set: 24 GB
    d = write_good_run(tmp_path / "r", steps=2)
    f = d / "status.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "step": step}))
    lost = [p for p in runs.load_run(d).problems if "rows were lost" in p]
    assert lost and f"rows for 2 of steps 0..{step}" in lost[0], lost
    assert runs.list_runs(d.parent, full=True).iloc[0]["problem"].count("rows were lost") == 1


CONFIG_OK = {"seed": lambda v: type(v) is int, "lr": lambda v: type(v) in (int, float),
             "estimator": lambda v: isinstance(v, str), "quiet": lambda v: type(v) is bool,
             "clip_delta": lambda v: v is None or type(v) in (int, float),
             "shadow_estimators": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)}


@FAST
@given(key=st.sampled_from(sorted(CONFIG_OK)), value=JSON)
def test_a_config_value_of_the_wrong_type_is_named_with_its_field(tmp_path_factory, key, value):
    d = write_good_run(tmp_path_factory.mktemp("cfg") / "r", steps=1)
    f = d / "config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), key: value}))
    config, problems = runs.read_config(d)
    assert config[key] == value
    assert bool(problems) == (not CONFIG_OK[key](value)), (key, value, problems)
    assert all(p.startswith(f"config.json: field {key} is ") for p in problems)


# --- truncated metrics -----------------------------------------------------------------------------------
@FAST
@given(cut=st.integers(0, 10**6))
def test_a_metrics_file_cut_anywhere_is_named_unless_only_its_final_newline_went(tmp_path_factory, cut):
    d = write_good_run(tmp_path_factory.mktemp("m") / "r", steps=4)
    f = d / "metrics.jsonl"
    data = f.read_bytes()
    cut %= len(data)
    f.write_bytes(data[:cut])
    lost = cut < len(data) - 1  # without its final newline the last line is still whole
    for problems in (runs.load_run(d).problems, runs.check_run(d), [runs.list_runs(d.parent, full=True)["problem"][0]],
                     [runs.list_runs(d.parent)["problem"][0]]):
        assert any(p and p.startswith("metrics.jsonl:") for p in problems) == lost, (cut, len(data), problems)


def test_a_torn_last_line_of_a_live_or_killed_run_is_no_problem_but_lost_rows_are(tmp_path):
    d = write_good_run(tmp_path / "r", steps=3)
    f = d / "metrics.jsonl"
    f.write_bytes(f.read_bytes() + b'{"step": 3, "rew')  # a writer killed while appending step 3
    st_ = json.loads((d / "status.json").read_text())
    (d / "status.json").write_text(json.dumps({**st_, "status": "interrupted"}))
    assert runs.load_run(d).problems == []
    (d / "status.json").write_text(json.dumps({**st_, "status": "interrupted", "step": 5}))
    assert any("rows for 3 of steps 0..5" in p for p in runs.load_run(d).problems)


def test_a_line_longer_than_the_limit_is_skipped_unread_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "LINE_MAX_BYTES", 1000)
    f = tmp_path / "metrics.jsonl"
    f.write_bytes(b'{"step": 0}\n' + b'{"pad": "' + b"x" * (3 << 20) + b'"}\n{"step": 2}\n')
    scan = files.scan_jsonl(f)
    assert [r["step"] for r in scan.records] == [0, 2]
    assert scan.problems == ["metrics.jsonl: line 2 is longer than 1000 bytes; skipped"]
    with pytest.raises(runs.RunReadError, match="line 2 is longer"):
        runs.read_jsonl(f)  # the strict reader


# --- roots --------------------------------------------------------------------------------------------
def test_a_root_that_is_no_folder_is_named_and_refused_when_asked(tmp_path):
    write_good_run(tmp_path / "ok" / "r")
    (tmp_path / "a-file").write_text("x")
    roots = [tmp_path / "ok", tmp_path / "missing", tmp_path / "a-file"]
    assert runs.missing_roots(roots) == [f"{tmp_path / 'missing'}: no such folder", f"{tmp_path / 'a-file'}: not a folder"]
    assert runs.list_runs(roots)["name"].tolist() == ["r"]  # the default skips them
    with pytest.raises(runs.RunRootError, match="missing: no such folder.*a-file: not a folder"):
        runs.list_runs(roots, missing_ok=False)
    assert isinstance(runs.RunRootError("x"), FileNotFoundError)
