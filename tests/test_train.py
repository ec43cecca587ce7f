"""End-to-end training on the shipped tiny model: every estimator, every clipping rule,
resume equality, kill -9 safety, NaN failure. Small sizes: each run is a few seconds."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from lab import estimators, runs
from lab.config import TrainConfig
from lab.train import TrainingFailed, Trainer, records, setup, train

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "data" / "models" / "tiny-arith")

pytestmark = pytest.mark.slow

SMALL = dict(model=MODEL, rollouts_per_prompt=2, prompts_per_step=4, steps=2, max_new_tokens=6,
             probe_every=0, checkpoint_every=0, quiet=True, shadow_estimators=(), eval_every=0)


def _cfg(tmp_path, **kw):
    return TrainConfig(**{**SMALL, "output_dir": str(tmp_path), **kw})


def _comparable(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[[c for c in metrics.columns if not c.startswith(("perf/", "time/"))]].reset_index(drop=True)


def test_one_training_step_changes_the_parameters(tmp_path):
    cfg = _cfg(tmp_path, steps=1, run_name="one")
    torch.manual_seed(cfg.seed)
    s = setup.load(cfg)
    before = [p.detach().clone() for p in s.model.parameters()]
    tr = Trainer(s, tmp_path / "one", runs.RunWriter.create(tmp_path / "one", cfg.to_dict()))
    tr.run()
    changed = [not torch.equal(a, b) for a, b in zip(before, tr.model.parameters())]
    assert any(changed)
    run = runs.load_run(tmp_path / "one")
    assert run.status["status"] == "finished"
    assert len(run.samples) == cfg.prompts_per_step * cfg.rollouts_per_prompt


@pytest.mark.parametrize("name", estimators.available())
def test_every_estimator_trains_end_to_end(tmp_path, name):
    g = 1 if name == "basis" else 2
    run_dir = train(_cfg(tmp_path, estimator=name, rollouts_per_prompt=g, run_name=name, prompt_reuse=2))
    run = runs.load_run(run_dir)
    assert run.status["status"] == "finished"
    assert run.metrics["step"].tolist() == [0, 1]
    for col in ("reward/mean", "loss/total", "actor/clip_frac_low", "actor/clip_frac_high", "actor/approx_kl",
                "actor/entropy", "actor/grad_norm", "adv/mean", "adv/std", "batch/zero_std_frac",
                "response/length_mean", "perf/tokens_per_s", "perf/step_time_s", "reward/errors"):
        assert col in run.metrics and run.metrics[col].notna().all(), col
    assert {"prompt", "completion", "reward", "baseline", "advantage", "length"} <= set(run.samples.columns)


@pytest.mark.parametrize(
    "kw",
    [
        dict(loss="ppo", clip_measure="ratio", clip_delta=0.2),
        dict(loss="ppo", clip_measure="ratio", clip_delta_low=0.2, clip_delta_high=0.28),
        dict(loss="ppo", clip_measure="kl1", clip_delta=0.05),
        dict(loss="ppo", clip_measure="kl2", clip_delta=0.02),
        dict(loss="ppo", clip_measure="kl3", clip_delta=0.03),
        dict(loss="dual_clip", clip_measure="ratio", clip_delta=0.2),
        dict(loss="vanilla"),
        dict(loss="ppo", clip_measure="kl3", clip_delta=0.03, kl_coef=0.05, use_ref_model=True, kl_estimator="k3"),
        dict(loss="ppo", loss_agg="seq-mean-token-sum-norm", estimator="dr_grpo", ppo_epochs=2, minibatches=2),
    ],
    ids=["ratio", "clip-higher", "kl1", "kl2", "kl3", "dual-clip", "vanilla", "kl3+kl-penalty", "dr-grpo-2epochs"],
)
def test_every_clipping_rule_trains_end_to_end(tmp_path, kw):
    run = runs.load_run(train(_cfg(tmp_path, run_name="r", **kw)))
    assert run.status["status"] == "finished"
    m = run.metrics
    assert m["loss/total"].notna().all()
    lo, hi = m["actor/clip_low_bound"].iloc[0], m["actor/clip_high_bound"].iloc[0]
    if kw["loss"] != "vanilla" and kw.get("clip_measure") == "kl3":
        assert hi - 1 > 1 - lo  # KL3's asymmetric interval reached the loss
    if kw.get("use_ref_model"):
        assert "actor/kl_ref" in m


def test_shadow_estimators_and_probes_are_recorded(tmp_path):
    cfg = _cfg(tmp_path, estimator="kae", shadow_estimators=("all",), probe_every=1, probe_prompts=3,
               probe_samples=8, prompt_reuse=2, run_name="p", eval_every=1, eval_prompts=5, eval_samples=2)
    run = runs.load_run(train(cfg))
    others = [n for n in estimators.available() if n != "kae"]
    for n in others:
        assert f"baseline__{n}" in run.samples and f"advantage__{n}" in run.samples
    # shadow grpo's baselines are exactly grpo recomputed on the stored rewards
    s0 = run.samples[run.samples["step"] == 0]
    ref = estimators.get("grpo")(estimators.RewardBatch(torch.tensor(s0["reward"].values), torch.tensor(s0["prompt_id"].values)))
    assert torch.allclose(ref.baselines, torch.tensor(s0["baseline__grpo"].values))
    assert set(run.probes["estimator"]) == set(estimators.available())
    assert sorted(run.probes["step"].unique().tolist()) == [0, 1]
    assert (run.probes.groupby(["step", "estimator"]).size() == 3).all()
    for n in estimators.available():
        assert f"probe/value_mse/{n}" in run.metrics
    assert run.metrics["eval/accuracy"].between(0, 1).all() and len(run.metrics) == 2


def test_batch_probes_score_the_baselines_training_used(tmp_path):
    cfg = _cfg(tmp_path, estimator="grpo", shadow_estimators=("rloo",), probe_set="batch", probe_every=1,
               probe_prompts=2, probe_samples=6, run_name="b")
    run = runs.load_run(train(cfg))
    s = run.samples
    for step in (0, 1):
        pr = run.probes[(run.probes["step"] == step) & (run.probes["estimator"] == "rloo")]
        st_ = s[s["step"] == step]
        # the probed prompts are the step's first two prompts; baseline_mean is the mean of rloo's baselines there
        first_two = list(dict.fromkeys(st_["prompt_id"]))[:2]
        assert sorted(pr["prompt_id"]) == sorted(first_two)
        for pid, bm in zip(pr["prompt_id"], pr["baseline_mean"]):
            assert abs(st_[st_["prompt_id"] == pid]["baseline__rloo"].mean() - bm) < 1e-12


def test_resumed_run_reproduces_the_uninterrupted_one(tmp_path):
    straight = runs.load_run(train(_cfg(tmp_path, estimator="kae", steps=4, checkpoint_every=2, run_name="straight",
                                        shadow_estimators=("basis", "grpo"), probe_every=2, probe_prompts=2, probe_samples=4)))
    # the same run cut after its step-1 checkpoint, then resumed
    cfg = _cfg(tmp_path, estimator="kae", steps=4, checkpoint_every=2, run_name="cut",
               shadow_estimators=("basis", "grpo"), probe_every=2, probe_prompts=2, probe_samples=4)
    run_dir = tmp_path / "cut"
    torch.manual_seed(cfg.seed)
    import random

    import numpy as np

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    s = setup.load(cfg)
    s.c = cfg.replace(steps=3)  # stops after step 2 (checkpoint at step 1; step 2 is logged but not checkpointed)
    Trainer(s, run_dir, runs.RunWriter.create(run_dir, cfg.to_dict())).run()
    assert runs.load_run(run_dir).metrics["step"].tolist() == [0, 1, 2]
    resumed = runs.load_run(train(resume=run_dir))
    assert resumed.status["status"] == "finished"
    pd.testing.assert_frame_equal(_comparable(resumed.metrics), _comparable(straight.metrics))
    pd.testing.assert_frame_equal(resumed.samples.reset_index(drop=True), straight.samples.reset_index(drop=True))


def test_kill_minus_nine_leaves_a_readable_interrupted_run_that_resumes_identically(tmp_path):
    args = ["--model", MODEL, "--rollouts-per-prompt", "2", "--prompts-per-step", "4", "--steps", "8",
            "--max-new-tokens", "6", "--probe-every", "0", "--checkpoint-every", "1", "--quiet",
            "--estimator", "kae", "--prompt-reuse", "2", "--shadow-estimators", "grpo", "--eval-every", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    straight = subprocess.run([sys.executable, "-m", "lab.cli", "train", *args, "--output-dir", str(tmp_path), "--run-name", "straight"],
                              env=env, capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "train", *args, "--output-dir", str(tmp_path), "--run-name", "killed"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "killed"
    deadline = time.time() + 240
    while time.time() < deadline:
        latest = runs.latest_checkpoint(run_dir) if run_dir.exists() else None
        if latest is not None and latest[0] >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = runs.load_run(run_dir)
    assert killed.status["status"] == "interrupted"
    assert len(killed.metrics) >= 3
    done = subprocess.run([sys.executable, "-m", "lab.cli", "train", "--resume", str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    a, b = runs.load_run(tmp_path / "straight"), runs.load_run(run_dir)
    assert b.status["status"] == "finished"
    pd.testing.assert_frame_equal(_comparable(b.metrics), _comparable(a.metrics))


def test_nan_reward_fails_the_run_naming_step_and_sample_and_keeps_earlier_steps(tmp_path):
    from lab import tasks

    base = tasks.get("arithmetic")

    class NanAfterFirstStep:
        name = "nan_after_first_step"
        stop = getattr(base, "stop", ())

        def __init__(self):
            self.calls = 0

        def examples(self, split="train", seed=0):
            return base.examples(split, seed)

        def reward(self, completion, example):
            self.calls += 1
            return float("nan") if self.calls > 8 else 0.0

    tasks.register("nan_after_first_step")(NanAfterFirstStep)
    try:
        with pytest.raises(TrainingFailed, match=r"step 1: .*reward of sample 0 \(prompt_id \d+"):
            train(_cfg(tmp_path, task="nan_after_first_step", steps=3, run_name="nan"))
    finally:
        tasks.TASKS.unregister("nan_after_first_step")
    run = runs.load_run(tmp_path / "nan")
    assert run.status["status"] == "failed"
    assert "step 1" in run.status["error"] and "nan" in run.status["error"]
    assert run.metrics["step"].tolist() == [0]
    assert len(run.samples) == 8


def test_a_bad_model_path_writes_no_run_directory(tmp_path):
    with pytest.raises((ValueError, OSError)):
        train(_cfg(tmp_path, model=str(tmp_path / "no-such-model"), run_name="x"))
    assert not (tmp_path / "x").exists()


def test_trainer_syncs_rollout_weights_after_every_update(tmp_path, monkeypatch):
    from lab.rollout.hf import HFBackend

    calls = []
    orig = HFBackend.sync_weights
    monkeypatch.setattr(HFBackend, "sync_weights", lambda self, model: (calls.append(model), orig(self, model)))
    train(_cfg(tmp_path, steps=3, run_name="sync"))
    assert len(calls) == 3


# --- step speed: the samples frame in one go, the background writer ------------------------------
def _frame_column_by_column(g, step, examples, out, rewards, pids, adv, shadow):
    """The samples frame as the trainer built it before (a DataFrame, then one column per shadow)."""
    idx = out.prompt_index.tolist()
    df = pd.DataFrame({
        "step": step, "prompt_id": pids.numpy(), "rollout": [i % g for i in range(len(idx))],
        "prompt": [examples[i].prompt for i in idx], "answer": [examples[i].answer for i in idx],
        "completion": out.texts, "reward": rewards.numpy(), "baseline": adv.baselines.double().cpu().numpy(),
        "advantage": adv.advantages.double().cpu().numpy(), "length": out.completion_mask.sum(1).cpu().numpy(),
        "finish_reason": out.finish_reasons,
    })
    for n, a in shadow.items():
        df[f"baseline__{n}"] = a.baselines.double().cpu().numpy()
        df[f"advantage__{n}"] = a.advantages.double().cpu().numpy()
    return df


def test_samples_frame_built_in_one_go_equals_the_column_by_column_frame():
    from types import SimpleNamespace

    g, prompts = 3, 4
    gen = torch.Generator().manual_seed(0)
    examples = [SimpleNamespace(prompt=f"{i}+1=", answer=str(i + 1)) for i in range(prompts)]
    index = torch.arange(prompts).repeat_interleave(g)
    n = len(index)
    mask = torch.rand(n, 5, generator=gen) < 0.7
    out = SimpleNamespace(prompt_index=index, texts=[f"c{i}" for i in range(n)], completion_mask=mask,
                          finish_reasons=["stop" if i % 2 else "length" for i in range(n)])
    rewards = (torch.rand(n, generator=gen) < 0.5).double()
    pids = torch.tensor([1000 + 7 * int(i) for i in index])
    batch = estimators.RewardBatch(rewards, pids, step=5)
    adv = estimators.get("grpo")(batch)
    shadow = {name: estimators.get(name)(batch) for name in ("rloo", "kae", "basis")}
    new = records.rollout_table(5, examples, out, rewards, pids, adv, shadow, g)
    old = _frame_column_by_column(g, 5, examples, out, rewards, pids, adv, shadow)
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert list(new.columns)[-2:] == ["baseline__basis", "advantage__basis"]


def test_background_writer_keeps_the_order_and_flush_puts_everything_on_disk(tmp_path, monkeypatch):
    slow = runs.files.write_parquet

    def slow_parquet(path, df):  # a slow disk: the training thread gets ahead of the writer
        time.sleep(0.05)
        slow(path, df)

    monkeypatch.setattr(runs.files, "write_parquet", slow_parquet)
    w = runs.RunWriter.create(tmp_path / "r", {"steps": 6})
    w.start_background(max_pending=2)
    for s in range(6):
        w.log_step(s, {"step": s, "x": float(s)}, pd.DataFrame({"step": [s, s], "reward": [1.0, 0.0]}))
    assert runs.last_logged_step(tmp_path / "r") < 5  # queued, not yet all written
    w.set_status("finished", step=5)  # waits for the queue first
    assert runs.last_logged_step(tmp_path / "r") == 5
    w.close()
    run = runs.load_run(tmp_path / "r")
    assert run.metrics["step"].tolist() == list(range(6)) and sorted(run.samples["step"].unique()) == list(range(6))
    assert run.status["status"] == "finished" and run.status["step"] == 5


def test_a_failing_write_in_the_writer_thread_fails_the_run_with_every_earlier_step_on_disk(tmp_path, monkeypatch):
    real = runs.files.write_parquet

    def full_disk_at_step_3(path, df):
        if path.name == "step_000003.parquet":
            raise OSError(28, "No space left on device")
        real(path, df)

    monkeypatch.setattr(runs.files, "write_parquet", full_disk_at_step_3)
    with pytest.raises(OSError, match="No space left"):
        train(_cfg(tmp_path, run_name="full", steps=6, shadow_estimators=("rloo",)))
    run = runs.load_run(tmp_path / "full")
    assert run.status["status"] == "failed" and "No space left" in run.status["error"]
    # nothing after the failed write landed: steps 0-2 complete, status names step 2
    assert run.metrics["step"].tolist() == [0, 1, 2] and run.status["step"] == 2
    assert sorted(run.samples["step"].unique()) == [0, 1, 2]


def test_a_run_failing_mid_step_has_every_logged_steps_samples_on_disk_and_resumes(tmp_path, monkeypatch):
    from lab import train as train_mod

    real = train_mod.Trainer.update

    def crash_at_step_3(self, out, advantages):
        if self.current_step == 3:
            raise RuntimeError("boom")
        return real(self, out, advantages)

    cfg = _cfg(tmp_path, run_name="crash", steps=5, checkpoint_every=2, shadow_estimators=("rloo", "basis"))
    monkeypatch.setattr(train_mod.Trainer, "update", crash_at_step_3)
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg)
    monkeypatch.setattr(train_mod.Trainer, "update", real)
    run = runs.load_run(tmp_path / "crash")
    assert run.status["status"] == "failed" and run.status["step"] == 2
    assert run.metrics["step"].tolist() == [0, 1, 2]
    assert run.samples.groupby("step").size().to_dict() == {s: 8 for s in (0, 1, 2)}
    assert {"baseline__rloo", "advantage__basis"} <= set(run.samples.columns)
    resumed = runs.load_run(train(resume=tmp_path / "crash"))  # from the step-1 checkpoint
    straight = runs.load_run(train(cfg.replace(run_name="straight")))
    assert resumed.status["status"] == "finished"
    pd.testing.assert_frame_equal(_comparable(resumed.metrics), _comparable(straight.metrics))
    pd.testing.assert_frame_equal(resumed.samples.reset_index(drop=True), straight.samples.reset_index(drop=True))
