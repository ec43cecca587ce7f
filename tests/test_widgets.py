"""The notebook launcher (lab/widgets.py), driven headlessly through its methods.

Button callbacks do not fire without a browser, so the tests call what the buttons call
(``start``, ``stop``, ``resume``) and read the live figure's data directly.
"""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch

from lab import estimators, widgets
from lab.cliargs import field_docs
from lab.config import ConfigError, TrainConfig


def test_form_has_one_input_per_config_field_with_its_docstring_as_help():
    la = widgets.Launcher()
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert list(la.fields) == names
    docs = field_docs(TrainConfig)
    assert la.fields["lr"].tooltip == docs["lr"]
    assert la.fields["prompt_reuse"].tooltip == docs["prompt_reuse"]


def test_untouched_form_gives_the_default_config_on_this_device():
    la = widgets.Launcher()
    want = TrainConfig(**widgets.LAUNCHER_DEFAULTS, device="cuda" if torch.cuda.is_available() else "cpu",
                       output_dir=str(widgets.default_runs_dir()), quiet=True)
    assert la.config() == want


def test_estimator_choices_follow_the_registry():
    @estimators.register("test_widget_est")
    def _zero(rewards, prompt_ids):
        return estimators.Advantages(rewards * 0, rewards * 0)

    try:
        la = widgets.Launcher()
        assert "test_widget_est" in la.fields["estimator"].options
        assert "test_widget_est" in la.fields["shadow_estimators"].options
    finally:
        estimators.ESTIMATORS.unregister("test_widget_est")
    assert list(widgets.Launcher().fields["estimator"].options) == estimators.available()


