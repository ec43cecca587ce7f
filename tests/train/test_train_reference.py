"""The reference stage (issue 22): `lab train --estimator basis --rollouts-per-prompt 1 --reference-samples 8
--train-pool-size 512` stores the samples, BASIS's and shadow BLEND's baselines are built from them (every
instance whose class wants them, probe instances included), and a resume after kill -9 reuses them
bit-identically; a missing, damaged or foreign file is refused.

One straight run through ``lab.cli.main`` (micro sizes, the issue's flags) is shared by the assertions
(module fixture); a second copy is killed with SIGKILL after its step-1 checkpoint and resumed in-process.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from lab import estimators, runs
from lab.cli import main
from lab.config import ConfigError, TrainConfig, config_warnings
from lab.errors import UsageError
from lab.estimators import RewardBatch
from lab.train import reference, train

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "data" / "models" / "tiny-arith")
ISSUE_FLAGS = ["--estimator", "basis", "--rollouts-per-prompt", "1", "--reference-samples", "8", "--train-pool-size", "512"]
MICRO = ["--model", MODEL, "--shadow-estimators", "blend,rloo", "--prompts-per-step", "4", "--steps", "3",
         "--max-new-tokens", "4", "--probe-every", "1", "--probe-prompts", "2", "--probe-samples", "2",
         "--checkpoint-every", "1", "--eval-every", "0", "--quiet"]
POOL, M, PROBES = 512, 8, 2

pytestmark = pytest.mark.slow


def _comparable(m):
    return m[[c for c in m.columns if not c.startswith(("perf/", "time/", "ref/time"))]].reset_index(drop=True)


def _argv(root, name):
    return ["train", *ISSUE_FLAGS, *MICRO, "--output-dir", str(root), "--run-name", name]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The issue's command, uninterrupted; ``fed``: (class name, number of samples) of every set_reference call the
    trainer's reference stage makes (``lab/train/reference.py``; the config check's G = 1 probe makes its own on
    throwaway instances)."""
    import inspect

    root = tmp_path_factory.mktemp("ref")
    fed = []

    def by_trainer() -> bool:
        return any(Path(f.filename).as_posix().endswith("lab/train/reference.py") for f in inspect.stack()[2:6])

    with pytest.MonkeyPatch.context() as mp:
        for name in estimators.available():
            cls = estimators.ESTIMATORS.get(name)
            if getattr(cls, "wants_reference", False):
                real = cls.set_reference
                mp.setattr(cls, "set_reference", lambda self, ids, r, _real=real: (
                    fed.append((self.name, len(ids))) if by_trainer() else None, _real(self, ids, r))[1])
        assert main(_argv(root, "straight")) == 0
    return root, runs.load_run(root / "straight"), fed


def test_the_issues_command_stores_the_samples_counts_them_and_feeds_every_instance_that_wants_them(straight):
    _, run, fed = straight
    ref = run.reference
    assert ref.groupby("split").size().to_dict() == {"probe": PROBES * M, "train": POOL * M}
    assert (ref.groupby(["split", "prompt_id"]).size() == M).all()
    # training basis + shadow blend get the pool's samples, their probe instances the probes'; rloo nothing
    assert sorted(fed) == sorted([("basis", POOL * M), ("blend", POOL * M), ("basis", PROBES * M), ("blend", PROBES * M)])
    assert (run.metrics["ref/rollouts"] == (POOL + PROBES) * M).all() and (run.metrics["ref/time_s"] > 0).all()
    assert set(run.samples["prompt_id"]) <= set(ref[ref["split"] == "train"]["prompt_id"])  # every draw is from the pool


def test_basis_and_shadow_blend_baselines_are_those_of_estimators_given_the_stored_samples(straight):
    """Replayed on the run's own batches: each step's baselines equal an estimator's that was given
    the stored pool samples, and differ from one that was not (BLEND's reference is history at
    step 0, so it counts from step 1 on)."""
    _, run, _ = straight
    pool = run.reference[run.reference["split"] == "train"]
    for name, col in (("basis", "baseline"), ("blend", "baseline__blend")):
        fresh, given = estimators.get(name), estimators.get(name)
        given.set_reference(torch.tensor(pool["prompt_id"].to_numpy()), torch.tensor(pool["reward"].to_numpy()))
        differ = []
        for step, rows in run.samples.groupby("step"):
            batch = RewardBatch(torch.tensor(rows["reward"].to_numpy()), torch.tensor(rows["prompt_id"].to_numpy()), step=step)
            with_ref, without = given(batch).baselines, fresh(batch).baselines
            assert torch.allclose(with_ref, torch.tensor(rows[col].to_numpy()), atol=1e-12), (name, step)
            differ.append(not torch.allclose(with_ref, without))
        assert any(differ), name  # the samples changed the baselines


def test_estimator_as_run_replays_the_trained_and_shadow_estimators_with_their_reference(straight):
    """``reference.estimator_as_run`` builds what the trainer built (saved parameters, the pool's samples for those
    that want them): replayed on the run's batches its baselines are the logged ones; a bare registry call's are not."""
    root, run, _ = straight
    for name, col in ((None, "baseline"), ("blend", "baseline__blend"), ("rloo", "baseline__rloo")):
        est, bare = reference.estimator_as_run(root / "straight", name), estimators.get(name or "basis")
        differ = []
        for step, rows in run.samples.groupby("step"):
            batch = RewardBatch(torch.tensor(rows["reward"].to_numpy()), torch.tensor(rows["prompt_id"].to_numpy()), step=step)
            got = est(batch).baselines
            assert torch.allclose(got, torch.tensor(rows[col].to_numpy()), atol=1e-12), (name, step)
            differ.append(not torch.allclose(got, bare(batch).baselines))
        assert any(differ) == (name != "rloo"), name  # rloo wants no reference: the two are the same
    kae = reference.estimator_as_run(root / "straight", "kae", h=0.3)
    assert kae.h == 0.3  # another estimator with the given parameters


