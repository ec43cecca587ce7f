"""The reference stage (issue 22): samples stored, handed to every estimator that wants them, reused on resume."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from lab import estimators, runs
from lab.config import ConfigError, TrainConfig, config_warnings
from lab.errors import UsageError
from lab.train import train

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "data" / "models" / "tiny-arith")
SMALL = dict(model=MODEL, rollouts_per_prompt=1, prompts_per_step=4, steps=3, max_new_tokens=6, probe_every=1,
             probe_prompts=2, probe_samples=4, checkpoint_every=1, quiet=True, eval_every=0, estimator="basis",
             shadow_estimators=("blend", "rloo"), reference_samples=4, train_pool_size=8)

pytestmark = pytest.mark.slow


def _comparable(m):
    return m[[c for c in m.columns if not c.startswith(("perf/", "time/", "ref/time"))]].reset_index(drop=True)


def test_the_reference_stage_is_stored_counted_and_reaches_every_estimator_that_wants_it(tmp_path, monkeypatch):
    fed = []
    for name in estimators.available():
        cls = estimators.ESTIMATORS.get(name)
        if getattr(cls, "wants_reference", False):
            real = cls.set_reference
            monkeypatch.setattr(cls, "set_reference", lambda self, ids, r, _real=real: (fed.append((self.name, len(ids))), _real(self, ids, r))[1])
    run_dir = train(TrainConfig(**SMALL, output_dir=str(tmp_path), run_name="r"))
    ref = runs.read_reference(run_dir)
    assert sorted(ref.groupby("split").size().to_dict().items()) == [("probe", 2 * 4), ("train", 8 * 4)]
    assert (ref.groupby(["split", "prompt_id"]).size() == 4).all()
    # training basis + shadow blend get the pool's 32 samples; their probe instances the probes' 8; rloo nothing
    assert sorted(fed) == [("basis", 8), ("basis", 32), ("blend", 8), ("blend", 32)]
    m = runs.load_run(run_dir).metrics
    assert (m["ref/rollouts"] == 40).all() and (m["ref/time_s"] > 0).all()
    # the pool is all training draws: every step's prompts come from it
    pool = set(ref[ref["split"] == "train"]["prompt_id"])
    assert set(runs.load_run(run_dir).samples["prompt_id"]) <= pool


def test_basis_prior_from_all_one_reference_samples_is_above_all_zero():
    est = estimators.get("basis", online_prior="never")
    est.set_reference(torch.tensor([1, 1, 1, 2, 2, 2]), torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    mu = est.priors(torch.tensor([1, 2]))
    assert bool((mu[:, 0] > mu[:, 1]).all())


def test_resume_reuses_the_reference_file_bit_identically_and_refuses_a_broken_one(tmp_path):
    straight = runs.load_run(train(TrainConfig(**{**SMALL, "steps": 3}, output_dir=str(tmp_path), run_name="straight")))
    d = train(TrainConfig(**{**SMALL, "steps": 2}, output_dir=str(tmp_path), run_name="cut"))
    before = runs.read_reference(d)
    resumed = runs.load_run(train(resume=d, steps=3))
    pd.testing.assert_frame_equal(runs.read_reference(d), before)
    pd.testing.assert_frame_equal(_comparable(resumed.metrics), _comparable(straight.metrics))
    pd.testing.assert_frame_equal(resumed.samples.reset_index(drop=True), straight.samples.reset_index(drop=True))
    (d / runs.REFERENCE_FILE).write_bytes(b"not parquet")
    with pytest.raises(UsageError, match="reference.parquet"):
        train(resume=d, steps=4)
    (d / runs.REFERENCE_FILE).unlink()
    with pytest.raises(UsageError, match="reference.parquet: missing"):
        train(resume=d, steps=4)


def test_reference_settings_are_refused_or_warned_up_front():
    with pytest.raises(ConfigError, match="^reference_samples: .*--train-pool-size"):
        TrainConfig(reference_samples=8)
    with pytest.raises(ConfigError, match="^reference_samples: .*cap"):
        TrainConfig(reference_samples=10**6, train_pool_size=10**3)
    w = config_warnings(TrainConfig(reference_samples=2, train_pool_size=4, estimator="grpo", shadow_estimators=("rloo",)))
    assert len(w) == 1 and w[0].startswith("reference_samples:") and "basis" in w[0] and "blend" in w[0]
    assert config_warnings(TrainConfig(reference_samples=2, train_pool_size=4, estimator="basis")) == []