def test_a_new_config_field_appears_in_the_form_by_its_type(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Extended(TrainConfig):
        warmup_steps: int = 3
        """Steps of learning-rate warmup."""

    monkeypatch.setattr(widgets, "TrainConfig", Extended)
    la = widgets.Launcher()
    w = la.fields["warmup_steps"]
    assert w.value == 3 and w.tooltip == "Steps of learning-rate warmup."
    w.value = 7
    assert la.values()["warmup_steps"] == 7


def test_form_values_become_the_config():
    la = widgets.Launcher()
    la.fields["estimator"].value = "kae"
    la.fields["estimator_params"].value = '{"h": 0.3}'
    la.fields["shadow_estimators"].value = ("grpo", "rloo")
    la.fields["clip_measure"].value = "ratio"
    la.fields["clip_delta_high"].value = "0.28"
    la.fields["rollouts_per_prompt"].value = 2
    la.fields["run_name"].value = "mine"
    c = la.config()
    assert (c.estimator, c.estimator_params, c.shadow_estimators) == ("kae", {"h": 0.3}, ("grpo", "rloo"))
    assert (c.clip_delta_high, c.rollouts_per_prompt, c.run_name) == (0.28, 2, "mine")
    la.fields["run_name"].value = "none"
    assert la.config().run_name is None


@pytest.mark.parametrize("field,text", [("estimator_params", "{oops"), ("clip_delta_low", "wide")])
def test_unreadable_text_is_an_error_naming_the_field(field, text):
    la = widgets.Launcher()
    la.fields[field].value = text
    with pytest.raises(ConfigError, match=field):
        la.config()


def test_start_with_an_invalid_config_shows_the_error_and_starts_nothing(tmp_path):
    la = widgets.Launcher(output_dir=str(tmp_path))
    la.fields["prompts_per_step"].value = 0
    la._safe(la.start)  # what the Start button does
    assert "prompts_per_step" in la.status.value
    assert not la.running and list(tmp_path.iterdir()) == []


def _kernel_state():
    return torch.get_rng_state().clone(), random.getstate(), np.random.get_state()[1].copy(), torch.get_num_threads()


@pytest.mark.slow
def test_start_runs_in_background_the_figure_grows_and_stop_leaves_a_resumable_run(tmp_path):
    torch.manual_seed(1234)
    before = _kernel_state()
    la = widgets.Launcher(
        output_dir=str(tmp_path), run_name="live", steps=200, prompts_per_step=2, rollouts_per_prompt=2,
        shadow_estimators=("rloo",), probe_every=1, probe_prompts=2, probe_samples=4, probe_set="batch",
        eval_every=1, eval_prompts=4, eval_samples=1, checkpoint_every=1, max_new_tokens=4,
    )
    run_dir = la.start()
    assert run_dir == tmp_path / "live" and la.running
    assert la.stop_button.disabled is False and la.start_button.disabled is True
    assert la.wait(min_steps=3, timeout=300), f"no steps arrived: {la.status.value}"
    reward, accuracy = la.figure.data[0], la.figure.data[1]
    n = len(reward.x)
    assert n >= 3 and len(accuracy.y) >= 3
    assert json.loads((run_dir / "config.json").read_text())["estimator"] == "grpo"
    probe_traces = {t.name for t in la.figure.data[2:]}
    assert probe_traces == {"grpo", "rloo"}
    la.wait(min_steps=n + 1, timeout=120)
    assert len(la.figure.data[0].x) > n  # still growing while the kernel is free
    la.stop()  # returns at once (no join): the kernel is not blocked while the child finishes its step
    assert la.wait(timeout=180) and la.run_status() == "interrupted"
    assert not la.running and la.start_button.disabled is False and la.resume_button.disabled is False
    assert "lab app --runs" in la.command.value and str(tmp_path) in la.command.value
    assert la.error is None
    # the kernel's own RNGs and thread count were never touched by training
    after = _kernel_state()
    assert torch.equal(before[0], after[0]) and before[1] == after[1]
    assert np.array_equal(before[2], after[2]) and before[3] == after[3]

    from lab import runs

    last = int(runs.load_run(run_dir, samples=False, probes=False).metrics["step"].max())
    la.resume(steps=last + 2)  # continue from the newest checkpoint to a finished run
    assert la.wait(timeout=300)
    assert la.error is None, la.error
    assert la.run_status() == "finished"
    assert la.history and la.history[-1][0] == last + 1
    assert len(la.figure.data[0].x) >= last + 2  # the earlier steps are drawn again on resume


def test_notebook_runs_dir_is_fresh_each_time_and_honours_the_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_NOTEBOOK_RUNS", str(tmp_path))
    a, b = widgets.notebook_runs_dir("x"), widgets.notebook_runs_dir("x")
    assert a != b and a.is_dir() and b.is_dir() and a.parent == tmp_path / "x"


def test_a_child_reaped_by_another_thread_reads_as_ended_not_running():
    # The race CI hit: the Stop watchdog and ``wait`` both join the child; the one that loses
    # the race on waitpid sees "no such child" and the stdlib's is_alive reads True until the
    # winner records the exit code. Reap the child behind multiprocessing's back (the loser's
    # view, frozen) and check every liveness question the Launcher asks still says "ended".
    import multiprocessing as mp
    import os
    import time

    proc = mp.get_context("spawn").Process(target=time.sleep, args=(0,), daemon=True)
    proc.start()
    os.waitpid(proc.pid, 0)  # another thread's waitpid won: the exit code is not recorded yet
    assert proc.is_alive()  # the stdlib's answer in that window (why the Launcher does not use it)
    assert widgets._exited(proc) and widgets._exited(proc, 5)
    la = widgets.Launcher()
    la._proc = proc
    assert not la.running
    assert la.wait(timeout=5)


def test_exited_waits_for_a_live_child_and_no_longer():
    import multiprocessing as mp
    import time

    proc = mp.get_context("spawn").Process(target=time.sleep, args=(30,), daemon=True)
    proc.start()
    try:
        assert not widgets._exited(proc, 0.2)
        proc.terminate()
        assert widgets._exited(proc, 30) and proc.exitcode is not None
    finally:
        proc.kill()
