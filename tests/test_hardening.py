"""Issue 11: no silent wrong runs, no raw tracebacks for user errors, status that tells the truth.

Config and CLI cases run in-process (fast); training cases use the 25 kB micro model in
tests/fixtures so each run takes a second or two; a handful of cases run the real
``python -m lab.cli`` in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import cli, losses, runs
from lab.cliargs import add_dataclass_args, build_config, load_config_file
from lab.config import INT_MAX, ConfigError, TrainConfig
from lab.errors import LabError
from lab.tasks import scoring

ROOT = Path(__file__).resolve().parents[1]
MICRO = str(ROOT / "tests" / "fixtures" / "micro-model")
HINTS = typing.get_type_hints(TrainConfig)
FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
TINY = dict(model=MICRO, rollouts_per_prompt=2, prompts_per_step=2, steps=3, max_new_tokens=4, probe_every=0,
            eval_every=0, checkpoint_every=1, shadow_estimators=(), quiet=True)


def _cfg(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "output_dir": str(tmp_path), **kw})


def _comparable(m: pd.DataFrame) -> pd.DataFrame:
    return m[[c for c in m.columns if not c.startswith(("perf/", "time/"))]].reset_index(drop=True)


# --- 1. every field validated from its declared type, whatever the source ----------------------
NON_NEGATIVE_INTS = {"rollouts_per_prompt", "prompts_per_step", "steps", "ppo_epochs", "minibatches", "prompt_reuse",
                     "max_new_tokens", "probe_every", "probe_prompts", "probe_samples", "eval_every", "eval_prompts",
                     "eval_samples", "checkpoint_every", "keep_checkpoints", "seed"}


def _base(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return (args[0], True) if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) else (tp, False)


def _number_like(s: str) -> bool:
    try:
        float(s.replace("_", ""))
        return True
    except ValueError:
        return s.strip().lower() in (".inf", "-.inf", "+.inf", ".nan")


_text = st.text(max_size=4).filter(lambda s: not _number_like(s))  # stays a string in YAML too


def bad_values(name: str) -> st.SearchStrategy:
    """Values that are wrong for field ``name`` by its declared type (or out of any range)."""
    tp, optional = _base(HINTS[name])
    junk = [st.lists(st.integers(), min_size=1, max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=1)]
    if not optional:
        junk.append(st.none())
    if tp is bool:
        return st.one_of(st.sampled_from(["no", "yes", "false", "0", ""]), st.integers(0, 1), st.floats(0, 1), *junk)
    if tp is int:
        out = [_text, st.booleans(), st.floats(allow_nan=True),
               st.integers(min_value=INT_MAX + 1), st.integers(max_value=-INT_MAX - 2), *junk]
        if name in NON_NEGATIVE_INTS:
            out.append(st.integers(max_value=-1))
        return st.one_of(*out)
    if tp is float:
        return st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf")]), _text,
                         st.booleans(), st.integers(min_value=2**1100), *junk)
    if tp is str:
        return st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False), *junk)
    if tp is dict or typing.get_origin(tp) is dict:
        return st.one_of(st.text(max_size=4), st.integers(), st.lists(st.integers(), max_size=2), st.booleans())
    if typing.get_origin(tp) is tuple:
        return st.one_of(st.integers(), st.booleans(), st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=1),
                         st.lists(st.integers(), min_size=1, max_size=2))
    raise AssertionError(f"no bad-value strategy for {name}: {tp}")  # a new field type: add one here


bad_field_values = st.sampled_from(FIELDS).flatmap(lambda n: st.tuples(st.just(n), bad_values(n)))


def test_every_field_has_a_bad_value_strategy():
    for n in FIELDS:
        bad_values(n)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_field_values)
def test_a_wrong_type_or_out_of_range_value_names_its_field_from_python_and_from_a_file(nv):
    name, value = nv
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{name: value})
    assert str(e.value).startswith(f"{name}:"), str(e.value)
    import argparse

    p = argparse.ArgumentParser()
    add_dataclass_args(p, TrainConfig, lenient=True)
    with pytest.raises(ConfigError) as e2:
        build_config(TrainConfig, p.parse_args([]), {name: value})
    assert str(e2.value) == str(e.value)  # the same message from a file as from Python


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(nv=bad_field_values, yaml_file=st.booleans())
def test_the_cli_reports_a_bad_config_file_in_one_or_two_lines_and_writes_nothing(tmp_path_factory, capsys, nv, yaml_file):
    name, value = nv
    d = tmp_path_factory.mktemp("cfg")
    out = d / "out"
    if name == "output_dir":
        out = d / "unused"
    data = {name: value} if name == "output_dir" else {name: value, "output_dir": str(out)}
    if yaml_file:
        import yaml

        f = d / "c.yaml"
        f.write_text(yaml.safe_dump(data))
    else:
        f = d / "c.json"
        f.write_text(json.dumps(data))
    rc = cli.main(["train", "--config", str(f)])  # no flags: a flag would override the bad value
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, err
    assert lines[0].startswith(f"lab train: error: {name}:"), err
    assert not out.exists()


@pytest.mark.parametrize("flag, text, field", [
    ("--steps", "ten", "steps"), ("--steps", "2.5", "steps"), ("--seed", str(2**64), "seed"),
    ("--lr", "fast", "lr"), ("--lr", "nan", "lr"), ("--estimator-params", "{bad json", "estimator_params"),
    ("--run-name", "a\nb", "run_name"), ("--run-name", "x" * 300, "run_name"), ("--reward-timeout-s", "1e12", "reward_timeout_s"),
    ("--reward-timeout-s", "inf", "reward_timeout_s"), ("--rollouts-per-prompt", "-3", "rollouts_per_prompt"),
])
def test_a_bad_flag_gives_the_same_message_as_a_bad_file_value(tmp_path, capsys, flag, text, field):
    rc = cli.main(["train", flag, text, "--output-dir", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"lab train: error: {field}:") and len(err.strip().splitlines()) <= 2, err
    assert not (tmp_path / "o").exists()


def test_use_ref_model_no_is_refused_and_shadow_estimators_string_is_one_name_or_a_comma_list(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text('use_ref_model: "no"\n')
    with pytest.raises(ConfigError, match=r"^use_ref_model: must be true or false, got 'no' \(str\)"):
        TrainConfig.from_dict(load_config_file(f))
    f.write_text("shadow_estimators: rloo\nlr: 1e-4\n")  # YAML 1.1 would read 1e-4 as a string
    c = build_config(TrainConfig, __import__("argparse").Namespace(), load_config_file(f))
    assert c.shadow_estimators == ("rloo",) and c.lr == 1e-4
    assert TrainConfig(shadow_estimators="grpo, rloo").shadow_estimators == ("grpo", "rloo")
    assert TrainConfig(shadow_estimators=["grpo"]).shadow_estimators == ("grpo",)
    with pytest.raises(ConfigError, match="^shadow_estimators: unknown estimator 'r'"):
        TrainConfig(shadow_estimators=["r", "l"])


def test_an_estimator_parameter_of_the_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"^estimator_params: parameter 'h' of estimator 'kae' must be a number, got 'wide'"):
        TrainConfig(estimator="kae", estimator_params={"h": "wide"})
    with pytest.raises(ConfigError, match=r"^estimator_params: parameter 'norm_by_std' of estimator 'grpo' must be true or false"):
        TrainConfig(estimator="grpo", estimator_params={"norm_by_std": "no"})
    with pytest.raises(ConfigError, match=r"^task_params: parameter 'max_digits' of task 'arithmetic' must be an integer"):
        TrainConfig(task_params={"max_digits": "2"})


@pytest.mark.parametrize("value, ok", [(1e12, False), (10**30, False), (float("nan"), False), (True, False),
                                       (scoring.MAX_TIMEOUT_S * 1.01, False), (9e9, True), (3600, True)])
def test_reward_timeout_s_takes_only_values_the_platform_timer_can_arm(value, ok):
    if ok:
        assert TrainConfig(reward_timeout_s=value).reward_timeout_s == value
    else:
        with pytest.raises(ConfigError, match="^reward_timeout_s:"):
            TrainConfig(reward_timeout_s=value)


def test_the_largest_allowed_timeout_really_arms_both_timers():
    assert scoring.call_with_timeout_signal(lambda: 7, scoring.MAX_TIMEOUT_S) == 7
    assert scoring.call_with_timeout_thread(lambda: 7, scoring.MAX_TIMEOUT_S) == 7
    with pytest.raises(ValueError, match="timeout_s"):
        scoring.score(None, ["a"], [None], timeout_s=scoring.MAX_TIMEOUT_S * 2)


def test_clip_delta_none_resolves_to_the_matched_budget_and_an_explicit_value_wins():
    for m in losses.available_measures():
        c = TrainConfig(clip_measure=m)
        assert c.clip_delta == losses.matched_delta(m)
        assert json.loads(c.to_json())["clip_delta"] == losses.matched_delta(m)  # the saved config records the number
    assert TrainConfig(clip_measure="kl3", clip_delta=0.05).clip_delta == 0.05
    assert TrainConfig().replace(clip_measure="kl3").clip_delta == losses.matched_delta("kl3")
    assert TrainConfig(clip_delta=0.1).replace(clip_measure="kl1").clip_delta == 0.1
    assert TrainConfig.from_dict({"clip_delta": 0.2, "clip_measure": "ratio", "format_version": 1}).clip_delta == 0.2


# --- 2. no raw tracebacks: files, folders, devices -----------------------------------------------
def _cli(capsys, argv):
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    return rc, err


def test_bad_model_folders_are_refused_in_one_line_and_write_nothing(tmp_path, capsys):
    pickle_only = tmp_path / "pickle"
    pickle_only.mkdir()
    (pickle_only / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (pickle_only / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        (no_tok / f).write_bytes((Path(MICRO) / f).read_bytes())
    for folder, words in ((pickle_only, "only pickle weights (pytorch_model.bin)"), (incomplete, "no weights"),
                          (no_tok, "no tokenizer files"), (tmp_path / "missing", "does not exist")):
        rc, err = _cli(capsys, ["train", "--model", str(folder), "--output-dir", str(tmp_path / "out"), "--quiet"])
        assert rc == 2 and words in err, err
    assert not (tmp_path / "out").exists()


def test_output_dir_that_is_a_file_and_a_missing_cuda_are_refused_before_writing(tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("x")
    rc, err = _cli(capsys, ["train", "--model", MICRO, "--output-dir", str(f), "--quiet"])
    assert rc == 2 and "output_dir:" in err and "is a file" in err
    rc, err = _cli(capsys, ["train", "--model", MICRO, "--output-dir", str(f / "sub"), "--quiet"])
    assert rc == 2 and "is a file" in err
    if not torch.cuda.is_available():
        rc, err = _cli(capsys, ["train", "--model", MICRO, "--device", "cuda", "--output-dir", str(tmp_path / "o"), "--quiet"])
        assert rc == 2 and "CUDA is not available" in err and not (tmp_path / "o").exists()


def test_malformed_and_python_tagged_yaml_name_the_file_and_line(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("steps: 3\nestimator: [grpo\n")
    rc, err = _cli(capsys, ["train", "--config", str(f)])
    assert rc == 2 and str(f) in err and "line" in err and "not valid YAML" in err
    f.write_text("steps: !!python/object/apply:os.system ['touch pwned']\n")
    rc, err = _cli(capsys, ["train", "--config", str(f)])
    assert rc == 2 and "is not allowed" in err and not Path("pwned").exists()
    f.write_bytes(b"steps: 3\nrun_name: \xff\n")
    rc, err = _cli(capsys, ["train", "--config", str(f)])
    assert rc == 2 and "not UTF-8" in err


def test_resume_refuses_other_flags_and_names_a_missing_run(tmp_path, capsys, old_format_run):
    rc, err = _cli(capsys, ["train", "--resume", str(old_format_run), "--lr", "0.1"])
    assert rc == 2 and "only --steps N may be given" in err and "--lr" in err
    rc, err = _cli(capsys, ["train", "--resume", str(tmp_path / "nope")])
    assert rc == 2 and "not a run directory" in err


SUBPROCESS_CASES = [
    (["--config", "{yaml}"], "is not allowed"),
    (["--model", MICRO, "--estimator", "kae", "--estimator-params", '{"h": "wide"}'], "parameter 'h'"),
    (["--model", MICRO, "--output-dir", "{file}"], "is a file"),
    (["--run-name", "bad\nname"], "run_name:"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv, words", SUBPROCESS_CASES, ids=["python-yaml", "param-type", "output-file", "newline-name"])
def test_the_real_cli_prints_one_or_two_lines_and_exits_2(tmp_path, argv, words):
    y = tmp_path / "c.yaml"
    y.write_text("seed: !!python/name:os.system\n")
    f = tmp_path / "f"
    f.write_text("")
    argv = [a.replace("{yaml}", str(y)).replace("{file}", str(f)) for a in argv]
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(tmp_path / "o")]
    p = subprocess.run([sys.executable, "-m", "lab.cli", "train", *argv, "--quiet"], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.strip().splitlines() if "Warning" not in ln and not ln.startswith("  warnings.warn")]
    assert 1 <= len(lines) <= 2 and "Traceback" not in p.stderr and words in p.stderr, p.stderr
    assert not (tmp_path / "o").exists()


# --- rewards of every numeric type ---------------------------------------------------------------
class _ConstTask:
    name = "const"
    stop = ()

    def __init__(self, value):
        self.value = value

    def reward(self, completion, example):
        return self.value


NONFINITE = [float("nan"), float("inf"), np.float32("nan"), np.float64("-inf"), np.array(float("nan")), torch.tensor(float("nan")),
             torch.tensor(float("inf"), dtype=torch.float16), Decimal("NaN"), np.float16("inf")]
FINITE = [(1, 1.0), (True, 1.0), (np.float32(0.5), 0.5), (np.int64(0), 0.0), (torch.tensor(0.25), 0.25),
          (torch.tensor([1.0]), 1.0), (Fraction(1, 4), 0.25), (Decimal("0.75"), 0.75), (np.bool_(True), 1.0)]
NOT_NUMBERS = ["1.0", None, [1.0], torch.tensor([0.5, 0.5]), object(), 1 + 0j]


@pytest.mark.parametrize("value", NONFINITE, ids=lambda v: f"{type(v).__name__}:{v}")
def test_a_non_finite_reward_of_any_numeric_type_is_flagged(value):
    res = scoring.score(_ConstTask(value), ["x"], [object()])
    assert res.nonfinite == [0] and res.errors == 1 and res.rewards == [0.0]


@pytest.mark.parametrize("value, expected", FINITE, ids=lambda v: type(v).__name__)
def test_a_finite_reward_of_any_numeric_type_is_read_as_its_value(value, expected):
    res = scoring.score(_ConstTask(value), ["x"], [object()])
    assert res.rewards == [expected] and res.errors == 0 and res.nonfinite == []


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=lambda v: type(v).__name__)
def test_a_reward_that_is_not_a_number_is_an_error_but_not_non_finite(value):
    res = scoring.score(_ConstTask(value), ["x"], [object()])
    assert res.errors == 1 and res.nonfinite == [] and "not a number" in res.messages[0]


def _register(name, reward):
    from lab import tasks

    base = tasks.get("arithmetic")

    class T:
        stop = getattr(base, "stop", ())

        def __init__(self):
            self.calls = 0

        def examples(self, split="train", seed=0):
            return base.examples(split, seed)

        def reward(self, completion, example):
            self.calls += 1
            return reward(self.calls)

    T.name = name
    tasks.register(name)(T)
    return lambda: tasks.TASKS.unregister(name)


@pytest.mark.slow
def test_a_numpy_nan_reward_fails_the_run_naming_the_sample(tmp_path):
    undo = _register("np_nan_later", lambda calls: np.float32("nan") if calls > 4 else np.float32(0.0))
    try:
        with pytest.raises(Exception, match=r"step 1: reward of sample 0 .* not finite"):
            from lab.train import train

            train(_cfg(tmp_path, task="np_nan_later", run_name="r"))
    finally:
        undo()
    st_ = runs.read_status(tmp_path / "r")
    assert st_["status"] == "failed" and st_["step"] == 0


@pytest.mark.slow
def test_three_steps_in_which_every_reward_call_fails_fail_the_run(tmp_path):
    from lab.train import TrainingFailed, train

    def broken(calls):
        raise KeyError("answer")

    undo = _register("always_raises", broken)
    try:
        with pytest.raises(TrainingFailed, match=r"every reward call failed in 3 consecutive steps \(0 to 2\).*KeyError"):
            train(_cfg(tmp_path, task="always_raises", run_name="r", steps=10))
    finally:
        undo()
    run = runs.load_run(tmp_path / "r")
    assert run.status["status"] == "failed" and "every reward call failed" in run.status["error"]
    assert run.metrics["step"].tolist() == [0, 1] and run.status["step"] == 1


# --- 4. status truth, stop event, callback, resume ---------------------------------------------
@pytest.mark.slow
def test_stop_event_ends_at_a_step_boundary_resumably_and_callback_sees_each_step_on_disk(tmp_path):
    from lab.train import train

    straight = runs.load_run(train(_cfg(tmp_path, run_name="straight", steps=4, checkpoint_every=0)))
    stop, seen = threading.Event(), []

    def cb(step, metrics):
        seen.append((step, runs.last_logged_step(tmp_path / "cut"), metrics["step"]))
        if step == 1:
            stop.set()

    out = train(_cfg(tmp_path, run_name="cut", steps=4, checkpoint_every=0), stop_event=stop, callback=cb)
    assert seen == [(0, 0, 0), (1, 1, 1)]
    st_ = runs.read_status(out)
    assert st_["status"] == "interrupted" and st_["step"] == 1
    assert st_.get("error") is None and "stopped on request" in st_["message"]  # a normal stop is not an error
    assert runs.latest_checkpoint(out)[0] == 1  # the stop kept a checkpoint of its last step
    resumed = runs.load_run(train(resume=out))
    assert resumed.status["status"] == "finished" and "message" not in resumed.status  # the stop's message went with its status
    pd.testing.assert_frame_equal(_comparable(resumed.metrics), _comparable(straight.metrics))
    el = resumed.metrics["time/elapsed_s"].tolist()
    assert all(b > a for a, b in zip(el, el[1:]))  # resume-aware: keeps growing across the restart


@pytest.mark.slow
def test_ctrl_c_mid_step_records_the_last_step_on_disk(tmp_path):
    from lab.train import train

    def interrupt(calls):
        if calls > 4:  # during step 1's rewards: step 0 is on disk, step 1 is not
            raise KeyboardInterrupt
        return 0.0

    undo = _register("ctrl_c_at_step_1", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(_cfg(tmp_path, task="ctrl_c_at_step_1", run_name="c"))
    finally:
        undo()
    st_ = runs.read_status(tmp_path / "c")
    assert st_["status"] == "interrupted" and st_["step"] == 0 == runs.last_logged_step(tmp_path / "c")
    # a failed checkpoint write (full disk): tests/train/test_train_loop_hardening.py


_SIGNAL_RUN = ["--model", MICRO, "--rollouts-per-prompt", "2", "--prompts-per-step", "2", "--steps", "100000",
               "--max-new-tokens", "4", "--probe-every", "0", "--eval-every", "0", "--checkpoint-every", "0",
               "--shadow-estimators", "", "--quiet"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_cleanly_with_the_true_step_and_a_checkpoint(tmp_path, sig, rc):
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "train", *_SIGNAL_RUN, "--output-dir", str(tmp_path), "--run-name", "r"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "r"
    deadline = time.time() + 240
    while time.time() < deadline and (runs.last_logged_step(run_dir) or -1) < 1:
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == rc, err
    st_ = runs.read_status(run_dir)
    assert st_["status"] == "interrupted" and st_["step"] == runs.last_logged_step(run_dir) >= 1
    assert runs.latest_checkpoint(run_dir)[0] == st_["step"]
    assert "Traceback" not in err and "--resume" in err


@pytest.mark.slow
def test_resume_falls_back_past_a_corrupt_newest_checkpoint_and_a_torn_latest_json(tmp_path):
    from lab.train import train

    straight = runs.load_run(train(_cfg(tmp_path, run_name="straight", steps=4)))
    d = train(_cfg(tmp_path, run_name="r", steps=3, keep_checkpoints=2))  # checkpoints of steps 1 and 2
    f = d / "checkpoints" / "step_000002" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:500])
    (d / "checkpoints" / "latest.json").write_text('{"step": 2, "pa')
    resumed = runs.load_run(train(resume=d, steps=4))
    notes = resumed.status["notes"]
    assert any(n.startswith("checkpoints/latest.json: not valid JSON") for n in notes)
    assert any(n.startswith("checkpoints/step_000002/model.safetensors: not readable") for n in notes)
    assert notes[-1] == "resuming from checkpoints/step_000001 (step 1)"
    assert resumed.status["status"] == "finished" and resumed.problems == []
    pd.testing.assert_frame_equal(_comparable(resumed.metrics), _comparable(straight.metrics))


@pytest.mark.slow
def test_resume_of_the_corrupted_fixture_names_the_file_or_falls_back(corrupted_runs_root, capsys):
    rc, err = _cli(capsys, ["train", "--resume", str(corrupted_runs_root / "broken/safetensors-truncated"), "--steps", "4"])
    assert rc == 2 and "checkpoints/step_000002/model.safetensors: not readable" in err
    garbage = corrupted_runs_root / "broken/latest-json-garbage"
    assert cli.main(["train", "--resume", str(garbage), "--steps", "4"]) == 0
    assert "latest.json" in capsys.readouterr().err  # the note names the file it worked around
    assert runs.read_status(garbage)["status"] == "finished" and runs.last_logged_step(garbage) == 3


@pytest.mark.slow
def test_an_old_format_run_loads_resumes_and_extends(old_format_run):
    from lab.train import train

    before = runs.load_run(old_format_run)
    assert before.format_version == 0
    train(resume=old_format_run, steps=5)
    after = runs.load_run(old_format_run)
    assert after.status["status"] == "finished" and after.metrics["step"].tolist() == [0, 1, 2, 3, 4]
    pd.testing.assert_frame_equal(_comparable(after.metrics.iloc[:3][list(before.metrics.columns)]), _comparable(before.metrics))
    assert after.format_version == runs.FORMAT_VERSION and after.config["clip_delta"] == 0.2 and after.config["steps"] == 5
    prov = json.loads((old_format_run / "provenance.json").read_text())
    assert len(prov["resumes"]) == 0 and prov["torch"] == torch.__version__  # first record written by this resume
    with pytest.raises(ConfigError, match="^steps: the run resumes after its checkpoint of step 4"):
        train(resume=old_format_run, steps=3)


@pytest.mark.slow
def test_a_second_writer_is_refused_and_provenance_is_recorded(tmp_path):
    from lab.provenance import FIELDS as PROV
    from lab.train import train

    d = train(_cfg(tmp_path, run_name="r", steps=1))
    prov = json.loads((d / "provenance.json").read_text())
    assert set(PROV) <= set(prov) and prov["device"] == "cpu" and prov["resumes"] == []
    holder = runs.RunWriter.reopen(d, from_step=0)  # e.g. a notebook thread writing it
    try:
        with pytest.raises(runs.RunLockedError, match="being written by"):
            train(resume=d, steps=2)
    finally:
        holder.set_status("interrupted", step=0)
        holder.close()
    train(resume=d, steps=2)
    prov = json.loads((d / "provenance.json").read_text())
    assert len(prov["resumes"]) == 1


def test_lab_errors_are_value_errors_so_older_callers_still_catch_them():
    for cls in (ConfigError, runs.RunReadError, runs.RunPathError, runs.RunLockedError):
        assert issubclass(cls, LabError) and issubclass(cls, ValueError)
    assert issubclass(runs.NotARunError, FileNotFoundError)


def test_runs_list_and_show_on_the_corrupted_root(corrupted_runs_root, corrupted_runs_expected, capsys):
    assert cli.main(["runs", "list", str(corrupted_runs_root)]) == 0
    out = capsys.readouterr().out
    for n in corrupted_runs_expected["good"] + list(corrupted_runs_expected["broken"]):
        assert n in out
    assert "config.json: not valid UTF-8" in out and "status.json: not valid JSON" in out
    assert cli.main(["runs", "show", str(corrupted_runs_root / "broken/samples-truncated")]) == 0
    shown = capsys.readouterr().out
    assert "problem  samples/step_000001.parquet: not a readable Parquet file" in shown
    rc, err = _cli(capsys, ["runs", "show", str(corrupted_runs_root / "empty")])
    assert rc == 2 and "not a run directory" in err