def test_basis_baseline_for_a_prompt_with_all_one_reference_samples_is_above_one_with_all_zero():
    est = estimators.get("basis")
    est.set_reference(torch.tensor([1] * 8 + [2] * 8), torch.tensor([1.0] * 8 + [0.0] * 8, dtype=torch.float64))
    for r in (0.0, 1.0):  # whatever the rollout itself scored
        b = est(RewardBatch(torch.tensor([r, r], dtype=torch.float64), torch.tensor([1, 2]), step=0)).baselines
        assert float(b[0]) > float(b[1])


KILL_AFTER_STEP_1 = """
import os, signal, sys
from lab.train import trainer
real = trainer.Trainer._after
def after(self, step, metrics):
    real(self, step, metrics)  # step 1 is on disk and checkpointed
    if step == 1:
        os.kill(os.getpid(), signal.SIGKILL)
trainer.Trainer._after = after
from lab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_resume_after_kill_minus_nine_reuses_the_samples_bit_identically_and_refuses_a_broken_file(straight, monkeypatch):
    root, done, _ = straight
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", KILL_AFTER_STEP_1, *_argv(root, "killed")], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr
    d = root / "killed"
    assert runs.read_status(d)["status"] == "interrupted" and runs.latest_checkpoint(d)[0] == 1
    before = (d / runs.REFERENCE_FILE).read_bytes()
    monkeypatch.setattr(reference, "sample", lambda *a: pytest.fail("the resume sampled the reference again"))
    assert main(["train", "--resume", str(d)]) == 0
    assert (d / runs.REFERENCE_FILE).read_bytes() == before
    resumed = runs.load_run(d)
    assert resumed.status["status"] == "finished"
    pd.testing.assert_frame_equal(_comparable(resumed.metrics), _comparable(done.metrics))
    pd.testing.assert_frame_equal(resumed.samples.reset_index(drop=True), done.samples.reset_index(drop=True))
    pd.testing.assert_frame_equal(resumed.reference, done.reference)
    # refused before anything is written, naming the file: foreign (other samples), damaged, missing
    metrics = (d / runs.METRICS_FILE).read_bytes()
    ref = runs.read_reference(d)
    runs.RunWriter(d).write_reference(ref[ref["sample"] < M - 1].reset_index(drop=True))
    with pytest.raises(UsageError, match=r"reference\.parquet: its \w+ samples .* not this run's file"):
        train(resume=d, steps=4)
    (d / runs.REFERENCE_FILE).write_bytes(b"not parquet")
    with pytest.raises(UsageError, match=r"reference\.parquet"):
        train(resume=d, steps=4)
    (d / runs.REFERENCE_FILE).unlink()
    with pytest.raises(UsageError, match=r"reference\.parquet: missing"):
        train(resume=d, steps=4)
    assert (d / runs.METRICS_FILE).read_bytes() == metrics and runs.read_status(d)["status"] == "finished"


def test_a_resume_before_the_first_checkpoint_runs_the_stage_again_and_draws_the_same_samples(tmp_path, monkeypatch):
    from lab.train import trainer

    cfg = TrainConfig(model=MODEL, estimator="basis", rollouts_per_prompt=1, prompts_per_step=2, steps=1, max_new_tokens=4,
                      probe_every=0, checkpoint_every=0, eval_every=0, quiet=True, shadow_estimators=(),
                      reference_samples=2, train_pool_size=4, output_dir=str(tmp_path), run_name="r")
    real = trainer.Trainer.update

    def crash(self, out, adv):
        raise RuntimeError("boom")

    monkeypatch.setattr(trainer.Trainer, "update", crash)
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg)
    monkeypatch.setattr(trainer.Trainer, "update", real)
    d = tmp_path / "r"
    first = runs.read_reference(d)
    calls = []
    real_sample = reference.sample
    monkeypatch.setattr(reference, "sample", lambda tr: (calls.append(1), real_sample(tr))[1])
    assert runs.load_run(train(resume=d)).status["status"] == "finished"
    assert calls == [1]  # no checkpoint: the run restarted at step 0, and so did the stage
    pd.testing.assert_frame_equal(runs.read_reference(d), first)


def test_reference_settings_are_refused_or_warned_up_front(tmp_path, capsys):
    with pytest.raises(ConfigError, match="^reference_samples: .*--train-pool-size"):
        TrainConfig(reference_samples=8)
    with pytest.raises(ConfigError, match="^reference_samples: .*cap"):
        TrainConfig(reference_samples=10**6, train_pool_size=10**3)
    assert main(["train", "--reference-samples", "8", "--output-dir", str(tmp_path), "--run-name", "x"]) == 2
    assert "reference_samples" in capsys.readouterr().err and not (tmp_path / "x").exists()
    w = config_warnings(TrainConfig(reference_samples=2, train_pool_size=4, estimator="grpo", shadow_estimators=("rloo",)))
    assert len(w) == 1 and w[0].startswith("reference_samples:") and "basis" in w[0] and "blend" in w[0]
    assert config_warnings(TrainConfig(reference_samples=2, train_pool_size=4, estimator="basis")) == []
