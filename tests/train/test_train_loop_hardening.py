"""Issue 21 classes 2-5 inside the loop: reward BaseExceptions, derived values, divergence, full disk, edited configs."""

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab import runs, tasks
from lab.config import ConfigError, TrainConfig
from lab.errors import UsageError
from lab.train import TrainingFailed, train

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "data" / "models" / "tiny-arith")
SMALL = dict(model=MODEL, rollouts_per_prompt=2, prompts_per_step=2, steps=2, max_new_tokens=4, probe_every=0,
             checkpoint_every=1, quiet=True, shadow_estimators=(), eval_every=0)


def _cfg(tmp_path, **kw):
    return TrainConfig(**{**SMALL, "output_dir": str(tmp_path), **kw})


@contextmanager
def raising_reward_task(exc: BaseException):
    """The arithmetic task with a reward function that raises ``exc``, registered while in use."""
    base = tasks.get("arithmetic")

    class Raising:
        name = "raising_reward"
        stop = getattr(base, "stop", ())

        def examples(self, split="train", seed=0):
            return base.examples(split, seed)

        def reward(self, completion, example):
            raise exc

    tasks.register(Raising.name)(Raising)
    try:
        yield Raising.name
    finally:
        tasks.TASKS.unregister(Raising.name)


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=1e-300, max_value=1e-13), st.sampled_from(["kl1", "kl2", "kl3"]))
def test_a_clip_budget_whose_bounds_are_not_a_finite_interval_around_one_is_refused(delta, measure):
    from lab import losses

    low, high = losses.clip_bounds(measure, delta)
    ok = low == low and high == high and 0 <= low < 1 < high
    if ok:
        TrainConfig(clip_measure=measure, clip_delta=delta)
    else:
        with pytest.raises(ConfigError, match="^clip_delta: .*not a finite interval around 1"):
            TrainConfig(clip_measure=measure, clip_delta=delta)


@given(st.floats(min_value=1e-300, max_value=9.99e-4))
def test_a_reward_timeout_too_short_to_score_anything_is_refused(t):
    with pytest.raises(ConfigError, match="^reward_timeout_s: .*too short"):
        TrainConfig(reward_timeout_s=t)


@pytest.mark.slow
def test_prompt_plus_max_new_tokens_beyond_the_models_positions_is_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="^max_new_tokens: .*positions"):
        train(_cfg(tmp_path, max_new_tokens=10_000, run_name="x"))
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("exc", [SystemExit(3), GeneratorExit(), type("Custom", (BaseException,), {})()],
                         ids=["SystemExit", "GeneratorExit", "custom"])
def test_a_reward_raising_a_base_exception_fails_the_run_naming_it(tmp_path, exc):
    with raising_reward_task(exc) as task, pytest.raises(TrainingFailed, match=type(exc).__name__):
        train(_cfg(tmp_path, task=task, run_name="r"))
    st_ = runs.read_status(tmp_path / "r")
    assert st_["status"] == "failed" and type(exc).__name__ in st_["error"]


@pytest.mark.slow
def test_diverged_weights_fail_the_run_naming_the_step_not_a_sampling_traceback(tmp_path):
    with pytest.raises(TrainingFailed, match=r"^step \d+: non-finite (weights|loss|gradient)"):
        train(_cfg(tmp_path, lr=1e308, steps=4, max_grad_norm=0.0, run_name="d"))
    assert runs.read_status(tmp_path / "d")["status"] == "failed"


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_leaves_no_temporary_folder(tmp_path, monkeypatch):
    real = runs.RunWriter.commit_checkpoint

    def full(self, step, tmp_dir, keep=2):
        if step == 1:
            raise OSError(28, "No space left on device")
        return real(self, step, tmp_dir, keep)

    monkeypatch.setattr(runs.RunWriter, "commit_checkpoint", full)
    with pytest.raises(OSError):
        train(_cfg(tmp_path, run_name="k"))
    assert list((tmp_path / "k" / "checkpoints").glob(".tmp_step_*")) == []
    st_ = runs.read_status(tmp_path / "k")
    assert st_["status"] == "failed" and st_["step"] == 1 == runs.last_logged_step(tmp_path / "k")
    assert "No space left" in st_["error"]


@pytest.mark.slow
def test_a_failure_while_opening_the_run_leaves_status_failed_not_running(tmp_path, monkeypatch):
    def full(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.RunWriter, "write_provenance", full)
    with pytest.raises(OSError):
        train(_cfg(tmp_path, run_name="o"))
    st_ = runs.read_status(tmp_path / "o")
    assert st_["status"] == "failed" and "No space left" in st_["error"] and st_["step"] == -1
    assert not runs.lock_held(tmp_path / "o")  # the lock is given back


@pytest.mark.slow
def test_every_reward_call_failing_is_counted_across_a_resume(tmp_path):
    with raising_reward_task(ValueError("broken")) as task:
        d = train(_cfg(tmp_path, task=task, run_name="f"))  # 2 steps, every call failing: under the limit
        with pytest.raises(TrainingFailed, match=r"^step 2: every reward call failed in 3 consecutive steps \(0 to 2\)"):
            train(resume=d, steps=4)


@pytest.mark.slow
def test_resume_refuses_an_edited_config_naming_the_fields_and_allows_only_safe_edits(tmp_path):
    d = train(_cfg(tmp_path, run_name="r"))
    f = d / "config.json"
    saved = json.loads(f.read_text())
    for edit in ({"lr": 0.1, "seed": 3}, {"rollouts_per_prompt": 4}, {"prompts_per_step": 3}):
        f.write_text(json.dumps({**saved, **edit}))
        with pytest.raises(UsageError) as e:
            train(resume=d, steps=3)
        assert all(k in str(e.value) for k in edit)
    f.write_text(json.dumps({**saved, "keep_checkpoints": 5}))
    with pytest.raises(UsageError, match="--allow-config-edits"):
        train(resume=d, steps=3)
    train(resume=d, steps=3, allow_config_edits=True)
    st_ = runs.read_status(d)
    assert st_["status"] == "finished" and any("keep_checkpoints: 2 -> 5" in n for n in st_["notes"])
    # the checkpoint keeps the model's own config.json beside the run's config, so it still loads as a model
    from lab import models

    ckpt = runs.latest_checkpoint(d)[1]
    assert json.loads((ckpt / runs.TRAIN_CONFIG_FILE).read_text())["keep_checkpoints"] == 5
    assert "model_type" in json.loads((ckpt / "config.json").read_text())
    model, _ = models.load(str(ckpt), device="cpu")
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.slow
def test_a_stop_request_leaves_the_error_field_empty_says_so_in_message_and_a_resume_clears_it(tmp_path):
    import threading

    stop = threading.Event()
    d = train(_cfg(tmp_path, run_name="s", steps=5), stop_event=stop, callback=lambda s, m: stop.set())
    st_ = runs.read_status(d)
    assert st_["status"] == "interrupted" and st_["error"] is None and "stopped on request" in st_["message"]
    train(resume=d, steps=2)
    st_ = runs.read_status(d)
    assert st_["status"] == "finished" and "message" not in st_  # the stop's words belong to that status only
